"""Enrichment throughput against a local API emulator answering in ~20 ms.

The emulator runs in its own process (so it does not share the client's GIL) on
127.0.0.1; nothing touches the internet. Reports titles/s at the given
concurrency with the client-side rate limit off, the ideal rate
(concurrency / latency), the client overhead per request, the time spent
flushing the cache, and a resumed run that has nothing left to ask.

    .venv/bin/python benchmarks/bench_enrich.py            # 2,000 titles (about 10 s)
    .venv/bin/python benchmarks/bench_enrich.py --full     # 17,500 titles, the seed's scale
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from rekko.enrich import EnrichSettings, enrich_titles, runner

KEY = "bench-key"
WORDS = ("Брат", "Сталкер", "Солярис", "Ёлки", "Война", "Мир", "Ночь", "Дом", "Город", "Зеркало", "Любовь", "Дорога")


def make_titles(n: int, seed: int = 0) -> pd.DataFrame:
    """Distinct Russian-like titles with release years."""
    rng = np.random.default_rng(seed)
    a = rng.choice(WORDS, n)
    b = rng.choice(WORDS, n)
    return pd.DataFrame(
        {
            "title": [f"{x} и {y} {i}" for i, (x, y) in enumerate(zip(a, b, strict=True))],
            "release_year": rng.integers(1960, 2024, n),
        }
    )


def cpu_seconds() -> float:
    """User + system CPU of this process (every thread)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def server_cpu_seconds(pid: int) -> float:
    """User + system CPU of the emulator process (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_emulator(latency: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rekko.testing.emulator",
            "--key",
            KEY,
            "--latency",
            str(latency),
            "--description-chars",
            "500",
        ],  # Kinopoisk descriptions run to a few hundred characters
        stdout=subprocess.PIPE,
        text=True,
    )
    url = proc.stdout.readline().strip()
    if not url.startswith("http://127.0.0.1:"):
        proc.kill()
        raise SystemExit(f"emulator did not start: {url!r}")
    return proc, url


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--titles", type=int, default=2000)
    ap.add_argument("--full", action="store_true", help="17,500 titles (the seed's catalogue)")
    ap.add_argument("--latency", type=float, default=0.02, help="server answer time in seconds")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--flush-every", type=int, default=50)
    args = ap.parse_args()
    n = 17_500 if args.full else args.titles

    flush_seconds: list[float] = []
    compact_seconds: list[float] = []

    def timed(fn, into):  # instrumentation: how much of the wall time goes to writing the cache
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            out = fn(*args, **kwargs)
            into.append(time.perf_counter() - t)
            return out

        return wrapper

    runner.append_journal = timed(runner.append_journal, flush_seconds)
    runner.compact_cache = timed(runner.compact_cache, compact_seconds)

    titles = make_titles(n)
    proc, url = start_emulator(args.latency)
    try:
        settings = EnrichSettings(
            api_key=KEY,
            base_url=url,
            rate_limit=None,
            concurrency=args.concurrency,
            flush_every=args.flush_every,
            progress="off",
            timeout=10,
        )
        with tempfile.TemporaryDirectory() as tmp:
            cache = Path(tmp) / "api_cache.parquet"
            cpu0, srv0 = cpu_seconds(), server_cpu_seconds(proc.pid)
            t0 = time.perf_counter()
            summary = enrich_titles(titles, cache, settings)
            wall = time.perf_counter() - t0
            client_cpu, server_cpu = cpu_seconds() - cpu0, server_cpu_seconds(proc.pid) - srv0
            t1 = time.perf_counter()
            resumed = enrich_titles(titles, cache, settings)
            resume_wall = time.perf_counter() - t1
            cache_mb = cache.stat().st_size / 1e6
    finally:
        proc.terminate()
        proc.wait()

    assert summary.found == n and summary.errors == 0, summary
    assert resumed.requests == 0 and resumed.cached == n, resumed
    rate = n / wall
    ideal = args.concurrency / args.latency if args.latency else float("inf")
    overhead_ms = (wall * args.concurrency / summary.requests - args.latency) * 1e3
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"titles                 {n}")
    print(f"concurrency            {args.concurrency} (rate limit off), server latency {args.latency * 1e3:.0f} ms")
    print(f"wall time              {wall:.2f} s  ({summary.requests} requests)")
    print(f"throughput             {rate:.0f} titles/s  (ideal {ideal:.0f}/s: {rate / ideal:.0%} of it)")
    print(f"client overhead        {overhead_ms:.2f} ms per request (wall x concurrency / requests - latency)")
    print(
        f"client CPU             {client_cpu / summary.requests * 1e3:.2f} ms per request "
        f"(all threads, flushes included: the client alone could do {summary.requests / client_cpu:.0f}/s "
        f"on one core)"
    )
    print(f"emulator CPU           {server_cpu / summary.requests * 1e3:.2f} ms per request (separate process)")
    print(f"load average           {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the end")
    print(
        f"cache flushes          {len(flush_seconds)} x {args.flush_every} titles, {sum(flush_seconds):.2f} s in all "
        f"(max {max(flush_seconds) * 1e3:.0f} ms); final compaction {compact_seconds[0]:.2f} s; "
        f"cache file {cache_mb:.1f} MB"
    )
    print(f"resumed run            {resume_wall:.2f} s, {resumed.requests} requests")
    print(f"peak RSS               {rss_mb:.0f} MB")


if __name__ == "__main__":
    main()
