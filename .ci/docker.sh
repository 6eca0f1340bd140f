#!/usr/bin/env bash
# Docker check: build the image and run the seed's `docker run` lines against it, as a user would.
#
#   bash .ci/docker.sh            # from the repo root; CI calls it from .ci/run
#
# 1. a Docker engine: the running one, else ../shared/tools/docker-local.sh (root + apt);
# 2. docker build -t rekko .
# 3. (a) the demo; (b) the seed's pipeline line (its typographic quotes and spaces kept) with
#    data/ and matrix/ mounted; (c) the seed's recommend line with pred/ mounted; (d) bad runs:
#    no artifacts, a missing input, a P1 that is neither a path nor a user id, an unwritable
#    mount; (e) the same lines under --user for a host user whose uid is not the image's 1000;
#    (f) REKKO_MODE=serve behind the seed's -p 4000:80 with a REKKO_SERVE_TOKEN, when the image
#    has the serve extra; (g) deploy/compose.yaml: a Dask scheduler and two workers, the pipeline
#    and the batch run through them, compared with a local run of the same image (artifacts and
#    every user's list); compose is Docker's plugin, or Debian's docker-compose (installed if
#    missing, as root).
# Files written to mounts must belong to the host user, who reads and removes them.
# Without a Docker engine (and no way to start one) it says so and exits 0, except when CI=true:
# there every problem fails the run.
#
# The seed's typographic quotes inside the -e values are on purpose:
# shellcheck disable=SC1112
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
IMAGE=${REKKO_IMAGE:-rekko}
PORT=${REKKO_CI_PORT:-4000}
N=5
T0=$(date +%s)
STEP_T0=$T0
FAILED=0

say() { printf '[docker-ci +%ss] %s\n' "$(($(date +%s) - T0))" "$*"; }
step() {
  local now
  now=$(date +%s)
  say "$* (previous step: $((now - STEP_T0))s)"
  STEP_T0=$now
}
fail() {
  printf '[docker-ci] FAIL: %s\n' "$*" >&2
  FAILED=$((FAILED + 1))
}
skip() {
  if [[ "${CI-}" == true ]]; then
    printf '[docker-ci] FAIL (CI=true, cannot skip): %s\n' "$*" >&2
    exit 1
  fi
  say "SKIPPED: $*"
  exit 0
}

# --- 1. a Docker engine -------------------------------------------------------------------
step "looking for a Docker engine"
if ! docker info >/dev/null 2>&1; then
  helper=$ROOT/../shared/tools/docker-local.sh
  if [[ $(id -u) -ne 0 ]]; then
    skip "no running Docker engine, and starting one needs root"
  elif [[ ! -f "$helper" ]]; then
    skip "no running Docker engine, and no $helper to start one"
  elif ! command -v apt-get >/dev/null 2>&1 && ! command -v dockerd >/dev/null 2>&1; then
    skip "no running Docker engine, and no apt-get to install one"
  fi
  bash "$helper" || skip "$helper could not bring up Docker"
fi
docker info >/dev/null 2>&1 || skip "Docker engine not reachable"

# --- 2. build -----------------------------------------------------------------------------
step "docker build -t $IMAGE ."
build_log=$(mktemp)
if ! docker build -t "$IMAGE" . >"$build_log" 2>&1; then
  tail -40 "$build_log" >&2
  rm -f "$build_log"
  printf '[docker-ci] FAIL: docker build\n' >&2
  exit 1
fi
rm -f "$build_log"
size=$(docker image inspect --format '{{.Size}}' "$IMAGE")
say "image $IMAGE: $((size / 1000000)) MB"
image_user=$(docker image inspect --format '{{.Config.User}}' "$IMAGE")
[[ -n "$image_user" && "${image_user%%:*}" != 0 && "${image_user%%:*}" != root ]] ||
  fail "the image runs as root (USER '$image_user')"
docker image inspect --format '{{json .Config.ExposedPorts}}' "$IMAGE" | grep -q '"80/tcp"' ||
  fail "the image does not EXPOSE 80"
# Lean: no compiler, no pip cache, no pip in the runtime virtualenv.
leftovers=$(docker run --rm --entrypoint sh "$IMAGE" -c \
  'for f in gcc cc g++ make; do command -v "$f"; done; ls -d /root/.cache/pip /tmp/.cache/pip /opt/venv/bin/pip 2>/dev/null' || true)
