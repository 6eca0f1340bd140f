"""Load benchmark of ``rekko serve`` on seed-scale data, over loopback.

    .venv/bin/python benchmarks/bench_serve.py                  # 1 and 2 workers, 32 clients, 15 s each
    .venv/bin/python benchmarks/bench_serve.py --workers 2 --duration 30

Builds the seed-scale inputs (benchmarks/make_seed_scale.py, in
benchmarks/out/seed-scale/) and artifacts (``rekko pipeline``, in
benchmarks/out/serve/) when they are missing,
starts ``rekko serve`` on a free 127.0.0.1 port, and drives it with N
concurrent keep-alive connections (a minimal asyncio HTTP/1.1 client, so the
load generator costs little of the 2 cores it shares with the server).
Traffic: GET /recommendations/{user}?n=10 for random known users (5% unknown
users, i.e. cold start); with --mix also /movies/{id} and /similar. Reports
p50/p90/p99/max latency, requests/s, errors, and the server's memory: RSS of
every process and PSS (proportional set size: shared pages split between the
processes that map them), so memory-mapped artifacts shared by workers are not
counted once per worker. Bounded: stops after --duration seconds or --max-requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def artifact_args(d: Path) -> list[str]:
    return ["--interactions-upd", str(d / "interactions_upd.parquet"), "--movies-upd", str(d / "movies_md_upd.parquet"),
            "--int-coef", str(d / "int_coef.parquet"), "--sim-md", str(d / "matrix" / "cos_sim_md.pkl"),
            "--sim-desc", str(d / "matrix" / "cos_sim_desc.pkl")]


def ensure_artifacts(inputs: Path, d: Path) -> None:
    """Seed-scale inputs in ``inputs`` (generated when missing), artifacts in ``d`` (built when missing)."""
    if (d / "matrix" / "manifest.json").exists():
        return
    if not (inputs / "interactions.parquet").exists():
        subprocess.run([PY, str(HERE / "make_seed_scale.py"), "--out", str(inputs)], check=True)
    print("building artifacts with rekko pipeline ...", flush=True)
    subprocess.run([PY, "-m", "rekko", "pipeline", "--interactions", str(inputs / "interactions.parquet"),
                    "--movies", str(inputs / "movies_metdata.parquet"), "--ratings", str(inputs / "Movies_r_d.xlsx"),
                    "--movies-rd", str(d / "movies_rd.parquet"), *artifact_args(d)], check=True, cwd=ROOT)


def process_tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            children = []
        todo.extend(int(c) for c in children)
    return out


def memory_mib(pid: int) -> dict[str, object]:
    """RSS per process and the PSS total of the server's process tree, in MiB."""
    rss, pss, private = [], 0.0, []
    for p in process_tree(pid):
        try:
            fields = {line.split(":")[0]: int(line.split()[1]) / 1024
                      for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines()[1:]}
        except OSError:
            continue
        rss.append(fields["Rss"])
        pss += fields["Pss"]
        private.append(fields["Private_Clean"] + fields["Private_Dirty"])
    return {"rss_per_process_mib": [round(r, 1) for r in rss], "rss_sum_mib": round(sum(rss), 1),
            "pss_total_mib": round(pss, 1), "private_per_process_mib": [round(p, 1) for p in private]}


async def client(host: str, port: int, paths: list[str], deadline: float, budget: list[int],
                 lat: list[float], errors: list[str]) -> None:
    rng = random.Random(len(lat) + id(budget))
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline and budget[0] > 0:
            budget[0] -= 1
            path = rng.choice(paths)
            t0 = time.perf_counter()
            try:
                writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length"))
                await reader.readexactly(length)
            except (OSError, asyncio.IncompleteReadError) as exc:
                errors.append(f"{type(exc).__name__} {path}")
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            lat.append(time.perf_counter() - t0)
            if status != 200:
                errors.append(f"{status} {path}")
    finally:
        writer.close()


