"""Artifacts on disk: similarity pickles, the manifest, and safe loading.

A similarity artifact is a pickle of a plain dict of numpy arrays (CSR parts and
the movie-id order) — the seed's ``.pkl`` file names are kept, but no class is
pickled, so loading needs nothing beyond numpy's array constructors. Loading
checks the manifest's sha256 first, then unpickles through an allow-list
unpickler: a crafted pickle that names any other callable is refused before it
runs.

The manifest (``manifest.json`` beside ``cos_sim_md.pkl``) is published last and
never removed: a pipeline stages it with the artifacts and renames it over the
old one after every artifact is in place (:func:`rekko.pipeline.run.write_result`),
so there is always a manifest, and readers verify every byte against it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from rekko import __version__
from rekko.config import PipelineConfig
from rekko.exceptions import ArtifactError, ConfigError, InputFileError, UnsafePickleError
from rekko.io import atomic_open, read_regular_file
from rekko.paths import CHUNK_TABLE_NAME

SCHEMA_VERSION = 1
#: Largest manifest a reader reads (a real one is kilobytes; the cap keeps a hostile one from using all memory).
MAX_MANIFEST_BYTES = 64 * 2**20
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

        actual = hashlib.sha256(data).hexdigest()
        if actual != expected_sha256:
            raise ArtifactError(f"{path}: sha256 {actual[:12]}… does not match the manifest ({expected_sha256[:12]}…)")
    return topk_from_bytes(data, source=str(path))


#: Bytes per verified chunk: the one-user path hashes whole chunks around what it reads.
CHUNK_SIZE = 1 << 14
_HEX = frozenset("0123456789abcdef")


@dataclass
class Manifest:
    """What one pipeline run wrote: parameters, counts and the sha256 of every artifact by role.

    Each artifact entry also lists where its chunk digests sit in the chunk
    table (``manifest.chunks`` beside the manifest, itself hashed in
    ``chunk_table``), so a reader can verify just the chunks it reads.
    """

    schema_version: int = SCHEMA_VERSION
    rekko_version: str = __version__
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    parameters: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    chunk_table: dict[str, Any] | None = None
    #: Which engine computed the set (``local`` or ``dask``); older manifests have none and mean ``local``.
    engine: str = "local"

    def to_json(self) -> str:
        body = {k: v for k, v in self.__dict__.items() if not (k == "chunk_table" and v is None)}
        return json.dumps(body, indent=2, ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, *, source: str = "manifest") -> Manifest:
        """Parse and validate: a wrong type anywhere is an :class:`ArtifactError` naming the field."""
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArtifactError(f"{source}: manifest is not valid JSON ({exc})") from exc
        except RecursionError:
            raise ArtifactError(f"{source}: manifest nests too deeply to be one rekko writes") from None
        if not isinstance(raw, dict):
            raise ArtifactError(f"{source}: manifest is not a JSON object")
        version = raw.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ArtifactError(f"{source}: manifest schema version {version!r}, this rekko reads {SCHEMA_VERSION}")
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        _validate_manifest(known, source)
        return cls(**known)

    def sha256_of(self, role: str) -> str:
        try:
            return str(self.artifacts[role]["sha256"])
        except KeyError as exc:
            raise ArtifactError(f"the manifest lists no '{role}' artifact") from exc


def _bad(source: str, name: str, expected: str, got: object) -> ArtifactError:
    shown = repr(got)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return ArtifactError(f"{source}: manifest field '{name}' must be {expected}, got {shown}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


#: The dtype kinds a similarity array's layout may name: integers and floats (never objects, strings, records).
_LAYOUT_KINDS = frozenset("iuf")


def _is_array_dtype(value: object) -> bool:
    """Whether ``value`` is a numpy dtype string of a plain number (``'<i4'``, ``'<f4'``); ``'|O'`` is not."""
    if not isinstance(value, str) or len(value) > 8:
        return False
    try:
        dtype = np.dtype(value)
    except (TypeError, ValueError):
        return False
    return dtype.kind in _LAYOUT_KINDS and not dtype.hasobject and dtype.itemsize in (1, 2, 4, 8)


def _check_sha(source: str, name: str, value: object) -> None:
    if not (isinstance(value, str) and len(value) == 64 and set(value) <= _HEX):
        raise _bad(source, name, "a sha256 hex digest", value)


def _validate_manifest(raw: dict[str, Any], source: str) -> None:
    """The manifest's schema, checked field by field (types, digests, counts; parameters by their configs)."""
    for name in ("rekko_version", "created_at"):
        if name in raw and not isinstance(raw[name], str):
            raise _bad(source, name, "a string", raw[name])
    if "engine" in raw and raw["engine"] not in ("local", "dask"):
        raise _bad(source, "engine", "'local' or 'dask'", raw["engine"])
    for name in ("parameters", "counts", "inputs", "artifacts"):
        if name in raw and not isinstance(raw[name], dict):
            raise _bad(source, name, "an object", raw[name])
    try:
        PipelineConfig.from_manifest(raw.get("parameters") or {})
    except ConfigError as exc:
        raise ArtifactError(f"{source}: manifest {exc}") from None
    for role, entry in (raw.get("artifacts") or {}).items():
        where = f"artifacts.{role}"
        if not isinstance(entry, dict):
            raise _bad(source, where, "an object", entry)
        _check_sha(source, f"{where}.sha256", entry.get("sha256"))
        for key in ("bytes", "rows"):
            if key in entry and not (_is_int(entry[key]) and entry[key] >= 0):
                raise _bad(source, f"{where}.{key}", "a non-negative integer", entry[key])
        chunks = entry.get("chunks")
        if chunks is not None and not (isinstance(chunks, dict) and all(
                _is_int(chunks.get(k)) and chunks[k] >= 0 for k in ("size", "first", "count")) and chunks["size"] > 0):
            raise _bad(source, f"{where}.chunks", "{size, first, count} non-negative integers", chunks)
        layout = entry.get("layout")
        if layout is not None and not (isinstance(layout, dict) and all(
                isinstance(v, dict) and _is_int(v.get("offset")) and v["offset"] >= 0
                and _is_int(v.get("length")) and v["length"] >= 0
                and _is_array_dtype(v.get("dtype")) for v in layout.values())):
            raise _bad(source, f"{where}.layout", "{array: {offset, length, dtype}} with non-negative offsets and "
                                                  "lengths and numeric dtypes such as '<i4' or '<f4'", layout)
    for role, entry in (raw.get("inputs") or {}).items():
        if not isinstance(entry, dict):
            raise _bad(source, f"inputs.{role}", "an object", entry)
    table = raw.get("chunk_table")
    if table is not None:
        if not isinstance(table, dict):
            raise _bad(source, "chunk_table", "an object", table)
        _check_sha(source, "chunk_table.sha256", table.get("sha256"))
        if not (_is_int(table.get("bytes")) and table["bytes"] >= 0):
            raise _bad(source, "chunk_table.bytes", "a non-negative integer", table.get("bytes"))


