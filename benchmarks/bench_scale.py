"""How rekko's cost grows with rows, users and movies: pipeline, CLI one user, batch all users, vs implicit.

    make bench-scale                                   # every case at full size (about 30 min, 24 GB machine)
    .venv/bin/python benchmarks/bench_scale.py --scale 0.01 --cases seed   # a tiny smoke run (CI-sized)
    .venv/bin/python benchmarks/bench_scale.py --cases seed,wide           # some cases

Per case it generates inputs with ``rekko.testing.synth`` (cached under
``benchmarks/out/<case>-<scale>``), then runs each measured command as its own
process under a wrapper reporting wall time and peak RSS:

* ``rekko pipeline`` (stage timings from the manifest);
* ``rekko recommend -u U`` for a few users (median; process start to exit);
* ``rekko recommend --all-users --output recs.parquet`` (load, rank, write);
* in one process, after loading: rekko's batch ranking of every user with the
  shipped blend, and implicit's ``BM25Recommender(K=100)`` recommend-all on the
  same watch matrix, timed back to back: their ratio is the anchor, so a busy
  machine moves both figures, not the comparison.

The load average before each case is recorded beside its figures. Results go
to ``benchmarks/results/scale.json``; the table printed at the end is what
``benchmarks/README.md`` records.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable
sys.path.insert(0, str(HERE))

from bench_core import artifact_args, measure, pipeline_args  # noqa: E402

#: name -> (movies, users, interaction rows): the ranking-kernel issue's cases
CASES = {
    "seed": (17_500, 110_000, 1_000_000),
    "rows3m": (17_500, 330_000, 3_000_000),
    "big": (50_000, 1_100_000, 10_000_000),
    "wide": (200_000, 1_100_000, 10_000_000),
}

_ANCHOR = r"""
import json, sys, time
import numpy as np, scipy.sparse as sp, pandas as pd
from rekko.paths import ArtifactPaths
from rekko.recommend import Recommender, load_artifacts
from rekko.config import BlendWeights
d = sys.argv[1]; n = 10
paths = ArtifactPaths(f"{d}/interactions_upd.parquet", f"{d}/movies_md_upd.parquet", f"{d}/int_coef.parquet",
                      f"{d}/matrix/cos_sim_md.pkl", f"{d}/matrix/cos_sim_desc.pkl")
from pathlib import Path
paths = ArtifactPaths(*(Path(p) for p in (paths.interactions_upd, paths.movies_upd, paths.int_coef, paths.sim_md, paths.sim_desc)))
t = time.perf_counter(); art = load_artifacts(paths); load_s = time.perf_counter() - t
out = {"load_s": load_s, "users": int(len(art.user_ids))}
rec = Recommender(art)
rec.rank_rows(np.arange(min(100, len(art.user_ids))), n)  # compile / warm the kernel
rows = np.arange(len(art.user_ids))
t = time.perf_counter(); rec.rank_rows(rows, n); out["rekko_rank_all_s"] = time.perf_counter() - t
t = time.perf_counter(); sum(len(b) for b in rec.iter_recommend_all(n)); out["rekko_recommend_all_s"] = time.perf_counter() - t
cf = Recommender(art, BlendWeights(md=0, desc=0, cf=1, movie=0, recency_half_life=None))
t = time.perf_counter(); cf.rank_rows(rows, n); out["rekko_cf_only_rank_all_s"] = time.perf_counter() - t
try:
    from implicit.nearest_neighbours import BM25Recommender
except ImportError:
    out["implicit"] = "not installed (pip install -e '.[bench]')"
else:
    user_items = art.history_matrix().astype(np.float32).tocsr()
    model = BM25Recommender(K=100)
    t = time.perf_counter(); model.fit(user_items, show_progress=False); out["implicit_fit_s"] = time.perf_counter() - t
    t = time.perf_counter()
    for start in range(0, len(rows), 65536):
        block = rows[start:start + 65536]
        model.recommend(block, user_items[block], N=n, filter_already_liked_items=True)
    out["implicit_recommend_all_s"] = time.perf_counter() - t
    out["implicit_similarity_nnz"] = int(model.similarity.nnz)
    out["ratio_rekko_full_blend_vs_implicit"] = out["rekko_recommend_all_s"] / out["implicit_recommend_all_s"]
