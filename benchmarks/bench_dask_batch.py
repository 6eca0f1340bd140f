"""Batch recommend on both engines: wall time and peak RSS per process, identical rows.

    .venv/bin/python benchmarks/bench_dask_batch.py                  # 1M and 10M rows
    .venv/bin/python benchmarks/bench_dask_batch.py --cases 1m       # the 1M case only

Per case, the inputs and the local pipeline's artifacts of ``bench_dask.py``
are used (``benchmarks/out/dask-<case>/out-local``; generated with
``rekko.testing.synth`` and a local pipeline run when missing). Then, top 10
for every user:

* **local**: ``rekko recommend --all-users --output local.parquet`` in one process;
* **dask**: a ``LocalCluster`` of 2 single-threaded workers with
  ``memory_limit`` 3 GB each, started in its own process (it hosts the
  scheduler), then ``rekko recommend --all-users --engine dask --scheduler
  ADDRESS --output dask_recs/`` as the client process (a parquet dataset folder
  written by the workers). Cluster start-up is timed apart.

Peak RSS of every process (client, scheduler, each worker) is sampled every
0.2 s (psutil). The two outputs are then read back and compared row for row.
The load average before each run is recorded (the machine is shared). Results
go to ``benchmarks/results/dask_batch.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable
sys.path.insert(0, str(HERE))

from bench_dask import _CLUSTER, CASES, WORKER_MEMORY, Poller, ensure_inputs, load_average, pipeline_args_to  # noqa: E402


def artifact_args(out: Path) -> list[str]:
    return ["--interactions-upd", str(out / "interactions_upd.parquet"), "--movies-upd", str(out / "movies_md_upd.parquet"),
            "--int-coef", str(out / "int_coef.parquet"), "--sim-md", str(out / "matrix/cos_sim_md.pkl"),
            "--sim-desc", str(out / "matrix/cos_sim_desc.pkl")]


def ensure_artifacts(d: Path) -> Path:
    out = d / "out-local"
    if not (out / "matrix" / "manifest.json").exists():
        print(f"[{d.name}] local pipeline for the artifacts ...", file=sys.stderr, flush=True)
        subprocess.run([PY, "-m", "rekko", "-q", "pipeline", *pipeline_args_to(d, out)], cwd=d, check=True)
    return out


def run_local(art: Path, target: Path) -> dict:
    args = [PY, "-m", "rekko", "-q", "recommend", "--all-users", "-n", "10", "--output", str(target),
            *artifact_args(art)]
    load = load_average()
    t = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    with Poller({"client": proc.pid}) as poller:
        _, err = proc.communicate()
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"local batch failed: {err[-2000:]}")
    return {"wall_s": round(wall, 2), "peak_rss_mb": poller.report(), "load_average_before": load}


def run_dask(art: Path, target: Path, memory: str) -> dict:
    load = load_average()
    t0 = time.perf_counter()
    cluster = subprocess.Popen([PY, "-c", _CLUSTER, memory], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    poller = Poller({"scheduler": cluster.pid})
    poller.__enter__()
    try:
        address = cluster.stdout.readline().strip()
        startup = time.perf_counter() - t0
        args = [PY, "-m", "rekko", "-q", "recommend", "--all-users", "-n", "10", "--engine", "dask",
                "--scheduler", address, "--output", str(target), *artifact_args(art)]
        t = time.perf_counter()
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        poller.add_root("client", proc.pid)
        _, err = proc.communicate()
        wall = time.perf_counter() - t
    finally:
        poller.__exit__()
        cluster.stdin.close()
        try:
            cluster.wait(timeout=60)
        except subprocess.TimeoutExpired:
            cluster.kill()
    if proc.returncode != 0:
        raise SystemExit(f"dask batch failed: {err[-3000:]}")
    parts = json.loads((target / "_manifest.json").read_text())["partitions"]
    return {"wall_s": round(wall, 2), "cluster_startup_s": round(startup, 2), "partitions": parts,
            "peak_rss_mb": poller.report(), "worker_memory_limit": memory, "load_average_before": load}


def identical(a: Path, b: Path) -> dict:
    import pandas as pd

    x, y = pd.read_parquet(a), pd.read_parquet(b)
    for f in (x, y):
        f["movie_id"] = f["movie_id"].astype(str)
    same = x.reset_index(drop=True).equals(y.reset_index(drop=True))
    return {"rows": int(len(x)), "users": int(x["user_id"].nunique()), "identical_rows": bool(same)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="1m,10m", help=f"comma-separated, of {', '.join(CASES)}")
    parser.add_argument("--memory-limit", default=WORKER_MEMORY, help="per-worker memory_limit (default 3GB)")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "dask_batch.json")
    args = parser.parse_args(argv)
    previous = json.loads(args.output.read_text()) if args.output.exists() else {}
    results: dict = dict(previous.get("cases", {}))
    for name in args.cases.split(","):
        d = ensure_inputs(name)
        art = ensure_artifacts(d)
        work = d / "batch"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        case: dict = {"interaction_rows": CASES[name][2], "movies": CASES[name][0]}
        print(f"[{name}] local batch ...", file=sys.stderr, flush=True)
        case["local"] = run_local(art, work / "local.parquet")
        print(f"[{name}] dask batch ...", file=sys.stderr, flush=True)
        case["dask"] = run_dask(art, work / "dask_recs", args.memory_limit)
        case["dask_over_local_wall"] = round(case["dask"]["wall_s"] / case["local"]["wall_s"], 2)
        case["equality"] = identical(work / "local.parquet", work / "dask_recs")
        print(f"[{name}] {json.dumps(case)}", file=sys.stderr, flush=True)
        results[name] = case
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps({"cpus": os.cpu_count(), "cases": results}, indent=2) + "\n")
        shutil.rmtree(work, ignore_errors=True)
    print("| case | engine | wall s | peak RSS MB per process | rows identical |")
    print("| --- | --- | --- | --- | --- |")
    for name, case in results.items():
        for engine in ("local", "dask"):
            r = case[engine]
            rss = ", ".join(f"{k} {v:.0f}" for k, v in sorted(r["peak_rss_mb"].items()))
            print(f"| {name} | {engine} | {r['wall_s']} | {rss} | {case['equality']['identical_rows']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
