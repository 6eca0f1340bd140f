"""Where the interactions come from: one file, a folder of parts, a glob, or an fsspec URL.

A watch log that outgrows one file arrives as parts (``part-00000.parquet``...
written by Spark, Dask or an export job), often in object storage. This module
turns the ``--interactions`` value into an ordered list of :class:`Part` s;
both engines read and validate each part on its own, so a bad part is named
in the error message. Nothing here imports fsspec unless a URL is given: the
local engine on one local file does exactly what it did before.

Object-storage credentials and endpoints come from the standard environment
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, ``AWS_REGION``...), read by s3fs/botocore in whichever
process opens the part (the client for the local engine, each worker for the
Dask engine). They are never put into a URL, a log line or an error message:
:func:`redact` scrubs both the secret values and any ``user:password@`` of a
URL from every message this module builds.
"""

from __future__ import annotations

import glob as globlib
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from rekko.exceptions import InputFileError, scrub, shorten
from rekko.io import read_table, restore_formulas, sha256_file

#: File name endings read as interaction parts when a folder or a prefix is given.
PART_EXTENSIONS = (".parquet", ".pq")
#: Endings a single file or a glob match may have (a csv part is read as csv).
FILE_EXTENSIONS = (".parquet", ".pq", ".csv")
#: Environment variables whose values must never appear in a message.
SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECURITY_TOKEN")
_GLOB_CHARS = re.compile(r"[*?\[]")
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


def redact(text: str) -> str:
    """``text`` without credentials: secret environment values, URL user-info and the credentials met so far
    (:func:`rekko.exceptions.scrub`) replaced by ``***``."""
    out = scrub(_USERINFO.sub(r"\g<scheme>***@", str(text)))
    for name in SECRET_ENV:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            out = out.replace(value, "***")
    return out


def is_url(spec: str | os.PathLike[str]) -> bool:
    """True for ``scheme://...`` (s3://, gs://, file://, memory://...); a Windows drive letter is not a scheme."""
    text = os.fspath(spec)
    return "://" in text and len(text.split("://", 1)[0]) > 1


@dataclass(frozen=True)
class Part:
    """One interactions part: a local path or a URL read through fsspec."""

    location: str
    remote: bool = False

    @property
    def name(self) -> str:
        """How messages name the part (credentials scrubbed)."""
        return redact(self.location)

    @property
    def extension(self) -> str:
        return Path(self.location.split("?", 1)[0]).suffix.lower()


def resolve_parts(spec: str | os.PathLike[str]) -> list[Part]:
    """The parts ``spec`` names, in a stable (sorted) order.

    * a local file: itself (any table format ``read_table`` takes);
    * a local folder: every ``*.parquet``/``*.pq`` under it, recursively
      (Spark/Hive layouts nest), hidden and ``_``-prefixed files skipped
      (``_SUCCESS``, ``_metadata``); partition values encoded only in folder
      names (``year=2024/``) are not read back as columns;
    * a glob (``data/part-*.parquet``): every match;
    * a URL (``s3://bucket/prefix/``, ``file:///data/x.parquet``): the same
      three cases through fsspec.

    No part found is an :class:`InputFileError` naming ``spec``.
    """
    text = os.fspath(spec)
    if is_url(text):
        return _resolve_remote(text)
    if _GLOB_CHARS.search(text) and not Path(text).exists():
        matches = sorted(p for p in globlib.glob(text, recursive=True) if Path(p).is_file())
        if not matches:
            raise InputFileError(f"{text}: interactions glob matches no file")
        return [Part(p) for p in _check_extensions(matches, text)]
    p = Path(text)
    if p.is_dir():
        found = sorted(str(f) for f in p.rglob("*") if f.is_file() and f.suffix.lower() in PART_EXTENSIONS
                       and not _hidden(f.relative_to(p).parts))
        if not found:
            raise InputFileError(f"{p}: interactions folder holds no parquet parts (*.parquet, *.pq)")
        return [Part(f) for f in found]
    return [Part(text)]  # one file: read_table reports a missing file or a bad extension as before


def _hidden(parts: tuple[str, ...]) -> bool:
    return any(x.startswith((".", "_")) for x in parts)


def _check_extensions(names: list[str], spec: str) -> list[str]:
    for name in names:
        if Path(name.split("?", 1)[0]).suffix.lower() not in FILE_EXTENSIONS:
            raise InputFileError(f"{redact(name)} (from {redact(spec)}): unknown extension for an interactions "
                                 f"part; expected one of {', '.join(FILE_EXTENSIONS)}")
    return names


def _filesystem(url: str) -> tuple[Any, str]:
    """The fsspec filesystem and in-filesystem path of ``url``; a missing driver or a bad URL is exit 2."""
    try:
        import fsspec
    except ImportError:  # pragma: no cover - pandas installs fsspec with the dask extra
        raise InputFileError(f"{redact(url)}: reading URLs needs fsspec (pip install 'rekko[dask]')") from None
    options: dict[str, Any] = {}
    if url.split("://", 1)[0].lower() in ("s3", "s3a"):
        # the endpoint from the environment, passed explicitly: fsspec caches filesystems by their arguments,
        # and one built for another endpoint must not be reused; listings are read fresh on every run
        options["use_listings_cache"] = False
        if os.environ.get("AWS_ENDPOINT_URL"):
            options["endpoint_url"] = os.environ["AWS_ENDPOINT_URL"]
    try:
        return fsspec.core.url_to_fs(url, **options)
    except ImportError as exc:
        raise InputFileError(f"{redact(url)}: no filesystem driver for this URL ({exc}); for s3:// install "
                             "'rekko[dask]' (s3fs)") from None
    except Exception as exc:  # noqa: BLE001 - a malformed URL or options
        raise InputFileError(f"{redact(url)}: cannot open: {type(exc).__name__}: {redact(shorten(str(exc), 300))}") \
            from None


