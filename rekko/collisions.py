"""One rule for every file rekko writes: never onto something it reads, or onto an artifact set.

Every command that writes a file -- the pipeline's P4..P9, batch recommend (one
file or a dataset folder, either engine), the one-user ``pred(<user>).csv``,
``evaluate``'s JSON and HTML, ``tune``'s JSON, ``import``'s three files --
checks its outputs here before it reads or writes anything, and a collision is
an :class:`~rekko.exceptions.OutputPathError` (exit 2) naming both paths.

An output collides with a protected path (an input, an artifact, a manifest...) when

* they are the same file: equal once ``..`` and symbolic links are resolved, or
  hard links of one inode (:func:`same_file`);
* the output lies inside a protected folder (a partitioned input folder, whose
  next read would take the output as a part; or any folder rekko reads);
* the output matches a protected glob (``parts/part-*.parquet``), or is the
  same file as one of its matches;
* the output is a folder that is replaced as a whole (a batch dataset) and a
  protected path lies inside it.

Which paths are protected for a command that reads an artifact set
(:func:`artifact_set_paths`): the five artifact paths it was given, the files
beside ``cos_sim_md.pkl`` (manifest, chunk table, co-watching matrix, lock), and
every input and artifact the manifest names -- relative names taken both from
the working directory and from the folder the pipeline ran in (inferred from
where the named artifacts are now) -- with the movie-API cache beside the
ratings input.
"""

from __future__ import annotations

import fnmatch
import glob as globlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import fields
from pathlib import Path

from rekko.exceptions import OutputPathError, shorten
from rekko.paths import CACHE_NAME, ArtifactPaths

#: What makes a path a glob (as :func:`rekko.pipeline.sources.resolve_parts` reads it).
_GLOB_CHARS = re.compile(r"[*?\[]")
#: A manifest larger than this is not read for its paths (it would fail to load anyway).
_MANIFEST_READ_CAP = 16 << 20

Protected = Mapping[str, "str | os.PathLike[str]"]


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """True when two paths name one file: equal once symlinks and ``..`` are resolved, or hard links of one inode."""
    try:
        if Path(a).resolve() == Path(b).resolve():
            return True
    except (OSError, RuntimeError):  # a symlink loop: compare what can be compared
        pass
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):  # one of them does not exist yet
        return False


def _is_url(text: str) -> bool:
    return "://" in text and len(text.split("://", 1)[0]) > 1


def _is_glob(text: str) -> bool:
    return bool(_GLOB_CHARS.search(text)) and not os.path.lexists(text)


def _forms(path: str | os.PathLike[str]) -> set[str]:
    """``path`` absolute as written and with every symlink resolved."""
    out = {os.path.abspath(path)}
    try:
        out.add(os.path.realpath(path))
    except (OSError, ValueError):
        pass
    return out


def _inside(child: str | os.PathLike[str], folder: str | os.PathLike[str]) -> bool:
    """True when ``child`` (absolute or resolved) lies strictly inside ``folder`` (absolute or resolved)."""
    for c in _forms(child):
        for f in _forms(folder):
            if c != f and Path(c).is_relative_to(f):
                return True
    return False


def _glob_match(path: str, pattern: str) -> bool:
    """Would ``glob.glob(pattern, recursive=True)`` return ``path`` if it existed? (``*`` stays in one folder.)"""
    def match(parts: list[str], pats: list[str]) -> bool:
        if not pats:
            return not parts
        head, rest = pats[0], pats[1:]
        if head == "**":
            return any(match(parts[i:], rest) for i in range(len(parts) + 1))
        return bool(parts) and fnmatch.fnmatchcase(parts[0], head) and match(parts[1:], rest)

    return match(Path(path).parts[1:], Path(pattern).parts[1:])


def _glob_forms(pattern: str) -> set[str]:
    """The pattern made absolute, and with the folder before its first wildcard resolved (symlinks)."""
    absolute = os.path.abspath(pattern)
    parts = Path(absolute).parts
    fixed = next((i for i, p in enumerate(parts) if _GLOB_CHARS.search(p)), len(parts))
    prefix = os.path.realpath(os.path.join(*parts[:fixed])) if fixed else "/"
    return {absolute, os.path.join(prefix, *parts[fixed:])}


#: What each kind of collision would do, for the message.
_CONSEQUENCE = {
    "same": "rekko would overwrite what it reads",
    "inside": "the next run would read it as an input",
    "holds": "replacing the folder would delete it",
}


def _collision(output: Path, protected: str, *, folder_output: bool) -> tuple[str, str] | None:
    """(kind, wording) of how ``output`` would damage ``protected``, or None."""
    if _is_url(protected):
        return None
    if _is_glob(protected):
        for match in sorted(globlib.glob(protected, recursive=True)):
            if same_file(output, match):
                return "same", f"is {_show(match)}, matched by"
            if folder_output and _inside(match, output):
                return "holds", f"is a folder replaced as a whole holding {_show(match)}, matched by"
        if any(_glob_match(o, p) for o in _forms(output) for p in _glob_forms(protected)):
            return "inside", "matches"
        return None
    if same_file(output, protected):
        return "same", "is"
    if os.path.isdir(protected) and _inside(output, protected):
        return "inside", "is inside"
    if folder_output and _inside(protected, output):
        return "holds", "is a folder replaced as a whole holding"
    return None


