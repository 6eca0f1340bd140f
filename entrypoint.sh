#!/usr/bin/env bash
# Docker entrypoint: turns the seed's `docker run -e P1=... -e P9=...` lines into a rekko command.
#
#   pipeline   P1..P9 = interactions, movies metadata, ratings/descriptions, movies_rd, int_coef,
#              movies_md_upd, interactions_upd, cos_sim_md, cos_sim_desc (the seed's order)
#   recommend  P1 = user id, P2 = number of rekkos, P3..P7 = interactions_upd, movies_md_upd,
#              int_coef, cos_sim_md, cos_sim_desc
#   demo       no P variables at all
#   serve      REKKO_MODE=serve: the HTTP API on ${HOST:-0.0.0.0}:${PORT:-80}; P3..P7 as in recommend
#              mode; REKKO_SERVE_TOKEN (passed through) makes it ask for a bearer token
#   scheduler  REKKO_MODE=scheduler: a Dask scheduler on ${HOST:-0.0.0.0}:${REKKO_DASK_PORT:-8786}, its
#              dashboard on port ${REKKO_DASK_DASHBOARD_PORT:-8787}. It has no authentication: publish
#              its ports only on a private network (see README, "Scaling out")
#   worker     REKKO_MODE=worker: a Dask worker of the scheduler at $REKKO_DASK_SCHEDULER (required,
#              e.g. tcp://scheduler:8786); it must see the artifacts at the same paths as the client
#              (mount the same data folder at the same place)
#
# The engine: REKKO_ENGINE (local or dask) and REKKO_DASK_SCHEDULER reach the pipeline and recommend
# modes unchanged (the CLI's --engine and --scheduler default to them; `rekko recommend --user-id`
# always ranks in-process). A REKKO_ENGINE other than local or dask exits 2 here. P1..P9 keep their
# meaning whatever the engine; the batch (`rekko recommend --all-users`) is a container argument:
#   docker run -e REKKO_ENGINE=dask -e REKKO_DASK_SCHEDULER=tcp://scheduler:8786 ... rekko \
#     recommend --all-users --output data/recs/
# The mode is guessed from P1 (a whole number, e.g. 42 or -5 -> recommend; a path -> pipeline) unless
# REKKO_MODE=pipeline|recommend|demo|serve|scheduler|worker says otherwise. Arguments given to the container go
# straight to the rekko CLI (`docker run rekko recommend --user-id 7`), ignoring P1..P9, except
# options (`-e P1=7 -e P2=5 rekko --format json`): those are added to the mode's command.
# The seed's lines carry stray spaces and typographic quotes (P1=’ data/interactions.parquet’):
# they are stripped from both ends of every value. Bad variables exit 2, like the CLI.
set -euo pipefail

# Files written to mounted folders stay readable and removable for the host user's group.
umask 0002

readonly PROG="rekko-entrypoint"
readonly VARS=(P1 P2 P3 P4 P5 P6 P7 P8 P9)
readonly PIPELINE_OPTS=(--interactions --movies --ratings --movies-rd --int-coef --movies-upd
  --interactions-upd --sim-md --sim-desc)
readonly RECOMMEND_OPTS=(--interactions-upd --movies-upd --int-coef --sim-md --sim-desc)
# The CLI's defaults for the six pipeline outputs (P4..P9), only to check their folders early.
readonly PIPELINE_OUTPUT_DEFAULTS=(data/movies_rd.parquet data/int_coef.parquet data/movies_md_upd.parquet
  data/interactions_upd.parquet matrix/cos_sim_md.pkl matrix/cos_sim_desc.pkl)

# A value as it may be shown: the credentials of every URL in it (scheme://user:password@) replaced by ***.
# Everything up to the authority's last @ is user-info, so a password holding @ is masked whole.
scrub() {
  local rest=$1 out='' re='^(.*[A-Za-z][A-Za-z0-9+.-]*://)[^/[:space:]]+@(.*)$'
  while [[ "$rest" =~ $re ]]; do
    out="***@${BASH_REMATCH[2]}$out"
    rest=${BASH_REMATCH[1]}
  done
  printf '%s' "$rest$out"
}

# Print the command about to run, one %q-quoted word each, every word scrubbed.
show_command() {
  local word
  for word in "$@"; do
    printf ' %q' "$(scrub "$word")" >&2
  done
  printf '\n' >&2
}

die() {
  printf '%s: error: %s\n' "$PROG" "$(scrub "$1")" >&2
  exit "${2:-2}"
}

warn() {
  printf '%s: warning: %s\n' "$PROG" "$(scrub "$1")" >&2
}

