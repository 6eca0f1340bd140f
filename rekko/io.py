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
import errno
import glob
import hashlib
import os
import posixpath
import re
import resource
import shutil
import stat
import tempfile
import zipfile
from array import array
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO
from xml.etree import ElementTree

import pandas as pd

from rekko.exceptions import InputFileError, OutputPathError, shorten

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
#: The text an xlsx's cells may hold in total once every shared-string reference is resolved (characters).
#: A shared string is stored once and referenced by index: 5,000 cells naming one 100 KB string is a 147 KB
#: file that parses into 500 million characters (2.25 GB of memory). 100 million characters is about 0.5 GB
#: once parsed, far beyond a ratings cache of tens of thousands of titles with their descriptions.
XLSX_MAX_TEXT_CHARS = 100_000_000
#: Environment variable that sets the input size limit in bytes (``rekko pipeline --max-input-bytes`` sets it;
#: 0 turns the check off). Unset, the limit is the memory this process may still take (:func:`available_memory`).
MAX_INPUT_ENV = "REKKO_MAX_INPUT_BYTES"
_XLSX_MAIN_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_XLSX_RELS_NS = "{http://schemas.openxmlformats.org/package/2006/relationships}"

#: A csv cell beginning with one of these is a formula to a spreadsheet (OWASP "CSV injection"):
#: rekko writes such a text cell with a single quote in front, and reads it back without that quote.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_TRIGGER_PATTERN = r"^[=+\-@\t\r]"
_NEUTRALISED_PATTERN = r"^'[=+\-@\t\r]"


def _text_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if df[c].dtype == object or pd.api.types.is_string_dtype(df[c].dtype)
            or (isinstance(df[c].dtype, pd.CategoricalDtype) and (df[c].cat.categories.dtype == object or
                                                                   pd.api.types.is_string_dtype(df[c].cat.categories)))]


def _map_text(df: pd.DataFrame, pattern: str, change: object) -> pd.DataFrame:
    """``df`` with ``change`` applied to every text cell matching ``pattern`` (a copy only when one matches)."""
    out = df
    for col in _text_columns(df):
        series = df[col]
        if isinstance(series.dtype, pd.CategoricalDtype):
            cats = pd.Series(series.cat.categories)
            hit = cats.map(lambda v: isinstance(v, str) and re.match(pattern, v) is not None).astype(bool)
            if hit.any():
                out = out.copy() if out is df else out
                out[col] = series.cat.rename_categories(cats.where(~hit, cats[hit].map(change)).tolist())
            continue
        try:  # non-text cells (numbers, lists in an object column) answer NaN here: not a hit
            hit = series.str.match(pattern, na=False).astype(bool)
        except AttributeError:  # no text at all in the column
            continue
        if hit.any():
            out = out.copy() if out is df else out
            out[col] = series.where(~hit, series[hit].map(change))
    return out


