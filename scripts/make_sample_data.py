"""Regenerate the embedded sample in data/ (deterministic: same arguments, same frames).

    .venv/bin/python scripts/make_sample_data.py            # writes data/
    .venv/bin/python scripts/make_sample_data.py --out /tmp/sample --movies 200

The three files follow the seed's names and formats; see data/README.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rekko.testing.synth import generate, write_inputs

#: the issue's budget for everything under data/
MAX_TOTAL_BYTES = 3 * 1024 * 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "data")
    parser.add_argument("--movies", type=int, default=600)
    parser.add_argument("--users", type=int, default=400)
    parser.add_argument("--interactions", type=int, default=12_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    data = generate(args.movies, args.users, args.interactions, seed=args.seed)
    paths = write_inputs(data, args.out)
    elapsed = time.perf_counter() - start
    total = 0
    for role, path in paths.items():
        size = path.stat().st_size
        total += size
        print(f"{role:<13} {path}  {size / 1024:8.1f} KiB")
    print(
        f"{len(data.movies)} movies, {data.interactions['user_id'].nunique()} users, "
        f"{len(data.interactions)} interaction rows, {len(data.ratings)} ratings rows; "
        f"{total / 1024:.1f} KiB in {elapsed:.2f} s"
    )
    if total > MAX_TOTAL_BYTES:
        print(f"error: the sample is {total} bytes, over the {MAX_TOTAL_BYTES}-byte budget", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