# Strip whitespace and ASCII/typographic quotes from both ends until nothing changes.
clean() {
  local value=$1 before='' q
  # ASCII space, tab, CR, LF and quotes; then U+2018/2019/201A/201B and U+201C/201D/201E/201F
  # (curly single and double quotes), U+00AB/00BB (guillemets), U+2032/2033 (primes), U+00A0 (nbsp).
  local -a junk=(' ' $'\t' $'\r' $'\n' "'" '"' '`'
    $'\xe2\x80\x98' $'\xe2\x80\x99' $'\xe2\x80\x9a' $'\xe2\x80\x9b'
    $'\xe2\x80\x9c' $'\xe2\x80\x9d' $'\xe2\x80\x9e' $'\xe2\x80\x9f'
    $'\xc2\xab' $'\xc2\xbb' $'\xe2\x80\xb2' $'\xe2\x80\xb3' $'\xc2\xa0')
  while [[ "$value" != "$before" ]]; do
    before=$value
    for q in "${junk[@]}"; do
      value=${value#"$q"}
      value=${value%"$q"}
    done
  done
  printf '%s' "$value"
}

# A whole number, negative ones included: the pipeline, the CLI and the artifacts take any
# 64-bit id; the CLI says when one is out of range.
is_user_id() {
  [[ "$1" =~ ^-?[0-9]+$ ]]
}

is_path() {
  local lower
  lower=$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')
  [[ "$lower" == */* ]] && return 0
  case "$lower" in
    *.parquet | *.pq | *.csv | *.tsv | *.xlsx | *.xls | *.json | *.pkl | *.pickle) return 0 ;;
  esac
  return 1
}

# Refuse early, with the Docker-specific remedy, when an output folder is not writable
# (the classic bind-mount ownership clash); the CLI would only see a PermissionError.
check_writable() {
  local path=$1 what=$2 dir
  dir=$(dirname -- "$path")
  while [[ ! -e "$dir" ]]; do
    dir=$(dirname -- "$dir")
  done
  if [[ ! -d "$dir" || ! -w "$dir" ]]; then
    die "cannot write $path ($what): folder '$dir' is not writable by uid $(id -u) (owner uid $(stat -c '%u, mode %a' -- "$dir" 2>/dev/null || echo '?')). With Docker, run as the owner of the mounted folder: docker run --user \"\$(id -u):\$(id -g)\" ..."
  fi
}

# Run the CLI through the console script when installed, else as a module.
# REKKO_ENTRYPOINT_DRY_RUN=1 prints the arguments (one a line) instead: for tests and debugging.
run_rekko() {
  printf '%s:' "$PROG" >&2
  # the engine variables the CLI will read, shown in front of the command as a shell would take them
  [[ -n "${REKKO_ENGINE-}" ]] && printf ' REKKO_ENGINE=%q' "$REKKO_ENGINE" >&2
  [[ -n "${REKKO_DASK_SCHEDULER-}" ]] && printf ' REKKO_DASK_SCHEDULER=%q' "$(scrub "$REKKO_DASK_SCHEDULER")" >&2
  printf ' rekko' >&2
  show_command "$@"
  if [[ "${REKKO_ENTRYPOINT_DRY_RUN-}" == 1 ]]; then
    printf '%s\n' "$@"
    exit 0
  fi
  if command -v rekko >/dev/null 2>&1; then
    exec rekko "$@"
  fi
  exec "${PYTHON:-python3}" -m rekko "$@"
}

declare -A P=()
any_set=false
for var in "${VARS[@]}"; do
  P[$var]=$(clean "${!var-}")
  [[ -n "${P[$var]}" ]] && any_set=true
done

mode=$(clean "${REKKO_MODE-}" | tr '[:upper:]' '[:lower:]')

# The engine variables, cleaned like P1..P9 and exported for the CLI (and dask worker) to read.
engine=$(clean "${REKKO_ENGINE-}" | tr '[:upper:]' '[:lower:]')
if [[ -n "$engine" ]]; then
  [[ "$engine" == local || "$engine" == dask ]] || die "REKKO_ENGINE must be local or dask, got '$engine'"
  export REKKO_ENGINE=$engine
fi
scheduler=$(clean "${REKKO_DASK_SCHEDULER-}")
if [[ -n "$scheduler" ]]; then
  export REKKO_DASK_SCHEDULER=$scheduler
else
  unset REKKO_DASK_SCHEDULER
fi

# Run a Dask process (scheduler or worker) from the image's virtualenv; dry run as for rekko.
run_dask() {
  printf '%s: dask' "$PROG" >&2
  show_command "$@"
  if [[ "${REKKO_ENTRYPOINT_DRY_RUN-}" == 1 ]]; then
    printf '%s\n' dask "$@"
    exit 0
  fi
  if command -v dask >/dev/null 2>&1; then
    exec dask "$@"
  fi
  exec "${PYTHON:-python3}" -m dask "$@"
}
extra=()
if (($# > 0)); then
  if [[ "$1" == -* ]] && { $any_set || [[ -n "$mode" ]]; }; then
    extra=("$@")
  else
    $any_set && warn "container arguments given: ignoring P1..P9"
    run_rekko "$@"
  fi
fi
if [[ -z "$mode" ]]; then
  if ! $any_set; then
    mode=demo
  elif [[ -z "${P[P1]}" ]]; then
    die "P1 is empty: set P1 to a user id (recommend mode, e.g. -e P1=42 -e P2=10) or to the interactions file (pipeline mode, e.g. -e P1=data/interactions.parquet), or set REKKO_MODE"
  elif is_user_id "${P[P1]}"; then
    mode=recommend
  elif is_path "${P[P1]}"; then
    mode=pipeline
  else
    die "P1 is neither a path nor a user id: '${P[P1]}'. Use a whole number for recommend mode (-e P1=42 -e P2=10) or a file path for pipeline mode (-e P1=data/interactions.parquet), or set REKKO_MODE"
  fi
fi

case "$mode" in
  pipeline)
    args=(pipeline)
    for i in "${!VARS[@]}"; do
      value=${P[${VARS[$i]}]}
      [[ -n "$value" ]] && args+=("${PIPELINE_OPTS[$i]}" "$value")
      # P4..P9 are outputs.
      if ((i >= 3)); then
        check_writable "${value:-${PIPELINE_OUTPUT_DEFAULTS[$((i - 3))]}}" "${VARS[$i]}"
      fi
    done
    run_rekko "${args[@]}" "${extra[@]}"
    ;;
  recommend)
    user=${P[P1]}
    [[ -n "$user" ]] || die "recommend mode needs P1, the user id (e.g. -e P1=42)"
    is_user_id "$user" || die "P1 must be a user id (a whole number) in recommend mode, got '$user'"
    args=(recommend --user-id "$user")
    if [[ -n "${P[P2]}" ]]; then
      [[ "${P[P2]}" =~ ^[0-9]+$ && "${P[P2]}" =~ [1-9] ]] \
        || die "P2 (number of rekkos) must be a positive whole number, got '${P[P2]}'"
      args+=(-n "${P[P2]}")
    fi
    for i in 0 1 2 3 4; do
      value=${P[P$((i + 3))]}
      [[ -n "$value" ]] && args+=("${RECOMMEND_OPTS[$i]}" "$value")
    done
    [[ -n "${P[P8]}${P[P9]}" ]] && warn "P8 and P9 are not used in recommend mode (P3..P7 are the five artifacts)"
    pred_dir=pred
    for ((i = 0; i < ${#extra[@]}; i++)); do
      case "${extra[$i]}" in
        --no-pred) pred_dir='' ;;
        --pred-dir) pred_dir=${extra[$((i + 1))]-pred} ;;
        --pred-dir=*) pred_dir=${extra[$i]#--pred-dir=} ;;
      esac
    done
    [[ -z "$pred_dir" ]] || check_writable "$pred_dir/pred($user).csv" "the prediction file"
    run_rekko "${args[@]}" "${extra[@]}"
    ;;
  demo)
    $any_set && warn "REKKO_MODE=demo: ignoring P1..P9"
    run_rekko demo "${extra[@]}"
    ;;
  serve)
    # rekko serve listens on 127.0.0.1 unless told otherwise; inside a container that address is
    # unreachable through `docker run -p 4000:80`, so the image asks for every interface.
    args=(serve --host "${HOST:-0.0.0.0}" --port "${PORT:-80}")
    for i in 0 1 2 3 4; do
      value=${P[P$((i + 3))]}
      [[ -n "$value" ]] && args+=("${RECOMMEND_OPTS[$i]}" "$value")
    done
    run_rekko "${args[@]}" "${extra[@]}"
    ;;
  scheduler)
    $any_set && warn "REKKO_MODE=scheduler: ignoring P1..P9"
    run_dask scheduler --host "${HOST:-0.0.0.0}" --port "${REKKO_DASK_PORT:-8786}" \
      --dashboard-address ":${REKKO_DASK_DASHBOARD_PORT:-8787}" "${extra[@]}"
    ;;
  worker)
    $any_set && warn "REKKO_MODE=worker: ignoring P1..P9"
    [[ -n "$scheduler" ]] || die "REKKO_MODE=worker needs REKKO_DASK_SCHEDULER, the scheduler's address (e.g. -e REKKO_DASK_SCHEDULER=tcp://scheduler:8786)"
    run_dask worker "$scheduler" "${extra[@]}"
    ;;
  *)
    die "REKKO_MODE must be pipeline, recommend, demo, serve, scheduler or worker, got '$mode'"
    ;;
esac