def neutralise_formulas(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` for a csv file: every text cell that begins with ``= + - @``, tab or CR gets a ``'`` in front.

    Only text cells: a negative number in a numeric column is a number, not a formula, and stays as is.
    """
    return _map_text(df, _TRIGGER_PATTERN, lambda v: "'" + v)


def restore_formulas(df: pd.DataFrame) -> pd.DataFrame:
    """The inverse of :func:`neutralise_formulas` for a csv rekko reads: ``'=x`` is ``=x`` again."""
    return _map_text(df, _NEUTRALISED_PATTERN, lambda v: v[1:])


def read_table(path: str | os.PathLike[str], *, what: str = "table",
               categorical: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read a parquet, csv or xlsx file into a frame.

    ``what`` names the input in messages ("interactions", "movies metadata").
    Text columns named in ``categorical`` are read from parquet as categoricals
    (Arrow dictionaries): 30M movie ids are then 30M integer codes and a few
    thousand strings, not 30M strings.
    """
    p = Path(path)
    try:  # Path.exists() lets PermissionError through: a folder this user (or a worker's) cannot enter
        st = p.stat()
    except FileNotFoundError:
        raise InputFileError(f"{p}: {what} file not found") from None
    except OSError as exc:
        raise InputFileError(f"{p}: cannot read the {what} file as uid {os.geteuid()}: "
                             f"{exc.strerror or type(exc).__name__}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputFileError(f"{p}: {what} path is a directory, expected a file")
    ext = p.suffix.lower()
    if ext not in TABLE_EXTENSIONS:
        raise InputFileError(
            f"{p}: unknown extension '{p.suffix}' for the {what} file; expected one of {', '.join(TABLE_EXTENSIONS)}"
        )
    check_input_size(p, st.st_size, what=what)
    try:
        if ext in (".parquet", ".pq"):
            return _read_parquet_input(p, categorical)
        if ext == ".csv":
            return restore_formulas(pd.read_csv(p))
        check_xlsx_archive(p, what=what)
        return _read_xlsx(p)
    except InputFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - every reader failure becomes one clear message
        detail = shorten(str(exc), 500)
        raise InputFileError(f"{p}: cannot read {what} as {ext[1:]}: {type(exc).__name__}: {detail}") from exc


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_available() -> int | None:
    """What the cgroup (v2) memory limit still allows, or None without one."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text().strip()))
    except (OSError, ValueError):
        return None


def _address_space_available() -> int | None:
    """What ``RLIMIT_AS`` (``ulimit -v``, ``prlimit --as``) still allows this process to map, or None."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            used = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))
    except (OSError, ValueError, StopIteration):
        used = 0
    return max(0, soft - used)


def available_memory() -> int | None:
    """The memory this process may still take: the least of the free memory the kernel reports
    (``MemAvailable``), the cgroup's limit less its use, and the address-space limit less what is mapped."""
    known = [v for v in (_meminfo_available(), _cgroup_available(), _address_space_available()) if v is not None]
    return min(known) if known else None


def _in_memory_estimate(p: Path, size: int) -> tuple[int, str]:
    """Bytes a read of ``p`` needs at least, and how that was found: a parquet file's uncompressed size
    from its footer, else the file's own size (csv and xlsx text never shrinks much in a frame)."""
    if p.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        try:
            meta = pq.read_metadata(p)
            total = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
            # encoded pages can be tiny (a million equal values): every cell takes at least 4 bytes in a frame
            cells = meta.num_rows * meta.num_columns * 4
            return max(size, total, cells), "uncompressed, from its parquet footer"
        except Exception:  # noqa: BLE001 - an unreadable footer is reported by the reader itself
            return size, "on disk"
    return size, "on disk"


def check_input_size(p: Path, size: int, *, what: str = "input") -> None:
    """Refuse (exit 2) an input too big to read in memory, before reading it: a 20 GB csv used to grow until
    the kernel's OOM killer ended the process. The limit is :data:`MAX_INPUT_ENV` if set (0: no check),
    else :func:`available_memory`."""
    raw = os.environ.get(MAX_INPUT_ENV, "").strip()
    if raw:
        if not raw.isdigit():
            raise InputFileError(f"{MAX_INPUT_ENV} must be a number of bytes, got {shorten(raw, 50)!r}")
        limit, source = int(raw), f"the limit set by --max-input-bytes / {MAX_INPUT_ENV}"
        if limit == 0:
            return
    else:
        found = available_memory()
        if found is None:
            return
        limit, source = found, "the memory this process may still take"
    need, how = _in_memory_estimate(p, size)
    if need > limit:
        raise InputFileError(
            f"{p}: the {what} file is {need:,} bytes ({how}), more than {source} ({limit:,} bytes); "
            f"split it into parts (a folder or glob of parts, --engine dask), use a machine with more memory, or "
            f"set --max-input-bytes (or {MAX_INPUT_ENV}; 0 = no check) if you know it fits")


def _read_parquet_input(p: Path, categorical: tuple[str, ...]) -> pd.DataFrame:
    if categorical:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pq.read_schema(p)
        text = [c for c in categorical if c in schema.names and (
            pa.types.is_string(t := schema.field(c).type) or pa.types.is_large_string(t))]
        if text:
            # read and converted one column at a time: the Arrow copy of a 30M-row file is never whole
            columns = {}
            for name in schema.names:
                if name.startswith("__index_level_"):  # a pandas index written into the file: not data
                    continue
                table = pq.read_table(p, columns=[name], read_dictionary=[name] if name in text else None)
                columns[name] = table.to_pandas(self_destruct=True)[name]
                del table
            return pd.DataFrame(columns, copy=False)
    return pd.read_parquet(p)


def check_xlsx_archive(
    path: Path,
    *,
    what: str = "xlsx",
    max_total: int = XLSX_MAX_TOTAL,
    max_ratio: float = XLSX_MAX_RATIO,
    grace: int = XLSX_RATIO_GRACE,
    max_text: int = XLSX_MAX_TEXT_CHARS,
) -> None:
    """Refuse an xlsx whose zip members would inflate absurdly, before a parser tries.

    A 1.5 MB workbook can hold a sheet that inflates to gigabytes: parsers then
    run for minutes, take gigabytes of memory, and quote the giant cell in their
    errors. Two passes, both cheap: the sizes the central directory declares
    (total and per-member ratio), then one streaming inflate of every member
    that stops as soon as a member yields more than it declared, so a forged
    directory cannot smuggle the bomb past the first pass. Last, the text the cells
    would hold once shared strings are resolved is counted (:func:`_check_shared_string_text`).
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
        _check_shared_string_text(archive, path, what, max_text)


def _xlsx_parts(archive: zipfile.ZipFile) -> tuple[list[str], list[str]]:
    """(shared-strings members, worksheet members): those the workbook's relationships name, and any member
    by the usual names besides (a parser may find a part either way, so both are counted)."""
    names = {m.filename for m in archive.infolist() if not m.is_dir()}
    strings = {n for n in names if n.lower().endswith("sharedstrings.xml")}
    sheets = {n for n in names if "worksheets/" in n.lower() and n.lower().endswith(".xml")}
    for rels in (n for n in names if n.lower().endswith("workbook.xml.rels")):
        base = posixpath.dirname(posixpath.dirname(rels))  # xl/_rels/workbook.xml.rels -> xl
        for _, node in ElementTree.iterparse(archive.open(rels)):
            if node.tag != f"{_XLSX_RELS_NS}Relationship":
                continue
            kind, target = node.get("Type", ""), node.get("Target", "")
            target = target.lstrip("/") if target.startswith("/") else posixpath.normpath(posixpath.join(base, target))
            if target in names and kind.endswith("/sharedStrings"):
                strings.add(target)
            elif target in names and kind.endswith("/worksheet"):
                sheets.add(target)
    return sorted(strings), sorted(sheets)


def _shared_string_lengths(archive: zipfile.ZipFile, member: str) -> array:
    """The length in characters of every shared string in ``member``, in index order (streamed)."""
    lengths = array("Q")
    size = 0
    root = None
    with archive.open(member) as stream:
        for event, node in ElementTree.iterparse(stream, events=("start", "end")):
            if root is None:
                root = node
            if node.tag == f"{_XLSX_MAIN_NS}si":
                if event == "start":
                    size = 0
                else:
                    lengths.append(size)
                    root.clear()  # the strings seen so far: only their lengths are kept
            elif event == "end" and node.tag == f"{_XLSX_MAIN_NS}t":
                size += len(node.text or "")
                node.text = None
    return lengths


def _check_shared_string_text(archive: zipfile.ZipFile, path: Path, what: str, max_text: int) -> None:
    """Refuse an xlsx whose cells would hold more than ``max_text`` characters once shared strings are resolved.

    Counted before any parser runs, streaming: the length of every shared string, then every cell of every
    worksheet that references one (``t="s"``), adding that string's length, stopping at the limit.
    """
    string_parts, sheets = _xlsx_parts(archive)
    if not string_parts:
        return
    lengths = array("Q")
    for member in string_parts:  # more than one candidate: each index counts its longest string
        found = _shared_string_lengths(archive, member)
        lengths.extend([0] * max(0, len(found) - len(lengths)))
        for i, n in enumerate(found):
            if n > lengths[i]:
                lengths[i] = n
    tally = [0, 0]  # characters, cells: over every worksheet, as a reader would load them all
    for member in sheets:
        with archive.open(member) as stream:
            _count_sheet(stream, member, lengths, tally, path, what, max_text)


def _count_sheet(stream: IO[bytes], member: str, lengths: array, tally: list[int], path: Path, what: str,
                 max_text: int) -> None:
    """Add the text of ``member``'s shared-string cells to ``tally`` (characters, cells); fail past ``max_text``."""
    data = None
    for event, node in ElementTree.iterparse(stream, events=("start", "end")):
        if event == "start":
            if node.tag == f"{_XLSX_MAIN_NS}sheetData":
                data = node
        elif node.tag == f"{_XLSX_MAIN_NS}c" and node.get("t") == "s":
            value = node.find(f"{_XLSX_MAIN_NS}v")
            text = (value.text or "").strip() if value is not None else ""
            index = int(text) if text.isdigit() and len(text) < 20 else -1
            if 0 <= index < len(lengths):
                tally[0] += lengths[index]
                tally[1] += 1
                if tally[0] > max_text:
                    raise InputFileError(
                        f"{path}: refusing to read {what} as xlsx: its cells would hold more than {max_text:,} "
                        f"characters of text once shared strings are resolved ({tally[1]:,} cells up to {member} "
                        f"reference {tally[0]:,} characters, from a {path.stat().st_size:,}-byte file); this looks "
                        "like a decompression bomb, not a spreadsheet")
        elif node.tag == f"{_XLSX_MAIN_NS}row" and data is not None:
            data.clear()  # the rows counted so far


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


def read_regular_file(path: str | os.PathLike[str], *, limit: int, what: str = "file") -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes, else :class:`InputFileError`.

    Opened without blocking and checked on the open descriptor: a FIFO (which
    would block a reader forever), a device such as ``/dev/zero`` (endless), a
    folder, or a file swapped for one of them after a check are all refused,
    and no more than ``limit`` + 1 bytes are ever read.
    """
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise InputFileError(f"{p}: cannot read the {what}: {exc.strerror or type(exc).__name__}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputFileError(f"{p}: the {what} is not a regular file ({_file_kind(st.st_mode)}); refusing to read it")
        if st.st_size > limit:
            raise InputFileError(f"{p}: the {what} is {st.st_size:,} bytes, more than the {limit:,} it may be")
        chunks, size = [], 0
        while size <= limit and (block := os.read(fd, min(_CHUNK, limit + 1 - size))):
            chunks.append(block)
            size += len(block)
        data = b"".join(chunks)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise InputFileError(f"{p}: the {what} is more than {limit:,} bytes long")
    return data


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a plain file"


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: errno values meaning "this folder cannot take a new file": reported as bad output paths (exit 2).
_NOT_WRITABLE = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST, errno.ENOENT})


def _not_writable(target: Path, folder: Path, exc: OSError) -> OutputPathError:
    return OutputPathError(
        f"cannot write {target}: folder {folder} is not writable by uid {os.geteuid()} "
        f"({exc.strerror or type(exc).__name__})")


def _temp_beside(target: Path) -> Path:
    """A new empty temporary file beside ``target``, named ``.<name>.<pid>.<random>.tmp``.

    The pid says which process wrote it, for :func:`remove_stale_temp_files`.
    A folder that cannot take it is an :class:`OutputPathError` naming the folder.
    """
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        if exc.errno in _NOT_WRITABLE:
            raise _not_writable(target, target.parent, exc) from exc
        raise
    os.close(fd)
    return Path(name)


def _fsync_path(path: Path, *, directory: bool = False) -> None:
    """Flush a file's (or a folder's entries') data to disk, so a rename never outlives the bytes it names."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place on success.

    On any exception the temporary file is removed and ``path`` is untouched.
    """
    target = Path(path)
    tmp = _temp_beside(target)
    try:
        yield tmp
        # mkstemp makes 0600 files; give the mode a plain open() would (0666 less the umask)
        os.chmod(tmp, 0o666 & ~current_umask())
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


def table_format(path: str | os.PathLike[str]) -> str:
    """The writer :func:`write_frame` picks for ``path``'s extension; an unknown one is an error."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in TABLE_EXTENSIONS:
        raise InputFileError(f"{p}: unknown extension '{p.suffix}'; expected one of {', '.join(TABLE_EXTENSIONS)}")
    return ext


def write_frame(df: pd.DataFrame, path: str | os.PathLike[str], *, fmt: str,
                row_group_size: int | None = None) -> None:
    """Write a frame to ``path`` as ``fmt`` (an extension from :func:`table_format`), in place, not atomically.

    For callers that chose the file themselves, e.g. a staged temporary (:class:`StagedFiles`).
    """
    if fmt in (".parquet", ".pq"):
        if row_group_size is None or not any(isinstance(t, pd.CategoricalDtype) for t in df.dtypes):
            df.to_parquet(path, index=False, row_group_size=row_group_size)
        else:
            _write_parquet_compact_dictionaries(df, path, row_group_size)
    elif fmt == ".csv":
        neutralise_formulas(df).to_csv(path, index=False)
    elif fmt == ".xlsx":
        df.to_excel(path, index=False, engine="openpyxl")
    else:
        raise InputFileError(f"{path}: unknown table format '{fmt}'")


def _write_parquet_compact_dictionaries(df: pd.DataFrame, path: str | os.PathLike[str], row_group_size: int) -> None:
    """Parquet in row groups of ``row_group_size`` whose categorical columns hold only their own values.

    Written as is, a categorical column repeats its whole category list as the
    dictionary of every row group: 7 MB of movie ids times 293 row groups was
    2.0 of the 2.1 GB of ``interactions_upd`` at 200,000 movies. Here each row
    group gets a dictionary of just the values it uses; the Arrow schema (a
    dictionary of strings) is unchanged, so readers still get a categorical.
    The frame is converted one row group at a time, so no Arrow copy of the
    whole frame is held beside it.
    """
    with ParquetStreamWriter(path, row_group_size) as writer:
        writer.write(df)


class ParquetStreamWriter:
    """One parquet file from frames given one at a time, cut into row groups of exactly ``row_group_size``.

    The frames are buffered only up to one row group, so a table of any length
    is written from pieces (the Dask engine's partitions) with the same row
    groups, dictionaries and schema as from one frame: the bytes are those
    :func:`write_frame` writes for the concatenated frame. The schema is the
    first frame's; each row group's categorical columns keep only the values
    it uses (see :func:`_write_parquet_compact_dictionaries`).
    """

    def __init__(self, path: str | os.PathLike[str], row_group_size: int) -> None:
        self.path = path
        self.row_group_size = int(row_group_size)
        self.rows = 0
        self._schema = None
        self._writer = None
        self._pending: list[pd.DataFrame] = []
        self._pending_rows = 0

    def __enter__(self) -> ParquetStreamWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
        elif self._writer is not None:
            self._writer.close()

    def write(self, df: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._schema is None:
            self._schema = pa.Schema.from_pandas(df, preserve_index=False)
            self._writer = pq.ParquetWriter(self.path, self._schema)
        self.rows += len(df)
        size = self.row_group_size
        start = 0
        if self._pending_rows:  # fill the open row group first
            take = min(size - self._pending_rows, len(df))
            self._pending.append(df.iloc[:take])
            self._pending_rows += take
            start = take
            if self._pending_rows == size:
                self._flush()
        while len(df) - start >= size:
            self._write_group(df.iloc[start:start + size])
            start += size
        if start < len(df):
            self._pending.append(df.iloc[start:])
            self._pending_rows += len(df) - start

    def _flush(self) -> None:
        if self._pending:
            part = self._pending[0] if len(self._pending) == 1 else pd.concat(self._pending)
            self._write_group(part)
        self._pending, self._pending_rows = [], 0

    def _write_group(self, part: pd.DataFrame) -> None:
        import pyarrow as pa

        table = pa.Table.from_pandas(part, schema=self._schema, preserve_index=False)
        self._writer.write_table(_compact_dictionaries(table), row_group_size=self.row_group_size)

    def close(self) -> None:
        if self._writer is None:
            raise ValueError("no frame was written: the schema is unknown")
        self._flush()
        self._writer.close()


def _compact_dictionaries(table):  # type: ignore[no-untyped-def]
    """Each dictionary column of ``table`` with only the dictionary values it uses."""
    import numpy as np
    import pyarrow as pa

    for i, field in enumerate(table.schema):
        if not pa.types.is_dictionary(field.type):
            continue
        part = table.column(i).combine_chunks()
        if part.null_count:  # no missing values in rekko's categoricals; keep such a column as it is
            continue
        used, local = np.unique(part.indices.to_numpy(zero_copy_only=False), return_inverse=True)
        table = table.set_column(i, field, pa.DictionaryArray.from_arrays(
            pa.array(local, type=field.type.index_type), part.dictionary.take(pa.array(used))))
    return table


def write_frames(frames: Iterable[pd.DataFrame], path: str | os.PathLike[str], *, fmt: str,
                 row_group_size: int | None = None) -> int:
    """:func:`write_frame` for a table given as consecutive frames (parquet or csv); returns the row count.

    Holds one frame (and one row group) at a time. Parquet without
    ``row_group_size`` uses pyarrow's default of 1,048,576 rows per group.
    """
    if fmt in (".parquet", ".pq"):
        with ParquetStreamWriter(path, row_group_size or 1 << 20) as writer:
            for df in frames:
                writer.write(df)
        return writer.rows
    if fmt == ".csv":
        rows = 0
        for i, df in enumerate(frames):
            neutralise_formulas(df).to_csv(path, index=False, mode="w" if i == 0 else "a", header=i == 0)
            rows += len(df)
        return rows
    raise InputFileError(f"{path}: a streamed table is written as parquet or csv, not '{fmt}'")


def write_table(df: pd.DataFrame, path: str | os.PathLike[str], *, row_group_size: int | None = None) -> None:
    """Write a frame atomically as parquet, csv or xlsx, by extension.

    ``row_group_size`` (parquet) lets readers skip row groups by their min/max
    statistics, e.g. every user but one in a file sorted by user.
    """
    fmt = table_format(path)
    with atomic_path(path) as tmp:
        write_frame(df, tmp, fmt=fmt, row_group_size=row_group_size)


class StagedFiles:
    """Several files written beside their targets under temporary names, then renamed into place together.

    Until :meth:`publish` every target keeps its old content, so a failure
    while writing (disk full, a bug, a kill) leaves the previous set whole;
    leaving the ``with`` block removes whatever was not published. The same
    write-then-rename as :func:`atomic_path`, for a set of files: git's
    ``.lock`` files for refs work this way.

    :meth:`publish` renames in staging order, so the file staged last (the
    pipeline stages its manifest last) replaces its target last. Before the
    first rename it checks that every rename can succeed
    (:func:`check_replaceable`), flushes every staged file to disk and keeps a
    hard link (or copy) of every old target; if any rename fails, the targets
    already replaced get their old files back before the error propagates.
    """

    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path]] = []

    def __enter__(self) -> StagedFiles:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.discard()

    def stage(self, target: str | os.PathLike[str]) -> Path:
        """A new temporary file beside ``target`` for the caller to fill; published over ``target`` later."""
        target = Path(target)
        tmp = _temp_beside(target)
        self._pending.append((target, tmp))
        return tmp

    @property
    def targets(self) -> list[Path]:
        return [target for target, _ in self._pending]

    def publish(self) -> None:
        """Rename every staged file over its target, in staging order: all of them, or (on failure) none.

        Nothing is touched until every staged file is on disk (fsync), every
        target is known replaceable and every old target has a backup; a
        failing rename puts the backups back (each rename is atomic), so a
        reader of the old set finds it whole again.
        """
        check_replaceable(self.targets)
        mode = 0o666 & ~current_umask()
        for _, tmp in self._pending:
            os.chmod(tmp, mode)
            _fsync_path(tmp)
        folders = {target.parent for target, _ in self._pending}
        backups: dict[Path, Path | None] = {}
        try:
            for target, _ in self._pending:
                backups[target] = _backup(target)
            for folder in folders:  # the backups' names reach the disk before any target changes
                with contextlib.suppress(OSError):
                    _fsync_path(folder, directory=True)
            replaced: list[Path] = []
            try:
                for target, tmp in self._pending:
                    os.replace(tmp, target)
                    replaced.append(target)
            except BaseException:
                _restore(replaced, backups)
                raise
            self._pending.clear()
        finally:
            for backup in backups.values():
                if backup is not None:
                    with contextlib.suppress(OSError):
                        backup.unlink()
        for folder in folders:
            with contextlib.suppress(OSError):  # not every filesystem can fsync a folder
                _fsync_path(folder, directory=True)

    def discard(self) -> None:
        """Remove the temporary files not published yet."""
        for _, tmp in self._pending:
            tmp.unlink(missing_ok=True)
        self._pending.clear()


def _backup(target: Path) -> Path | None:
    """A second name for ``target``'s current file (hard link, else a copy), or None when there is no file."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise OutputPathError(f"cannot replace {target}: it is not a regular file")
    backup = _temp_beside(target)
    backup.unlink()
    try:
        os.link(target, backup)
    except OSError:  # no hard links here (or protected_hardlinks): a copy keeps the old bytes as well
        shutil.copyfile(target, backup)
        _fsync_path(backup)
    return backup


def _restore(replaced: list[Path], backups: dict[Path, Path | None]) -> None:
    """Undo the renames of ``replaced``: each gets its backup back, or is removed if it did not exist before."""
    for target in reversed(replaced):
        backup = backups.get(target)
        with contextlib.suppress(OSError):
            if backup is None:
                target.unlink()
            else:
                os.replace(backup, target)
                backups[target] = None


def check_replaceable(targets: Iterable[str | os.PathLike[str]]) -> None:
    """Fail with :class:`OutputPathError` unless this process may rename a new file over each target.

    Writable folders are not enough: in a sticky folder (mode 1777, like
    ``/tmp`` or a shared ``data/``) a file may be replaced or removed only by
    its owner, the folder's owner or root (``rename(2)``: EPERM). Checked for
    every target before anything is touched, so such a run fails with the old
    set intact, naming the file and its owner.
    """
    euid = os.geteuid()
    if euid == 0:
        return
    for target in map(Path, targets):
        try:
            st = os.lstat(target)
            folder = os.stat(target.parent)
        except FileNotFoundError:
            continue
        if folder.st_mode & stat.S_ISVTX and st.st_uid != euid and folder.st_uid != euid:
            raise OutputPathError(
                f"cannot replace {target}: it belongs to uid {st.st_uid} and its folder {target.parent} is sticky "
                f"(mode {stat.S_IMODE(folder.st_mode):o}, owner uid {folder.st_uid}), so uid {euid} may not "
                "replace it; run as its owner, or move the old set away first")


def check_writable_folder(folder: str | os.PathLike[str], *, what: str, create: bool) -> None:
    """Fail with :class:`OutputPathError` unless a new file can be created in ``folder``.

    The test is the real thing, a temporary file created and removed, not
    permission bits: it sees read-only mounts, ACLs and ownership alike (root
    passes wherever the kernel lets root write). Without ``create`` a missing
    folder is judged by its nearest existing parent and nothing is created;
    with it the folder is made first.
    """
    folder = Path(folder)
    probe_in = folder
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _folder_error(folder, what, exc) from exc
    else:
        while not probe_in.exists() and probe_in != probe_in.parent:
            if os.path.lexists(probe_in):
                raise OutputPathError(f"cannot write {what}: {probe_in} is a broken symbolic link")
            probe_in = probe_in.parent
    if not probe_in.is_dir():
        raise OutputPathError(f"cannot write {what}: {probe_in} is a file, not a folder")
    try:
        fd, name = tempfile.mkstemp(prefix=".rekko-write-test.", suffix=".tmp", dir=probe_in)
    except OSError as exc:
        raise _folder_error(probe_in, what, exc) from exc
    os.close(fd)
    os.unlink(name)


def _folder_error(folder: Path, what: str, exc: OSError) -> OutputPathError:
    return OutputPathError(f"cannot write {what}: folder {folder} is not writable by uid {os.geteuid()} "
                           f"({exc.strerror or type(exc).__name__})")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temp_files(targets: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Remove temporary files that interrupted writers left beside ``targets``; return them.

    A kill between creating ``.<name>.<pid>.<random>.tmp`` and renaming it
    leaves it behind. Call this only while holding the lock every writer of
    ``targets`` holds (:mod:`rekko.locking`): then no live writer of those
    names exists, whatever process ids say (in a container each run may be
    pid 1). As a second guard a file whose pid is a live process here other
    than this one is kept: something outside the lock may still be writing it.
    """
    removed: list[Path] = []
    me = os.getpid()
    for target in map(Path, targets):
        prefix = f".{target.name}."
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            for tmp in target.parent.glob(f"{glob.escape(prefix)}*.tmp"):
                pid_text = tmp.name[len(prefix):].split(".", 1)[0]
                if pid_text.isdigit() and int(pid_text) != me and _pid_alive(int(pid_text)):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
                    removed.append(tmp)
    return removed
