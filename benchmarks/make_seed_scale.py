"""Write synthetic inputs at the seed's scale for the benchmarks.

    .venv/bin/python benchmarks/make_seed_scale.py            # -> benchmarks/out/seed-scale/
    .venv/bin/python benchmarks/make_seed_scale.py --out /tmp/big --movies 60000

Defaults: 17,500 movies, 110,000 users, 1,000,000 interaction rows (the seed's
figures), seed 0. Same formats and names as data/: interactions.parquet,
movies_metdata.parquet, Movies_r_d.xlsx (legacy ``dict_values([x])`` ratings).
Prints the generation and writing times.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rekko.testing.synth import generate, write_inputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "seed-scale")
    parser.add_argument("--movies", type=int, default=17_500)
    parser.add_argument("--users", type=int, default=110_000)
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    data = generate(args.movies, args.users, args.interactions, seed=args.seed)
    t1 = time.perf_counter()
    paths = write_inputs(data, args.out)
    t2 = time.perf_counter()
    for role, path in paths.items():
        print(f"{role:<13} {path}  {path.stat().st_size / 2**20:7.1f} MiB")
    print(
        f"{len(data.movies)} movies, {data.interactions['user_id'].nunique()} users, "
        f"{len(data.interactions)} interaction rows, {len(data.ratings)} ratings rows"
    )
    print(f"generate: {t1 - t0:.2f} s; write: {t2 - t1:.2f} s; total: {t2 - t0:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
