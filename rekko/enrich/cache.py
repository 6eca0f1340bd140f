"""The API cache: one row per title asked, written atomically, resumable.

A row records what the API said about a title (status ``found`` / ``not_found`` /
``error`` with the reason), so a run never asks again what it already knows:
found rows are final, not-found rows are trusted for a configurable age, errors
are retried on the next run. The cache is keyed by the normalised title and the
release year when the metadata has one; a row without a year (the legacy cache
has none) answers for every year of that title.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rekko.columns import Columns as C
from rekko.enrich.client import ERROR, FOUND, NOT_FOUND, FetchResult
from rekko.exceptions import DataValidationError, EnrichmentError, MissingColumnsError
from rekko.io import atomic_path, read_table
from rekko.paths import CACHE_NAME, default_cache_path  # noqa: F401 - the cache's names, defined with the paths
from rekko.pipeline.ratings import normalize_title, parse_rating

log = logging.getLogger(__name__)


class CacheBusyError(EnrichmentError):
    """Another run holds the cache."""


STATUSES = (FOUND, NOT_FOUND, ERROR)
LEGACY_PROVIDER = "legacy"

#: Column -> dtype of the cache file, in order.
SCHEMA: dict[str, str] = {
    C.TITLE: "string",
    C.TITLE_KEY: "string",
    C.RELEASE_YEAR: "Int64",
    C.RATING: "float64",
    C.VOTES: "Int64",
    C.DESCRIPTION: "string",
    C.PROVIDER: "string",
    C.PROVIDER_ID: "string",
    C.MATCHED_TITLE: "string",
    C.MATCHED_YEAR: "Int64",
    C.FETCHED_AT: "datetime64[us, UTC]",
    C.STATUS: "string",
    C.ERROR: "string",
}


def empty_cache() -> pd.DataFrame:
    return conform(pd.DataFrame({c: pd.Series([], dtype=object) for c in SCHEMA}))


def conform(df: pd.DataFrame) -> pd.DataFrame:
    """The cache's columns, in order, with its dtypes (a new frame)."""
    out = {}
    for col, dtype in SCHEMA.items():
        s = df[col] if col in df.columns else pd.Series(pd.NA, index=df.index, dtype=object)
        if dtype.startswith("datetime"):
            s = pd.to_datetime(s, utc=True).astype(dtype)
        elif dtype == "Int64":
            s = pd.to_numeric(s, errors="coerce").round().astype("Int64")
        elif dtype == "float64":
            s = pd.to_numeric(s, errors="coerce").astype("float64")
        else:
            s = s.astype(dtype)
        out[col] = s.to_numpy() if dtype == "float64" else s.array
    return pd.DataFrame(out, index=pd.RangeIndex(len(df)))


def cache_keys(title_key: pd.Series, release_year: pd.Series) -> pd.Series:
    """One string per (normalised title, year); the year part is empty when unknown."""
    year = pd.Series(pd.array(release_year, dtype="Int64")).astype("string").fillna("")
    return pd.Series(title_key.astype("string").to_numpy(), dtype="string").str.cat(year.to_numpy(), sep="\x1f")


def journal_dir(path: Path) -> Path:
    """Where flushed batches wait to be compacted into the cache file (hidden, beside it)."""
    path = Path(path)
    return path.with_name(f".{path.name}.journal")


def journal_parts(path: Path) -> list[Path]:
    """The batches not yet compacted into ``path``, oldest first."""
    return sorted(journal_dir(path).glob("part-*.parquet"))