print(json.dumps(out))
"""


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_case(name: str, scale: float, cli_runs: int) -> dict:
    movies, users, rows = CASES[name]
    movies, users, rows = (max(50, int(v * scale)) for v in (movies, users, rows))
    d = HERE / "out" / f"{name}-{scale:g}"
    if not (d / "interactions.parquet").exists():
        subprocess.run([PY, str(HERE / "make_seed_scale.py"), "--out", str(d), "--movies", str(movies),
                        "--users", str(users), "--interactions", str(rows)], check=True, stdout=subprocess.DEVNULL)
    rekko = [PY, "-m", "rekko", "-q"] if _has_quiet() else [PY, "-m", "rekko"]
    result: dict = {"movies": movies, "users_requested": users, "rows": rows, "load_average_before": load_average()}
    print(f"[{name}] {movies} movies, {rows} rows: pipeline ...", file=sys.stderr, flush=True)
    result["pipeline"] = _clean(measure([*rekko, "pipeline", *pipeline_args(d)], d))
    manifest = json.loads((d / "out/matrix/manifest.json").read_text())
    result["pipeline"]["stage_timings_s"] = manifest["counts"]["timings_s"]
    result["artifacts_mb"] = round(sum(a["bytes"] for a in manifest["artifacts"].values()) / 2**20, 1)
    result["users"] = manifest["counts"]["users"]

    import numpy as np
    import pandas as pd

    ids = pd.read_parquet(d / "out/int_coef.parquet", columns=["user_id"])["user_id"].to_numpy()
    picks = np.random.default_rng(1).choice(ids, size=min(cli_runs, len(ids)), replace=False)
    print(f"[{name}] CLI one user x {len(picks)} ...", file=sys.stderr, flush=True)
    cli = [measure([*rekko, "recommend", "-u", str(int(u)), "-n", "10", "--no-pred", *artifact_args(d)], d)
           for u in picks]
    walls = sorted(c["wall_s"] for c in cli)
    result["cli_one_user"] = {"runs": len(cli), "median_s": walls[len(walls) // 2], "max_s": walls[-1],
                              "peak_rss_mb": max(c["peak_rss_mb"] for c in cli)}
    print(f"[{name}] batch all users ...", file=sys.stderr, flush=True)
    result["batch_cli"] = _clean(measure(
        [*rekko, "recommend", "--all-users", "-n", "10", "--output", str(d / "out/recs_all.parquet"),
         *artifact_args(d)], d))
    print(f"[{name}] in-process rank vs implicit ...", file=sys.stderr, flush=True)
    anchor = subprocess.run([PY, "-c", _ANCHOR, str(d / "out")], cwd=d, capture_output=True, text=True)
    if anchor.returncode != 0:
        raise SystemExit(f"anchor run failed:\n{anchor.stderr[-3000:]}")
    result["in_process"] = json.loads(anchor.stdout.strip().splitlines()[-1])
    result["load_average_after"] = load_average()
    return result


def _has_quiet() -> bool:
    proc = subprocess.run([PY, "-m", "rekko", "--help"], capture_output=True, text=True)
    return " -q" in proc.stdout


def _clean(r: dict) -> dict:
    r.pop("stderr", None)
    r.pop("rc", None)
    return r


def exponent(x0: float, y0: float, x1: float, y1: float) -> float | None:
    """Slope of log(y) against log(x) between two cases (the growth exponent)."""
    if min(x0, y0, x1, y1) <= 0 or x0 == x1:
        return None
    return round(math.log(y1 / y0) / math.log(x1 / x0), 2)


def growth(results: dict) -> dict:
    out = {}
    pairs = {"users (17.5k movies)": ("seed", "rows3m", "users"), "movies (10M rows)": ("big", "wide", "movies")}
    for label, (a, b, axis) in pairs.items():
        if a in results and b in results:
            ra, rb = results[a], results[b]
            out[label] = {
                "pipeline_s": exponent(ra[axis], ra["pipeline"]["wall_s"], rb[axis], rb["pipeline"]["wall_s"]),
                "batch_s": exponent(ra[axis], ra["batch_cli"]["wall_s"], rb[axis], rb["batch_cli"]["wall_s"]),
                "cli_one_user_s": exponent(ra[axis], ra["cli_one_user"]["median_s"], rb[axis],
                                           rb["cli_one_user"]["median_s"]),
                "batch_peak_rss": exponent(ra[axis], ra["batch_cli"]["peak_rss_mb"], rb[axis],
                                           rb["batch_cli"]["peak_rss_mb"]),
            }
    return out


def table(results: dict) -> str:
    lines = ["| case | pipeline | CLI one user | batch all users (CLI) | rank all in-process | implicit BM25 "
             "recommend-all | ratio | load avg |", "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        if name.startswith("_"):
            continue
        ip = r["in_process"]
        imp = ip.get("implicit_recommend_all_s")
        lines.append(
            f"| {name}: {r['movies']:,} movies, {r['rows']:,} rows, {r['users']:,} users "
            f"| {r['pipeline']['wall_s']:.1f} s, {r['pipeline']['peak_rss_mb'] / 1024:.2f} GB "
            f"| {r['cli_one_user']['median_s']:.2f} s, {r['cli_one_user']['peak_rss_mb']:.0f} MB "
            f"| {r['batch_cli']['wall_s']:.1f} s, {r['batch_cli']['peak_rss_mb'] / 1024:.2f} GB "
            f"| {ip['rekko_recommend_all_s']:.2f} s (cf only {ip['rekko_cf_only_rank_all_s']:.2f} s) "
            f"| {f'{imp:.2f} s' if imp else 'n/a'} "
            f"| {ip.get('ratio_rekko_full_blend_vs_implicit', float('nan')):.2f} "
            f"| {r['load_average_before'][0]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {list(CASES)}")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every size (0.01 for a smoke run)")
    parser.add_argument("--cli-runs", type=int, default=3)
    parser.add_argument("--results", type=Path, default=HERE / "results" / "scale.json")
    args = parser.parse_args(argv)
    names = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(names) - set(CASES)
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}; choose from {list(CASES)}")
    previous = json.loads(args.results.read_text()) if args.results.exists() and args.scale == 1.0 else {}
    results = {k: v for k, v in previous.items() if k in CASES}
    for name in names:
        results[name] = run_case(name, args.scale, args.cli_runs)
        if args.scale == 1.0:  # keep what finished, case by case
            args.results.parent.mkdir(parents=True, exist_ok=True)
            args.results.write_text(json.dumps({**results, "_machine": _machine()}, indent=2) + "\n")
    results["_growth"] = growth(results)
    results["_machine"] = _machine()
    if args.scale == 1.0:
        args.results.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print("\ngrowth exponents (log-log slope between cases):", json.dumps(results["_growth"], indent=1))
    return 0


def _machine() -> dict:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "date": time.strftime("%Y-%m-%d")}


if __name__ == "__main__":
    sys.exit(main())
