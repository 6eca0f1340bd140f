"""Batch recommend on a Dask cluster: partitions of users scored on the workers with the one kernel.

How the work is split
---------------------
``interactions_upd`` is sorted by user in small row groups. The client reads
its ``user_id`` column one row group at a time (verified chunk by chunk
against the manifest) and cuts the users into contiguous partitions of about
``partition_rows`` interaction rows each, never splitting a user. A partition
is (first user, last user, the row groups holding them): a worker reads just
those row groups, keeps those users, and ranks them with
:meth:`Recommender.iter_recommend_all`, the same kernel, blend and tie rule as
the local batch. Lists are therefore identical to the local engine's, and in
the same user order.

What each process holds
-----------------------
* The client: the manifest, one row group's user ids at a time, and the list
  of partitions. It never loads a similarity matrix.
* Each worker: the catalogue-sized artifacts (movies, the similarity
  matrices, their blend), loaded and verified once per process and kept in a
  per-process cache keyed by the manifest's sha256 (:func:`_catalogue`), plus
  the partition in hand: its histories and one ranking block of results.
  Nothing log-sized is ever gathered in one process.

Workers must see the artifacts (and, for a folder output, the output's
parent folder) at the same absolute path as the client: a shared folder, or
the same volume mounted at the same path in every container. This is checked
on every worker before any work is sent (:func:`_check_worker`), and a worker
that cannot read them stops the run with exit 2 naming the worker and the
file.

Output
------
A folder (``--output recs/``): each worker writes its partitions as parquet
parts into a staging folder beside the target; the client publishes it with
``_manifest.json`` and ``_SUCCESS`` by one rename
(:mod:`rekko.recommend.batch_output`). One file (``--output recs.parquet`` or
``.csv``, for runs small enough to pass through one process): the client
writes the partitions in user order as they arrive, holding at most a few in
flight.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from rekko import progress
from rekko.artifacts import ChunkTable, Manifest, read_manifest
from rekko.collisions import check_artifact_reader_outputs
from rekko.columns import Columns as C
from rekko.distributed import MIN_PARTITION_ROWS, PARTITION_ROWS
from rekko.exceptions import ArtifactError, ConfigError, RekkoError
from rekko.distributed.cluster import safe_address
from rekko.paths import ArtifactPaths
from rekko.recommend.present import write_batch
from rekko.recommend.recommender import Recommender, load_catalogue, read_user_history, validate_n
from rekko.recommend.batch_output import (
    DatasetStage,
    PartInfo,
    output_kind,
    part_name,
    write_part,
)

log = logging.getLogger("rekko.progress.dask")

#: How long a run waits for a scheduler that has no worker yet.
WORKER_WAIT_SECONDS = 60.0
#: The remedy every "a worker cannot read it" message ends with.
SHARED_FOLDER_HINT = ("every Dask worker must see the artifacts (and a folder output's parent) at the same path as "
                      "this client: put them on a shared folder (NFS, a cloud file share) or mount the same volume "
                      "at the same path in every container")


class WorkerError(ConfigError):
    """A Dask worker could not do its part (unreadable artifacts, an unwritable output): exit 2.

    A plain message and a plain constructor, so it survives the trip from the
    worker to the client (Dask pickles exceptions by their arguments).
    """


@dataclass(frozen=True)
class BatchJob:
    """What a worker needs to score partitions: absolute artifact paths, the manifest's digest, n."""

    paths: ArtifactPaths
    manifest_path: Path
    manifest_sha256: str
    n: int
    has_cf: bool = True

    @property
    def key(self) -> tuple[str, ...]:
        return (self.manifest_sha256, str(self.manifest_path),
                *(str(getattr(self.paths, f.name)) for f in fields(ArtifactPaths)))


@dataclass(frozen=True)
class UserPartition:
    """Users ``first_user..last_user`` (inclusive), all of whose rows lie in ``row_groups``."""

    index: int
    first_user: int
    last_user: int
    row_groups: tuple[int, ...]
    rows: int
    users: int


# ----------------------------------------------------------------------------- planning (client)


def absolute_paths(paths: ArtifactPaths) -> ArtifactPaths:
    """The same files as absolute paths: what a worker in another process (or container) opens."""
    return ArtifactPaths(**{f.name: Path(os.path.abspath(getattr(paths, f.name))) for f in fields(ArtifactPaths)})


