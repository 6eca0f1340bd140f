"""The ``rekko`` command line: parse, call the library, map errors to exit codes.

Exit codes: 0 success, 2 bad input (any :class:`InputError`), 1 anything else.
All logic lives in the library; this module only wires arguments to it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rekko import __version__
from rekko.cli_args import (
    add_artifact_options,
    add_engine_options,
    add_path_options,
    artifact_paths,
    engine_from_args,
    pipeline_paths,
)
from rekko.columns import Columns as C
from rekko.config import AutoTuneConfig
from rekko.distributed import PARTITION_ROWS
from rekko.enrich import cli as enrich_cli
from rekko.evaluation import cli as evaluation_cli
from rekko.exceptions import (
    ConfigError,
    RekkoError,
    printable,
    printable_json,
    quote,
    register_secret,
    register_secrets_in,
    scrub,
)
from rekko.ids import INTEGER_TEXT, check_range
from rekko.importers import cli as importers_cli
from rekko.locking import DEFAULT_LOCK_TIMEOUT
from rekko.paths import PipelinePaths
from rekko.serve import cli as serve_cli

log = logging.getLogger("rekko")


def add_pipeline_options(parser: argparse.ArgumentParser) -> None:
    add_path_options(parser, PipelinePaths)
    parser.add_argument("-k", "--top-k", type=int, default=100, help="neighbours kept per movie (default: 100)")
    parser.add_argument("--default-params", action="store_true",
                        help="drop the parameters `rekko tune` stored in the manifest (kept otherwise, and the "
                             "pipeline's own tuning is then off)")
    parser.add_argument("--no-tune", action="store_true",
                        help="do not tune on the input: build with the built-in blend, recency and co-watching "
                             "settings (by default the pipeline tunes them on a validation split of its input when "
                             f"at least {AutoTuneConfig().min_users} users have {AutoTuneConfig().min_history}+ "
                             "watched movies)")
    parser.add_argument("--tune-budget", type=seconds_type, default=None, metavar="SECONDS",
                        help="an explicit cap in wall seconds on the tuning, on top of its work budget; when it cuts "
                             "the search the best found so far is used (the defaults if the defaults were not yet "
                             "scored) and the output and the manifest say so; the result then depends on the "
                             f"machine's speed (default: none, only the work budget of "
                             f"{AutoTuneConfig().work_budget:,} units: the same input gives the same model)")
    parser.add_argument("--lock-timeout", type=seconds_type, default=DEFAULT_LOCK_TIMEOUT, metavar="SECONDS",
                        help="how long to wait for another pipeline writing the same artifacts, then exit 2 "
                             f"(default: {DEFAULT_LOCK_TIMEOUT:g}; 0 = do not wait)")
    parser.add_argument("--max-input-bytes", type=bytes_type, default=None, metavar="BYTES",
                        help="refuse an input file larger than this in memory (a parquet file counts uncompressed), "
                             "e.g. 40G; 0 = no check (default: the memory this process may still take; "
                             "also REKKO_MAX_INPUT_BYTES)")



_BYTE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def bytes_type(text: str) -> int:
    """A size argument: a whole number of bytes, optionally with K, M, G or T (binary: 1K = 1024)."""
    raw = str(text).strip().upper().removesuffix("B").removesuffix("I")
    unit = raw[-1:] if raw[-1:] in _BYTE_UNITS else ""
    number = raw[: len(raw) - len(unit)]
    if not (number.isdigit() and len(number) <= 18):
        raise argparse.ArgumentTypeError(f"expected a number of bytes such as 500M or 40G, got {quote(text)}")
    return int(number) * _BYTE_UNITS[unit]


def seconds_type(text: str) -> float:
    """A duration argument: a finite number of seconds >= 0."""
    try:
        value = float(str(text).strip())
    except ValueError:
        value = float("nan")
    if not (0 <= value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {quote(text)}")
    return value


def positive_int(text: str) -> int:
    from rekko.recommend import validate_n

    try:
        return validate_n(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def user_id_type(text: str) -> int:
    """A user id argument: ASCII digits with an optional sign, inside int64 (how the pipeline stores ids).

    Checked here so an id no artifact can hold is an argument error (exit 2,
    "out of range"), not an overflow deep in the artifact reader. ``int()``
    alone would also take ``1_000`` and non-ASCII digits.
    """
    stripped = str(text).strip()
    if not INTEGER_TEXT.fullmatch(stripped):
        raise argparse.ArgumentTypeError(f"user id must be an integer, got {quote(text)}")
    value = check_range(int(stripped))
    if isinstance(value, str):
        raise argparse.ArgumentTypeError(value)
    return value


# -- pipeline -------------------------------------------------------------------
def cmd_pipeline(args: argparse.Namespace) -> int:
    from rekko.build import run_with_enrichment
    from rekko.pipeline.outputs import check_outputs
    from rekko.tuning import auto

    paths = pipeline_paths(args)
    if getattr(args, "max_input_bytes", None) is not None:  # read by rekko.io, here and in local Dask workers
        os.environ["REKKO_MAX_INPUT_BYTES"] = str(args.max_input_bytes)
    engine = engine_from_args(args) if hasattr(args, "engine") else "local"
    check_outputs(paths)  # before enrichment's network traffic, not only before the write
    if engine == "dask":
        from rekko.distributed.cluster import require_dask

        require_dask()  # a missing extra is exit 2 before any work
    with enrich_cli.sigterm_as_interrupt():  # `docker stop` during enrichment keeps the answers in hand
        result, manifest = run_with_enrichment(paths, top_k=args.top_k, keep_tuned=not args.default_params,
                                               tune=not args.no_tune, tune_budget=args.tune_budget,
                                               lock_timeout=args.lock_timeout, engine=engine,
                                               scheduler=getattr(args, "scheduler", None))
    counts = result.counts
    print(
        f"pipeline: {counts['movies']} movies, {counts['users']} users, "
        f"{counts['user_movie_pairs']} user-movie pairs from {counts['interaction_rows']} interaction rows "
        f"({counts['interactions_unknown_movie_dropped']} dropped: movie not in metadata; "
        f"{counts['interactions_sessions_merged']} sessions merged)"
    )
    join = counts["ratings_join"]
    print(f"ratings: {join['with_rating']} movies with a rating, {join['with_description']} with a description")
    print(auto.describe(manifest.parameters.get("tuned"), result.timings.get("tuning")))
    print(f"wrote {len(manifest.artifacts)} artifacts and {printable(paths.manifest)} in {sum(result.timings.values()):.2f} s")
    return 0


# -- recommend --------------------------------------------------------------------
def cmd_recommend(args: argparse.Namespace) -> int:
    from rekko.recommend import Recommender, load_artifacts
    from rekko.recommend.present import format_recommendations, pred_path, write_pred_csv

    engine = engine_from_args(args)  # a bad $REKKO_ENGINE is an error even where one user needs no cluster
    if args.all_users and args.user_id is not None:
        raise ConfigError(f"--user-id {args.user_id} and --all-users ask for different things: give one of them")
    if args.output and not args.all_users:
        raise ConfigError("--output is for --all-users (one user's list goes to stdout and pred/pred(<user>).csv)")
    if args.all_users:
        if not args.output:
            raise ConfigError("--all-users needs --output: a file (.parquet or .csv) or a folder (recs/)")
        from rekko.collisions import check_artifact_reader_outputs
        from rekko.recommend.batch_output import output_kind

        kind = output_kind(args.output)  # checked again by either engine; here before connecting to a cluster
        check_artifact_reader_outputs(artifact_paths(args), {"--output": args.output},
                                      folders=["--output"] if kind == "dataset" else [])
        t0 = time.perf_counter()
        if engine == "dask":
            from rekko.distributed.batch import recommend_all
            from rekko.distributed.cluster import connect

            with connect(args.scheduler) as client:
                result = recommend_all(client, artifact_paths(args), args.n, args.output,
                                       partition_rows=args.partition_rows)
            rows, users, kind = result.rows, result.users, result.kind
        else:
            from rekko.recommend.batch import recommend_all_local

            rows, users, kind = recommend_all_local(artifact_paths(args), args.n, args.output)
        print(f"wrote {rows} recommendations for {users} users to {printable(args.output)}"
              f"{' (a parquet dataset folder)' if kind == 'dataset' else ''} with the {engine} engine "
              f"in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        return 0
    if args.user_id is None:
        raise ConfigError("give a user id (--user-id N) or --all-users")
    if not args.no_pred:
        from rekko.collisions import check_artifact_reader_outputs

        check_artifact_reader_outputs(artifact_paths(args), {"--pred-dir's pred(<user>).csv": pred_path(
            args.pred_dir, args.user_id)})
    # one answer per process: rank interpreted rather than start the compiler (same bits, see Recommender)
    recommender = Recommender(load_artifacts(artifact_paths(args), user_ids=[args.user_id]), engine="auto")
    recs = recommender.recommend(args.user_id, args.n)
    items = recs.items.assign(**{C.USER: recs.user_id, C.COLD_START: recs.cold_start})
    items = items[[C.USER] + [c for c in items.columns if c != C.USER]]
    if args.format == "table":
        label = "cold start: no watch history, best-rated popular movies" if recs.cold_start else "personal"
        print(f"Top {len(items)} movies for user {recs.user_id} ({label})")
        print(format_recommendations(recs.items, "table"), end="")
    else:
        text = format_recommendations(items, args.format)
        if sys.stdout.isatty():  # exact bytes for a pipe or a file; nothing a terminal would act on
            text = printable_json(text) if args.format == "json" else printable(text)
        sys.stdout.write(text)
    if not args.no_pred:
        path = write_pred_csv(items, args.pred_dir, recs.user_id)
        print(f"saved {printable(path)}", file=sys.stderr)
    return 0


# -- demo ---------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    from rekko.demo import run_demo

    return run_demo(user_id=args.user_id, n=args.n, fmt=args.format)


# -- evaluate and tune (rekko.evaluation.cli) write files too ----------------------------------
def check_evaluation_outputs(args: argparse.Namespace) -> None:
    """``evaluate``'s --json/--report and ``tune``'s --out never go onto an input or an artifact (exit 2).

    Checked here, before the handler reads anything: the inputs given, and the
    default artifact set with everything its manifest names (for ``tune``, the
    set of the --manifest it updates, which it may write, but not through --out).
    """
    from rekko.collisions import artifact_set_paths, check_outputs
    from rekko.paths import ArtifactPaths

    outputs = {flag: getattr(args, name) for name, flag in (("json", "--json"), ("report", "--report"),
                                                            ("out", "--out")) if getattr(args, name, None)}
    protected = {f"the --{name} input": str(getattr(args, name))
                 for name in ("interactions", "movies", "ratings", "params") if getattr(args, name, None)}
    protected.update(artifact_set_paths(ArtifactPaths()))
    manifest = getattr(args, "manifest", None)
    if manifest is not None:
        beside = Path(manifest).parent
        fields_ = {f: beside / getattr(ArtifactPaths(), f).name for f in ("sim_md", "sim_desc")}
        extra = artifact_set_paths(ArtifactPaths(**fields_), manifest=Path(manifest))
        protected.update({f"{k} (--manifest's set)": v for k, v in extra.items() if v not in protected.values()})
    check_outputs(outputs, protected, advice="write it somewhere else")


class _Parser(argparse.ArgumentParser):
    """argparse's usage errors (exit 2) quote the bad value: scrubbed like every other message."""

    def error(self, message: str):  # type: ignore[override]
        super().error(scrub(message))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rekko",
        description="Movie recommendations from watch history, metadata and descriptions.",
    )
    parser.add_argument("--version", action="version", version=f"rekko {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details (INFO) besides the progress lines")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress lines on stderr (warnings and errors still show)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("pipeline", help="ingest, enrich, compute features and similarity artifacts",
                       description="Build every artifact recommend needs. Paths default to the seed layout.")
    add_pipeline_options(p)
    add_engine_options(p)
    p.set_defaults(handler=cmd_pipeline)

    r = sub.add_parser("recommend", help="print scored movies for a user",
                       description="Recommend unwatched movies for a user from the pipeline's artifacts.")
    r.add_argument("-u", "--user-id", type=user_id_type, help="user id (integer)")
    r.add_argument("-n", "--n", type=positive_int, default=10, help="number of movies (default: 10)")
    r.add_argument("--format", choices=("table", "csv", "json"), default="table")
    r.add_argument("--pred-dir", type=Path, default=Path("pred"), help="where pred(<user>).csv goes (default: pred)")
    r.add_argument("--no-pred", action="store_true", help="do not write pred/pred(<user>).csv")
    r.add_argument("--all-users", action="store_true", help="recommend for every user (batch)")
    r.add_argument("--output", metavar="PATH",
                   help="batch output: a file (.parquet or .csv), or a folder (recs/, or a path without a suffix) "
                        "for a partitioned parquet dataset published when complete")
    r.add_argument("--partition-rows", type=positive_int, default=None, metavar="ROWS",
                   help="--engine dask: interaction rows per partition of users scored by one task (default: "
                        f"about four partitions per worker thread, at most {PARTITION_ROWS:,} rows each)")
    add_engine_options(r)
    add_artifact_options(r)
    r.set_defaults(handler=cmd_recommend)

    d = sub.add_parser("demo", help="run the pipeline on the embedded sample (if needed) and recommend",
                       description="Builds artifacts from data/ when missing or stale, then recommends for a sample user.")
    d.add_argument("-u", "--user-id", type=user_id_type, default=None, help="user id (default: the sample user)")
    d.add_argument("-n", "--n", type=positive_int, default=10)
    d.add_argument("--format", choices=("table", "csv", "json"), default="table")
    d.set_defaults(handler=cmd_demo)

    for module in (enrich_cli, importers_cli, evaluation_cli, serve_cli):
        module.register(sub)
    return parser