async def drive(port: int, paths: list[str], clients: int, duration: float, max_requests: int) -> dict[str, object]:
    lat: list[float] = []
    errors: list[str] = []
    budget = [max_requests]
    t0 = time.perf_counter()
    await asyncio.gather(*(client("127.0.0.1", port, paths, t0 + duration, budget, lat, errors)
                           for _ in range(clients)))
    wall = time.perf_counter() - t0
    ms = np.asarray(lat) * 1000
    return {"requests": len(lat), "seconds": round(wall, 2), "req_per_s": round(len(lat) / wall, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 2), "p90_ms": round(float(np.percentile(ms, 90)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2), "max_ms": round(float(ms.max()), 2),
            "errors": len(errors), "error_examples": errors[:3]}


def request_paths(d: Path, mix: bool, seed: int = 0) -> list[str]:
    import pandas as pd

    users = pd.read_parquet(d / "int_coef.parquet", columns=["user_id"])["user_id"].to_numpy()
    rng = np.random.default_rng(seed)
    known = rng.choice(users, 4750)
    unknown = rng.integers(10**9, 2 * 10**9, 250)
    paths = [f"/recommendations/{u}?n=10" for u in np.concatenate([known, unknown])]
    if mix:
        movies = pd.read_parquet(d / "movies_md_upd.parquet", columns=["movie_id"])["movie_id"].to_numpy()
        for m in rng.choice(movies, 1000):
            paths += [f"/movies/{m}", f"/movies/{m}/similar?n=10&kind=md", f"/movies/{m}/similar?n=10&kind=desc"]
    return paths


DIRECT = """
import sys, uvicorn
from pathlib import Path
from rekko.paths import ArtifactPaths
from rekko.serve.app import create_app
d = Path(sys.argv[2])
paths = ArtifactPaths(d / "interactions_upd.parquet", d / "movies_md_upd.parquet", d / "int_coef.parquet",
                      d / "matrix" / "cos_sim_md.pkl", d / "matrix" / "cos_sim_desc.pkl")
uvicorn.run(create_app(paths), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


def bench(d: Path, workers: int, clients: int, duration: float, max_requests: int, mix: bool,
          direct: bool = False) -> dict[str, object]:
    port = free_port()
    cmd = [PY, "-m", "rekko", "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
           "--log-level", "warning", *artifact_args(d)]
    if direct:  # the library's create_app(paths): artifacts loaded in the serving process itself
        cmd = [PY, "-c", DIRECT, str(port), str(d)]
    t0 = time.perf_counter()
    log = open(d / f"serve-{workers}.log", "w")  # noqa: SIM115 - closed with the server
    server = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    health = json.load(r)
                break
            except OSError:
                if server.poll() is not None:
                    raise SystemExit(f"server exited with {server.returncode}") from None
                time.sleep(0.1)
        else:
            raise SystemExit("server did not start in 60 s")
        started = time.perf_counter() - t0
        paths = request_paths(d, mix)
        asyncio.run(drive(port, paths[:200], clients, 2.0, 2000))  # warm-up: every worker touches its pages
        mem_idle = memory_mib(server.pid)
        result = asyncio.run(drive(port, paths, clients, duration, max_requests))
        mem = memory_mib(server.pid)
        return {"workers": "direct" if direct else workers, "clients": clients, "mix": mix, "startup_s": round(started, 2),
                "artifacts": health["artifacts"], **result, "memory_after_warmup": mem_idle, "memory": mem}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=Path, default=HERE / "out" / "seed-scale",
                        help="seed-scale inputs (made by make_seed_scale.py when missing)")
    parser.add_argument("--data", type=Path, default=HERE / "out" / "serve",
                        help="the artifacts served (built by rekko pipeline when missing)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per run (default: 15)")
    parser.add_argument("--max-requests", type=int, default=200_000)
    parser.add_argument("--mix", action="store_true", help="also /movies/{id} and /similar (default: recommendations)")
    parser.add_argument("--direct", action="store_true",
                        help="also run create_app(paths) in one process (artifacts loaded in-process, no bundle)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    ensure_artifacts(args.inputs, args.data)
    results = [bench(args.data, w, args.clients, args.duration, args.max_requests, args.mix) for w in args.workers]
    if args.direct:
        results.append(bench(args.data, 1, args.clients, args.duration, args.max_requests, args.mix, direct=True))
    print(f"{'workers':>7} {'clients':>7} {'req/s':>8} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'max ms':>7} "
          f"{'errors':>6} {'RSS sum MiB':>11} {'PSS MiB':>8}  RSS / private MiB per process")
    for r in results:
        m = r["memory"]
        print(f"{r['workers']:>7} {r['clients']:>7} {r['req_per_s']:>8} {r['p50_ms']:>7} {r['p90_ms']:>7} "
              f"{r['p99_ms']:>7} {r['max_ms']:>7} {r['errors']:>6} {m['rss_sum_mib']:>11} {m['pss_total_mib']:>8}  "
              f"{m['rss_per_process_mib']} / {m['private_per_process_mib']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
