"""One error hierarchy for rekko.

The CLI catches :class:`RekkoError` once and turns it into a message and an exit
code; everything else is a bug and exits 1 with a traceback hint.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: Longest rendering of one value quoted in a message (a cell, a column name, a path).
MAX_QUOTED_CHARS = 200
#: Longest rendering of an example row or a list of found columns.
MAX_EXAMPLE_CHARS = 1_000
#: Longest message any :class:`RekkoError` prints: the backstop for text rekko did not format itself.
MAX_MESSAGE_CHARS = 2_000

_LINE_BREAKS = re.compile(r"\s*[\r\n]+\s*")
#: ``scheme://user:password@`` in any text: everything up to the authority's last ``@`` is the user-info.
_URL_CREDENTIALS = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/\s]+)@")
#: Credentials met in this process (URL user-info from the command line or the environment): never printed.
_SECRETS: set[str] = set()
#: Shorter strings are not treated as secrets on their own (``a`` or ``s3`` would blank out every message).
_MIN_SECRET_CHARS = 4
#: The user or the password of a URL's user-info alone is scrubbed from this length (``user`` is a common word).
_MIN_PART_CHARS = 6
MASK = "***"


def register_secret(value: str | None) -> None:
    """Never print ``value`` again in this process (messages, log lines): :func:`scrub` replaces it."""
    if value and len(value) >= _MIN_SECRET_CHARS:
        _SECRETS.add(value)


def register_secrets_in(text: str | None) -> None:
    """Register the user-info of every URL in ``text`` (whole, and its user and password apart).

    Libraries quote parts of a URL on their own terms (botocore: ``Invalid
    bucket name "AKIAX:Secret@bucket"``), where no ``scheme://`` is left to
    recognise; so the credentials themselves are remembered and scrubbed.
    """
    for match in _URL_CREDENTIALS.finditer(text or ""):
        userinfo = match.group("userinfo")
        register_secret(userinfo)
        register_secret(_unquote(userinfo))
        for part in userinfo.split(":"):
            for text in (part, _unquote(part)):
                if len(text) >= _MIN_PART_CHARS:
                    register_secret(text)


def _unquote(text: str) -> str:
    from urllib.parse import unquote

    return unquote(text)


def scrub(text: str) -> str:
    """``text`` with URL user-info and every registered secret replaced by ``***``."""
    out = _URL_CREDENTIALS.sub(lambda m: f"{m.group('scheme')}{MASK}@", str(text))
    for secret in sorted(_SECRETS, key=len, reverse=True):
        if secret in out:
            out = out.replace(secret, MASK)
    return out


def shorten(text: str, limit: int = MAX_QUOTED_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was.

    Input values end up in messages; a 5 MB cell must not become a 5 MB line
    on the terminal or in a log collector.
    """
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text):,} characters)"