def topk_layout(data: bytes) -> dict[str, dict[str, Any]] | None:
    """Where each CSR array's raw bytes sit inside a similarity pickle, or None if ``data`` is not one.

    Protocol 5 stores a contiguous numpy array in-band as one ``BYTEARRAY8``
    record: its bytes are a plain slice of the file, so a reader can fetch one
    movie's row without unpickling the rest.
    """
    if data[:2] != b"\x80\x05":
        return None
    try:
        obj = safe_loads(data)
    except ArtifactError:
        return None
    if not isinstance(obj, dict) or obj.get("format") != TOPK_FORMAT:
        return None
    import pickletools

    wanted = {name: obj[name] for name in ("data", "indices", "indptr")}
    layout: dict[str, dict[str, Any]] = {}
    for op, arg, pos in pickletools.genops(data):
        if op.name != "BYTEARRAY8" or pos is None:
            continue
        for name, arr in wanted.items():
            if name not in layout and len(arg) == arr.nbytes and arg == arr.tobytes():
                layout[name] = {"offset": pos + 9, "length": int(arr.size), "dtype": arr.dtype.str}
                break
    return layout if len(layout) == len(wanted) else None


def file_digests(data: bytes, chunk_size: int = CHUNK_SIZE) -> bytes:
    """sha256 of every ``chunk_size`` slice of ``data``, concatenated (32 bytes each)."""
    return b"".join(hashlib.sha256(data[i : i + chunk_size]).digest() for i in range(0, len(data), chunk_size))


