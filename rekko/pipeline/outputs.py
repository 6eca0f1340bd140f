"""Where a pipeline run writes: checked before anything is read, removed or written.

Two outputs on one file (``--sim-md`` equal to ``--sim-desc``) or an output on
an input (``--movies-rd data/interactions.parquet``) used to run with exit 0
and destroy data; an unwritable folder used to fail half-way, after the old
manifest was gone. All of these are now usage errors (exit 2) found up front.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from rekko.collisions import check_outputs as check_collisions
from rekko.exceptions import OutputPathError
from rekko.io import TABLE_EXTENSIONS, check_writable_folder
from rekko.paths import PipelinePaths, default_cache_path
from rekko.pipeline.sources import is_url

#: Outputs written as tables: their extension picks the format.
_TABLE_OUTPUTS = ("movies_rd", "int_coef", "movies_upd", "interactions_upd")


def input_files(paths: PipelinePaths) -> dict[str, Path]:
    """P1..P3 (a file, a folder or a glob), plus the movie-API cache the pipeline reads (and enrichment rewrites)
    beside P3; URLs left out. Keys are the roles as messages name them."""
    files = {f"the {role} input": Path(p) for role, p in paths.inputs().items() if not is_url(p)}
    return {**files, "the API cache (beside --ratings)": default_cache_path(paths.ratings)}


def check_output_paths(paths: PipelinePaths) -> None:
    """Refuse outputs that collide with each other or with an input (:mod:`rekko.collisions`: same file, links,
    inside an input folder, matching an input glob), that are folders, or that have no table format."""
    outputs = paths.outputs()
    check_collisions(outputs, {k: str(v) for k, v in input_files(paths).items()},
                     advice="write the outputs somewhere else")
    for role, path in outputs.items():
        if path.is_dir():
            raise OutputPathError(f"{role} {path} is a folder; expected a file path")
    for name in _TABLE_OUTPUTS:
        path = getattr(paths, name)
        if path.suffix.lower() not in TABLE_EXTENSIONS:
            raise OutputPathError(f"--{name.replace('_', '-')} {path}: unknown extension '{path.suffix}'; "
                                  f"expected one of {', '.join(TABLE_EXTENSIONS)}")


def output_folders(paths: PipelinePaths) -> dict[Path, list[str]]:
    """Each folder the run writes into, with the outputs that go there (for messages)."""
    folders: dict[Path, list[str]] = {}
    for role, path in paths.outputs().items():
        folders.setdefault(path.parent, []).append(f"{path} ({role})")
    return folders


def check_output_folders(paths: PipelinePaths, *, create: bool) -> None:
    """Fail naming the folder unless every output folder takes a new file (see :func:`check_writable_folder`)."""
    for folder, outputs in output_folders(paths).items():
        try:
            check_writable_folder(folder, what=_listing(outputs), create=create)
        except OutputPathError as exc:
            raise OutputPathError(f"{exc}; nothing was written, the previous artifacts are unchanged") from exc


def _listing(outputs: Iterable[str]) -> str:
    items = list(outputs)
    return items[0] + (f" and {len(items) - 1} more outputs" if len(items) > 1 else "")


def check_outputs(paths: PipelinePaths) -> None:
    """Every check a run can make before it reads its inputs; creates nothing but a probe file, removed at once."""
    check_output_paths(paths)
    check_output_folders(paths, create=False)