@contextlib.contextmanager
def cache_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the cache for one run; a second run on the same cache is refused.

    Two runs compacting the same journal would each rewrite the file from their
    own view and drop the other's answers. The lock is a kernel ``flock``: a
    killed run releases it. Where ``fcntl`` does not exist (Windows) runs are not locked.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(f".{path.name}.lock")
    with open(lock_path, "a+b") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CacheBusyError(
                f"{path}: another enrichment run is using this cache (lock {lock_path.name} is held); "
                "wait for it to finish"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def load_cache(path: Path) -> pd.DataFrame:
    """Read the cache and the batches journaled after it; absent means empty.

    A file that is not a cache is an input error naming it.
    """
    path = Path(path)
    cache = _read_cache_file(path) if path.exists() else empty_cache()
    for part in journal_parts(path):
        cache = merge_frames(cache, _read_cache_file(part))
    return cache


def _read_cache_file(path: Path) -> pd.DataFrame:
    raw = read_table(path, what="API cache")
    required = (C.TITLE, C.TITLE_KEY, C.STATUS, C.FETCHED_AT)
    missing = [c for c in required if c not in raw.columns]
    if missing:
        raise MissingColumnsError(missing, path=str(path), available=raw.columns)
    df = conform(raw)
    bad = ~df[C.STATUS].isin(STATUSES)
    if bad.any():
        raise DataValidationError(
            f"unknown status {df.loc[bad, C.STATUS].iloc[0]!r}; expected one of {', '.join(STATUSES)}",
            path=str(path),
            column=C.STATUS,
            example=df.loc[bad].iloc[0].to_dict(),
        )
    return df


def write_cache(df: pd.DataFrame, path: Path) -> None:
    """Write atomically: a reader (or a run killed mid-write) sees the old file or the new one, never half."""
    with atomic_path(path) as tmp:
        conform(df).to_parquet(tmp, index=False)


def append_journal(batch: pd.DataFrame, path: Path) -> Path:
    """Write one batch of answers beside the cache, atomically, in O(batch) -- not O(cache).

    Rewriting the whole cache every 50 titles costs O(N^2) over a run (12 s of
    68 s at 17,500 titles); the journal is folded into the file by
    :func:`compact_cache` at the end of a run or at the start of the next one.
    """
    part = journal_dir(path) / f"part-{time.time_ns():020d}-{os.getpid()}.parquet"
    write_cache(batch, part)
    return part


def compact_cache(path: Path, cache: pd.DataFrame, parts: Iterable[Path]) -> None:
    """Write ``cache`` (which already holds ``parts``) as the cache file, then drop those parts.

    Killed in between, the next load applies the parts again: by key, later
    wins, so that is harmless.
    """
    write_cache(cache, path)
    for part in parts:
        Path(part).unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not empty (another writer) or already gone
        journal_dir(path).rmdir()


def migrate_legacy(legacy: pd.DataFrame, *, source: str, fetched_at: datetime) -> pd.DataFrame:
    """Turn the seed's ``Movies_r_d.xlsx`` rows into cache rows, keeping every row.

    Title in ``title`` or ``name``; rating like ``dict_values([6.664])``, ``-1``
    or empty for unknown. A row with a rating or a description is ``found``; a
    row with neither is ``not_found`` as of ``fetched_at`` (re-asked once older
    than the configured age). Duplicate titles stay: the join picks among them.
    """
    df = legacy
    if C.TITLE not in df.columns and C.NAME in df.columns:
        df = df.rename(columns={C.NAME: C.TITLE})
    missing = [c for c in (C.TITLE, C.RATING) if c not in df.columns]
    if missing:
        raise MissingColumnsError(missing, path=source, available=legacy.columns)
    title = df[C.TITLE].astype("string").str.strip()
    rating = parse_rating(df[C.RATING])
    unparsed = (
        df[C.RATING].notna()
        & rating.isna()
        & ~df[C.RATING].astype("string").str.strip().isin(["", "-1", "-1.0", "dict_values([])", "dict_values([-1])"])
    )
    if unparsed.any():
        log.warning(
            "%s: %d ratings have no number and are kept as unknown, e.g. %r",
            source,
            int(unparsed.sum()),
            df.loc[unparsed, C.RATING].iloc[0],
        )
    if C.DESCRIPTION in df.columns:
        desc = df[C.DESCRIPTION].astype("string").str.strip()
        desc = desc.mask(desc.isin(["", "-1", "nan", "None"]))
    else:
        desc = pd.Series(pd.NA, index=df.index, dtype="string")
    year = df[C.RELEASE_YEAR] if C.RELEASE_YEAR in df.columns else pd.Series(pd.NA, index=df.index)
    has_data = rating.notna().to_numpy() | desc.notna().to_numpy()
    no_title = title.isna() | (title == "")
    if no_title.any():
        log.warning(
            "%s: %d rows have no title and cannot be matched; they are not migrated", source, int(no_title.sum())
        )
    out = pd.DataFrame(
        {
            C.TITLE: title,
            C.TITLE_KEY: normalize_title(df[C.TITLE]),
            C.RELEASE_YEAR: year,
            C.RATING: rating.to_numpy(),
            C.DESCRIPTION: desc,
            C.PROVIDER: LEGACY_PROVIDER,
            C.FETCHED_AT: pd.Timestamp(fetched_at),
            C.STATUS: np.where(has_data, FOUND, NOT_FOUND),
            C.ERROR: np.where(has_data, None, f"migrated from {Path(source).name}: no rating or description"),
        }
    )[~no_title.to_numpy()]
    return conform(out)


def migrate_legacy_file(legacy_path: Path, cache_path: Path) -> int:
    """Create the cache from the legacy xlsx (or any ratings table) once; returns rows migrated.

    Does nothing when the cache already exists, so it is safe to call on every run.
    """
    legacy_path, cache_path = Path(legacy_path), Path(cache_path)
    if cache_path.exists() or journal_parts(cache_path) or not legacy_path.exists():
        return 0
    legacy = read_table(legacy_path, what="ratings")
    mtime = datetime.fromtimestamp(legacy_path.stat().st_mtime, tz=timezone.utc)
    rows = migrate_legacy(legacy, source=str(legacy_path), fetched_at=mtime)
    write_cache(rows, cache_path)
    log.info(
        "migrated %d rows of %s into %s (%d with data)",
        len(rows),
        legacy_path,
        cache_path,
        int((rows[C.STATUS] == FOUND).sum()),
    )
    return len(rows)


def unique_titles(titles: pd.DataFrame, *, source: str = "titles") -> pd.DataFrame:
    """Distinct (title, release_year) to consider, with their keys; blank titles are counted and left out."""
    if C.TITLE not in titles.columns:
        raise MissingColumnsError([C.TITLE], path=source, available=titles.columns)
    title = titles[C.TITLE].astype("string").str.strip()
    if C.RELEASE_YEAR in titles.columns:
        year = pd.to_numeric(titles[C.RELEASE_YEAR], errors="coerce").round().astype("Int64")
    else:
        year = pd.Series(pd.NA, index=titles.index, dtype="Int64")
    df = pd.DataFrame({C.TITLE: title.array, C.TITLE_KEY: normalize_title(title).array, C.RELEASE_YEAR: year.array})
    blank = df[C.TITLE_KEY].isna() | (df[C.TITLE_KEY] == "")
    if blank.any():
        log.warning("%s: %d rows have an empty title and are not asked", source, int(blank.sum()))
    df = df[~blank.to_numpy()]
    df = df.assign(_key=cache_keys(df[C.TITLE_KEY], df[C.RELEASE_YEAR]).to_numpy())
    return df.drop_duplicates("_key").drop(columns="_key").reset_index(drop=True)


def titles_to_ask(
    titles: pd.DataFrame, cache: pd.DataFrame, *, now: datetime, not_found_max_age: timedelta
) -> pd.DataFrame:
    """The rows of ``unique_titles(...)`` the cache cannot answer.

    Answered: a ``found`` row, or a ``not_found`` row younger than the max age,
    with the same key, or with the same title and no year.
    """
    fresh = (cache[C.STATUS] == FOUND) | (
        (cache[C.STATUS] == NOT_FOUND) & (cache[C.FETCHED_AT] >= pd.Timestamp(now - not_found_max_age))
    )
    known = cache.loc[fresh.to_numpy()]
    known_keys = cache_keys(known[C.TITLE_KEY], known[C.RELEASE_YEAR]).to_numpy(dtype=object)
    no_year = pd.Series(pd.NA, index=titles.index, dtype="Int64")
    exact = cache_keys(titles[C.TITLE_KEY], titles[C.RELEASE_YEAR]).isin(known_keys).to_numpy()
    any_year = cache_keys(titles[C.TITLE_KEY], no_year).isin(known_keys).to_numpy()
    return titles.loc[~(exact | any_year)].reset_index(drop=True)


def result_record(title: str, release_year: int | None, result: FetchResult, provider: str, now: datetime) -> dict:
    """One cache row (as a dict) from one fetch result."""
    cand = result.candidate
    return {
        C.TITLE: title,
        C.RELEASE_YEAR: release_year,
        C.RATING: cand.rating if cand else np.nan,
        C.VOTES: cand.votes if cand else None,
        C.DESCRIPTION: cand.description if cand else None,
        C.PROVIDER: provider,
        C.PROVIDER_ID: cand.provider_id if cand else None,
        C.MATCHED_TITLE: cand.title if cand else None,
        C.MATCHED_YEAR: cand.year if cand else None,
        C.FETCHED_AT: now,
        C.STATUS: result.status,
        C.ERROR: result.error,
    }


def records_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Cache rows from :func:`result_record` dicts."""
    batch = pd.DataFrame(list(records))
    if batch.empty:
        return empty_cache()
    batch[C.TITLE_KEY] = normalize_title(batch[C.TITLE].astype(object))
    return conform(batch)


def merge_frames(cache: pd.DataFrame, batch: pd.DataFrame) -> pd.DataFrame:
    """``cache`` with ``batch`` added; a newer row replaces every older row of the same key."""
    if batch.empty:
        return cache
    batch_keys = cache_keys(batch[C.TITLE_KEY], batch[C.RELEASE_YEAR])
    batch = batch.loc[~batch_keys.duplicated(keep="last").to_numpy()]
    old_keys = cache_keys(cache[C.TITLE_KEY], cache[C.RELEASE_YEAR])
    kept = cache.loc[~old_keys.isin(batch_keys.to_numpy(dtype=object)).to_numpy()]
    if kept.empty:
        return batch.reset_index(drop=True)
    return pd.concat([kept, batch], ignore_index=True)


def merge_records(cache: pd.DataFrame, records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """The cache with ``records`` added; a new answer replaces every older row of the same key."""
    return merge_frames(cache, records_frame(records))


def read_cache_as_ratings(cache_path: Path) -> pd.DataFrame:
    """The found rows in the shape :func:`rekko.pipeline.ratings.clean_ratings` takes.

    Columns: title, rating (float, NaN unknown), description, release_year (nullable).
    """
    cache_path = Path(cache_path)
    if not cache_path.exists() and not journal_parts(cache_path):
        read_table(cache_path, what="API cache")  # raises the usual "file not found"
    cache = load_cache(cache_path)
    found = cache.loc[(cache[C.STATUS] == FOUND).to_numpy()]
    return pd.DataFrame(
        {
            C.TITLE: found[C.TITLE].astype(object).to_numpy(),
            C.RATING: found[C.RATING].to_numpy(dtype="float64"),
            C.DESCRIPTION: found[C.DESCRIPTION].astype(object).where(found[C.DESCRIPTION].notna(), None).to_numpy(),
            C.RELEASE_YEAR: found[C.RELEASE_YEAR].array,
        }
    )