#: Characters a terminal may act on rather than show: C0 controls but line feed, DEL, C1 controls
#: (ESC [ 2 J clears the screen, ESC ] 0 ; ... BEL retitles the window), and the bidirectional
#: overrides and isolates that make text read differently from its bytes ("Trojan Source").
_TERMINAL_UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` safe to print to a terminal: control characters shown as ``\\x1b``-style escapes, line feeds kept."""
    return _TERMINAL_UNSAFE.sub(_escape_char, str(text))


def printable_json(text: str) -> str:
    """JSON text safe for a terminal and still valid JSON: controls that ``json`` leaves raw as ``\\u`` escapes."""
    return _TERMINAL_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def one_line(text: str) -> str:
    """Line breaks (with the blanks around them) folded into single spaces: one message, one log line."""
    return _LINE_BREAKS.sub(" ", text)


def quote(value: object, limit: int = MAX_QUOTED_CHARS) -> str:
    """A value as messages show it: ``repr`` for text, plain numbers, at most ``limit`` characters, one line.

    numpy scalars print as the number they hold (``3``, not ``np.int64(3)``);
    a long string is cut before ``repr`` so a huge cell is never copied whole.
    """
    item = getattr(value, "item", None)
    if type(value).__module__ == "numpy" and callable(item) and getattr(value, "ndim", None) == 0:
        value = item()
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}… ({len(value):,} characters)"
    return one_line(shorten(repr(value), limit))


def quote_items(items: Iterable[object], limit: int = MAX_EXAMPLE_CHARS) -> str:
    """``[a, b, ...]`` of quoted items, stopping near ``limit`` characters with how many were left out."""
    shown: list[str] = []
    size = 0
    values = list(items)
    for value in values:
        text = quote(value)
        if shown and size + len(text) > limit:
            break
        shown.append(text)
        size += len(text) + 2
    rest = len(values) - len(shown)
    return "[" + ", ".join(shown) + (f", … {rest:,} more" if rest else "") + "]"


def format_example(example: object, limit: int = MAX_EXAMPLE_CHARS) -> str:
    """An example row (a dict, usually) with every key and value capped by :func:`quote`."""
    if not isinstance(example, dict):
        return quote(example, limit)
    shown: list[str] = []
    size = 0
    for key, value in example.items():
        text = f"{quote(key)}: {quote(value)}"
        if shown and size + len(text) > limit:
            shown.append(f"… {len(example) - len(shown):,} more columns")
            break
        shown.append(text)
        size += len(text) + 2
    return "{" + ", ".join(shown) + "}"


class RekkoError(Exception):
    """Base of every error rekko raises on purpose.

    Its text is one line of at most :data:`MAX_MESSAGE_CHARS` characters,
    whatever a library or an input file put into it, without credentials (:func:`scrub`).
    """

    exit_code = 1

    def __str__(self) -> str:
        return one_line(shorten(scrub(super().__str__()), MAX_MESSAGE_CHARS))

    def __reduce__(self) -> tuple[object, ...]:
        """Pickle as built (message and attributes), not by calling ``__init__`` again.

        A Dask worker's validation error reaches the client pickled; rebuilt
        through ``__init__`` from its formatted text, a DataValidationError was
        shortened twice and a MissingColumnsError listed the message's letters.
        """
        return (_restore_error, (type(self), self.args, dict(self.__dict__)))


def _restore_error(cls: type[RekkoError], args: tuple[object, ...], state: dict[str, object]) -> RekkoError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class InputError(RekkoError):
    """Bad input data or arguments: the user can fix it. Exit code 2."""

    exit_code = 2


class DataValidationError(InputError):
    """An input file is readable but its content is wrong.

    The message names the file, the column and an example bad row; the
    column and every value of the example are capped (:func:`quote`), so the
    message stays one readable line whatever the file holds.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        column: str | None = None,
        example: object | None = None,
    ) -> None:
        self.path = path
        self.column = column
        self.example = example
        parts = [f"{shorten(path, MAX_EXAMPLE_CHARS)}: " if path else "", shorten(message, MAX_EXAMPLE_CHARS)]
        if column is not None:
            parts.append(f" (column {quote(column)})")
        if example is not None:
            parts.append(f"; example row: {format_example(example)}")
        super().__init__("".join(parts))


class MissingColumnsError(DataValidationError):
    """Required columns are absent."""

    def __init__(self, missing: Iterable[str], *, path: str | None = None, available: Iterable[str] = ()) -> None:
        missing_set = sorted(set(missing))
        self.missing = missing_set
        found = quote_items(sorted(map(str, available)), limit=MAX_EXAMPLE_CHARS // 2)
        msg = f"Missed columns {quote_items(missing_set)}; found {found}"
        super().__init__(msg, path=path)


class InputFileError(InputError):
    """An input file is missing, has an unknown extension or cannot be parsed."""


class OutputPathError(InputError):
    """A pipeline output cannot go where it was asked to: two outputs on one file, an output on an input,
    a folder that cannot be written. Raised before anything is removed or written."""


class OutputLockedError(InputError):
    """Another process holds the lock of the artifact set this run would write."""


class ArtifactError(InputError):
    """Pipeline artifacts are missing, stale, tampered with or mismatched.

    The remedy is always to rerun the pipeline, and the message says so.
    """

    def __init__(self, message: str) -> None:
        super().__init__(f"{message}. Rerun the pipeline (`rekko pipeline`) to rebuild the artifacts.")


class UnsafePickleError(ArtifactError):
    """A pickle asked to load a type outside the allow-list."""


class ConfigError(InputError):
    """An invalid parameter (n < 1, unknown format, ...)."""


class EnrichmentError(RekkoError):
    """The external movie API failed in a way that stops enrichment."""