[[ -z "$leftovers" ]] || fail "build leftovers in the image: $leftovers"

# --- the host user ------------------------------------------------------------------------
# Run as root (CI), we play a typical host user, uid 1000 (the image's default uid), and for
# the --user check a second one, uid 4242. Run as someone else, that someone is the host user.
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/rekko-docker-ci.XXXXXX")
chmod 0755 "$SCRATCH"
trap 'rm -rf "$SCRATCH"' EXIT
if [[ $(id -u) -eq 0 ]]; then
  HOST_UID=1000 HOST_GID=1000
else
  HOST_UID=$(id -u) HOST_GID=$(id -g)
fi
# as UID GID CMD...: run a host command as that user.
as() {
  local uid=$1 gid=$2
  shift 2
  if [[ $(id -u) -eq 0 ]]; then
    setpriv --reuid "$uid" --regid "$gid" --clear-groups -- "$@"
  else
    "$@"
  fi
}
# A project folder as the seed's users have one: data/ with the three inputs, empty matrix/, pred/.
make_project() {
  local dir=$1 uid=$2 gid=$3
  mkdir -p "$dir/data" "$dir/matrix" "$dir/pred"
  cp data/interactions.parquet data/movies_metdata.parquet data/Movies_r_d.xlsx "$dir/data/"
  [[ $(id -u) -eq 0 ]] && chown -R "$uid:$gid" "$dir"
  return 0
}
# The image's own uid writes to the mounts unless the host user differs (then --user).
user_args=()
if [[ "$HOST_UID" -ne 1000 ]]; then
  user_args=(--user "$HOST_UID:$HOST_GID")
fi

# Output of the last `run`: its exit code, stdout and stderr.
RC=0 OUT='' ERR=''
run() {
  local out err
  out=$(mktemp) err=$(mktemp)
  RC=0
  docker run "$@" >"$out" 2>"$err" || RC=$?
  OUT=$(cat "$out") ERR=$(cat "$err")
  rm -f "$out" "$err"
}
show() {
  printf -- '--- exit %s; stdout:\n%s\n--- stderr:\n%s\n---\n' "$RC" "$OUT" "$ERR" >&2
}
expect_ok() {
  if [[ "$RC" -ne 0 ]]; then
    fail "$1: exit $RC"
    show
    return 1
  fi
}
expect_exit2() {
  local what=$1 pattern=$2
  if [[ "$RC" -ne 2 ]]; then
    fail "$what: expected exit 2, got $RC"
    show
  elif ! grep -qiE -- "$pattern" <<<"$ERR$OUT"; then
    fail "$what: exit 2 but the message does not match /$pattern/"
    show
  else
    say "ok: $what -> exit 2: $(grep -iE -m1 -- "$pattern" <<<"$ERR$OUT")"
  fi
}
# owned_and_removable UID GID FILE...: each file exists, belongs to UID and that user reads it.
owned_by_host() {
  local uid=$1 gid=$2 f
  shift 2
  for f in "$@"; do
    if [[ ! -s "$f" ]]; then
      fail "missing or empty on the host: $f"
    elif [[ $(stat -c %u "$f") -ne "$uid" ]]; then
      fail "$f belongs to uid $(stat -c %u "$f"), not the host user $uid"
    elif ! as "$uid" "$gid" cat -- "$f" >/dev/null; then
      fail "the host user $uid cannot read $f"
    fi
  done
}

# --- 3a. demo -----------------------------------------------------------------------------
step "(a) docker run --rm $IMAGE  (demo)"
run --rm "$IMAGE"
if expect_ok "demo"; then
  lines=$(grep -c . <<<"$OUT" || true)
  if [[ "$lines" -lt 3 ]]; then
    fail "demo printed $lines lines, expected recommendations"
    show
  else
    say "ok: demo printed $lines lines"
    printf '%s\n' "$OUT" | head -15
  fi
fi