def check_outputs(outputs: Mapping[str, str | os.PathLike[str]], protected: Protected, *,
                  folders: Iterable[str] = (), advice: str = "write it somewhere else") -> None:
    """Refuse any output that collides with another output or with a protected path (exit 2, naming both).

    ``outputs`` and ``protected`` map a role (an option; "the interactions input
    named in matrix/manifest.json") to a path; ``folders`` names the outputs
    that are folders replaced as a whole. Nothing is created, and nothing read
    but directory entries.
    """
    folder_roles = set(folders)
    seen: dict[str, Path] = {}
    for role, raw in outputs.items():
        path = Path(raw)
        for other_role, other in seen.items():
            if same_file(path, other):
                raise OutputPathError(f"{role} and {other_role} are the same file ({_show(raw)}): "
                                      "each output needs its own path")
        for what, source in protected.items():
            found = _collision(path, os.fspath(source), folder_output=role in folder_roles)
            if found is not None:
                kind, how = found
                raise OutputPathError(f"{role} {_show(raw)} {how} {what} ({_show(source)}): "
                                      f"{_CONSEQUENCE[kind]}; {advice}")
        seen[role] = path


def _show(path: str | os.PathLike[str]) -> str:
    return shorten(os.fspath(path))


# ----------------------------------------------------------------------------- what an artifact set protects


def artifact_set_paths(paths: ArtifactPaths, *, inputs: bool = True, manifest: Path | None = None) -> dict[str, str]:
    """Every path a command reading ``paths`` must not write: the artifacts, the files beside them, and
    every artifact (and, with ``inputs``, every input) the manifest names (``paths.manifest`` unless
    ``manifest`` is given). An unreadable manifest adds nothing: loading it fails later with its own message."""
    manifest = Path(manifest) if manifest is not None else paths.manifest
    protected: dict[str, str] = {}
    for f in fields(ArtifactPaths):
        protected[f"the {f.name} artifact"] = os.fspath(getattr(paths, f.name))
    protected["the artifact manifest"] = os.fspath(manifest)
    for what, path in (("the chunk table", paths.chunk_table), ("cos_sim_cf.pkl", paths.sim_cf),
                       ("the pipeline's lock file", paths.lock)):
        protected[f"{what} (beside the manifest)"] = os.fspath(manifest.parent / path.name)
    raw = _read_manifest(manifest)
    if raw is None:
        return protected
    where = f"named in {_show(manifest)}"
    bases = _pipeline_dirs(raw, paths)
    named: list[tuple[str, str]] = []
    for role, entry in (raw.get("artifacts") or {}).items():
        if isinstance(entry, dict) and isinstance(entry.get("path"), str):
            named.append((f"the {role} artifact {where}", entry["path"]))
    table = raw.get("chunk_table")
    if isinstance(table, dict) and isinstance(table.get("path"), str):
        named.append((f"the chunk table {where}", table["path"]))
    for role, entry in (raw.get("inputs") or {}).items() if inputs else ():
        if not isinstance(entry, dict):
            continue
        if isinstance(entry.get("path"), str):
            named.append((f"the {role} input {where}", entry["path"]))
            if role == "ratings":
                named.append((f"the API cache beside the ratings input {where}",
                              os.path.join(os.path.dirname(entry["path"]), CACHE_NAME)))
        for i, part in enumerate(entry.get("parts") or []):
            if isinstance(part, dict) and isinstance(part.get("path"), str):
                named.append((f"part {i} of the {role} input {where}", part["path"]))
    for what, text in named:
        if _is_url(text) or "\x00" in text:
            continue
        if os.path.isabs(text):
            protected.setdefault(what, text)
            continue
        for n, base in enumerate(sorted(bases)):
            protected.setdefault(what if n == 0 else f"{what} (from {_show(base)})", os.path.join(base, text))
    return protected


def _read_manifest(path: Path) -> dict | None:
    try:
        if not path.is_file() or path.stat().st_size > _MANIFEST_READ_CAP:
            return None
        raw = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return raw if isinstance(raw, dict) else None


def _pipeline_dirs(raw: dict, paths: ArtifactPaths) -> set[str]:
    """Where relative paths in the manifest start: this working directory, and the pipeline's.

    The pipeline records paths as it was given them. Where an artifact named
    ``data/int_coef.parquet`` is now ``/srv/proj/data/int_coef.parquet``, the
    pipeline ran in ``/srv/proj``.
    """
    bases = {os.getcwd()}
    for role, entry in (raw.get("artifacts") or {}).items():
        actual = getattr(paths, role, None) if role in {f.name for f in fields(ArtifactPaths)} else None
        if role == "sim_cf":
            actual = paths.sim_cf
        recorded = entry.get("path") if isinstance(entry, dict) else None
        if actual is None or not isinstance(recorded, str) or os.path.isabs(recorded) or "\x00" in recorded:
            continue
        here = Path(os.path.abspath(actual)).parts
        rel = Path(os.path.normpath(recorded)).parts
        if rel and ".." not in rel and len(here) > len(rel) and here[-len(rel):] == rel:
            bases.add(os.path.join(*here[:-len(rel)]))
    return bases


def check_artifact_reader_outputs(paths: ArtifactPaths, outputs: Mapping[str, str | os.PathLike[str]], *,
                                  folders: Iterable[str] = ()) -> None:
    """:func:`check_outputs` for a command that reads the artifact set ``paths`` (batch and one-user recommend)."""
    check_outputs(outputs, artifact_set_paths(paths), folders=folders,
                  advice="write it outside the artifact set and its inputs")