def describe_file(path: Path, *, rows: int | None = None) -> dict[str, Any]:
    """The manifest entry of a written artifact: sha256, size, rows, chunk digests (and a pickle's layout).

    Read in blocks of whole chunks, not at once: ``interactions_upd`` is the
    size of the log, and a whole-file read made the writing process hold it
    (the Dask engine's client grew with the rows for that alone). Only a
    pickle (the top-k files, movies-sized) is read whole, for its layout.
    """
    whole = hashlib.sha256()
    digests = []
    size = 0
    with open(path, "rb") as fh:
        head = fh.read(2)
        fh.seek(0)
        while block := fh.read(CHUNK_SIZE * 256):
            whole.update(block)
            size += len(block)
            digests.append(file_digests(block))
    info: dict[str, Any] = {"path": str(path), "sha256": whole.hexdigest(), "bytes": size}
    if rows is not None:
        info["rows"] = rows
    layout = topk_layout(path.read_bytes()) if head == b"\x80\x05" else None
    if layout is not None:
        info["layout"] = layout
    info["_digests"] = b"".join(digests)
    return info


def manifest_files(manifest: Manifest, path: Path) -> list[tuple[Path, bytes]]:
    """The files a manifest consists of, in the order they must be published: the chunk table, then the manifest.

    Fills the entries' ``chunks`` and the manifest's ``chunk_table`` from the
    digests :func:`describe_file` left in new entries.
    """
    files: list[tuple[Path, bytes]] = []
    fresh = {role: e.pop("_digests") for role, e in manifest.artifacts.items() if "_digests" in e}
    if fresh:
        table = bytearray()
        for role, entry in manifest.artifacts.items():
            digests = fresh.get(role)
            if digests is None:  # an entry without its digests in hand: it loses chunk checks, not correctness
                entry.pop("chunks", None)
                continue
            entry["chunks"] = {"size": CHUNK_SIZE, "first": len(table) // 32, "count": len(digests) // 32}
            table += digests
        table_path = path.with_name(CHUNK_TABLE_NAME)
        files.append((table_path, bytes(table)))
        manifest.chunk_table = {"path": str(table_path), "sha256": hashlib.sha256(table).hexdigest(),
                                "bytes": len(table)}
    files.append((path, manifest.to_json().encode("utf-8")))
    return files


def write_manifest(manifest: Manifest, path: Path) -> None:
    """Write the chunk table (for new entries) and then the manifest, each atomically."""
    for target, data in manifest_files(manifest, path):
        with atomic_open(target, "wb") as fh:
            fh.write(data)


def read_manifest_bytes(path: Path) -> bytes:
    """The manifest's bytes: a regular file of at most :data:`MAX_MANIFEST_BYTES` (not a FIFO, device or folder)."""
    try:
        return read_regular_file(path, limit=MAX_MANIFEST_BYTES, what="manifest")
    except FileNotFoundError:
        raise ArtifactError(f"{path}: manifest not found (no finished pipeline run writes here)") from None
    except InputFileError as exc:
        raise ArtifactError(str(exc)) from None


def read_manifest(path: Path) -> Manifest:
    data = read_manifest_bytes(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ArtifactError(f"{path}: manifest is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return Manifest.from_json(text, source=str(path))


def read_verified(path: Path, manifest: Manifest, role: str) -> bytes:
    """The whole file, read once; its sha256 must match the manifest. Parse these bytes, never the file again."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"{path}: {role} artifact not found") from None
    _compare(path, role, hashlib.sha256(data).hexdigest(), manifest.sha256_of(role))
    return data


def _compare(path: Path, role: str, actual: str, expected: str) -> None:
    if actual != expected:
        raise ArtifactError(
            f"{path}: {role} artifact does not match the manifest (sha256 {actual[:12]}…, expected {expected[:12]}…); "
            "it was written by another pipeline run or changed since"
        )


def verify_file(path: Path, manifest: Manifest, role: str) -> None:
    """Fail unless ``path`` exists and hashes to the manifest's entry for ``role``."""
    read_verified(path, manifest, role)


class ChunkTable:
    """The verified chunk digests of a manifest's artifacts (read once, hashed against the manifest)."""

    def __init__(self, manifest: Manifest, manifest_path: Path) -> None:
        table = manifest.chunk_table
        if table is None:
            raise ArtifactError(f"{manifest_path}: the manifest has no chunk table (written by an older rekko)")
        path = manifest_path.with_name(CHUNK_TABLE_NAME)
        try:
            data = read_regular_file(path, limit=int(table["bytes"]), what="chunk table")
        except FileNotFoundError:
            raise ArtifactError(f"{path}: chunk table not found") from None
        except InputFileError as exc:
            raise ArtifactError(str(exc)) from None
        _compare(path, "chunk table", hashlib.sha256(data).hexdigest(), table["sha256"])
        self.data = data
        self.manifest = manifest

    def open(self, path: Path, role: str) -> VerifiedFile:
        entry = self.manifest.artifacts.get(role)
        if entry is None or "chunks" not in entry:
            raise ArtifactError(f"the manifest lists no chunk digests for '{role}'")
        c = entry["chunks"]
        digests = self.data[32 * c["first"] : 32 * (c["first"] + c["count"])]
        if len(digests) != 32 * c["count"]:
            raise ArtifactError(f"the chunk table is shorter than the manifest says ({role})")
        return VerifiedFile(path, role, int(entry["bytes"]), int(c["size"]), digests)


class VerifiedFile(io.RawIOBase):
    """A read-only file whose bytes are returned only from chunks that hashed to their digests.

    Reads fetch whole chunks, check each against the manifest's chunk table,
    and serve the caller from those checked bytes: what a reader parses is what
    was verified, however the file changes underneath (a rename, a rewrite).
    """

    def __init__(self, path: Path, role: str, size: int, chunk_size: int, digests: bytes) -> None:
        super().__init__()
        try:
            self._fh = open(path, "rb")  # noqa: SIM115 - closed by close()
        except FileNotFoundError:
            raise ArtifactError(f"{path}: {role} artifact not found") from None
        actual = os.fstat(self._fh.fileno()).st_size
        if actual != size:
            self._fh.close()
            raise ArtifactError(f"{path}: {role} artifact does not match the manifest ({actual} bytes, expected {size}); "
                                "it was written by another pipeline run or changed since")
        self.path, self.role, self.size, self.chunk_size, self.digests = path, role, size, chunk_size, digests
        self._pos = 0
        self._cache: dict[int, bytes] = {}
        self.bytes_read = 0

    def _chunk(self, index: int) -> bytes:
        got = self._cache.get(index)
        if got is None:
            self._fh.seek(index * self.chunk_size)
            got = self._fh.read(self.chunk_size)
            self.bytes_read += len(got)
            if hashlib.sha256(got).digest() != self.digests[32 * index : 32 * index + 32]:
                raise ArtifactError(f"{self.path}: {self.role} artifact does not match the manifest (chunk {index}); "
                                    "it was written by another pipeline run or changed since")
            if len(self._cache) >= 256:
                self._cache.clear()
            self._cache[index] = got
        return got

    def pread(self, offset: int, length: int) -> bytes:
        """``length`` verified bytes at ``offset``."""
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ArtifactError(f"{self.path}: read past the end of the {self.role} artifact")
        out = bytearray()
        end = offset + length
        while offset < end:
            index, skip = divmod(offset, self.chunk_size)
            piece = self._chunk(index)[skip : skip + end - offset]
            out += piece
            offset += len(piece)
        return bytes(out)

    # -- io.RawIOBase ---------------------------------------------------------
    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        n = max(0, min(len(buffer), self.size - self._pos))
        data = self.pread(self._pos, n)
        buffer[:n] = data
        self._pos += n
        return n

    def close(self) -> None:
        if not self.closed:
            self._fh.close()
        super().close()


def read_topk_rows(vf: VerifiedFile, layout: dict[str, dict[str, Any]], rows: np.ndarray,
                   n_movies: int) -> sp.csr_matrix:
    """Rows ``rows`` of a similarity pickle, read through ``vf`` (only their bytes, verified), as a CSR."""
    def array(name: str, start: int, count: int) -> np.ndarray:
        spec = layout[name]
        dtype = np.dtype(spec["dtype"])
        if start < 0 or count < 0 or start + count > spec["length"]:
            raise ArtifactError(f"{vf.path}: similarity row bounds outside the {name} array")
        return np.frombuffer(vf.pread(spec["offset"] + start * dtype.itemsize, count * dtype.itemsize), dtype=dtype)

    if layout["indptr"]["length"] != n_movies + 1:
        raise ArtifactError(f"{vf.path}: similarity artifact has {layout['indptr']['length'] - 1} rows, "
                            f"movies_md_upd lists {n_movies}")
    bounds = [array("indptr", int(r), 2) for r in rows]
    lengths = np.array([b[1] - b[0] for b in bounds], dtype=np.int64)
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    data = [array("data", int(b[0]), int(b[1] - b[0])) for b in bounds]
    indices = [array("indices", int(b[0]), int(b[1] - b[0])) for b in bounds]
    matrix = sp.csr_matrix(
        (np.concatenate(data) if data else np.zeros(0, np.float32),
         np.concatenate(indices) if indices else np.zeros(0, np.int32), indptr),
        shape=(len(rows), n_movies),
    )
    try:
        matrix.check_format(full_check=True)
    except ValueError as exc:
        raise ArtifactError(f"{vf.path}: inconsistent similarity rows: {exc}") from exc
    return matrix
