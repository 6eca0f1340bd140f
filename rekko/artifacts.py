"""Artifacts on disk: similarity pickles, the manifest, and safe loading.

A similarity artifact is a pickle of a plain dict of numpy arrays (CSR parts and
the movie-id order) — the seed's ``.pkl`` file names are kept, but no class is
pickled, so loading needs nothing beyond numpy's array constructors. Loading
checks the manifest's sha256 first, then unpickles through an allow-list
unpickler: a crafted pickle that names any other callable is refused before it
runs.

The manifest (``manifest.json`` beside ``cos_sim_md.pkl``) is written last and
removed first, so a crash mid-write leaves no manifest rather than a manifest
describing a mix of old and new files.
"""

from __future__ import annotations

import io
import json
import pickle
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from rekko import __version__
from rekko.exceptions import ArtifactError, UnsafePickleError
from rekko.io import atomic_open, sha256_file

SCHEMA_VERSION = 1
TOPK_FORMAT = "rekko.topk-similarity/1"

#: (module, name) pairs a similarity pickle may reference: numpy's array rebuilders only.
_ALLOWED_GLOBALS = frozenset(
    {
        ("numpy", "dtype"),
        ("numpy", "ndarray"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.multiarray", "scalar"),
    }
)


@dataclass(frozen=True)
class TopKSimilarity:
    """Row i holds the k most similar movies to ``movie_ids[i]`` (self excluded): the in-memory form of a ``.pkl``."""

    movie_ids: np.ndarray
    matrix: sp.csr_matrix

    def __post_init__(self) -> None:
        n = len(self.movie_ids)
        if self.matrix.shape != (n, n):
            raise ValueError(f"similarity matrix shape {self.matrix.shape} does not match {n} movie ids")

    @property
    def k(self) -> int:
        return int(np.diff(self.matrix.indptr).max(initial=0))


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy's array constructors."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickleError(f"refusing to load {module}.{name} from a pickle: only numpy arrays are allowed")


def safe_loads(data: bytes) -> Any:
    """Unpickle bytes with :class:`RestrictedUnpickler`."""
    try:
        return RestrictedUnpickler(io.BytesIO(data)).load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoding failure is a broken artifact
        raise ArtifactError(f"cannot unpickle artifact: {type(exc).__name__}: {exc}") from exc


def topk_to_bytes(sim: TopKSimilarity) -> bytes:
    m = sim.matrix.tocsr()
    payload = {
        "format": TOPK_FORMAT,
        "movie_ids": np.asarray(sim.movie_ids, dtype=str),
        "data": m.data.astype(np.float32),
        "indices": m.indices.astype(np.int32),
        "indptr": m.indptr.astype(np.int64),
        "shape": np.asarray(m.shape, dtype=np.int64),
    }
    return pickle.dumps(payload, protocol=5)


def topk_from_bytes(data: bytes, *, source: str = "artifact") -> TopKSimilarity:
    obj = safe_loads(data)
    if not isinstance(obj, dict) or obj.get("format") != TOPK_FORMAT:
        raise ArtifactError(f"{source}: not a rekko similarity artifact (expected format {TOPK_FORMAT})")
    try:
        arrays = {k: obj[k] for k in ("movie_ids", "data", "indices", "indptr", "shape")}
    except KeyError as exc:
        raise ArtifactError(f"{source}: similarity artifact lacks {exc}") from exc
    for name, arr in arrays.items():
        if not isinstance(arr, np.ndarray) or arr.dtype.hasobject:
            raise ArtifactError(f"{source}: field {name} is not a plain numpy array")
    shape = tuple(int(v) for v in arrays["shape"])
    try:
        matrix = sp.csr_matrix((arrays["data"], arrays["indices"], arrays["indptr"]), shape=shape)
        matrix.check_format(full_check=True)
        return TopKSimilarity(arrays["movie_ids"].astype(object), matrix)
    except ValueError as exc:
        raise ArtifactError(f"{source}: inconsistent similarity matrix: {exc}") from exc


def write_topk(sim: TopKSimilarity, path: Path) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(topk_to_bytes(sim))


def read_topk(path: Path, expected_sha256: str | None) -> TopKSimilarity:
    """Read a similarity artifact; its bytes must hash to ``expected_sha256`` (from the manifest)."""
    if not path.exists():
        raise ArtifactError(f"{path}: similarity artifact not found")
    data = path.read_bytes()
    if expected_sha256 is not None:
        import hashlib

        actual = hashlib.sha256(data).hexdigest()
        if actual != expected_sha256:
            raise ArtifactError(f"{path}: sha256 {actual[:12]}… does not match the manifest ({expected_sha256[:12]}…)")
    return topk_from_bytes(data, source=str(path))


@dataclass
class Manifest:
    """What one pipeline run wrote: parameters, counts and the sha256 of every artifact by role."""

    schema_version: int = SCHEMA_VERSION
    rekko_version: str = __version__
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    parameters: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2, ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, *, source: str = "manifest") -> Manifest:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArtifactError(f"{source}: manifest is not valid JSON ({exc})") from exc
        if not isinstance(raw, dict):
            raise ArtifactError(f"{source}: manifest is not a JSON object")
        version = raw.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ArtifactError(f"{source}: manifest schema version {version!r}, this rekko reads {SCHEMA_VERSION}")
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        return cls(**known)

    def sha256_of(self, role: str) -> str:
        try:
            return str(self.artifacts[role]["sha256"])
        except KeyError as exc:
            raise ArtifactError(f"the manifest lists no '{role}' artifact") from exc


def describe_file(path: Path, *, rows: int | None = None) -> dict[str, Any]:
    info: dict[str, Any] = {"path": str(path), "sha256": sha256_file(path), "bytes": path.stat().st_size}
    if rows is not None:
        info["rows"] = rows
    return info


def write_manifest(manifest: Manifest, path: Path) -> None:
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(manifest.to_json())


def read_manifest(path: Path) -> Manifest:
    if not path.exists():
        raise ArtifactError(f"{path}: manifest not found (no finished pipeline run writes here)")
    return Manifest.from_json(path.read_text(encoding="utf-8"), source=str(path))


def verify_file(path: Path, manifest: Manifest, role: str) -> None:
    """Fail unless ``path`` exists and hashes to the manifest's entry for ``role``."""
    if not path.exists():
        raise ArtifactError(f"{path}: {role} artifact not found")
    expected = manifest.sha256_of(role)
    actual = sha256_file(path)
    if actual != expected:
        raise ArtifactError(
            f"{path}: {role} artifact does not match the manifest (sha256 {actual[:12]}…, expected {expected[:12]}…); "
            "it was written by another pipeline run or changed since"
        )
