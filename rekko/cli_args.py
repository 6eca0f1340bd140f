"""Command-line options shared by every subcommand, declared once.

The path options are derived from the fields of :class:`~rekko.paths.PipelinePaths`
and :class:`~rekko.paths.ArtifactPaths` (their order is the seed's P1..P9 and
P3..P7), with the help text of :data:`PATH_HELP`.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path
from typing import TypeVar

from rekko.paths import ArtifactPaths, PipelinePaths

P = TypeVar("P", PipelinePaths, ArtifactPaths)

PATH_HELP = {
    "interactions": "interactions: a parquet/csv file, a folder of parquet parts, a glob or a URL (s3://bucket/prefix/)",
    "movies": "movies metadata (parquet/csv)",
    "ratings": "ratings and descriptions from the movie API (xlsx/parquet/csv)",
    "movies_rd": "output, cleaned ratings/descriptions",
    "int_coef": "per-user coefficients",
    "movies_upd": "movies with features",
    "interactions_upd": "interactions with watch ratios",
    "sim_md": "metadata top-k cosine similarity",
    "sim_desc": "description top-k cosine similarity",
}
#: Which seed P-number a field has in each docker run line.
_FIRST_P = {PipelinePaths: 1, ArtifactPaths: 3}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_path_options(parser: argparse.ArgumentParser, kind: type[P], *, only: tuple[str, ...] | None = None) -> None:
    """``--interactions``, ``--movies``... for ``kind``'s fields (or ``only`` some), seed defaults."""
    defaults = kind()
    for number, f in enumerate(fields(kind), start=_FIRST_P[kind]):
        if only is not None and f.name not in only:
            continue
        output = kind is PipelinePaths and number >= 4
        text = PATH_HELP[f.name].removeprefix("output, ")
        parser.add_argument(flag(f.name), dest=f.name, type=input_location if f.name == "interactions" else Path,
                            default=getattr(defaults, f.name),
                            help=f"P{number}: {'output, ' if output else ''}{text} (default: {getattr(defaults, f.name)})")


def input_location(text: str) -> Path | str:
    """A path, or a URL kept as text (``Path`` would fold ``s3://b/k`` into ``s3:/b/k``)."""
    from rekko.pipeline.sources import is_url

    return text if is_url(text) else Path(text)


def paths_from_args(args: argparse.Namespace, kind: type[P]) -> P:
    """The ``kind`` paths an ``add_path_options`` parser filled in (absent ones keep the defaults)."""
    defaults = kind()
    return kind(**{f.name: getattr(args, f.name, getattr(defaults, f.name)) for f in fields(kind)})


def add_artifact_options(parser: argparse.ArgumentParser) -> None:
    """The five artifact paths of the seed's recommend line (P3..P7), seed defaults."""
    add_path_options(parser, ArtifactPaths)


def artifact_paths(args: argparse.Namespace) -> ArtifactPaths:
    return paths_from_args(args, ArtifactPaths)


def pipeline_paths(args: argparse.Namespace) -> PipelinePaths:
    return paths_from_args(args, PipelinePaths)


#: The engines ``--engine`` takes: ``local`` (pandas in this process, the default) or ``dask``.
ENGINES = ("local", "dask")


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """``--engine local|dask`` (default ``$REKKO_ENGINE`` or local) and ``--scheduler ADDRESS``."""
    import os

    default = os.environ.get("REKKO_ENGINE", "").strip() or "local"
    parser.add_argument("--engine", choices=ENGINES, default=default,
                        help="where the work runs: local (this process) or dask (a Dask cluster; "
                             "default: $REKKO_ENGINE or local)")
    parser.add_argument("--scheduler", metavar="ADDRESS", default=None,
                        help="a running Dask scheduler (tcp://host:8786) for --engine dask; default "
                             "$REKKO_DASK_SCHEDULER, else a local cluster sized to this machine")


def engine_from_args(args: argparse.Namespace) -> str:
    """The chosen engine; a bad ``$REKKO_ENGINE`` (argparse does not check defaults) is a ConfigError."""
    from rekko.exceptions import ConfigError

    if args.engine not in ENGINES:
        raise ConfigError(f"REKKO_ENGINE must be one of {', '.join(ENGINES)}, got {args.engine!r}")
    return args.engine
