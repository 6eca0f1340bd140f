"""Reproduce docs/quality.md: MovieLens-small through the importer, then evaluate, tune, evaluate tuned.

"rekko" is what a plain ``rekko pipeline`` ships (``rekko evaluate`` without ``--params`` tunes on the train
part as the pipeline tunes on its input); "--no-tune" the built-in defaults; "after `rekko tune`" the
parameters of the full offline search.

    python -m rekko.evaluation.movielens_benchmark [--data ../shared/data] [--out benchmarks/out/quality]

Both protocols, each in its own folder under ``--out``: ``dates`` (the
headline: split on the exact time, the model sees year/month/day only, as
with the seed's files; ``--model-sees dates``) and ``exact`` (the model sees
the exact times). With ``--anchors`` (needs ``pip install -e '.[bench]'``) it
also runs ``benchmarks/bench_anchors.py`` (implicit's ItemKNN, EASE).

Each step runs the real ``rekko`` command in a subprocess and is timed from
process start to exit. Prints the markdown tables docs/quality.md records.
Exits 0 with a message when the data is absent (it is never shipped).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

METRICS = ("hit_rate", "precision", "recall", "ndcg", "map", "mrr", "coverage", "novelty", "diversity")


def _run(args: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "rekko", *args], check=True)
    return time.perf_counter() - t


def markdown_table(metrics: dict[str, dict[str, float]], k: int) -> str:
    head = "| model | " + " | ".join(f"{m}@{k}" for m in METRICS) + " |"
    rule = "|---|" + "---:|" * len(METRICS)
    rows = [f"| {model} | " + " | ".join(f"{v[m]:.4f}" for m in METRICS) + " |" for model, v in metrics.items()]
    return "\n".join([head, rule, *rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data", type=Path, default=Path("../shared/data"), help="folder with movielens-small, tmdb-5000, imdb-5000"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/quality"), help="work and output folder")
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--test-size", type=int, default=10)
    parser.add_argument("--protocols", default="dates,exact", help="comma-separated: dates, exact")
    parser.add_argument("--anchors", type=Path, nargs="?", const=Path("benchmarks/bench_anchors.py"),
                        help="also run this anchors script (default when given: %(const)s)")
    args = parser.parse_args(argv)
    ml = args.data / "movielens-small"
    if not (ml / "ratings.csv").exists():
        print(f"skipped: MovieLens-small not found at {ml} (it is not shipped; see docs/quality.md)")
        return 0
    inputs = args.out / "data"
    seconds = {
        "import": _run(
            [
                "import",
                "movielens",
                str(ml),
                "--tmdb",
                str(args.data / "tmdb-5000" / "tmdb_5000_movies.csv"),
                "--imdb",
                str(args.data / "imdb-5000" / "movie_metadata.csv"),
                "--out",
                str(inputs),
            ]
        ),
    }
    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    for sees in protocols:
        out = args.out / sees
        common = [
            "--interactions",
            str(inputs / "interactions.parquet"),
            "--movies",
            str(inputs / "movies_metdata.parquet"),
            "--ratings",
            str(inputs / "Movies_r_d.xlsx"),
            "--split",
            "per-user",
            "--test-size",
            str(args.test_size),
            "-k",
            str(args.k),
            "--model-sees",
            sees,
        ]
        seconds[f"{sees}: evaluate"] = _run(
            ["evaluate", *common, "--json", str(out / "metrics.json"), "--report", str(out / "report.html")]
        )
        seconds[f"{sees}: evaluate --no-tune"] = _run(
            ["evaluate", *common, "--models", "rekko", "--no-tune", "--json", str(out / "metrics_no_tune.json"),
             "--report", str(out / "report_no_tune.html")]
        )
        seconds[f"{sees}: tune"] = _run(["tune", *common, "--out", str(out / "tuned.json"), "--no-manifest"])
        seconds[f"{sees}: evaluate tuned"] = _run(
            [
                "evaluate",
                *common,
                "--models",
                "rekko",
                "--params",
                str(out / "tuned.json"),
                "--json",
                str(out / "metrics_tuned.json"),
                "--report",
                str(out / "report_tuned.html"),
            ]
        )
        base = json.loads((out / "metrics.json").read_text())
        tuned = json.loads((out / "metrics_tuned.json").read_text())
        no_tune = json.loads((out / "metrics_no_tune.json").read_text())
        table = {**base["metrics"], "rekko (built-in defaults, --no-tune)": no_tune["metrics"]["rekko"],
                 "rekko (after `rekko tune`)": tuned["metrics"]["rekko"]}
        print()
        print(f"## model sees: {sees}")
        print(markdown_table(table, args.k))
        print()
        print("rekko as the pipeline ships it (tuned on the train part):", json.dumps(base["parameters"]))
        print("its tuning:", json.dumps({k: v for k, v in base["counts"].get("tuned", {}).items()
                                         if k not in ("parameters", "stages")}))
        print("`rekko tune` parameters:", json.dumps(tuned["parameters"]))
        print("split:", json.dumps(base["split"]))
        if args.anchors and sees == protocols[0]:  # the anchors see no time: one run serves both protocols
            if args.anchors.exists():
                t = time.perf_counter()
                subprocess.run([sys.executable, str(args.anchors), "--data", str(inputs), "--model-sees", sees,
                                "--test-size", str(args.test_size), "-k", str(args.k),
                                "--json", str(out / "anchors.json")], check=True)
                seconds[f"{sees}: anchors"] = time.perf_counter() - t
            else:
                print(f"anchors skipped: {args.anchors} not found")
    print("wall seconds (process start to exit):", json.dumps({k: round(v, 1) for k, v in seconds.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