# --- 3b. the seed's pipeline line ---------------------------------------------------------
PROJECT=$SCRATCH/project
make_project "$PROJECT" "$HOST_UID" "$HOST_GID"
cd "$PROJECT"
step "(b) the seed's pipeline line, data/ and matrix/ mounted (host uid $HOST_UID)"
# Verbatim from the seed, with the image name added and the ASCII quotes a shell needs to keep
# its typographic quotes and spaces inside the values.
run --rm -p "$PORT:80" "${user_args[@]}" -v "$PWD/data:/app/data" -v "$PWD/matrix:/app/matrix" \
  -e P1='’ data/interactions.parquet’' -e P2='’ data/movies_metdata.parquet’' -e P3='’data/Movies_r_d.xlsx’' -e P4='’data/movies_rd.parquet’' -e P5='’ data/int_coef.parquet’' -e P6='’ data/movies_md_upd.parquet’' -e P7='’data/interactions_upd.parquet’' -e P8='’matrix/cos_sim_md.pkl’' -e P9='’ matrix/cos_sim_desc.pkl’' \
  "$IMAGE"
if expect_ok "pipeline line"; then
  owned_by_host "$HOST_UID" "$HOST_GID" data/movies_rd.parquet data/int_coef.parquet data/movies_md_upd.parquet \
    data/interactions_upd.parquet matrix/cos_sim_md.pkl matrix/cos_sim_desc.pkl
  say "ok: pipeline artifacts on the host: $(find data matrix -type f | sort | tr '\n' ' ')"
fi

# --- 3c. the seed's recommend line --------------------------------------------------------
# A user with history in the sample: the most active one.
USER_ID=$(docker run --rm --entrypoint python "$IMAGE" -c \
  "import pandas as pd; print(pd.read_parquet('data/interactions.parquet')['user_id'].value_counts().index[0])")
step "(c) the seed's recommend line: P1=$USER_ID P2=$N, pred/ mounted"
run --rm -p "$PORT:80" "${user_args[@]}" -v "$PWD/data:/app/data" -v "$PWD/matrix:/app/matrix" -v "$PWD/pred:/app/pred" \
  -e P1="$USER_ID" -e P2="$N" -e P3='data/interactions_upd.parquet' -e P4='data/movies_md_upd.parquet' -e P5='data/int_coef.parquet' -e P6='matrix/cos_sim_md.pkl' -e P7='matrix/cos_sim_desc.pkl' \
  "$IMAGE"