def plan_partitions(user_groups: Iterator[tuple[int, np.ndarray]], target_rows: int) -> list[UserPartition]:
    """Cut users sorted by id into partitions of about ``target_rows`` rows, never splitting a user.

    ``user_groups`` yields (row group index, that row group's ``user_id``
    values), in file order. Memory: one row group's ids at a time. A user
    whose rows continue into the next row group is held open until they end.
    """
    if target_rows < 1:
        raise ConfigError(f"rows per partition must be >= 1, got {target_rows}")
    parts: list[UserPartition] = []
    cur: dict[str, Any] | None = None  # the partition being filled
    pending: tuple[int, int, int, int] | None = None  # (user, rows, first and last row group) of the last user seen
    last_seen: int | None = None

    def add(users: np.ndarray, counts: np.ndarray, first_rgs: np.ndarray, last_rg: int) -> None:
        """Complete users (in id order) whose rows end in row group ``last_rg``; cut where a partition fills."""
        nonlocal cur
        while len(users):
            if cur is None:
                cur = {"first": int(users[0]), "first_rg": int(first_rgs[0]), "rows": 0, "users": 0}
            total = cur["rows"] + np.cumsum(counts)
            i = int(np.searchsorted(total, target_rows, side="left"))
            take = min(i + 1, len(users))
            cur["rows"] = int(total[take - 1])
            cur["users"] += take
            cur["last"], cur["last_rg"] = int(users[take - 1]), last_rg
            if i < len(users):
                close()
            users, counts, first_rgs = users[take:], counts[take:], first_rgs[take:]

    def close() -> None:
        nonlocal cur
        if cur is not None:
            parts.append(UserPartition(len(parts), int(cur["first"]), int(cur["last"]),
                                       tuple(range(cur["first_rg"], cur["last_rg"] + 1)), int(cur["rows"]),
                                       int(cur["users"])))
            cur = None

    for rg, ids in user_groups:
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids):
            continue
        if (len(ids) > 1 and (ids[1:] < ids[:-1]).any()) or (last_seen is not None and ids[0] < last_seen):
            raise ArtifactError("interactions_upd is not sorted by user_id (row group "
                                f"{rg}); distributed batch needs the pipeline's sorted layout")
        last_seen = int(ids[-1])
        starts = np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1])))
        users = ids[starts]
        counts = np.diff(np.append(starts, len(ids)))
        first_rgs = np.full(len(users), rg)
        if pending is not None:
            if users[0] == pending[0]:  # the open user goes on in this row group
                counts[0] += pending[1]
                first_rgs[0] = pending[2]
            else:
                add(np.array([pending[0]]), np.array([pending[1]]), np.array([pending[2]]), pending[3])
        # every user but the last is complete in this row group
        add(users[:-1], counts[:-1], first_rgs[:-1], rg)
        pending = (int(users[-1]), int(counts[-1]), int(first_rgs[-1]), rg)
    if pending is not None:
        add(np.array([pending[0]]), np.array([pending[1]]), np.array([pending[2]]), pending[3])
    close()
    return parts


def _row_group_users(table: ChunkTable, path: Path) -> Iterator[tuple[int, np.ndarray]]:
    """(row group, user ids) of ``interactions_upd``, one row group at a time, read through verified chunks."""
    with table.open(path, "interactions_upd") as vf:
        try:
            pf = pq.ParquetFile(vf)
            groups = pf.metadata.num_row_groups
        except Exception as exc:  # noqa: BLE001 - verified bytes that do not parse: a schema mismatch
            raise ArtifactError(f"{path}: cannot read artifact: {type(exc).__name__}: {exc}") from exc
        if C.USER not in pf.schema_arrow.names:
            raise ArtifactError(f"{path}: interactions artifact has no {C.USER} column")
        for rg in range(groups):
            yield rg, pf.read_row_group(rg, columns=[C.USER]).column(0).to_numpy()