class _ScrubFilter(logging.Filter):
    """Credentials out of every log line, whoever logs it (rekko, Dask, botocore): see :func:`scrub`."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a record whose arguments do not format: leave it to logging
            return True
        record.msg, record.args = printable(scrub(message)), None
        return True


#: Environment variables whose whole value is a secret (beside URL credentials, found in any variable).
SECRET_VARIABLES = ("REKKO_API_KEY", "REKKO_SERVE_TOKEN", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                    "AWS_ACCESS_KEY_ID", "AWS_SECURITY_TOKEN")


def _register_secrets(argv: Sequence[str]) -> None:
    """Remember the credentials this process was given, so that no message or log line shows them."""
    import os

    for value in [*argv, *os.environ.values()]:
        register_secrets_in(value)
    for name in SECRET_VARIABLES:
        register_secret(os.environ.get(name, "").strip())


def _setup_logging(verbose: bool, quiet: bool = False) -> None:
    from rekko import progress

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="rekko: %(levelname)s: %(message)s")
    progress.configure(quiet=quiet)
    for handler in [*logging.getLogger().handlers, *logging.getLogger("rekko.progress").handlers]:
        if not any(isinstance(f, _ScrubFilter) for f in handler.filters):
            handler.addFilter(_ScrubFilter())


def main(argv: Sequence[str] | None = None) -> int:
    _register_secrets(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose, args.quiet)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        if args.command in ("evaluate", "tune"):
            check_evaluation_outputs(args)
        return int(args.handler(args) or 0)
    except RekkoError as exc:
        print(f"rekko: error: {printable(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("rekko: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - the one place unexpected errors are reported
        if args.debug:
            raise
        print(f"rekko: unexpected error: {type(exc).__name__}: {printable(scrub(str(exc)))} (rerun with --debug for the "
              "traceback)", file=sys.stderr)
        return 1


def run() -> None:
    """The command's entry point (``rekko``, ``python -m rekko``): :func:`main`, then exit without the
    interpreter's teardown.

    pyarrow's native thread pools can abort a finished process while the interpreter tears down
    ("terminate called without an active exception", SIGABRT after every byte was written: apache/arrow#34314,
    open). Everything a run does is complete when :func:`main` returns (files published, clusters closed), so
    the logs and streams are flushed and the process ends with main's exit code at once. In-process callers
    (tests, the Python API) use :func:`main`, which returns.
    """
    code = main()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing left to deliver
            pass
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    run()
