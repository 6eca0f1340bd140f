"""``rekko import movielens DIR [--tmdb CSV] [--imdb CSV] --out DIR``."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from rekko.columns import Columns as C
from rekko.importers.movielens import (
    DEFAULT_RUNTIME,
    RATINGS_FILES,
    import_movielens,
    import_paths,
    source_files,
    write_import,
)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``import`` (with its ``movielens`` sub-subcommand) to rekko's CLI."""
    parser = subparsers.add_parser(
        "import",
        help="turn a public data set into rekko's three input files",
        description="Turn a public data set into rekko's three input files.",
    )
    sources = parser.add_subparsers(dest="source", metavar="SOURCE", required=True)
    ml = sources.add_parser(
        "movielens",
        help="MovieLens ratings.csv/movies.csv/links.csv (+ TMDB 5000, IMDb 5000)",
        description=(
            "Write interactions.parquet, movies_metdata.parquet and the ratings/descriptions cache from a "
            "MovieLens directory. A rating becomes watch time deterministically: watched minutes = "
            "runtime x rating / 5. Runtime: TMDB, else IMDb, else --default-runtime."
        ),
    )
    ml.add_argument("directory", type=Path, help="MovieLens directory with ratings.csv, movies.csv, links.csv")
    ml.add_argument("--tmdb", type=Path, help="TMDB 5000 tmdb_5000_movies.csv (overview, runtime, vote_average, ...)")
    ml.add_argument("--imdb", type=Path, help="IMDb 5000 movie_metadata.csv (director, actors, content rating, ...)")
    ml.add_argument("--out", type=Path, required=True, help="output directory (created if needed)")
    ml.add_argument(
        "--ratings-format",
        choices=sorted(RATINGS_FILES),
        default="xlsx",
        help="format of the ratings/descriptions cache (default xlsx: the seed's Movies_r_d.xlsx)",
    )
    ml.add_argument(
        "--default-runtime",
        type=float,
        default=DEFAULT_RUNTIME,
        help=f"minutes for movies with no known runtime (default {DEFAULT_RUNTIME:g})",
    )
    ml.add_argument(
        "--dates-only",
        action="store_true",
        help="write the watch date as year/month/day only, like the seed's files (no exact last_watch_dt); "
        "to measure that format keep the exact time and use `rekko evaluate --model-sees dates`, which splits on it",
    )
    ml.set_defaults(handler=run_movielens)
    return parser


def run_movielens(args: argparse.Namespace) -> int:
    """Import, write, and print what was written with the counts."""
    from rekko.collisions import check_outputs

    outputs = import_paths(args.out, args.ratings_format)
    check_outputs({f"--out's {path.name}": path for path in outputs.values()},
                  {k: str(v) for k, v in source_files(args.directory, tmdb=args.tmdb, imdb=args.imdb).items()},
                  advice="choose another --out folder")
    result = import_movielens(args.directory, tmdb=args.tmdb, imdb=args.imdb, default_runtime=args.default_runtime)
    if args.dates_only:
        result = replace(result, interactions=result.interactions.drop(columns=[C.DATETIME]))
    paths = write_import(result, args.out, ratings_format=args.ratings_format)
    for what, path in paths.items():
        print(f"wrote {what}: {path}")
    print(", ".join(f"{k}={v}" for k, v in result.stats.items()))
    return 0
