"""Reading input tables and writing artifacts atomically.

Reads dispatch on the file extension and turn every low-level failure (missing
file, corrupt parquet, broken xlsx) into an :class:`InputFileError` that names
the file. Writes go to a temporary file in the target directory and are renamed
into place, so a crash never leaves a half-written artifact behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pandas as pd

from rekko.exceptions import InputFileError

TABLE_EXTENSIONS = (".parquet", ".pq", ".csv", ".xlsx")


def read_table(path: str | os.PathLike[str], *, what: str = "table") -> pd.DataFrame:
    """Read a parquet, csv or xlsx file into a frame.

    ``what`` names the input in messages ("interactions", "movies metadata").
    """
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"{p}: {what} file not found")
    if p.is_dir():
        raise InputFileError(f"{p}: {what} path is a directory, expected a file")
    ext = p.suffix.lower()
    if ext not in TABLE_EXTENSIONS:
        raise InputFileError(
            f"{p}: unknown extension '{p.suffix}' for the {what} file; expected one of {', '.join(TABLE_EXTENSIONS)}"
        )
    try:
        if ext in (".parquet", ".pq"):
            return pd.read_parquet(p)
        if ext == ".csv":
            return pd.read_csv(p)
        return _read_xlsx(p)
    except InputFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - every reader failure becomes one clear message
        raise InputFileError(f"{p}: cannot read {what} as {ext[1:]}: {type(exc).__name__}: {exc}") from exc


def _read_xlsx(path: Path) -> pd.DataFrame:
    """Read the first sheet of an xlsx file.

    calamine (Rust) reads the legacy 17k-row cache in a fraction of openpyxl's
    time; openpyxl stays the fallback and the writer.
    """
    try:
        return pd.read_excel(path, engine="calamine")
    except ImportError:  # pragma: no cover - calamine is a hard dependency
        return pd.read_excel(path, engine="openpyxl")


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place on success.

    On any exception the temporary file is removed and ``path`` is untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes 0600 files; give the mode a plain open() would (0666 less the umask)
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", **kwargs: object) -> Iterator[IO]:
    """Open a temporary file for writing; rename it over ``path`` when closed cleanly."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as fh:  # type: ignore[call-overload]
            yield fh
            fh.flush()
            os.fsync(fh.fileno())


def write_table(df: pd.DataFrame, path: str | os.PathLike[str], *, row_group_size: int | None = None) -> None:
    """Write a frame atomically as parquet, csv or xlsx, by extension.

    ``row_group_size`` (parquet) lets readers skip row groups by their min/max
    statistics, e.g. every user but one in a file sorted by user.
    """
    p = Path(path)
    ext = p.suffix.lower()
    with atomic_path(p) as tmp:
        if ext in (".parquet", ".pq"):
            df.to_parquet(tmp, index=False, row_group_size=row_group_size)
        elif ext == ".csv":
            df.to_csv(tmp, index=False)
        elif ext == ".xlsx":
            df.to_excel(tmp, index=False, engine="openpyxl")
        else:
            raise InputFileError(f"{p}: unknown extension '{p.suffix}'; expected one of {', '.join(TABLE_EXTENSIONS)}")
