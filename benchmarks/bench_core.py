"""Seed-scale benchmark of the core: pipeline, CLI recommend, in-process latency, batch.

    make bench                                  # or:
    .venv/bin/python benchmarks/bench_core.py [--data DIR] [--users-sample 2000]

Generates the seed-scale inputs first when ``--data`` has none (17,500 movies,
1,000,000 interaction rows, ~110,000 users; see make_seed_scale.py). Every
command is run as its own process under a small wrapper that reports the
child's wall time and peak RSS (``getrusage(RUSAGE_CHILDREN)``). Results go to
benchmarks/results/core.json and are printed as a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable

_WRAPPER = (
    "import resource, subprocess, sys, time, json;"
    "t=time.perf_counter();"
    "p=subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True);"
    "w=time.perf_counter()-t;"
    "u=resource.getrusage(resource.RUSAGE_CHILDREN);"
    "print(json.dumps({'rc': p.returncode, 'wall_s': w, 'cpu_s': u.ru_utime + u.ru_stime,"
    " 'peak_rss_mb': u.ru_maxrss/1024, 'stderr': p.stderr[-2000:]}))"
)


def measure(cmd: list[str], cwd: Path) -> dict:
    out = subprocess.run([PY, "-c", _WRAPPER, *cmd], cwd=cwd, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    if result["rc"] != 0:
        raise SystemExit(f"benchmark command failed ({result['rc']}): {' '.join(cmd)}\n{result['stderr']}")
    return result


def median_run(cmd: list[str], cwd: Path, runs: int) -> dict:
    """``runs`` measured runs of a pipeline command: the median run (wall time), every wall time, its stages."""
    done = []
    for _ in range(max(1, runs)):
        r = measure(cmd, cwd)
        r["stage_timings_s"] = json.loads((cwd / "out/matrix/manifest.json").read_text())["counts"]["timings_s"]
        done.append(r)
    done.sort(key=lambda r: r["wall_s"])
    out = dict(done[len(done) // 2])
    out.update(runs=len(done), walls_s=[round(r["wall_s"], 2) for r in done])
    return out


def pipeline_args(d: Path) -> list[str]:
    return [
        "--interactions", str(d / "interactions.parquet"), "--movies", str(d / "movies_metdata.parquet"),
        "--ratings", str(d / "Movies_r_d.xlsx"),
        "--movies-rd", str(d / "out/movies_rd.parquet"), "--int-coef", str(d / "out/int_coef.parquet"),
        "--movies-upd", str(d / "out/movies_md_upd.parquet"),
        "--interactions-upd", str(d / "out/interactions_upd.parquet"),
        "--sim-md", str(d / "out/matrix/cos_sim_md.pkl"), "--sim-desc", str(d / "out/matrix/cos_sim_desc.pkl"),
    ]


def artifact_args(d: Path) -> list[str]:
    a = pipeline_args(d)
    keep = {"--int-coef", "--movies-upd", "--interactions-upd", "--sim-md", "--sim-desc"}
    return [x for i in range(0, len(a), 2) if a[i] in keep for x in a[i:i + 2]]


def in_process_latency(d: Path, sample: int) -> dict:
    import numpy as np

    from rekko.paths import ArtifactPaths
    from rekko.recommend import Recommender, load_artifacts

    o = d / "out"
    paths = ArtifactPaths(o / "interactions_upd.parquet", o / "movies_md_upd.parquet", o / "int_coef.parquet",
                          o / "matrix/cos_sim_md.pkl", o / "matrix/cos_sim_desc.pkl")
    t = time.perf_counter()
    rec = Recommender(load_artifacts(paths))
    load_s = time.perf_counter() - t
    users = np.random.default_rng(0).choice(rec.artifacts.user_ids, size=sample, replace=False)
    rec.recommend(int(users[0]), 10)  # warm-up
    times = []
    for u in users:
        t = time.perf_counter()
        rec.recommend(int(u), 10)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {"load_s": load_s, "users": sample, "mean_ms": statistics.fmean(times),
            "p50_ms": times[len(times) // 2], "p99_ms": times[int(len(times) * 0.99)]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=HERE / "out" / "seed-scale")
    parser.add_argument("--users-sample", type=int, default=2000)
    parser.add_argument("--cli-runs", type=int, default=5)
    parser.add_argument("--pipeline-runs", type=int, default=3, help="runs of each pipeline variant (the median)")
    parser.add_argument("--results", type=Path, default=HERE / "results" / "core.json")
    args = parser.parse_args(argv)
    d = args.data.resolve()
    if not (d / "interactions.parquet").exists():
        subprocess.run([PY, str(HERE / "make_seed_scale.py"), "--out", str(d)], check=True)

    rekko = [PY, "-m", "rekko"]
    results: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                 "platform": platform.platform()}}
    # without tuning first, then the default run (tunes on its input), whose artifacts the rest uses
    results["load_average_before"] = os.getloadavg()
    # a warm-up run first (numba's cache of the kernel, the page cache), then the median of --pipeline-runs
    measure([*rekko, "pipeline", *pipeline_args(d)], d)
    results["pipeline_no_tune"] = median_run([*rekko, "pipeline", "--no-tune", *pipeline_args(d)], d,
                                             args.pipeline_runs)
    results["pipeline"] = median_run([*rekko, "pipeline", *pipeline_args(d)], d, args.pipeline_runs)
    manifest = json.loads((d / "out/matrix/manifest.json").read_text())
    results["tuned"] = {k: v for k, v in manifest["parameters"].get("tuned", {}).items() if k != "stages"}
    results["artifacts_mb"] = sum(a["bytes"] for a in manifest["artifacts"].values()) / 2**20
    results["counts"] = {k: manifest["counts"][k] for k in ("movies", "users", "interaction_rows")}

    import numpy as np
    import pandas as pd

    users = pd.read_parquet(d / "out/int_coef.parquet", columns=["user_id"])["user_id"].to_numpy()
    picks = np.random.default_rng(1).choice(users, size=args.cli_runs, replace=False)
    cli = [measure([*rekko, "recommend", "-u", str(int(u)), "-n", "10", "--no-pred", *artifact_args(d)], d)
           for u in picks]
    walls = sorted(c["wall_s"] for c in cli)
    results["cli_recommend"] = {"runs": len(cli), "median_s": walls[len(walls) // 2], "max_s": walls[-1],
                                "peak_rss_mb": max(c["peak_rss_mb"] for c in cli)}
    results["in_process"] = in_process_latency(d, args.users_sample)
    results["batch_all_users"] = measure(
        [*rekko, "recommend", "--all-users", "-n", "10", "--output", str(d / "out/recs_all.parquet"),
         *artifact_args(d)], d)
    results["load_average_after"] = os.getloadavg()
    for r in (results["pipeline"], results["pipeline_no_tune"], results["batch_all_users"]):
        r.pop("stderr", None)
        r.pop("rc", None)

    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2) + "\n")
    p, c, i, b = results["pipeline"], results["cli_recommend"], results["in_process"], results["batch_all_users"]
    print("| measure | result | target |\n|---|---|---|")
    q = results["pipeline_no_tune"]
    print(f"| pipeline wall time, tuning on its input (default; median of {p['runs']}, all {p['walls_s']}) "
          f"| {p['wall_s']:.1f} s | <= 12 s |")
    print(f"| pipeline wall time, --no-tune (median of {q['runs']}, all {q['walls_s']}) | {q['wall_s']:.1f} s "
          f"| <= 6 s |")
    print(f"| pipeline peak RSS | {p['peak_rss_mb']:.0f} MB | <= 1 GB |")
    print(f"| artifacts on disk | {results['artifacts_mb']:.1f} MB | <= 100 MB |")
    print(f"| CLI recommend, one user, process start to exit (median of {c['runs']}) | {c['median_s']:.2f} s "
          f"(max {c['max_s']:.2f} s) | <= 1.5 s |")
    print(f"| in-process recommend per user (p50 / p99 over {i['users']}) | {i['p50_ms']:.2f} / {i['p99_ms']:.2f} ms "
          f"| <= 5 ms |")
    print(f"| batch recommend, all {results['counts']['users']} users | {b['wall_s']:.1f} s "
          f"({b['peak_rss_mb']:.0f} MB peak) | <= 60 s |")
    print(f"\nstage timings: {p['stage_timings_s']}; artifact load in-process: {i['load_s']:.2f} s")
    t = results["tuned"]
    print(f"tuning: {t.get('status')}, validation NDCG {t.get('start_ndcg')} -> {t.get('validation_ndcg')}, "
          f"{t.get('evaluations')} candidates, work {t.get('work')} units, "
          f"{p['stage_timings_s'].get('tuning')} s ({t.get('reason')})")
    print(f"load average before / after: {results['load_average_before']} / {results['load_average_after']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
