"""The artifacts a server answers from: an immutable snapshot, swapped whole on reload.

A :class:`Snapshot` is one pipeline generation, fully loaded and verified
(sha256 against its manifest) before any request sees it. Requests read
``state.snapshot`` once and use only that object, so a reload can never hand
one request a mix of old and new arrays: the swap is a single reference
assignment. A watcher thread polls the artifact files' identity (inode, mtime,
size); when it changes it builds the next snapshot on the side and swaps it in
only if it verified and the files did not change again while it was loading.
A generation that fails verification is reported in ``/health`` and the old
one keeps serving.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from rekko.artifacts import Manifest, read_manifest_bytes
from rekko.exceptions import ArtifactError
from rekko.paths import ArtifactPaths
from rekko.recommend import Recommender, load_artifacts
from rekko.serve.catalog import MovieCatalog, read_catalog

log = logging.getLogger(__name__)

Fingerprint = Hashable


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Snapshot:
    """One verified generation of artifacts and everything derived from it."""

    recommender: Recommender
    catalog: MovieCatalog
    manifest: Manifest
    manifest_sha256: str
    loaded_at: datetime = field(default_factory=_now)

    @property
    def version(self) -> str:
        """Short id of this generation (the manifest's sha256 prefix), sent with every answer."""
        return self.manifest_sha256[:12]

    def counts(self) -> dict[str, Any]:
        a = self.recommender.artifacts
        return {
            "movies": int(len(a.movie_ids)),
            "users": int(len(a.user_ids)),
            "interactions": int(a.history.nnz),
            "similarity_nnz": {kind: int(m.nnz) for kind, m in a.sims.items()},
        }


class SnapshotSource(Protocol):
    """What the app needs from a state holder: :class:`ArtifactState` here, or a worker's
    :class:`~rekko.serve.shared.BundleState` following the parent's bundles."""

    reload_error: str | None
    reloads: int
    failed_reloads: int
    checked_at: datetime

    @property
    def snapshot(self) -> Snapshot: ...

    @property
    def status(self) -> str: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


def watched_paths(paths: ArtifactPaths) -> tuple[Path, ...]:
    """Every file a generation consists of; the manifest first."""
    return (paths.manifest, paths.interactions_upd, paths.movies_upd, paths.int_coef, paths.sim_md,
            paths.sim_desc, paths.sim_cf)


def file_fingerprint(files: tuple[Path, ...]) -> Fingerprint:
    """(inode, mtime, size) of each file, None where missing: an atomic rename changes the inode."""
    out = []
    for path in files:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            out.append(None)
        else:
            out.append((st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(out)


def load_snapshot(paths: ArtifactPaths) -> Snapshot:
    """Load, verify and index one generation (raises :class:`ArtifactError`)."""
    manifest_bytes = read_manifest_bytes(paths.manifest)
    artifacts = load_artifacts(paths)
    catalog = read_catalog(paths.movies_upd, artifacts.manifest, artifacts.movie_ids)
    return Snapshot(
        recommender=Recommender(artifacts).warm(),
        catalog=catalog,
        manifest=artifacts.manifest,
        manifest_sha256=hashlib.sha256(manifest_bytes).hexdigest(),
    )


class Poller:
    """A daemon thread that calls ``self.check()`` every ``self.interval`` seconds until stopped.

    Subclasses set ``interval`` (None = no thread), ``_stop`` (an Event) and
    ``_thread`` (None) in ``__init__`` and name their thread.
    """

    thread_name = "rekko-poller"
    interval: float | None
    _stop: threading.Event
    _thread: threading.Thread | None

    def check(self) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError

    def start(self) -> None:
        if self.interval is None or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _watch(self) -> None:
        assert self.interval is not None
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:  # noqa: BLE001 - the poller must outlive any one bad poll
                log.exception("artifact check failed")


class ArtifactState(Poller):
    """Holds the current :class:`Snapshot` and replaces it when the artifacts change.

    ``loader`` builds a snapshot from disk; ``fingerprint`` cheaply identifies
    what is on disk. A reload is attempted once per new fingerprint, so a
    broken generation is not re-read on every poll.
    """

    thread_name = "rekko-artifact-watcher"

    def __init__(self, loader: Callable[[], Snapshot], fingerprint: Callable[[], Fingerprint], *,
                 interval: float | None = 2.0, attempts: int = 3) -> None:
        self._loader = loader
        self._fingerprint = fingerprint
        self.interval = interval
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reloads = 0
        self.failed_reloads = 0
        self.reload_error: str | None = None
        for attempt in range(attempts):
            before = fingerprint()
            snapshot = loader()  # an ArtifactError here stops the server from starting
            if fingerprint() == before:
                break
            log.info("artifacts changed while loading (attempt %d); loading again", attempt + 1)
        else:
            raise ArtifactError("the artifacts kept changing while they were being loaded (is a pipeline running?)")
        self._snapshot: Snapshot = snapshot
        self._tried: Fingerprint | None = before
        self.checked_at: datetime = snapshot.loaded_at

    @classmethod
    def from_paths(cls, paths: ArtifactPaths, *, interval: float | None = 2.0) -> ArtifactState:
        files = watched_paths(paths)
        return cls(lambda: load_snapshot(paths), lambda: file_fingerprint(files), interval=interval)

    @property
    def snapshot(self) -> Snapshot:
        """The current generation; read it once per request."""
        return self._snapshot

    @property
    def status(self) -> str:
        return "ok" if self.reload_error is None else "stale"

    def check(self) -> bool:
        """Reload if the files changed since the last attempt; True when a new snapshot was swapped in."""
        with self._lock:
            fp = self._fingerprint()
            self.checked_at = _now()
            if fp == self._tried:
                return False
            try:
                snapshot = self._loader()
            except Exception as exc:  # noqa: BLE001 - any failure keeps the old generation serving
                self._tried = fp
                self.failed_reloads += 1
                self.reload_error = f"{self.checked_at.isoformat(timespec='seconds')}: {exc}"
                log.warning("new artifacts not loaded, still serving %s: %s", self._snapshot.version, exc)
                return False
            if self._fingerprint() != fp:
                self._tried = None  # changed under us: look again on the next poll
                return False
            self._snapshot = snapshot
            self._tried = fp
            self.reloads += 1
            self.reload_error = None
            log.info("serving new artifacts %s", snapshot.version)
            return True
