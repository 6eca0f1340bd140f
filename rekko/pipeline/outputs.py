"""Where a pipeline run writes: checked before anything is read, removed or written.

Two outputs on one file (``--sim-md`` equal to ``--sim-desc``) or an output on
an input (``--movies-rd data/interactions.parquet``) used to run with exit 0
and destroy data; an unwritable folder used to fail half-way, after the old
manifest was gone. All of these are now usage errors (exit 2) found up front.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from rekko.exceptions import OutputPathError
from rekko.io import TABLE_EXTENSIONS, check_writable_folder
from rekko.paths import PipelinePaths

#: Outputs written as tables: their extension picks the format.
_TABLE_OUTPUTS = ("movies_rd", "int_coef", "movies_upd", "interactions_upd")


def same_file(a: Path, b: Path) -> bool:
    """True when two paths name one file: equal once symlinks and ``..`` are resolved, or hard links of one inode."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet
        return False


def input_files(paths: PipelinePaths) -> dict[str, Path]:
    """P1..P3, plus the movie-API cache the pipeline reads (and enrichment rewrites) beside P3 (URLs left out)."""
    from rekko.pipeline.sources import is_url

    files = {role: Path(p) for role, p in paths.inputs().items() if not is_url(p)}
    try:
        from rekko.enrich import default_cache_path
    except ImportError:  # built without the enrichment client
        return files
    return {**files, "the API cache (beside --ratings)": default_cache_path(paths.ratings)}


def check_output_paths(paths: PipelinePaths) -> None:
    """Refuse outputs that collide with each other or with an input, that are folders, or that have no table format."""
    inputs = input_files(paths)
    seen: dict[str, Path] = {}
    for role, path in paths.outputs().items():
        for other_role, other in seen.items():
            if same_file(path, other):
                raise OutputPathError(f"{role} and {other_role} are the same file ({path}): "
                                      "each output needs its own path")
        for input_role, source in inputs.items():
            if same_file(path, source):
                raise OutputPathError(f"{role} {path} is the {input_role} input: the pipeline would overwrite "
                                      "what it reads; write the outputs somewhere else")
        if path.is_dir():
            raise OutputPathError(f"{role} {path} is a folder; expected a file path")
        for input_role, source in inputs.items():
            if source.is_dir() and path.resolve().is_relative_to(source.resolve()):
                raise OutputPathError(f"{role} {path} is inside the {input_role} folder {source}: the next run "
                                      "would read it as an input part; write the outputs somewhere else")
        seen[role] = path
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
