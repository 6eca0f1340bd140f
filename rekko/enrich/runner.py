"""Enrich many titles: bounded concurrency, batched atomic flushes, a clean stop.

The main thread owns the cache; worker threads only talk HTTP. At most
``2 * concurrency`` titles are in flight, so a stop (401, daily limit, Ctrl-C)
wastes little; every request has a total deadline, and on Ctrl-C or SIGTERM the
ones still in flight after a short grace are cut, so a stop takes seconds. Every
``flush_every`` answers go to a journal part beside the cache (atomic,
O(batch)); the run folds them into the cache file when it ends.
Killed with SIGKILL, a run loses at most the last unflushed batch, and the next
run applies the journal and resumes without asking again what it holds.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from rekko.columns import Columns as C
from rekko.enrich.cache import (
    append_journal,
    cache_lock,
    compact_cache,
    journal_parts,
    load_cache,
    merge_frames,
    migrate_legacy_file,
    records_frame,
    result_record,
    titles_to_ask,
    unique_titles,
    write_cache,
)
from rekko.enrich.client import (
    ERROR,
    FOUND,
    NOT_FOUND,
    ApiClient,
    ApiStop,
    Cancelled,
    DailyLimitReached,
    FetchResult,
)
from rekko.enrich.settings import EnrichSettings, Secret, redact

log = logging.getLogger(__name__)
#: After Ctrl-C / SIGTERM, answers in flight get this long to arrive; then their sockets are cut.
#: Long enough for a normal answer, short enough that ``docker stop`` (10 s) never has to SIGKILL.
STOP_GRACE_SECONDS = 2.0
#: Periodic progress lines when there is no terminal for a bar; the CLI shows them by default.
progress_log = logging.getLogger("rekko.progress.enrich")  # shown by the CLI unless -q


@dataclass(frozen=True)
class EnrichSummary:
    """What one run did. ``remaining`` titles were not asked (stopped early); errors are retried next run."""

    titles: int  # distinct titles in the input
    cached: int  # answered by the cache, not asked
    found: int
    not_found: int
    errors: int
    remaining: int
    stopped: str | None = None  # None, "daily_limit", "api_key_rejected", "access_denied", "redirect_refused",
    # or "interrupted"
    requests: int = 0
    retries: int = 0
    seconds: float = 0.0
    migrated: int = 0

    @property
    def asked(self) -> int:
        return self.found + self.not_found + self.errors

    def __str__(self) -> str:
        text = (
            f"found {self.found}, not found {self.not_found}, errors {self.errors}, remaining {self.remaining} "
            f"(of {self.titles} titles; {self.cached} already cached; {self.requests} requests, "
            f"{self.retries} retries, {self.seconds:.1f} s)"
        )
        if self.migrated:
            text += f"; migrated {self.migrated} legacy rows"
        if self.stopped:
            text += f"; stopped early: {self.stopped.replace('_', ' ')}"
        return text


class _CacheWriter:
    """Holds the answers of this run; journals a batch every ``every`` answers, compacts on close."""

    def __init__(self, path: Path, cache: pd.DataFrame, every: int) -> None:
        self.path = path
        self.cache = cache
        self.every = every
        self.parts = journal_parts(path)  # already folded into ``cache`` by load_cache
        self.pending: list[dict[str, Any]] = []
        self.batches: list[pd.DataFrame] = []

    def add(self, record: dict[str, Any]) -> None:
        self.pending.append(record)
        if len(self.pending) >= self.every:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        batch = records_frame(self.pending)
        self.parts.append(append_journal(batch, self.path))
        self.batches.append(batch)
        self.pending = []

    def close(self) -> None:
        """Flush, then fold everything into the cache file once (O(N) per run, not per batch)."""
        self.flush()
        if not self.parts:
            return
        if self.batches:
            self.cache = merge_frames(self.cache, pd.concat(self.batches, ignore_index=True))
        compact_cache(self.path, self.cache, self.parts)
        self.parts, self.batches = [], []


class _Progress:
    """tqdm on a terminal, a log line every few seconds otherwise."""

    def __init__(self, total: int, mode: str, every: float) -> None:
        self.total = total
        self.every = every
        self.done = 0
        self.start = self._last = time.monotonic()
        self.bar = None
        shown = progress_log.isEnabledFor(logging.INFO)
        if mode == "bar" or (mode == "auto" and shown and sys.stderr.isatty()):
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="title", desc="enrich", dynamic_ncols=True, file=sys.stderr)
        self.log = mode in ("log", "auto") and self.bar is None

    def update(self, counts: dict[str, int]) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(found=counts[FOUND], missing=counts[NOT_FOUND], errors=counts[ERROR], refresh=False)
            return
        now = time.monotonic()
        if self.log and now - self._last >= self.every:
            self._last = now
            rate = self.done / max(now - self.start, 1e-9)
            progress_log.info(
                "enrich: %d/%d titles (found %d, not found %d, errors %d), %.1f titles/s",
                self.done,
                self.total,
                counts[FOUND],
                counts[NOT_FOUND],
                counts[ERROR],
                rate,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _unexpected(title: str, exc: Exception, key: Secret, *, first: bool) -> FetchResult:
    """A bug hit one title: an error row, and a log line with the key scrubbed (the traceback once per run).

    ``log.exception`` would print the exception's text raw, and third-party
    messages may quote a header value; a traceback per title buries the log.
    """
    text = redact(f"{type(exc).__name__}: {exc}", key)
    if first:
        trace = redact("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)), key)
        log.error("unexpected failure for %r (a bug; the title is kept as an error):\n%s", title, trace.rstrip())
    else:
        log.error("unexpected failure for %r: %s", title, text)
    return FetchResult(ERROR, error=f"internal error: {text}")


def enrich_titles(
    titles: pd.DataFrame,
    cache_path: Path,
    settings: EnrichSettings,
    *,
    legacy_path: Path | None = None,
    limit: int | None = None,
    now: datetime | None = None,
) -> EnrichSummary:
    """Ask the API for every title (``title``, optional ``release_year``) the cache lacks or must re-ask.

    ``legacy_path``: the seed's ``Movies_r_d.xlsx``, migrated into the cache when
    the cache does not exist yet. ``limit`` asks at most that many titles.
    Returns the summary; raises, after flushing, :class:`~rekko.enrich.client.ApiKeyRejected`
    / ``ApiAccessDenied`` (exit code 2: fix the key), ``ApiRedirectRefused`` (exit
    code 1) and ``KeyboardInterrupt`` (requests in flight get
    :data:`STOP_GRACE_SECONDS`, then are cut). A daily limit -- or a 429 asking to
    wait past the cap -- is a normal, early return. A second run on the same
    cache at the same time is refused (:class:`CacheBusyError`).
    """
    with cache_lock(Path(cache_path)):
        return _enrich_locked(titles, Path(cache_path), settings, legacy_path=legacy_path, limit=limit, now=now)


def _enrich_locked(
    titles: pd.DataFrame,
    cache_path: Path,
    settings: EnrichSettings,
    *,
    legacy_path: Path | None,
    limit: int | None,
    now: datetime | None,
) -> EnrichSummary:
    started = time.monotonic()
    cache_path = Path(cache_path)
    migrated = migrate_legacy_file(Path(legacy_path), cache_path) if legacy_path is not None else 0
    now = now or datetime.now(timezone.utc)
    distinct = unique_titles(titles)
    cache = load_cache(cache_path)
    todo = titles_to_ask(distinct, cache, now=now, not_found_max_age=timedelta(days=settings.not_found_max_age_days))
    cached, to_ask = len(distinct) - len(todo), len(todo)
    if limit is not None:
        todo = todo.iloc[: max(limit, 0)]
    log.info(
        "enrich: %d distinct titles, %d answered by the cache, %d to ask from %s (%d this run)",
        len(distinct),
        cached,
        to_ask,
        settings.provider,
        len(todo),
    )

    if len(todo) and not cache_path.exists():
        write_cache(cache, cache_path)  # journal parts never exist without the file they belong to

    counts = {FOUND: 0, NOT_FOUND: 0, ERROR: 0}
    stopped: str | None = None
    fatal: ApiStop | None = None
    interrupted = False
    unexpected: set[str] = set()  # exception types already logged with a traceback
    stop = threading.Event()
    client = ApiClient(settings, stop=stop)
    writer = _CacheWriter(cache_path, cache, settings.flush_every)
    progress = _Progress(len(todo), settings.progress, settings.log_every_seconds)
    rows = iter(zip(todo[C.TITLE].tolist(), todo[C.RELEASE_YEAR].tolist(), strict=True))

    def record(title: str, year: Any, result: FetchResult) -> None:
        counts[result.status] += 1
        writer.add(result_record(title, year, result, settings.provider, datetime.now(timezone.utc)))
        progress.update(counts)

    try:
        with ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix="rekko-enrich") as pool:
            pending: dict[Future[FetchResult], tuple[str, Any]] = {}
            abort_at: float | None = None  # set on the first interrupt

            def top_up() -> None:
                while not stop.is_set() and len(pending) < 2 * settings.concurrency:
                    item = next(rows, None)
                    if item is None:
                        return
                    title, year = item
                    year = None if pd.isna(year) else int(year)
                    pending[pool.submit(client.fetch, title, year)] = (title, year)

            top_up()
            while pending:
                try:
                    if abort_at is not None and time.monotonic() >= abort_at:
                        abort_at = None
                        log.warning("cutting %d requests still in flight", len(pending))
                        client.abort_in_flight()
                    done, _ = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
                    for fut in done:
                        title, year = pending.pop(fut)
                        try:
                            result = fut.result()
                        except Cancelled:
                            continue
                        except ApiStop as exc:
                            fatal = fatal or exc
                            stop.set()
                            continue
                        except Exception as exc:  # noqa: BLE001 - one title's bug must not lose the run
                            kind = type(exc).__name__
                            result = _unexpected(title, exc, settings.api_key, first=kind not in unexpected)
                            unexpected.add(kind)
                        record(title, year, result)
                    top_up()
                except KeyboardInterrupt:
                    if interrupted:  # a second Ctrl-C: stop waiting at all, the finally still flushes
                        client.abort_in_flight()
                        raise
                    interrupted = True
                    stop.set()
                    abort_at = time.monotonic() + STOP_GRACE_SECONDS
                    log.warning(
                        "interrupted: saving; %d requests in flight get %.0f s to finish",
                        len(pending),
                        STOP_GRACE_SECONDS,
                    )
    finally:
        stop.set()
        progress.close()
        client.close()
        writer.close()

    if fatal is not None:
        stopped = fatal.reason
    elif interrupted:
        stopped = "interrupted"
    summary = EnrichSummary(
        titles=len(distinct),
        cached=cached,
        found=counts[FOUND],
        not_found=counts[NOT_FOUND],
        errors=counts[ERROR],
        remaining=to_ask - sum(counts.values()),  # titles beyond ``limit`` remain too
        stopped=stopped,
        requests=client.n_requests,
        retries=client.n_retries,
        seconds=time.monotonic() - started,
        migrated=migrated,
    )
    log.info("enrich summary: %s", summary)
    if interrupted:
        raise KeyboardInterrupt
    if fatal is not None and not isinstance(fatal, DailyLimitReached):
        raise type(fatal)(f"{fatal}; nothing lost: {summary}") from None
    if fatal is not None:
        log.warning("%s; %d titles remain: run `rekko enrich` again when the limit resets", fatal, summary.remaining)
    return summary