def _resolve_remote(url: str) -> list[Part]:
    fs, path = _filesystem(url)
    protocol = fs.protocol[0] if isinstance(fs.protocol, (tuple, list)) else fs.protocol
    local = protocol in ("file", "local")

    def unstrip(p: str) -> str:
        return fs.unstrip_protocol(p)

    try:
        if _GLOB_CHARS.search(path):
            found = sorted(p for p in fs.glob(path) if fs.isfile(p))
            if not found:
                raise InputFileError(f"{redact(url)}: interactions glob matches no object")
            names = _check_extensions([unstrip(p) for p in found], url)
        elif url.endswith("/") or fs.isdir(path):
            found = sorted(p for p in fs.find(path) if Path(p).suffix.lower() in PART_EXTENSIONS
                           and not _hidden(tuple(p[len(path.rstrip("/")):].strip("/").split("/"))))
            if not found:
                raise InputFileError(f"{redact(url)}: no parquet parts (*.parquet, *.pq) under this prefix")
            names = [unstrip(p) for p in found]
        elif fs.isfile(path):
            names = _check_extensions([unstrip(path)], url)
        else:
            raise InputFileError(f"{redact(url)}: interactions not found")
    except InputFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - permission, endpoint, network: one clear message
        raise InputFileError(f"{redact(url)}: cannot list interactions: {type(exc).__name__}: "
                             f"{redact(shorten(str(exc), 300))}") from None
    if local:  # file:// URLs become plain paths: the same reader and hashing as any local file
        return [Part(fs._strip_protocol(n)) for n in names]
    return [Part(n, remote=True) for n in names]


def read_part(part: Part, *, categorical: tuple[str, ...] = ()) -> pd.DataFrame:
    """The raw frame of one part (local through :func:`rekko.io.read_table`, remote through fsspec)."""
    if not part.remote:
        return read_table(part.location, what="interactions", categorical=categorical)
    fs, path = _filesystem(part.location)
    try:
        with fs.open(path, "rb") as fh:
            if part.extension == ".csv":
                return restore_formulas(pd.read_csv(fh))
            import pyarrow.parquet as pq

            read_dictionary = list(categorical) if categorical else None
            try:
                table = pq.read_table(fh, read_dictionary=read_dictionary)
            except (KeyError, ValueError):  # a categorical column that is not text: read it plainly
                fh.seek(0)
                table = pq.read_table(fh)
            return table.to_pandas(self_destruct=True)
    except FileNotFoundError:
        raise InputFileError(f"{part.name}: interactions part not found") from None
    except Exception as exc:  # noqa: BLE001 - every reader failure becomes one clear message
        raise InputFileError(f"{part.name}: cannot read interactions part: {type(exc).__name__}: "
                             f"{redact(shorten(str(exc), 300))}") from None


def fingerprint(part: Part) -> dict[str, Any]:
    """The manifest entry of one part.

    A local part is hashed (sha256 of its bytes, streamed). A remote part is
    not downloaded a second time just to hash it: its entry records what the
    store reports, ``etag`` (S3's ETag: the MD5 of a single-part upload, a
    digest of digests for a multipart one) and ``bytes``; ``sha256`` is absent.
    """
    if not part.remote:
        return {"path": part.location, "sha256": sha256_file(part.location)}
    fs, path = _filesystem(part.location)
    try:
        info = fs.info(path)
    except Exception as exc:  # noqa: BLE001
        raise InputFileError(f"{part.name}: cannot stat interactions part: {type(exc).__name__}: "
                             f"{redact(shorten(str(exc), 300))}") from None
    etag = info.get("ETag") or info.get("etag") or info.get("md5") or ""
    return {"path": part.name, "etag": str(etag).strip('"'), "bytes": int(info.get("size") or 0)}


def fingerprints(spec: str | os.PathLike[str], parts: list[Part]) -> dict[str, Any]:
    """The manifest's ``inputs.interactions``: one file as before (path, sha256), else every part's entry.

    For parts, ``sha256`` is the hash of the parts' entries in order, so one
    value still changes when any part does.
    """
    if len(parts) == 1 and not parts[0].remote and not is_url(spec) and Path(parts[0].location) == Path(os.fspath(spec)):
        return fingerprint(parts[0])
    entries = [fingerprint(p) for p in parts]
    combined = hashlib.sha256("\n".join(f"{e['path']}\t{e.get('sha256') or e.get('etag')}\t{e.get('bytes', '')}"
                                        for e in entries).encode()).hexdigest()
    return {"path": redact(os.fspath(spec)), "sha256": combined, "parts": entries,
            "part_hash": "sha256 of each local part's bytes; etag and size of each remote part"}
