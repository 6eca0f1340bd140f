"""The pipeline on large generated inputs (issue 13): wall time, peak RSS, stages, artifact bytes, load average.

    .venv/bin/python benchmarks/bench_large.py                       # every case below
    .venv/bin/python benchmarks/bench_large.py --cases long30m       # some cases
    .venv/bin/python benchmarks/bench_large.py --no-tune             # without the pipeline's own tuning

Cases (generated once with make_seed_scale.py, cached under benchmarks/out/<name>):

* ``seed``: 17,500 movies, 110,000 users, 1M rows;
* ``wide``: 200,000 movies, 1.1M users, 10M rows;
* ``long30m``: 50,000 movies, 3.3M users, 30M rows.

The pipeline runs as its own process under bench_core's wrapper (wall time and
peak RSS of the child); stage timings and artifact bytes come from the
manifest. Results are appended to benchmarks/results/large.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable
sys.path.insert(0, str(HERE))

from bench_core import measure, pipeline_args  # noqa: E402

CASES = {
    "seed": ("seed-scale", 17_500, 110_000, 1_000_000),
    "wide": ("wide-1", 200_000, 1_100_000, 10_000_000),
    "long30m": ("long30m", 50_000, 3_300_000, 30_000_000),
}


def run(name: str, tune: bool = True) -> dict:
    folder, movies, users, rows = CASES[name]
    d = HERE / "out" / folder
    if not (d / "interactions.parquet").exists():
        subprocess.run([PY, str(HERE / "make_seed_scale.py"), "--out", str(d), "--movies", str(movies),
                        "--users", str(users), "--interactions", str(rows)], check=True)
    before = [round(x, 2) for x in os.getloadavg()]
    r = measure([PY, "-m", "rekko", "pipeline", *pipeline_args(d), *([] if tune else ["--no-tune"])], d)
    manifest = json.loads((d / "out/matrix/manifest.json").read_text())
    arts = manifest["artifacts"]
    return {
        "case": name, "movies": movies, "rows": rows, "users": manifest["counts"]["users"], "tune": tune,
        "tuning": {k: manifest["parameters"].get("tuned", {}).get(k) for k in ("status", "work", "stopped_by",
                                                                              "start_ndcg", "validation_ndcg")},
        "tuning_share": round(manifest["counts"]["timings_s"].get("tuning", 0.0)
                              / max(sum(manifest["counts"]["timings_s"].values()), 1e-9), 3),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average_before": before, "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "wall_s": round(r["wall_s"], 1), "cpu_s": round(r["cpu_s"], 1), "peak_rss_mb": round(r["peak_rss_mb"]),
        "stages_s": manifest["counts"]["timings_s"],
        "artifacts_mb": round(sum(a["bytes"] for a in arts.values()) / 2**20, 1),
        "artifact_mb": {k: round(a["bytes"] / 2**20, 1) for k, a in arts.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--results", type=Path, default=HERE / "results" / "large.json")
    parser.add_argument("--no-tune", action="store_true", help="the pipeline without its own tuning (the anchor)")
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text()) if args.results.exists() else []
    for name in [c.strip() for c in args.cases.split(",") if c.strip()]:
        r = run(name, tune=not args.no_tune)
        print(json.dumps(r), flush=True)
        results.append(r)
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
