"""Several worker processes over one copy of the artifacts (``rekko serve --workers N``).

The parent process loads and verifies the artifacts (exactly as a single
worker does), then *exports* the derived arrays — history, similarity and
combined matrices as CSR parts, movie ids/titles as fixed-width strings, movie
details as pre-encoded JSON — as ``.npy`` files into a bundle folder. Workers
memory-map the bundle read-only, so every array lives once in the page cache
however many workers map it: a worker's own memory is the interpreter and
FastAPI, not the data.

Reload keeps the single-worker guarantees. The parent's watcher builds and
verifies the next generation, writes it to a new bundle folder (renamed into
place when complete), then atomically replaces ``current.json``, which names
the bundle and carries the parent's reload status. Each worker polls
``current.json`` and swaps its whole snapshot reference when the bundle
changes. Old bundles are deleted after the next swap; a worker still mapping
one keeps its pages until it lets go (POSIX unlink semantics).

Each server's folder (``rekko-serve-*`` in the temp dir) carries a
``server.pid``; a server starting removes the folders whose server process is
gone (killed with SIGKILL, so its ``finally`` never ran), and workers shut
down when their parent dies instead of serving on as orphans.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import stat
import tempfile
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from rekko.artifacts import Manifest
from rekko.exceptions import ArtifactError
from rekko.io import atomic_open
from rekko.paths import ArtifactPaths
from rekko.config import BlendWeights
from rekko.recommend import SIM_KINDS, Artifacts, Recommender
from rekko.recommend.kernel import History, Scorer
from rekko.serve.catalog import json_value
from rekko.serve.state import ArtifactState, Poller, Snapshot, _now, file_fingerprint, load_snapshot

if TYPE_CHECKING:  # FastAPI and uvicorn are imported only where a server starts
    from rekko.serve.app import AccessPolicy, ConnectionLimits

log = logging.getLogger(__name__)

ENV_ROOT = "REKKO_SERVE_SHARED_DIR"
ENV_INTERVAL = "REKKO_SERVE_RELOAD_INTERVAL"
ENV_PARENT = "REKKO_SERVE_PARENT_PID"
ENV_ALLOWED_HOSTS = "REKKO_SERVE_ALLOWED_HOSTS"
CURRENT = "current.json"
BUNDLE_FORMAT = "rekko.serve-bundle/1"
_HINT = str(ArtifactError(""))  # the "rerun the pipeline" sentence every ArtifactError ends with


# -- the bundle on disk -----------------------------------------------------------------
def _save_csr(folder: Path, name: str, m: sp.csr_matrix) -> None:
    # indices and indptr in one dtype, so scipy wraps the mapped arrays instead of converting them
    idx = np.int32 if max(m.nnz, *m.shape) < np.iinfo(np.int32).max else np.int64
    np.save(folder / f"{name}.data.npy", np.ascontiguousarray(m.data))
    np.save(folder / f"{name}.indices.npy", m.indices.astype(idx, copy=False))
    np.save(folder / f"{name}.indptr.npy", m.indptr.astype(idx, copy=False))


def _load_csr(folder: Path, name: str, shape: tuple[int, int]) -> sp.csr_matrix:
    parts = [np.load(folder / f"{name}.{p}.npy", mmap_mode="r") for p in ("data", "indices", "indptr")]
    m = sp.csr_matrix(tuple(parts), shape=shape, copy=False)
    # an empty array (no pairs at all: a set without descriptions has an empty sim_desc) has no bytes to copy
    if not all(b.size == 0 or np.shares_memory(a, b)
               for a, b in zip((m.data, m.indices, m.indptr), parts, strict=True)):
        raise ArtifactError(f"{folder}: {name} could not be mapped without a copy")
    return m


def _encode_catalog(snap: Snapshot) -> tuple[np.ndarray, np.ndarray]:
    """Each movie's details as UTF-8 JSON, concatenated, plus the offsets of each record."""
    frame = snap.catalog.frame
    columns = {c: frame[c].tolist() for c in frame.columns}
    blobs = [json.dumps({c: json_value(columns[c][i]) for c in columns}, ensure_ascii=False).encode()
             for i in range(len(frame))]
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in blobs], out=offsets[1:])
    return np.frombuffer(b"".join(blobs), dtype=np.uint8), offsets