pred="pred/pred($USER_ID).csv"
if expect_ok "recommend line"; then
  printf '%s\n' "$OUT"
  owned_by_host "$HOST_UID" "$HOST_GID" "$pred"
  if [[ -s "$pred" ]]; then
    rows=$(($(grep -c . "$pred") - 1))
    [[ "$rows" -eq "$N" ]] || fail "$pred has $rows movies, expected $N"
    # Every movie of the csv is printed: the second csv column is the title or the movie id.
    missing=0
    while IFS= read -r movie; do
      grep -qF -- "$movie" <<<"$OUT" || missing=$((missing + 1))
    done < <(python3 -c 'import csv, sys; r = list(csv.DictReader(open(sys.argv[1], encoding="utf-8")))
for row in r: print(row.get("movie_id") or next(iter(row.values())))' "$pred")
    [[ "$missing" -eq 0 ]] || fail "$missing of the $N movies in $pred are not printed on stdout"
    [[ "$rows" -eq "$N" && "$missing" -eq 0 ]] && say "ok: $N movies printed, $pred written on the host"
  fi
fi

# --- 3d. bad runs -------------------------------------------------------------------------
step "(d) bad runs"
EMPTY=$SCRATCH/empty
mkdir -p "$EMPTY/matrix" "$EMPTY/pred"
[[ $(id -u) -eq 0 ]] && chown -R "$HOST_UID:$HOST_GID" "$EMPTY"
run --rm "${user_args[@]}" -v "$EMPTY/matrix:/app/matrix" -v "$EMPTY/pred:/app/pred" -e P1="$USER_ID" -e P2="$N" "$IMAGE"
expect_exit2 "recommend with an empty matrix/ (no pipeline run yet)" "error: .*manifest.*rerun the pipeline"

run --rm "${user_args[@]}" -v "$PWD/data:/app/data" -v "$PWD/matrix:/app/matrix" \
  -e P1='’ data/no_such_file.parquet’' "$IMAGE"
expect_exit2 "pipeline with a P1 that does not exist" "error: data/no_such_file.parquet: .*not found"

run --rm -e P1='’ hello world’' -e P2=5 "$IMAGE"
expect_exit2 "P1 neither a path nor a user id" "error: P1 is neither a path nor a user id: 'hello world'"

run --rm -e P1="$USER_ID" -e P2='’ten’' "$IMAGE"
expect_exit2 "P2 not a number" "error: P2 .*got 'ten'"

LOCKED=$SCRATCH/locked
make_project "$LOCKED" "$HOST_UID" "$HOST_GID"
chmod 0555 "$LOCKED/matrix"
run --rm --user 1000:1000 -v "$LOCKED/data:/app/data" -v "$LOCKED/matrix:/app/matrix" \
  -e P1='data/interactions.parquet' "$IMAGE"
expect_exit2 "pipeline into a mounted folder the container cannot write" "not writable by uid 1000.*--user"

# --- 3e. a host user other than uid 1000, with --user -------------------------------------
if [[ $(id -u) -eq 0 ]]; then
  step "(e) --user 4242:4242 for a host user who is not uid 1000"
  OTHER=$SCRATCH/other
  make_project "$OTHER" 4242 4242
  cd "$OTHER"
  run --rm --user 4242:4242 -v "$PWD/data:/app/data" -v "$PWD/matrix:/app/matrix" -v "$PWD/pred:/app/pred" \
    -e P1='’ data/interactions.parquet’' "$IMAGE"
  if expect_ok "pipeline under --user 4242:4242"; then
    owned_by_host 4242 4242 data/movies_rd.parquet data/int_coef.parquet data/movies_md_upd.parquet \
      data/interactions_upd.parquet matrix/cos_sim_md.pkl matrix/cos_sim_desc.pkl
    say "ok: pipeline under --user 4242:4242 wrote the artifacts as uid 4242"
  fi
  run --rm --user 4242:4242 -v "$PWD/data:/app/data" -v "$PWD/matrix:/app/matrix" -v "$PWD/pred:/app/pred" \
    -e P1="$USER_ID" -e P2=3 "$IMAGE"
  if expect_ok "recommend under --user 4242:4242"; then
    owned_by_host 4242 4242 "pred/pred($USER_ID).csv"
    say "ok: recommend under --user 4242:4242 wrote pred/pred($USER_ID).csv as uid 4242"
  fi
  run --rm --user 4242:4242 "$IMAGE"
  expect_ok "demo under --user 4242:4242 (no mounts)" && say "ok: demo under --user 4242:4242"
  cd "$ROOT"
  if as 4242 4242 find "$OTHER" -mindepth 1 -delete; then
    say "ok: host user 4242 removed every file rekko wrote"
  else
    fail "host user 4242 cannot remove the files rekko wrote"
  fi
fi

# --- 3f. the HTTP API behind the seed's -p 4000:80 -------------------------------------------
if docker run --rm --entrypoint python "$IMAGE" -c 'import fastapi, uvicorn' >/dev/null 2>&1; then
  step "(f) REKKO_MODE=serve on localhost:$PORT"
  # The entrypoint passes --host 0.0.0.0 (rekko serve alone listens on 127.0.0.1, unreachable
  # through -p); with REKKO_SERVE_TOKEN set, data needs the bearer token and /health does not.
  token=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')
  cid=$(docker run -d --rm -p "$PORT:80" -e REKKO_MODE=serve -e REKKO_SERVE_TOKEN="$token" "$IMAGE")
  body=$(python3 - "$PORT" "$USER_ID" "$token" <<'PY' || true
import json, sys, time, urllib.error, urllib.request
port, user, token = sys.argv[1], sys.argv[2], sys.argv[3]
base = f"http://127.0.0.1:{port}"
deadline = time.monotonic() + 60
while True:
    try:
        urllib.request.urlopen(base + "/health", timeout=2).read()
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("no answer on /health within 60 s")
        time.sleep(0.5)
url = f"{base}/recommendations/{user}?n=3"
try:
    urllib.request.urlopen(url, timeout=10)
    sys.exit("answered without the token")
except urllib.error.HTTPError as exc:
    if exc.code != 401:
        sys.exit(f"without the token: HTTP {exc.code}, expected 401")
request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
items = json.load(urllib.request.urlopen(request, timeout=10))
print(json.dumps(items, ensure_ascii=False))
PY
)
  logs=$(docker logs "$cid" 2>&1 || true)
  docker stop --time 10 "$cid" >/dev/null 2>&1 || true
  if grep -qF -- "$token" <<<"$logs"; then
    fail "serve: the token appears in the server's log"
  fi
  if grep -q '"movie_id"' <<<"$body"; then
    say "ok: GET /recommendations/$USER_ID?n=3 on localhost:$PORT: ${body:0:160}..."
  else
    fail "serve: no recommendations on localhost:$PORT: $body"
    printf '%s\n' "$logs" | tail -20 >&2
  fi
else
  say "(f) serve: not checked, the image has no serve extra (fastapi/uvicorn)"
fi

# --- 3g. a Dask cluster from deploy/compose.yaml ----------------------------------------------
# A scheduler and two workers (REKKO_MODE=scheduler|worker), then the compose file's pipeline and
# batch jobs over one mounted project folder; a plain local run of the same image on a copy of the
# inputs is the reference: the artifacts and every user's list must be the same.
COMPOSE=()
if docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  COMPOSE=(docker-compose)
elif [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
  step "(g) installing Debian's docker-compose"
  if apt-get install -y -qq --no-install-recommends docker-compose >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends docker-compose >/dev/null 2>&1; }; then
    COMPOSE=(docker-compose)
  fi
fi
if ((${#COMPOSE[@]} == 0)); then
  if [[ "${CI-}" == true ]]; then
    fail "(g) no docker compose (plugin or docker-compose) and none could be installed"
  else
    say "(g) compose cluster: not checked, no docker compose here (apt-get install docker-compose)"
  fi
else
  step "(g) deploy/compose.yaml with ${COMPOSE[*]}: scheduler + 2 workers, the pipeline and the batch"
  CLUSTER=$SCRATCH/cluster REFERENCE=$SCRATCH/reference
  make_project "$CLUSTER" "$HOST_UID" "$HOST_GID"
  make_project "$REFERENCE" "$HOST_UID" "$HOST_GID"
  COMPOSE_PROJECT=rekkoci$$
  dashboard_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  compose() {
    REKKO_IMAGE=$IMAGE REKKO_PROJECT=$CLUSTER REKKO_UID=$HOST_UID REKKO_GID=$HOST_GID \
      REKKO_DASHBOARD_PORT=$dashboard_port REKKO_WORKER_MEMORY=1GB \
      "${COMPOSE[@]}" -p "$COMPOSE_PROJECT" -f "$ROOT/deploy/compose.yaml" "$@"
  }
  compose_down() { compose down --remove-orphans --timeout 10 >/dev/null 2>&1 || true; }
  trap 'compose_down; rm -rf "$SCRATCH"' EXIT
  # compose() run: like run(), with the compose command in front
  crun() {
    local out err
    out=$(mktemp) err=$(mktemp)
    RC=0
    compose "$@" >"$out" 2>"$err" || RC=$?
    OUT=$(cat "$out") ERR=$(cat "$err")
    rm -f "$out" "$err"
  }
  crun config -q
  expect_ok "compose config" || true
  crun up -d scheduler worker-1 worker-2
  if expect_ok "compose up (scheduler, worker-1, worker-2)"; then
    crun run --rm -T pipeline
    expect_ok "compose run pipeline" && say "ok: pipeline job: $(grep -m1 '^pipeline:' <<<"$OUT")"
    # the compose file's batch command, with partitions small enough that both workers get some
    crun run --rm -T batch recommend --all-users -n 10 --partition-rows 3000 --output data/recs/
    if expect_ok "compose run batch"; then
      grep -q "batch recommend (dask) done" <<<"$ERR" || { fail "batch: no 'batch recommend (dask) done' line"; show; }
      say "ok: batch job: $(grep -m1 '^wrote' <<<"$ERR")"
      owned_by_host "$HOST_UID" "$HOST_GID" "$CLUSTER/data/recs/_manifest.json" "$CLUSTER/data/recs/part-00000.parquet"
    fi
    workers=$(compose logs --no-color scheduler 2>&1 | grep -c "Register worker" || true)
    [[ "$workers" -ge 2 ]] || fail "the scheduler registered $workers workers, expected 2"
    # the scheduler port is reachable from the project network only: not published on the host
    published=$(docker ps --filter "label=com.docker.compose.project=$COMPOSE_PROJECT" --format '{{.Ports}}')
    if grep -q '8786->' <<<"$published"; then fail "the scheduler port 8786 is published on the host: $published"; fi
  else
    compose logs --no-color 2>&1 | tail -30 >&2
  fi
  compose_down
  trap 'rm -rf "$SCRATCH"' EXIT
  # the reference: the local engine in one container, on a copy of the same inputs
  run --rm "${user_args[@]}" -v "$REFERENCE/data:/app/data" -v "$REFERENCE/matrix:/app/matrix" "$IMAGE" -q pipeline
  expect_ok "reference pipeline (local engine)" || true
  run --rm "${user_args[@]}" -v "$REFERENCE/data:/app/data" -v "$REFERENCE/matrix:/app/matrix" "$IMAGE" \
    -q recommend --all-users -n 10 --output data/local.parquet
  expect_ok "reference batch (local engine)" || true
  # and the local engine's batch on the cluster's own artifacts: the Dask batch must match it row for row
  run --rm "${user_args[@]}" -v "$CLUSTER/data:/app/data" -v "$CLUSTER/matrix:/app/matrix" "$IMAGE" \
    -q recommend --all-users -n 10 --output data/local_same.parquet
  expect_ok "local batch on the cluster's artifacts" || true
  run --rm -i -v "$CLUSTER:/cluster:ro" -v "$REFERENCE:/reference:ro" --entrypoint python "$IMAGE" - <<'PY'
from pathlib import Path
import json
import numpy as np
import pandas as pd
from rekko.artifacts import read_topk

cluster, reference = Path("/cluster"), Path("/reference")

def frame(path):
    df = pd.read_parquet(path)
    for col in df.columns:
        if isinstance(df[col].dtype, pd.CategoricalDtype) or df[col].dtype == object:
            df[col] = df[col].astype(object).where(df[col].notna(), None).astype(str)
    return df.reset_index(drop=True)

for name in ("movies_rd", "int_coef", "movies_md_upd", "interactions_upd"):
    a, b = frame(cluster / f"data/{name}.parquet"), frame(reference / f"data/{name}.parquet")
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=0, atol=1e-6, check_dtype=False)
for name in ("cos_sim_md", "cos_sim_desc", "cos_sim_cf"):
    a, b = read_topk(cluster / f"matrix/{name}.pkl", None), read_topk(reference / f"matrix/{name}.pkl", None)
    assert np.array_equal(a.movie_ids, b.movie_ids), name
    assert a.matrix.shape == b.matrix.shape and abs(a.matrix - b.matrix).max() <= 1e-6, name
recs = frame(cluster / "data/recs")
pd.testing.assert_frame_equal(recs, frame(cluster / "data/local_same.parquet"), check_exact=True)
local = frame(reference / "data/local.parquet")  # other artifacts (within 1e-6): same lists, scores within 1e-6
pd.testing.assert_frame_equal(recs.drop(columns="score"), local.drop(columns="score"), check_exact=True)
assert np.abs(recs["score"].to_numpy() - local["score"].to_numpy()).max() <= 1e-6
assert len(list((cluster / "data/recs").glob("part-*.parquet"))) > 1, "expected several partitions"
manifest = json.loads((cluster / "matrix/manifest.json").read_text())
engine = manifest.get("engine") or manifest.get("parameters", {}).get("engine") or "not recorded"
parts = json.loads((cluster / "data/recs/_manifest.json").read_text())
print(f"pipeline ({engine} engine): the same artifacts as the local engine's (similarities within 1e-6); batch "
      f"({parts['engine']} engine, {parts['partitions']} partitions): the same {len(recs)} rows as the local batch "
      f"on those artifacts, and the same lists as the local run's (scores within 1e-6) for "
      f"{recs['user_id'].nunique()} users")
PY
  if expect_ok "compose cluster vs the local engine"; then
    say "ok: $OUT"
  fi
fi

# --- the host user cleans up --------------------------------------------------------------
cd "$ROOT"
chmod 0755 "$LOCKED/matrix"
if as "$HOST_UID" "$HOST_GID" find "$PROJECT" "$LOCKED" "$EMPTY" ${CLUSTER:+"$CLUSTER"} ${REFERENCE:+"$REFERENCE"} -mindepth 1 -delete; then
  say "ok: the host user (uid $HOST_UID) removed every file rekko wrote"
else
  fail "the host user (uid $HOST_UID) cannot remove the files rekko wrote"
fi

step "done"
if [[ "$FAILED" -gt 0 ]]; then
  say "$FAILED check(s) FAILED"
  exit 1
fi
say "all Docker checks passed in $(($(date +%s) - T0))s"
