"""``rekko enrich``: fill the API cache for the titles of the movies metadata.

The key comes only from ``REKKO_API_KEY`` (a command-line option would show it in
``ps`` and shell history); every other setting has an env var and an option.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rekko.columns import Columns as C
from rekko.enrich.settings import ENV_KEY, ENV_PROVIDER, ENV_URL, PROGRESS_MODES, PROVIDERS, EnrichSettings
from rekko.exceptions import MissingColumnsError
from rekko.io import read_table
from rekko.paths import PipelinePaths

log = logging.getLogger(__name__)

HELP = "fetch ratings and descriptions from the movie API into the cache"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``enrich`` options (shared by ``rekko enrich`` and ``python -m rekko.enrich``)."""
    defaults = PipelinePaths()
    parser.add_argument(
        "--movies",
        type=Path,
        default=defaults.movies,
        help="movies metadata with 'title' (and optional 'release_year') (default: %(default)s)",
    )
    parser.add_argument(
        "--ratings",
        type=Path,
        default=defaults.ratings,
        help="legacy ratings cache, migrated into the API cache on the first run (default: %(default)s)",
    )
    parser.add_argument(
        "--cache", type=Path, default=None, help="API cache parquet (default: api_cache.parquet beside --ratings)"
    )
    parser.add_argument(
        "--provider", choices=PROVIDERS, default=None, help=f"API provider (env {ENV_PROVIDER}; default kinopoisk)"
    )
    parser.add_argument("--api-url", default=None, help=f"API base URL (env {ENV_URL}; default: the provider's)")
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="client-side limit in requests per second, 0 = off (env REKKO_API_RATE; default 5)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=None, help="parallel requests (env REKKO_API_CONCURRENCY; default 4)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds one request may take in all: connect, headers, body (env REKKO_API_TIMEOUT; default 10)",
    )
    parser.add_argument("--retries", type=int, default=None, help="retries per title on 5xx/429/timeouts (default 5)")
    parser.add_argument(
        "--backoff-base",
        type=float,
        default=None,
        help="first retry delay in seconds, doubled each retry (default 0.5)",
    )
    parser.add_argument(
        "--retry-after-cap",
        type=float,
        default=None,
        metavar="SECONDS",
        help="longest Retry-After waited for; longer: a 429 stops the run, a 5xx fails the title (default 120)",
    )
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=None,
        metavar="BYTES",
        help="largest API answer read; larger is an error for the title (default 5000000)",
    )
    parser.add_argument("--flush-every", type=int, default=None, help="write the cache every N answers (default 50)")
    parser.add_argument(
        "--not-found-max-age",
        type=float,
        default=None,
        metavar="DAYS",
        help="ask again about titles not found more than DAYS ago (default 30)",
    )
    parser.add_argument("--limit", type=int, default=None, help="ask at most N titles this run")
    parser.add_argument(
        "--log-every",
        type=float,
        default=None,
        metavar="SECONDS",
        help="without a terminal, a progress line every SECONDS (default 10)",
    )
    parser.add_argument(
        "--progress",
        choices=PROGRESS_MODES,
        default="auto",
        help="progress bar on a terminal, log lines otherwise (default: %(default)s)",
    )


def register(subparsers: Any) -> None:
    """Add the ``enrich`` subcommand to the rekko CLI."""
    parser = subparsers.add_parser(
        "enrich",
        help=HELP,
        description=f"{HELP[0].upper()}{HELP[1:]}. Needs {ENV_KEY}; only titles the cache lacks are asked.",
    )
    add_arguments(parser)
    parser.set_defaults(handler=run)


def settings_from_args(args: argparse.Namespace) -> EnrichSettings:
    return EnrichSettings.from_env(
        provider=args.provider,
        base_url=args.api_url,
        rate_limit=args.rate,
        concurrency=args.concurrency,
        timeout=args.timeout,
        max_retries=args.retries,
        backoff_base=args.backoff_base,
        retry_after_cap=args.retry_after_cap,
        max_body_bytes=args.max_body_bytes,
        flush_every=args.flush_every,
        not_found_max_age_days=args.not_found_max_age,
        progress=args.progress,
        log_every_seconds=args.log_every,
    )


def run(args: argparse.Namespace) -> int:
    """Run ``rekko enrich``; rekko errors propagate to the CLI, which maps them to exit codes."""
    settings = settings_from_args(args)  # ConfigError (exit 2) when the key is missing
    from rekko.enrich.cache import default_cache_path
    from rekko.enrich.runner import enrich_titles

    cache = args.cache or default_cache_path(args.ratings)
    check_enrich_output(cache, args.movies, args.ratings)  # before reading anything
    movies = read_table(args.movies, what="movies metadata")
    if C.TITLE not in movies.columns:
        raise MissingColumnsError([C.TITLE], path=str(args.movies), available=movies.columns)
    columns = [c for c in (C.TITLE, C.RELEASE_YEAR) if c in movies.columns]
    with sigterm_as_interrupt():
        summary = enrich_titles(movies[columns], cache, settings, legacy_path=args.ratings, limit=args.limit)
    print(f"enrich: {summary}")
    print(f"cache: {cache}")
    if summary.stopped == "daily_limit":  # also a 429 asking to wait longer than --retry-after-cap
        print(f"daily API limit reached: {summary.remaining} titles remain; run again when it resets")
    return 0


def check_enrich_output(cache: Path, movies: Path, ratings: Path) -> None:
    """The cache must not be written onto the movies or ratings file it reads, nor onto the default artifact set."""
    from rekko.collisions import artifact_set_paths, check_outputs
    from rekko.paths import ArtifactPaths

    protected = {"the --movies input": str(movies), "the --ratings input": str(ratings),
                 **artifact_set_paths(ArtifactPaths(), inputs=False)}
    check_outputs({"the API cache (--cache)": cache}, protected, advice="give --cache another path")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """``docker stop`` sends SIGTERM: treat it like Ctrl-C so the answers in hand are saved."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
