"""The pipeline on both engines: wall time and peak RSS per process, equality, growth.

    .venv/bin/python benchmarks/bench_dask.py                      # 1M and 10M rows (about 15 min on 2 cores)
    .venv/bin/python benchmarks/bench_dask.py --cases 1m           # the 1M case only (equality + figures)
    .venv/bin/python benchmarks/bench_dask.py --cases 1m,10m,30m   # with the bounded-memory case (30M rows)

Per case, inputs come from ``rekko.testing.synth`` (``make_seed_scale.py``,
cached under ``benchmarks/out/dask-<case>``); the interactions are also cut into
parquet parts of 1M rows (``parts/``, row slices: every user's rows spread
over several parts). Then:

* **local**: ``rekko pipeline`` on the one interactions file (today's path);
* **dask**: a ``LocalCluster`` of 2 single-threaded workers with
  ``memory_limit`` 3 GB each is started in its own process (it hosts the
  scheduler; the workers are its child processes), then
  ``rekko pipeline --engine dask --scheduler ADDRESS --interactions parts/``
  runs as the client process. Cluster start-up is timed apart.

A poller samples the RSS of every process of both trees (psutil, every 0.2 s)
and keeps each one's peak: client, scheduler, each worker. At 1M rows the two
artifact sets are compared (tables, similarity arrays within 1e-6, the
recommendation lists of every user). The load average before each run is
recorded. Results go to ``benchmarks/results/dask.json``; the table printed
at the end is what ``benchmarks/README.md`` records.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable
sys.path.insert(0, str(HERE))

from bench_core import pipeline_args  # noqa: E402

#: name -> (movies, users, interaction rows)
CASES = {
    "1m": (17_500, 110_000, 1_000_000),
    "10m": (50_000, 1_100_000, 10_000_000),
    "30m": (50_000, 3_300_000, 30_000_000),
}
PART_ROWS = 1_000_000
WORKER_MEMORY = "3GB"

_CLUSTER = r"""
import sys, time
from distributed import LocalCluster
cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                       dashboard_address=None, memory_limit=sys.argv[1])
print(cluster.scheduler_address, flush=True)
sys.stdin.read()  # until the benchmark closes our stdin
cluster.close()
"""


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class Poller:
    """Peak RSS of every process under the given roots, sampled every ``every`` seconds."""

    def __init__(self, roots: dict[str, int], every: float = 0.2) -> None:
        import psutil

        self.psutil = psutil
        self.roots = roots
        self.every = every
        self.peak: dict[int, float] = {}
        self.label: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def add_root(self, name: str, pid: int) -> None:
        self.roots[name] = pid

    def _label(self, root: str, proc, depth: int) -> str:  # type: ignore[no-untyped-def]
        if depth == 0:
            return root
        cmd = " ".join(proc.cmdline()[:4])
        if "resource_tracker" in cmd:
            return f"{root}-child"
        if "multiprocessing" in cmd or "spawn_main" in cmd or "from multiprocessing" in cmd:
            return "worker"
        return f"{root}-child"

    def _run(self) -> None:
        while not self._stop.is_set():
            for root, pid in list(self.roots.items()):
                try:
                    top = self.psutil.Process(pid)
                    procs = [(top, 0)] + [(c, 1) for c in top.children(recursive=True)]
                except self.psutil.Error:
                    continue
                for proc, depth in procs:
                    try:
                        rss = proc.memory_info().rss / 2**20
                        if proc.pid not in self.label:
                            self.label[proc.pid] = self._label(root, proc, depth)
                    except self.psutil.Error:
                        continue
                    self.peak[proc.pid] = max(self.peak.get(proc.pid, 0.0), rss)
            self._stop.wait(self.every)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def report(self) -> dict[str, float]:
        """Peak RSS in MB by role: ``client``/``scheduler``, ``worker-1``, ``worker-2``... (helpers dropped)."""
        out: dict[str, float] = {}
        workers = sorted((pid for pid, lab in self.label.items() if lab == "worker"))
        for pid, lab in self.label.items():
            if lab == "worker":
                out[f"worker-{workers.index(pid) + 1}"] = round(self.peak[pid], 1)
            elif lab in self.roots:
                out[lab] = round(self.peak[pid], 1)
        return out


def ensure_inputs(name: str) -> Path:
    movies, users, rows = CASES[name]
    d = HERE / "out" / f"dask-{name}"
    if not (d / "interactions.parquet").exists():
        print(f"[{name}] generating {rows} rows ...", file=sys.stderr, flush=True)
        subprocess.run([PY, str(HERE / "make_seed_scale.py"), "--out", str(d), "--movies", str(movies),
                        "--users", str(users), "--interactions", str(rows)], check=True, stdout=subprocess.DEVNULL)
    parts = d / "parts"
    if not (parts / "_DONE").exists():
        import pyarrow.parquet as pq

        shutil.rmtree(parts, ignore_errors=True)
        parts.mkdir()
        source = pq.ParquetFile(d / "interactions.parquet")
        for i, batch in enumerate(source.iter_batches(batch_size=PART_ROWS)):
            pq.write_table(__import__("pyarrow").Table.from_batches([batch]), parts / f"part-{i:05d}.parquet")
        (parts / "_DONE").write_text("")
    return d


def run_local(d: Path, out: Path) -> dict:
    args = [PY, "-m", "rekko", "-q", "pipeline", *pipeline_args_to(d, out)]
    load = load_average()
    t = time.perf_counter()
    proc = subprocess.Popen(args, cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    with Poller({"client": proc.pid}) as poller:
        _, err = proc.communicate()
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"local pipeline failed: {err[-2000:]}")
    return {"wall_s": round(wall, 2), "peak_rss_mb": poller.report(), "load_average_before": load,
            "stage_timings_s": json.loads((out / "matrix/manifest.json").read_text())["counts"]["timings_s"]}


def run_dask(d: Path, out: Path, memory: str) -> dict:
    load = load_average()
    t0 = time.perf_counter()
    cluster = subprocess.Popen([PY, "-c", _CLUSTER, memory], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    poller = Poller({"scheduler": cluster.pid})
    poller.__enter__()
    try:
        address = cluster.stdout.readline().strip()
        startup = time.perf_counter() - t0
        args = [PY, "-m", "rekko", "-q", "pipeline", "--engine", "dask", "--scheduler", address,
                *pipeline_args_to(d, out, interactions=d / "parts")]
        t = time.perf_counter()
        proc = subprocess.Popen(args, cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
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
        raise SystemExit(f"dask pipeline failed: {err[-3000:]}")
    return {"wall_s": round(wall, 2), "cluster_startup_s": round(startup, 2), "peak_rss_mb": poller.report(),
            "worker_memory_limit": memory, "load_average_before": load,
            "stage_timings_s": json.loads((out / "matrix/manifest.json").read_text())["counts"]["timings_s"]}


def pipeline_args_to(d: Path, out: Path, interactions: Path | None = None) -> list[str]:
    args = pipeline_args(d)
    args = [a.replace(str(d / "out"), str(out)) for a in args]
    if interactions is not None:
        args[args.index("--interactions") + 1] = str(interactions)
    return args


def compare(d: Path) -> dict:
    """The two artifact sets of a case: equal tables, similarity within 1e-6, identical recommendation lists."""
    import numpy as np
    import pandas as pd

    from rekko.artifacts import read_topk
    from rekko.paths import ArtifactPaths
    from rekko.recommend import Recommender, load_artifacts

    def paths(o: Path) -> ArtifactPaths:
        return ArtifactPaths(o / "interactions_upd.parquet", o / "movies_md_upd.parquet", o / "int_coef.parquet",
                             o / "matrix/cos_sim_md.pkl", o / "matrix/cos_sim_desc.pkl")

    a, b = d / "out-local", d / "out-dask"
    result: dict = {}
    for name in ("movies_rd.parquet", "int_coef.parquet", "movies_md_upd.parquet", "interactions_upd.parquet"):
        try:
            pd.testing.assert_frame_equal(pd.read_parquet(a / name), pd.read_parquet(b / name),
                                          check_exact=False, rtol=1e-9)
            result[name] = "equal"
        except AssertionError as exc:
            result[name] = f"DIFFERENT: {str(exc)[:300]}"
    for name in ("cos_sim_md.pkl", "cos_sim_desc.pkl", "cos_sim_cf.pkl"):
        x, y = read_topk(a / "matrix" / name, None).matrix, read_topk(b / "matrix" / name, None).matrix
        same = x.shape == y.shape and np.array_equal(x.indptr, y.indptr) and np.array_equal(x.indices, y.indices)
        diff = float(abs(x - y).max()) if x.shape == y.shape else None
        rows = int(sum(1 for i in range(x.shape[0]) if not np.array_equal(x.indices[x.indptr[i]:x.indptr[i + 1]],
                                                                          y.indices[y.indptr[i]:y.indptr[i + 1]])))
        result[name] = {"same_structure": bool(same), "max_abs_diff": diff, "rows_with_other_neighbours": rows,
                        "within_1e-6": bool(same and diff is not None and diff <= 1e-6)}
    ra = Recommender(load_artifacts(paths(a))).recommend_all(10)
    rb = Recommender(load_artifacts(paths(b))).recommend_all(10)
    same_lists = (len(ra) == len(rb) and (ra["user_id"].to_numpy() == rb["user_id"].to_numpy()).all()
                  and (ra["movie_id"].astype(str).to_numpy() == rb["movie_id"].astype(str).to_numpy()).all())
    result["recommendations"] = {"rows": int(len(ra)), "identical_lists": bool(same_lists),
                                 "max_score_diff": float(np.abs(ra["score"].to_numpy() - rb["score"].to_numpy()).max())
                                 if len(ra) == len(rb) else None}
    return result


def exponent(x0: float, y0: float, x1: float, y1: float) -> float | None:
    if min(x0, y0, x1, y1) <= 0 or x0 == x1:
        return None
    return round(math.log(y1 / y0) / math.log(x1 / x0), 2)


def growth(results: dict) -> dict:
    names = [n for n in CASES if n in results]
    out: dict = {}
    for lo, hi in zip(names, names[1:]):
        r0, r1 = CASES[lo][2], CASES[hi][2]
        for engine in ("local", "dask"):
            a, b = results[lo][engine], results[hi][engine]
            out[f"{engine} {lo}->{hi}"] = {
                "wall": exponent(r0, a["wall_s"], r1, b["wall_s"]),
                **{f"rss {role}": exponent(r0, a["peak_rss_mb"][role], r1, b["peak_rss_mb"][role])
                   for role in a["peak_rss_mb"] if role in b["peak_rss_mb"]},
            }
    return out


def table(results: dict) -> str:
    lines = ["| rows | movies | engine | wall s | peak RSS MB per process | load avg before |",
             "| ---: | ---: | --- | ---: | --- | --- |"]
    for name in CASES:
        if name not in results:
            continue
        movies, _, rows = CASES[name]
        for engine in ("local", "dask"):
            r = results[name][engine]
            rss = ", ".join(f"{k} {v:,.0f}" for k, v in r["peak_rss_mb"].items())
            lines.append(f"| {rows:,} | {movies:,} | {engine} | {r['wall_s']:.1f} | {rss} | "
                         f"{' / '.join(map(str, r['load_average_before']))} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="1m,10m", help=f"comma-separated, of {', '.join(CASES)}")
    parser.add_argument("--memory-limit", default=WORKER_MEMORY, help="per-worker memory_limit (default 3GB)")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "dask.json")
    args = parser.parse_args(argv)
    previous = json.loads(args.output.read_text()) if args.output.exists() else {}
    results: dict = dict(previous.get("cases", {}))
    for name in args.cases.split(","):
        d = ensure_inputs(name)
        case: dict = {}
        for engine in ("local", "dask"):
            out = d / f"out-{engine}"
            shutil.rmtree(out, ignore_errors=True)
            print(f"[{name}] {engine} ...", file=sys.stderr, flush=True)
            case[engine] = run_local(d, out) if engine == "local" else run_dask(d, out, args.memory_limit)
            print(f"[{name}] {engine}: {case[engine]['wall_s']} s, {case[engine]['peak_rss_mb']}", file=sys.stderr,
                  flush=True)
        case["dask_over_local_wall"] = round(case["dask"]["wall_s"] / case["local"]["wall_s"], 2)
        if name == "1m":
            case["equality"] = compare(d)
        results[name] = case
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps({"machine": _machine(), "cases": results, "growth": growth(results)},
                                          indent=2) + "\n")
    print(table(results))
    print(json.dumps(growth(results), indent=2))
    return 0


def _machine() -> dict:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


if __name__ == "__main__":
    sys.exit(main())
