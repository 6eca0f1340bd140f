"""Reading input tables and writing artifacts atomically.

Reads dispatch on the file extension and turn every low-level failure (missing
file, corrupt parquet, broken xlsx) into an :class:`InputFileError` that names
the file; an xlsx is opened as a zip and its sizes checked before any parser
inflates it (:func:`check_xlsx_archive`). Writes go to a temporary file in the
target directory and are renamed into place, so a crash never leaves a
half-written artifact behind.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pandas as pd

from rekko.exceptions import InputFileError, shorten

TABLE_EXTENSIONS = (".parquet", ".pq", ".csv", ".xlsx")

# Zip-bomb limits for xlsx inputs, modelled on Apache POI's ZipSecureFile (the guard in front of
# every xlsx Excel-in-Java reads): a member larger than the grace size may not inflate more than
# XLSX_MAX_RATIO times its compressed size (POI: MIN_INFLATE_RATIO 0.01, GRACE_ENTRY_SIZE 100 KiB),
# and the whole archive may not inflate beyond XLSX_MAX_TOTAL. Real sheets compress 5-20 times;
# the seed's 17k-row cache inflates to well under 1 MB.
XLSX_MAX_TOTAL = 1 << 30  # 1 GiB
XLSX_MAX_RATIO = 100
XLSX_RATIO_GRACE = 100 * 1024
_CHUNK = 1 << 20


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
        check_xlsx_archive(p, what=what)
        return _read_xlsx(p)
    except InputFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - every reader failure becomes one clear message
        detail = shorten(str(exc), 500)
        raise InputFileError(f"{p}: cannot read {what} as {ext[1:]}: {type(exc).__name__}: {detail}") from exc


def check_xlsx_archive(
    path: Path,
    *,
    what: str = "xlsx",
    max_total: int = XLSX_MAX_TOTAL,
    max_ratio: float = XLSX_MAX_RATIO,
    grace: int = XLSX_RATIO_GRACE,
) -> None:
    """Refuse an xlsx whose zip members would inflate absurdly, before a parser tries.

    A 1.5 MB workbook can hold a sheet that inflates to gigabytes: parsers then
    run for minutes, take gigabytes of memory, and quote the giant cell in their
    errors. Two passes, both cheap: the sizes the central directory declares
    (total and per-member ratio), then one streaming inflate of every member
    that stops as soon as a member yields more than it declared, so a forged
    directory cannot smuggle the bomb past the first pass.
    """
    with zipfile.ZipFile(path) as archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        total = sum(m.file_size for m in members)
        if total > max_total:
            raise _bomb(path, what, f"its members would inflate to {total:,} bytes in total "
                                    f"(limit {max_total:,})")
        for member in members:
            ratio = member.file_size / max(member.compress_size, 1)
            if member.file_size > grace and ratio > max_ratio:
                raise _bomb(path, what, f"{member.filename} would inflate {member.compress_size:,} bytes "
                                        f"to {member.file_size:,} (ratio {ratio:,.0f}, limit {max_ratio:g})")
        for member in members:
            _check_inflated_size(archive, member, path, what)


def _check_inflated_size(archive: zipfile.ZipFile, member: zipfile.ZipInfo, path: Path, what: str) -> None:
    """Inflate ``member`` in chunks, failing once it yields more bytes than its directory entry declares."""
    probe = copy.copy(member)
    probe.file_size = 1 << 62  # zipfile stops at the declared size: lift it so an overrun shows; we stop ourselves
    seen = 0
    with archive.open(probe) as stream:
        while block := stream.read(_CHUNK):
            seen += len(block)
            if seen > member.file_size:
                raise _bomb(path, what, f"{member.filename} inflates to more than the {member.file_size:,} "
                                        "bytes it declares")


def _bomb(path: Path, what: str, detail: str) -> InputFileError:
    return InputFileError(f"{path}: refusing to read {what} as xlsx: {detail}; this looks like a zip bomb, "
                          "not a spreadsheet")


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
