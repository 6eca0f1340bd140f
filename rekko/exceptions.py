"""One error hierarchy for rekko.

The CLI catches :class:`RekkoError` once and turns it into a message and an exit
code; everything else is a bug and exits 1 with a traceback hint.
"""

from __future__ import annotations

from collections.abc import Iterable


class RekkoError(Exception):
    """Base of every error rekko raises on purpose."""

    exit_code = 1


class InputError(RekkoError):
    """Bad input data or arguments: the user can fix it. Exit code 2."""

    exit_code = 2


class DataValidationError(InputError):
    """An input file is readable but its content is wrong.

    The message names the file, the column and an example bad row.
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
        parts = [f"{path}: " if path else "", message]
        if column is not None:
            parts.append(f" (column '{column}')")
        if example is not None:
            parts.append(f"; example row: {example}")
        super().__init__("".join(parts))


class MissingColumnsError(DataValidationError):
    """Required columns are absent."""

    def __init__(self, missing: Iterable[str], *, path: str | None = None, available: Iterable[str] = ()) -> None:
        missing_set = sorted(set(missing))
        self.missing = missing_set
        msg = f"Missed columns {missing_set}; found {sorted(map(str, available))}"
        super().__init__(msg, path=path)


class InputFileError(InputError):
    """An input file is missing, has an unknown extension or cannot be parsed."""


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
