"""Progress of long work: each stage as it starts and ends, on stderr.

Every report goes through the ``rekko.progress`` logger (and its children,
e.g. ``rekko.progress.enrich``). A library follows Python's logging
convention and prints nothing unless its caller configures logging; the
``rekko`` CLI shows these lines by default and ``-q`` silences them
(:func:`configure`). So a pipeline that enriches titles for eleven minutes
says so as it goes, and a script importing rekko stays quiet.

On a terminal, :func:`track` draws a progress bar (tqdm) for work counted in
steps; otherwise it writes a plain line every few seconds, which is what a log
collector wants.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

log = logging.getLogger("rekko.progress")

#: Seconds between two plain progress lines of :func:`track` without a terminal.
LINE_EVERY_SECONDS = 10.0


def enabled() -> bool:
    """Whether progress reports are shown (the CLI without ``-q``, or a caller's logging at INFO)."""
    return log.isEnabledFor(logging.INFO)


def configure(*, quiet: bool = False, stream: Any = None) -> None:
    """Show progress on ``stream`` (stderr) as ``rekko: <message>`` lines, or nothing with ``quiet``.

    Called once by the CLI. Idempotent: a second call replaces the handler.
    """
    for handler in list(log.handlers):
        if getattr(handler, "_rekko_progress", False):
            log.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("rekko: %(message)s"))
    handler._rekko_progress = True  # type: ignore[attr-defined]
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.WARNING if quiet else logging.INFO)


def _fmt_count(n: int) -> str:
    return f"{n:,}"


def count(n: int, noun: str) -> str:
    """``count(12000, "rows")`` -> ``"12,000 rows"``."""
    return f"{_fmt_count(n)} {noun}"


@dataclass
class Stage:
    """What a running stage reports when it ends: rows it produced and counted facts.

    ``facts`` maps a label to a number, printed value first: ``{"users": 400}`` -> ``400 users``.
    """

    name: str
    rows: int | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    elapsed: float = 0.0


@contextmanager
def stage(name: str, *, of: str | None = None, logger: logging.Logger | None = None) -> Iterator[Stage]:
    """Report ``name`` as it starts (on ``of``, e.g. ``count(n, "rows")``) and as it ends (rows, seconds).

    Set ``.rows`` (and ``.facts``) on the yielded :class:`Stage` to have them
    printed at the end. A stage that raises reports nothing more: the error
    is the CLI's to print.
    """
    out = logger or log
    report = Stage(name)
    out.info("%s ...%s", name, f" ({of})" if of else "")
    start = time.perf_counter()
    yield report
    report.elapsed = time.perf_counter() - start
    parts = []
    if report.rows is not None:
        parts.append(f"{_fmt_count(report.rows)} rows")
    parts.extend(f"{_fmt_count(v) if isinstance(v, int) and not isinstance(v, bool) else v} {k}"
                 for k, v in report.facts.items())
    parts.append(f"{report.elapsed:.1f} s")
    out.info("%s done: %s", name, ", ".join(parts))


def track(items: Iterable[T], *, total: int | None, desc: str, unit: str = "step",
          logger: logging.Logger | None = None, every: float = LINE_EVERY_SECONDS) -> Iterator[T]:
    """Yield ``items``; a bar on a terminal, a line every ``every`` seconds otherwise, nothing when quiet."""
    out = logger or log
    if not out.isEnabledFor(logging.INFO):
        yield from items
        return
    if sys.stderr.isatty():
        from tqdm import tqdm

        with tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr, leave=False) as bar:
            for item in items:
                yield item
                bar.update(1)
        return
    start = last = time.monotonic()
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        if now - last >= every:
            last = now
            of = f"/{_fmt_count(total)}" if total is not None else ""
            out.info("%s: %s%s %ss (%.1f s)", desc, _fmt_count(done), of, unit, now - start)
