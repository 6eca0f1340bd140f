"""Where batch recommendations go: one file, or a partitioned parquet dataset published atomically.

``--output recs.parquet`` / ``recs.csv`` is one file (:func:`rekko.recommend.present.write_batch`).
``--output recs/`` (or any path without a file suffix, or an existing folder) is a dataset::

    recs/part-00000.parquet     one part per partition of users, in user order
    recs/part-00001.parquet
    recs/_manifest.json         the parts with their rows, users, first/last user id and sha256
    recs/_SUCCESS               empty: the dataset is complete

Parts are written into a hidden staging folder beside the target
(``.recs.staging-<id>``) by whoever scores them (a Dask worker, or this
process for the local engine); only when every part is there does the
publishing process write ``_manifest.json`` and ``_SUCCESS`` and rename the
folder into place. A reader therefore sees the previous dataset or the new
one, never a mix or a half-written part. ``pandas.read_parquet("recs")``
(pyarrow) skips the ``_``-prefixed files and reads the parts in name order,
which is user order.

Both engines write this form; the parts differ (the local engine cuts one
part per ranking block), the rows read back do not.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from rekko.columns import Columns as C
from rekko.exceptions import ConfigError
from rekko.io import current_umask, atomic_open, atomic_path

log = logging.getLogger(__name__)

#: File suffixes that make ``--output`` one file; anything else without a suffix is a dataset folder.
FILE_SUFFIXES = (".parquet", ".pq", ".csv")
DATASET_FORMAT = "rekko.batch-recommendations/1"
MANIFEST_FILE = "_manifest.json"
SUCCESS_FILE = "_SUCCESS"
#: Inside a staging folder: the file its publishing process holds an exclusive ``flock`` on while it runs.
#: The kernel drops the lock when that process ends, however it ends (SIGKILL included), so a staging folder
#: whose lock can be taken belongs to no running batch and may be removed (:func:`remove_stale_stages`).
STAGE_LOCK = ".rekko-stage.lock"
#: The columns of every batch output, file or part: movie ids dictionary-encoded (a catalogue, not a string a row).
BATCH_SCHEMA = pa.schema([(C.USER, pa.int64()), (C.MOVIE, pa.dictionary(pa.int32(), pa.string())),
                          (C.SCORE, pa.float64()), (C.RANK, pa.int32())])


def output_kind(text: str | os.PathLike[str]) -> str:
    """``"file"`` or ``"dataset"`` for an ``--output`` value (a trailing slash or an existing folder: dataset)."""
    raw = os.fspath(text)
    path = Path(raw)
    if raw.endswith(("/", os.sep)) or path.is_dir():
        return "dataset"
    suffix = path.suffix.lower()
    if suffix in FILE_SUFFIXES:
        return "file"
    if not suffix:
        return "dataset"
    raise ConfigError(f"{raw}: batch output must be a file ending in {', '.join(FILE_SUFFIXES)} or a folder "
                      f"(a path without a suffix, or ending in '/'), got the suffix '{path.suffix}'")


@dataclass(frozen=True)
class PartInfo:
    """One written part: what ``_manifest.json`` lists about it."""

    file: str
    rows: int
    users: int
    first_user: int | None
    last_user: int | None
    sha256: str
    bytes: int


def part_name(index: int) -> str:
    """``part-00012.parquet``: zero-padded so that name order is partition (user) order."""
    return f"part-{index:05d}.parquet"


def write_part(blocks: Iterable[pd.DataFrame], path: Path) -> PartInfo:
    """Write ranking blocks as one parquet part, atomically (temporary file + rename), and describe it."""
    rows = users = 0
    first = last = None
    with atomic_path(path) as tmp:
        with pq.ParquetWriter(tmp, BATCH_SCHEMA) as writer:
            for block in blocks:
                if not len(block):
                    continue
                writer.write_table(pa.Table.from_pandas(block, schema=BATCH_SCHEMA, preserve_index=False))
                ids = block[C.USER].to_numpy()
                rows, users = rows + len(block), users + int(pd.unique(ids).size)
                first = int(ids[0]) if first is None else first
                last = int(ids[-1])
        digest = hashlib.sha256()
        with open(tmp, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
            os.fsync(fh.fileno())
        size = tmp.stat().st_size
    return PartInfo(path.name, rows, users, first, last, digest.hexdigest(), size)


class DatasetStage:
    """A staging folder for a dataset at ``target``, then published by one rename (see the module docstring).

    Use as a context manager: leaving it without :meth:`publish` (an error, an
    interrupt) removes the staging folder and leaves ``target`` as it was.
    The target is checked up front: an existing file, or a folder holding
    anything but a previous rekko dataset, is refused (exit 2) rather than
    replaced.
    """

    def __init__(self, target: Path) -> None:
        self.target = Path(os.path.abspath(target))
        check_dataset_target(self.target)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.path = self.target.parent / f".{self.target.name}.staging-{uuid.uuid4().hex[:12]}"
        self.published = False

    def __enter__(self) -> DatasetStage:
        try:
            self.path.mkdir()
        except OSError as exc:
            raise ConfigError(f"{self.target}: cannot create the staging folder {self.path} ({exc.strerror})") from None
        os.chmod(self.path, 0o777 & ~current_umask())  # mkdir honours the umask; say so explicitly for other uids' workers
        self._lock_fd = os.open(self.path / STAGE_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)  # a new file nobody else knows yet: taken at once
        os.pwrite(self._lock_fd, f"{os.getpid()}\n".encode(), 0)
        removed = remove_stale_stages(self.target, keep=self.path)
        if removed:
            log.warning("removed %d staging folder(s) that interrupted batch runs left beside %s: %s", len(removed),
                        self.target, ", ".join(p.name for p in removed[:3]) + (" ..." if len(removed) > 3 else ""))
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.published:
            shutil.rmtree(self.path, ignore_errors=True)
        self._release()

    def _release(self) -> None:
        fd = getattr(self, "_lock_fd", None)
        if fd is not None:
            self._lock_fd = None
            os.close(fd)

    def part_path(self, index: int) -> Path:
        return self.path / part_name(index)

    def publish(self, parts: list[PartInfo], meta: dict[str, Any]) -> dict[str, Any]:
        """Check every part is in place, write ``_manifest.json`` and ``_SUCCESS``, rename into ``target``.

        No users at all still gives one (empty) part, so the folder reads as an empty table.
        """
        if not parts:
            parts = [write_part([], self.part_path(0))]
        for part in parts:
            got = self.path / part.file
            if not got.is_file() or got.stat().st_size != part.bytes:
                raise ConfigError(f"{got}: a part written by a worker is missing or changed in the staging folder; "
                                  "is the output on a folder every worker shares at the same path?")
        found = sorted(p.name for p in self.path.iterdir() if not p.name.startswith((".", "_")))
        expected = sorted(p.file for p in parts)
        if found != expected:
            extra = sorted(set(found) - set(expected))
            raise ConfigError(f"{self.path}: unexpected files in the staging folder: {extra[:5]}")
        manifest = {
            "format": DATASET_FORMAT,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **meta,
            "rows": sum(p.rows for p in parts),
            "users": sum(p.users for p in parts),
            "parts": [asdict(p) for p in parts],
        }
        with atomic_open(self.path / MANIFEST_FILE, "w", encoding="utf-8") as fh:
            json.dump(manifest, fh, indent=2, ensure_ascii=False)
        with atomic_open(self.path / SUCCESS_FILE, "w", encoding="utf-8"):
            pass
        # the lock file leaves the folder before it becomes the dataset; its open descriptor keeps the lock,
        # and a staging folder without one is never taken for stale (see remove_stale_stages)
        (self.path / STAGE_LOCK).unlink(missing_ok=True)
        old = None
        if self.target.exists():
            check_dataset_target(self.target)  # again: it may have changed while the parts were scored
            old = self.target.parent / f".{self.target.name}.old-{uuid.uuid4().hex[:12]}"
            os.rename(self.target, old)
        try:
            os.rename(self.path, self.target)
        except OSError:
            if old is not None:
                os.rename(old, self.target)
            raise
        self.published = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        _fsync_dir(self.target.parent)
        return manifest


def remove_stale_stages(target: Path, *, keep: Path | None = None) -> list[Path]:
    """Remove the ``.<name>.staging-*`` folders beside ``target`` whose batch run is over; return them.

    A staging folder is provably abandoned only when its :data:`STAGE_LOCK` can be locked: the process that
    created it held that ``flock`` from the start and the kernel released it when the process ended (a
    SIGKILL too). It is removed while locked, after checking that the lock file is still the one in the
    folder of that name. A staging folder without a lock file (rekko before this rule, or a run killed in
    the instant between creating the folder and its lock, or one about to publish) is kept: nothing proves
    its writer is gone.
    """
    removed: list[Path] = []
    prefix = f".{target.name}.staging-"
    with contextlib.suppress(OSError):
        candidates = [p for p in target.parent.iterdir() if p.name.startswith(prefix) and p != keep]
        for folder in sorted(candidates):
            if _remove_if_abandoned(folder):
                removed.append(folder)
    return removed


def _remove_if_abandoned(folder: Path) -> bool:
    lock = folder / STAGE_LOCK
    try:
        fd = os.open(lock, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:  # no lock file (or not ours to open): not provably abandoned
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: a batch is writing into it right now
            return False
        try:  # the same file still sits in that folder: it was not published or replaced meanwhile
            same = os.path.samestat(os.fstat(fd), os.lstat(lock))
        except OSError:
            same = False
        if not same or folder.is_symlink() or not folder.is_dir():
            return False
        shutil.rmtree(folder, ignore_errors=True)
        return not folder.exists()
    finally:
        os.close(fd)


def check_dataset_target(target: Path) -> None:
    """Refuse a target that is a file, or a folder with anything but a previous rekko dataset in it."""
    if target.is_file():
        raise ConfigError(f"{target}: is a file; a batch dataset goes to a folder (use a .parquet or .csv name "
                          "for one file)")
    if target.is_dir():
        entries = [p.name for p in target.iterdir()]
        if entries and MANIFEST_FILE not in entries and SUCCESS_FILE not in entries:
            raise ConfigError(f"{target}: folder is not empty and holds no rekko batch dataset "
                              f"({', '.join(sorted(entries)[:3])}...); refusing to replace it. "
                              "Choose a new or empty folder")


def read_dataset_manifest(target: Path) -> dict[str, Any]:
    """The ``_manifest.json`` of a published dataset."""
    return json.loads((Path(target) / MANIFEST_FILE).read_text(encoding="utf-8"))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