def export_bundle(snap: Snapshot, root: Path) -> str:
    """Write ``snap`` as a new bundle folder under ``root``; returns its name. Never touches an existing one."""
    rec = snap.recommender
    a = rec.artifacts
    name = f"{snap.version}-{uuid.uuid4().hex[:8]}"
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=root))
    try:
        np.save(tmp / "movie_ids.npy", np.asarray(a.movie_ids, dtype=str))
        np.save(tmp / "titles.npy", np.asarray(a.titles, dtype=str))
        np.save(tmp / "movie_score.npy", np.ascontiguousarray(a.movie_score))
        np.save(tmp / "user_ids.npy", np.ascontiguousarray(a.user_ids))
        np.save(tmp / "movie_part.npy", np.ascontiguousarray(rec.scorer_.movie_part))
        np.save(tmp / "cold_order.npy", np.ascontiguousarray(rec.scorer_.cold_order))
        for part in ("indptr", "movie", "ratio", "recency"):
            np.save(tmp / f"history.{part}.npy", np.ascontiguousarray(getattr(a.history, part)))
        _save_csr(tmp, "combined", rec.scorer_.combined)
        for kind, m in a.sims.items():
            _save_csr(tmp, f"sim_{kind}", m)
        blob, offsets = _encode_catalog(snap)
        np.save(tmp / "catalog.npy", blob)
        np.save(tmp / "catalog_offsets.npy", offsets)
        meta = {
            "format": BUNDLE_FORMAT,
            "manifest": json.loads(snap.manifest.to_json()),
            "manifest_sha256": snap.manifest_sha256,
            "loaded_at": snap.loaded_at.isoformat(),
            "weights": rec.weights.to_dict(),
            "kinds": list(a.sims),
            "n_movies": len(a.movie_ids),
            "n_users": len(a.user_ids),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        os.rename(tmp, root / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return name


class MappedRecommender(Recommender):
    """A :class:`Recommender` whose derived arrays are read from a bundle, not recomputed per worker."""

    def __init__(self, artifacts: Artifacts, weights: BlendWeights, scorer: Scorer) -> None:  # noqa: D107
        self.artifacts = artifacts
        self.weights = weights
        self.kinds_ = [k for k in SIM_KINDS if k in artifacts.sims]
        self.scorer_ = scorer
        self.movie_pos_ = pd.Index(np.asarray(artifacts.movie_ids, dtype=object))


@dataclass(frozen=True)
class MappedCatalog:
    """Movie details as pre-encoded JSON records in a mapped byte array."""

    blob: np.ndarray
    offsets: np.ndarray

    def details(self, position: int) -> dict[str, Any]:
        start, end = int(self.offsets[position]), int(self.offsets[position + 1])
        return json.loads(self.blob[start:end].tobytes())


def open_bundle(folder: Path) -> Snapshot:
    """Map a bundle read-only into a :class:`Snapshot` (no array is copied)."""
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        if meta.get("format") != BUNDLE_FORMAT:
            raise ArtifactError(f"{folder}: not a {BUNDLE_FORMAT} bundle")
        n = int(meta["n_movies"])

        def arr(name: str) -> np.ndarray:
            return np.load(folder / f"{name}.npy", mmap_mode="r")

        manifest = Manifest(**meta["manifest"])
        artifacts = Artifacts(
            movie_ids=arr("movie_ids"),
            titles=arr("titles"),
            movie_score=arr("movie_score"),
            user_ids=arr("user_ids"),
            history=History(*(arr(f"history.{part}") for part in ("indptr", "movie", "ratio", "recency"))),
            sims={kind: _load_csr(folder, f"sim_{kind}", (n, n)) for kind in meta["kinds"]},
            manifest=manifest,
        )
        weights = BlendWeights.from_dict(meta["weights"])
        scorer = Scorer(_load_csr(folder, "combined", (n, n)), arr("movie_part"), arr("cold_order"),
                        weights.recency_half_life, weights.ratio_power)
        rec = MappedRecommender(artifacts, weights, scorer).warm()
        catalog = MappedCatalog(arr("catalog"), arr("catalog_offsets"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{folder}: cannot open the serving bundle: {type(exc).__name__}: {exc}") from exc
    return Snapshot(recommender=rec, catalog=catalog, manifest=manifest,  # type: ignore[arg-type]
                    manifest_sha256=meta["manifest_sha256"], loaded_at=datetime.fromisoformat(meta["loaded_at"]))


# -- the parent: load, verify, export, publish ----------------------------------------------
@dataclass(frozen=True)
class Published:
    """What the parent keeps of a generation once exported: its name, not its arrays."""

    bundle: str
    version: str
    loaded_at: datetime


def _load_and_export(paths: ArtifactPaths, root: Path) -> tuple[bool, ...]:
    """Child-process body: (True, bundle, version, loaded_at) or (False, message)."""
    try:
        snap = load_snapshot(paths)
        return True, export_bundle(snap, root), snap.version, snap.loaded_at.isoformat()
    except ArtifactError as exc:
        return False, str(exc).removesuffix(_HINT)  # the parent's ArtifactError adds the hint again


class BundlePublisher(Poller):
    """Watches the artifacts like :class:`ArtifactState` and publishes each new generation as a bundle."""

    thread_name = "rekko-bundle-publisher"

    def __init__(self, paths: ArtifactPaths, root: Path, *, interval: float | None = 2.0) -> None:
        self.root = root
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

        def load() -> Published:
            # In a short-lived child process: the parent never holds the loaded frames, so its
            # memory stays that of an idle interpreter however often the artifacts are reloaded.
            with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
                ok, *rest = pool.submit(_load_and_export, paths, root).result()
            if not ok:
                raise ArtifactError(rest[0])
            return Published(rest[0], rest[1], datetime.fromisoformat(rest[2]))

        from rekko.serve.state import watched_paths

        files = watched_paths(paths)
        self.state = ArtifactState(load, lambda: file_fingerprint(files), interval=None)  # type: ignore[arg-type]
        self._published: tuple[Any, ...] | None = None
        self.publish()

    def publish(self) -> None:
        s = self.state
        current: Published = s.snapshot  # type: ignore[assignment]
        record = (current.bundle, s.reload_error, s.reloads, s.failed_reloads)
        if record == self._published:
            return
        body = {"bundle": current.bundle, "version": current.version, "status": s.status,
                "reload_error": s.reload_error, "reloads": s.reloads, "failed_reloads": s.failed_reloads,
                "published_at": _now().isoformat()}
        with atomic_open(self.root / CURRENT, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(body, ensure_ascii=False))
        previous = self._published[0] if self._published else None
        self._published = record
        for entry in self.root.iterdir():  # keep the current bundle and the one before it
            if entry.is_dir() and entry.name not in (current.bundle, previous):
                shutil.rmtree(entry, ignore_errors=True)

    def check(self) -> bool:
        changed = self.state.check()
        self.publish()
        return changed



# -- a worker: follow current.json ---------------------------------------------------------
class BundleState(Poller):
    """The worker side: the same interface as :class:`ArtifactState`, fed by the parent's bundles."""

    thread_name = "rekko-bundle-follower"

    def __init__(self, root: Path, *, interval: float | None = 0.5) -> None:
        self.root = root
        self.interval = interval
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bundle: str | None = None
        self._tried: object = None
        self.reload_error: str | None = None
        self.reloads = 0
        self.failed_reloads = 0
        self._status = "ok"
        self.checked_at = _now()
        if not self.check() or self._bundle is None:
            raise ArtifactError(f"{root}: no serving bundle could be opened ({self.reload_error})")

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    @property
    def status(self) -> str:
        return self._status

    def check(self) -> bool:
        with self._lock:
            fp = file_fingerprint((self.root / CURRENT,))
            self.checked_at = _now()
            if fp == self._tried:
                return False
            try:
                info = json.loads((self.root / CURRENT).read_text(encoding="utf-8"))
                bundle = info["bundle"]
                snapshot = open_bundle(self.root / bundle) if bundle != self._bundle else None
            except (OSError, ValueError, KeyError, ArtifactError) as exc:
                self._tried = None  # a half-replaced bundle: look again next poll
                self.reload_error = f"{self.checked_at.isoformat(timespec='seconds')}: {exc}"
                self._status = "stale"
                return False
            self._tried = fp
            self.reload_error = info.get("reload_error")
            self.reloads, self.failed_reloads = int(info.get("reloads", 0)), int(info.get("failed_reloads", 0))
            self._status = info.get("status", "ok")
            if snapshot is None:
                return False
            self._snapshot, self._bundle = snapshot, bundle
            return True


def worker_app():
    """uvicorn factory for each worker process (``rekko.serve.shared:worker_app``)."""
    from rekko.serve.app import ENV_TOKEN, AccessPolicy, create_app

    root = Path(os.environ[ENV_ROOT])
    interval = float(os.environ.get(ENV_INTERVAL, "0.5"))
    _exit_with_parent(int(os.environ.get(ENV_PARENT, "0")))
    # the parent validated both (bad values exit 2 there); every worker answers under the same rules
    access = AccessPolicy(token=os.environ.get(ENV_TOKEN, "").strip() or None,
                          allowed_hosts=tuple(h for h in os.environ.get(ENV_ALLOWED_HOSTS, "").split(",") if h))
    return create_app(state=BundleState(root, interval=interval if interval > 0 else None), access=access)


def _exit_with_parent(parent: int, interval: float = 1.0) -> None:
    """In a worker process: shut down (SIGTERM, gracefully) once the parent that spawned it is gone.

    uvicorn's workers outlive a SIGKILLed supervisor and keep the port and the
    bundle; they would make a restart fail and a dead server's folder look
    alive. Nothing to watch when this *is* the parent (one worker).
    """
    if parent <= 0 or parent == os.getpid():
        return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        log.warning("the rekko serve parent process %d is gone; worker %d shuts down", parent, os.getpid())
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="rekko-parent-watch", daemon=True).start()


def _graceful_exit(signum: int, frame: object) -> None:
    raise SystemExit(0)


# -- a server's folder: whose it is, and removing those whose server is gone -----------------
FOLDER_PREFIX = "rekko-serve-"
PIDFILE = "server.pid"


@dataclass(frozen=True)
class Owner:
    """The server process a bundle folder belongs to: the first three lines of its ``server.pid``.

    Like PostgreSQL's ``postmaster.pid``: the pid first (``kill $(head -1
    server.pid)`` works), then what tells a live owner from a recycled pid
    (the process start time, in clock ticks since boot, "-" without /proc)
    and the machine (a pid means nothing on another host sharing the folder).
    """

    pid: int
    started: str
    host: str

    @classmethod
    def this_process(cls) -> Owner:
        proc = _proc_stat(os.getpid())
        return cls(os.getpid(), proc[1] if proc else "-", socket.gethostname())

    @classmethod
    def read(cls, folder: Path) -> Owner | None:
        """The owner recorded in ``folder``; None when there is no readable, complete pid file."""
        try:
            lines = (folder / PIDFILE).read_text(encoding="utf-8").splitlines()
            return cls(int(lines[0]), lines[1], lines[2])
        except (OSError, ValueError, IndexError):
            return None

    def write(self, folder: Path, listen: str) -> None:
        with atomic_open(folder / PIDFILE, "w", encoding="utf-8") as fh:
            fh.write(f"{self.pid}\n{self.started}\n{self.host}\n{_now().isoformat(timespec='seconds')}\n{listen}\n")

    def alive(self) -> bool:
        """False only when this process is certainly gone: no such pid, a zombie, or a recycled pid."""
        if self.host != socket.gethostname():
            return True  # another machine's process: cannot tell from here
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # exists; another user's
        proc = _proc_stat(self.pid)
        if proc is None:
            return True
        state, started = proc
        return state != "Z" and self.started in ("-", started)


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in ticks) from ``/proc/<pid>/stat``; None where there is no /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()  # after "pid (comm)": the name may hold spaces and parentheses
    return (fields[0], fields[19]) if len(fields) > 19 else None  # fields 3 and 22 of proc(5)


def remove_stale_folders(parent: Path) -> list[Path]:
    """Delete this user's ``rekko-serve-*`` folders in ``parent`` whose server process is gone.

    A SIGKILL (OOM killer, ``docker kill``) skips the ``finally`` that removes
    a server's folder, and each bundle can be hundreds of MB. Only folders
    with a pid file naming a dead process go: a folder without one (a server
    starting this instant, or an older rekko) is left alone, and so are other
    users' folders and symlinks.
    """
    removed = []
    try:
        entries = sorted(parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(FOLDER_PREFIX) or not _own_directory(entry):
            continue
        owner = Owner.read(entry)
        if owner is None or owner.alive():
            continue
        shutil.rmtree(entry, ignore_errors=True)
        log.info("removed %s: its server (pid %d) is gone", entry, owner.pid)
        removed.append(entry)
    return removed


def _own_directory(path: Path) -> bool:
    try:
        st = path.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid()


def serve_shared(paths: ArtifactPaths, *, host: str, port: int, workers: int, interval: float | None,
                 log_level: str = "info", shared_dir: Path | None = None, limits: ConnectionLimits | None = None,
                 access: AccessPolicy | None = None) -> int:
    """Verify and export the artifacts (in a child process), then serve the bundle with ``workers`` processes.

    With one worker the app runs in this process; with more, uvicorn's
    supervisor spawns them and this process only publishes new generations.
    The bundle folder goes under ``shared_dir`` (default: the temp dir) with
    a pid file; folders left there by killed servers are removed first.
    ``limits`` bound connections and timeouts per worker, ``access`` adds the
    bearer token and Host checks (both default to :mod:`rekko.serve.app`'s).
    """
    import uvicorn

    from rekko.serve.app import AccessPolicy, ConnectionLimits, fit_open_files

    access = access or AccessPolicy()
    limits = fit_open_files(limits or ConnectionLimits())
    parent = Path(shared_dir) if shared_dir is not None else Path(tempfile.gettempdir())
    remove_stale_folders(parent)
    root = Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX, dir=parent))
    publisher: BundlePublisher | None = None
    try:
        Owner.this_process().write(root, f"{host}:{port}")
        publisher = BundlePublisher(paths, root, interval=interval)  # ArtifactError -> exit 2
        _export_worker_settings(root, interval, access)
        publisher.start()
        # uvicorn shuts down gracefully on SIGTERM, then re-raises it to the handler it found; make
        # that handler unwind through ``finally`` (stop the publisher, remove the bundles) and exit 0
        signal.signal(signal.SIGTERM, _graceful_exit)
        options = {"host": host, "port": port, "log_level": log_level, "access_log": False,
                   **limits.uvicorn_options()}
        if workers == 1:  # one process: the publisher's thread and the app side by side
            uvicorn.run(worker_app(), **options)
        else:
            uvicorn.run("rekko.serve.shared:worker_app", factory=True, workers=workers, **options)
    finally:
        if publisher is not None:
            publisher.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


def _export_worker_settings(root: Path, interval: float | None, access: AccessPolicy) -> None:
    """What :func:`worker_app` reads in each worker: environment variables, which spawned workers inherit."""
    from rekko.serve.app import ENV_TOKEN

    os.environ[ENV_ROOT] = str(root)
    os.environ[ENV_INTERVAL] = str(min(interval, 0.5) if interval else 0)
    os.environ[ENV_PARENT] = str(os.getpid())
    os.environ[ENV_ALLOWED_HOSTS] = ",".join(access.allowed_hosts)
    if access.token:
        os.environ[ENV_TOKEN] = access.token
    else:
        os.environ.pop(ENV_TOKEN, None)