def auto_partition_rows(rows: int, threads: int) -> int:
    """About four partitions per worker thread (so the threads share the work evenly), within [MIN_PARTITION_ROWS, PARTITION_ROWS]."""
    return int(min(PARTITION_ROWS, max(MIN_PARTITION_ROWS, -(-rows // (4 * max(1, threads))))))


def plan(paths: ArtifactPaths, partition_rows: int | None = None,
         threads: int = 1) -> tuple[Manifest, str, list[UserPartition], int]:
    """The manifest, its sha256, the partitions of users and the rows per partition, read on the client.

    Reads the manifest and ``interactions_upd``'s user ids only: no similarity matrix.
    """
    manifest_path = paths.manifest
    manifest = read_manifest(manifest_path)
    digest = hashlib.sha256(manifest_path.read_bytes()).hexdigest()
    table = ChunkTable(manifest, manifest_path)
    if partition_rows is None:
        partition_rows = auto_partition_rows(int(manifest.artifacts.get("interactions_upd", {}).get("rows") or 0),
                                             threads)
    parts = plan_partitions(_row_group_users(table, paths.interactions_upd), partition_rows)
    return manifest, digest, parts, partition_rows


# ----------------------------------------------------------------------------- on the workers


@dataclass
class _Catalogue:
    recommender: Any  # a Recommender over the catalogue with no users (swapped in per partition)
    table: ChunkTable
    n_movies: int


_CACHE: dict[tuple[str, ...], _Catalogue] = {}
_CACHE_LOCK = threading.Lock()
#: How many times this process loaded a catalogue (the tests check it is once per worker, not per task).
LOADS = 0


def _catalogue(job: BatchJob) -> _Catalogue:
    """The catalogue-sized artifacts of ``job``, loaded once per process (threads share it; one set kept)."""
    global LOADS
    with _CACHE_LOCK:
        got = _CACHE.get(job.key)
        if got is None:
            _CACHE.clear()  # a worker that served an older artifact set drops it
            got = _load_catalogue(job)
            _CACHE[job.key] = got
            LOADS += 1
        return got


def _load_catalogue(job: BatchJob) -> _Catalogue:
    try:
        data = job.manifest_path.read_bytes()
    except OSError as exc:
        raise WorkerError(f"{job.manifest_path}: cannot read the manifest ({exc.strerror}); {SHARED_FOLDER_HINT}") from None
    if hashlib.sha256(data).hexdigest() != job.manifest_sha256:
        raise WorkerError(f"{job.manifest_path}: this worker sees another manifest than the client (another "
                          f"pipeline run, or another folder at the same path); {SHARED_FOLDER_HINT}")
    manifest = Manifest.from_json(data.decode("utf-8"), source=str(job.manifest_path))
    catalogue = load_catalogue(job.paths, manifest)
    return _Catalogue(Recommender(catalogue), ChunkTable(manifest, job.manifest_path), len(catalogue.movie_ids))


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return f"pid {os.getpid()}"


def score_partition(job: BatchJob, part: UserPartition, staging: str | None) -> PartInfo | pd.DataFrame:
    """Rank one partition's users on this worker: a part file in ``staging``, or the frame itself."""
    try:
        cat = _catalogue(job)
        user_ids, history = read_user_history(cat.table, job.paths.interactions_upd, list(part.row_groups),
                                              part.first_user, part.last_user, cat.n_movies)
        if len(user_ids) != part.users:
            raise ArtifactError(f"{job.paths.interactions_upd}: partition {part.index} holds {len(user_ids)} users, "
                                f"the client counted {part.users}; the file changed during the run")
        blocks = cat.recommender.with_history(user_ids, history).iter_recommend_all(job.n, parallel=False)
        if staging is not None:
            return write_part(blocks, Path(staging) / part_name(part.index))
        frames = list(blocks)
        return pd.concat(frames, ignore_index=True) if len(frames) != 1 else frames[0]
    except WorkerError:
        raise
    except RekkoError as exc:
        raise WorkerError(f"Dask worker {_worker_name()}: {exc}") from None
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        raise WorkerError(f"Dask worker {_worker_name()}: cannot access{where} ({exc.strerror or exc}); "
                          f"{SHARED_FOLDER_HINT}") from None


def _check_worker(job: BatchJob, staging: str | None) -> str | None:
    """Run on every worker before any work: can it read the artifacts (and write the staging folder)?"""
    files = [("the manifest", job.manifest_path), ("the chunk table", job.paths.chunk_table),
             ("movies_md_upd", job.paths.movies_upd), ("interactions_upd", job.paths.interactions_upd),
             ("cos_sim_md", job.paths.sim_md), ("cos_sim_desc", job.paths.sim_desc)]
    if job.has_cf:
        files.append(("cos_sim_cf", job.paths.sim_cf))
    for what, path in files:
        try:
            with open(path, "rb") as fh:
                if what != "the manifest":
                    fh.read(1)
                elif hashlib.sha256(fh.read()).hexdigest() != job.manifest_sha256:
                    return f"{path}: this worker sees another manifest than the client"
        except OSError as exc:
            return f"cannot read {what} {path} ({exc.strerror or exc})"
    if staging is not None:
        probe = Path(staging) / f".probe-{uuid.uuid4().hex[:8]}"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            return f"cannot write the output's staging folder {staging} ({exc.strerror or exc})"
    return None


# ----------------------------------------------------------------------------- the run (client)


@dataclass(frozen=True)
class BatchResult:
    rows: int
    users: int
    partitions: int
    output: Path
    kind: str  # "file" or "dataset"


def _wait_for_workers(client: Any, address: str) -> int:
    workers = len(client.scheduler_info().get("workers", {}))
    if workers:
        return workers
    log.info("dask: waiting up to %.0f s for a worker to join %s", WORKER_WAIT_SECONDS, address)
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_SECONDS)
    except (TimeoutError, OSError):
        shown = safe_address(address)
        raise ConfigError(f"the Dask scheduler at {shown} has no workers (waited {WORKER_WAIT_SECONDS:.0f} s); "
                          f"start some (`dask worker {shown}`, or REKKO_MODE=worker in the image)") from None
    return len(client.scheduler_info().get("workers", {}))


def _preflight(client: Any, job: BatchJob, staging: str | None) -> None:
    answers = client.run(_check_worker, job, staging)
    bad = {addr: msg for addr, msg in sorted(answers.items()) if msg}
    if bad:
        shown = "; ".join(f"worker {addr}: {msg}" for addr, msg in list(bad.items())[:3])
        more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
        raise WorkerError(f"{len(bad)} of {len(answers)} Dask workers cannot use the artifacts: {shown}{more}. "
                          f"{SHARED_FOLDER_HINT[0].upper()}{SHARED_FOLDER_HINT[1:]}")


def recommend_all(client: Any, paths: ArtifactPaths, n: int, output: str | os.PathLike[str], *,
                  partition_rows: int | None = None) -> BatchResult:
    """Top-``n`` for every user of the artifacts, scored on ``client``'s cluster, written to ``output``."""
    n = validate_n(n)
    kind = output_kind(output)
    paths = absolute_paths(paths)
    target = Path(os.path.abspath(output))
    check_artifact_reader_outputs(paths, {"--output": target}, folders=["--output"] if kind == "dataset" else [])
    address = str(getattr(client, "scheduler", None) and client.scheduler.address)
    workers = _wait_for_workers(client, address)
    threads = sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values())
    with progress.stage("batch recommend: planning partitions", of=str(paths.interactions_upd)) as report:
        manifest, digest, parts, partition_rows = plan(paths, partition_rows, threads)
        report.facts = {"users": sum(p.users for p in parts), "partitions": len(parts),
                        "rows per partition": f"~{partition_rows:,}"}
    job = BatchJob(paths, paths.manifest, digest, n, has_cf="sim_cf" in manifest.artifacts)
    users = sum(p.users for p in parts)
    token = uuid.uuid4().hex[:8]

    def submit(part: UserPartition, staging: str | None) -> Any:
        return client.submit(score_partition, job, part, staging, key=f"rekko-batch-{token}-{part.index:05d}",
                             pure=False, priority=-part.index)

    of = f"{progress.count(users, 'users')} in {len(parts)} partitions on {workers} workers"
    if kind == "dataset":
        with DatasetStage(target) as stage, progress.stage("batch recommend (dask)", of=of) as report:
            _preflight(client, job, str(stage.path))
            infos = _run_dataset(client, [submit(p, str(stage.path)) for p in parts], len(parts))
            meta = {"engine": "dask", "n": n, "partitions": len(parts), "partition_rows": partition_rows,
                    "artifacts_manifest": str(paths.manifest), "artifacts_manifest_sha256": digest}
            published = stage.publish(infos, meta)
            report.rows = published["rows"]
            report.facts = {"users": published["users"]}
        rows, got_users = published["rows"], published["users"]
    else:
        _preflight(client, job, None)
        with progress.stage("batch recommend (dask)", of=of) as report:
            window = max(2, 2 * threads)
            frames = _run_ordered(client, parts, lambda p: submit(p, None), window)
            rows, got_users = write_batch(progress.track(frames, total=len(parts), desc="batch recommend",
                                                         unit="partition"), target)
            report.rows = rows
            report.facts = {"users": got_users}
    if got_users != users:
        raise ArtifactError(f"{paths.interactions_upd}: wrote {got_users} users, planned {users}")
    return BatchResult(rows, got_users, len(parts), target, kind)


def _run_dataset(client: Any, futures: list[Any], total: int) -> list[PartInfo]:
    """Wait for every part as it finishes (progress per partition); the first failure cancels the rest."""
    from distributed import as_completed

    infos: list[PartInfo | None] = [None] * total
    try:
        done = as_completed(futures, with_results=False)
        for future in progress.track(done, total=total, desc="batch recommend", unit="partition"):
            info = future.result()
            infos[int(future.key.rsplit("-", 1)[1])] = info
            future.release()
    except BaseException:
        client.cancel(futures)
        raise
    return [i for i in infos if i is not None]


def _run_ordered(client: Any, parts: list[UserPartition], submit: Any, window: int) -> Iterator[pd.DataFrame]:
    """Partition frames in user order, at most ``window`` partitions submitted ahead of the one written."""
    pending: deque[Any] = deque()
    todo = iter(parts)
    try:
        for part in todo:
            pending.append(submit(part))
            if len(pending) >= window:
                break
        while pending:
            future = pending.popleft()
            frame = future.result()
            future.release()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append(submit(nxt))
            yield frame
    finally:
        if pending:
            client.cancel(list(pending))
