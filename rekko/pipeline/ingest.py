"""Stage 1: read and validate the three inputs into canonical frames.

Every check here fails with a :class:`DataValidationError` naming the file, the
column and an example row, before anything is written. Canonical forms:

* interactions: ``user_id`` int64, ``movie_id`` str, ``watch_duration_minutes``
  float64 >= 0, ``last_watch_dt`` datetime64 (NaT when the file has no date);
* movies: one row per ``movie_id`` (str), list-valued columns as tuples of str,
  ``duration`` float64 minutes (NaN = unknown);
* ratings: see :func:`rekko.pipeline.ratings.clean_ratings`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from rekko.columns import INTERACTIONS_REQUIRED, LIST_COLUMNS, MOVIES_REQUIRED
from rekko.columns import Columns as C
from rekko.exceptions import DataValidationError, MissingColumnsError, quote
from rekko.ids import INT64_MAX, parse_user_id
from rekko.io import read_table
from rekko.pipeline.ratings import clean_ratings
from rekko.pipeline.sources import Part, is_url, read_part, resolve_parts

log = logging.getLogger(__name__)

_TIMESTAMP_ALIASES = (C.DATETIME, "timestamp", "watch_dt", "date")

#: Watch dates outside these years (inclusive) are typos or placeholders (year 0, 9999), not watches.
WATCH_YEARS = (1900, 2100)
#: Below this total no sum of non-negative minutes can overflow, so the per-user check is skipped.
_SAFE_MINUTES_TOTAL = 1e300


def _example(df: pd.DataFrame, mask: np.ndarray | pd.Series) -> dict[str, object]:
    """The first row where ``mask`` holds, as a plain dict for messages."""
    row = df.loc[np.asarray(mask)].iloc[0]
    return {str(k): (None if pd.isna(v) else v) if np.isscalar(v) or v is None else v for k, v in row.items()}


def require_columns(df: pd.DataFrame, required: Sequence[str], path: str | Path) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise MissingColumnsError(missing, path=str(path), available=df.columns)


def numeric_column(
    df: pd.DataFrame,
    column: str,
    path: str | Path,
    *,
    allow_missing: bool,
    allow_negative: bool = False,
) -> pd.Series:
    """Coerce a column to float64, failing on text that is not a number or on negatives."""
    raw = df[column]
    values = pd.to_numeric(raw, errors="coerce") if not pd.api.types.is_numeric_dtype(raw) else raw
    values = values.astype("float64")
    present = raw.notna().to_numpy()
    if pd.api.types.is_string_dtype(raw) or raw.dtype == object:
        present = present & raw.astype("string").str.strip().fillna("").ne("").to_numpy()
    not_number = present & values.isna().to_numpy()
    if not_number.any():
        raise DataValidationError(
            f"expected numbers, got {quote(raw[not_number].iloc[0])}",
            path=str(path),
            column=column,
            example=_example(df, not_number),
        )
    if not allow_missing and (~present).any():
        raise DataValidationError("expected a number, got an empty cell", path=str(path), column=column,
                                  example=_example(df, ~present))
    if not np.isfinite(values.fillna(0.0).to_numpy()).all():
        bad = ~np.isfinite(values.fillna(0.0).to_numpy())
        raise DataValidationError("expected finite numbers, got inf", path=str(path), column=column,
                                  example=_example(df, bad))
    if not allow_negative:
        negative = (values < 0).to_numpy()
        if negative.any():
            raise DataValidationError(
                f"expected non-negative numbers, got {values[negative].iloc[0]}",
                path=str(path),
                column=column,
                example=_example(df, negative),
            )
    return values


def categorical_ids(df: pd.DataFrame, column: str, path: str | Path) -> pd.Categorical:
    """Ids as a categorical of str: validated and mapped once per distinct id, not per row."""
    codes, uniques = pd.factorize(df[column], use_na_sentinel=True)
    if (codes < 0).any():
        raise DataValidationError("expected an id, got an empty cell", path=str(path), column=column,
                                  example=_example(df, codes < 0))
    ids = id_column(pd.DataFrame({column: uniques}), column, path)
    if ids.duplicated().any():  # 1 and "1" are one id once read as text
        categories, remap = pd.factorize(ids)
        return pd.Categorical.from_codes(categories[codes], categories=pd.Index(remap, dtype=object))
    return pd.Categorical.from_codes(codes, categories=pd.Index(ids, dtype=object))


def id_column(df: pd.DataFrame, column: str, path: str | Path) -> pd.Series:
    """Ids as str; an empty id is an error."""
    raw = df[column]
    text = raw.astype("string").str.strip()
    empty = (raw.isna() | text.eq("")).to_numpy()
    if empty.any():
        raise DataValidationError("expected an id, got an empty cell", path=str(path), column=column,
                                  example=_example(df, empty))
    if pd.api.types.is_float_dtype(raw):
        # ids that went through a float column (1.0) are integers at heart
        text = raw.astype("int64").astype("string")
    return text.astype(object)


def _watch_datetime(df: pd.DataFrame, path: str | Path) -> pd.Series:
    """The watch time from a timestamp column, else ``year``/``month``/``day`` (NaT if neither).

    A full timestamp is preferred: it orders a user's watches within a day,
    which the recency weights of the history depend on.
    """
    has_timestamp = any(c in df.columns for c in _TIMESTAMP_ALIASES)
    if not has_timestamp and all(c in df.columns for c in (C.YEAR, C.MONTH, C.DAY)):
        # a log has few distinct dates: each distinct (year, month, day) is converted and checked once
        combined = np.zeros(len(df), dtype=np.int64)
        values = []
        for c in (C.YEAR, C.MONTH, C.DAY):
            codes, uniques = pd.factorize(numeric_column(df, c, path, allow_missing=True).to_numpy(),
                                          use_na_sentinel=False)
            combined = combined * max(len(uniques), 1) + codes
            values.append(np.asarray(uniques, dtype=np.float64))
        codes, keys = pd.factorize(combined)
        del combined
        sizes = [len(v) for v in values]
        small = pd.DataFrame({
            "year": values[0][keys // (sizes[1] * sizes[2])],
            "month": values[1][(keys // sizes[2]) % sizes[1]],
            "day": values[2][keys % sizes[2]],
        })
        dates = pd.to_datetime(small, errors="coerce")
        bad_date = (dates.isna() & small["year"].notna()).to_numpy()
        if bad_date.any():
            raise DataValidationError("not a valid date", path=str(path), column=f"{C.YEAR}/{C.MONTH}/{C.DAY}",
                                      example=_example(df, bad_date[codes]))
        _check_watch_years(dates, df, path, f"{C.YEAR}/{C.MONTH}/{C.DAY}", codes=codes)
        return pd.Series(dates.to_numpy(dtype="datetime64[ns]")[codes], index=df.index)
    column = next((c for c in _TIMESTAMP_ALIASES if c in df.columns), None)
    if column is None:
        return pd.Series(pd.NaT, index=df.index, dtype="datetime64[ns]")
    raw = df[column]
    if pd.api.types.is_numeric_dtype(raw):
        dt = pd.to_datetime(raw, unit="s", errors="coerce")
    else:
        dt = pd.to_datetime(raw, errors="coerce", format="mixed")
    bad = dt.isna().to_numpy() & raw.notna().to_numpy()
    if bad.any():
        raise DataValidationError(f"not a date: {quote(raw[bad].iloc[0])}", path=str(path), column=column,
                                  example=_example(df, bad))
    _check_watch_years(dt, df, path, column)
    return dt.astype("datetime64[ns]")


def _check_watch_years(dt: pd.Series, df: pd.DataFrame, path: str | Path, column: str, *,
                       codes: np.ndarray | None = None) -> None:
    """Refuse watch dates outside :data:`WATCH_YEARS`.

    Year 0 or 9999 is a placeholder, and one such date would anchor every
    recency weight of its user; it is bad input like any other bad cell, not
    a row to drop quietly.
    """
    first, last = WATCH_YEARS
    years = dt.dt.year.to_numpy(dtype="float64", na_value=np.nan)
    outside = (years < first) | (years > last)
    if outside.any():
        # ``codes``: ``dt`` holds the distinct dates, row i of ``df`` has date ``codes[i]``
        rows = outside if codes is None else outside[codes]
        raise DataValidationError(
            f"watch date {dt[outside].iloc[0] if codes is None else dt.iloc[codes[np.argmax(rows)]]} "
            f"is outside the years {first}..{last}",
            path=str(path), column=column, example=_example(df, rows))


def _check_minute_sums(raw: pd.DataFrame, user: np.ndarray, movie: pd.Categorical, minutes: np.ndarray,
                       path: str | Path) -> None:
    """Refuse minutes whose sums overflow to infinity, per (user, movie) and per user.

    The features stage sums sessions per user and movie and minutes per user;
    1e308 twice is inf, which used to print a raw numpy warning and store inf.
    Minutes are non-negative, so a finite grand total well below the float
    maximum proves every partial sum finite and the grouped sums are skipped.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        total = float(minutes.sum())
        if total < _SAFE_MINUTES_TOTAL:
            return
        frame = pd.DataFrame({"user": user, "movie": movie.codes, "minutes": minutes})
        per_pair = frame.groupby(["user", "movie"])["minutes"].transform("sum").to_numpy()
        per_user = frame.groupby("user")["minutes"].transform("sum").to_numpy()
    for sums, scope in ((per_pair, "pair"), (per_user, "user")):
        bad = ~np.isfinite(sums)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            rows = int((user == user[i]).sum()) if scope == "user" else int(
                ((user == user[i]) & (movie.codes == movie.codes[i])).sum())
            where = f"on movie {quote(movie[i])} " if scope == "pair" else ""
            raise DataValidationError(
                f"watch minutes of user {user[i]} {where}sum to infinity over {rows} rows "
                f"(e.g. {quote(minutes[i])}): expected minutes a person can watch",
                path=str(path), column=C.WATCHED_MINUTES, example=_example(raw, bad))


def user_id_column(df: pd.DataFrame, column: str, path: str | Path) -> np.ndarray:
    """User ids as exact int64, whatever column type they arrived in.

    Integer columns pass untouched; every other type is validated once per
    distinct value. Ids outside int64, fractions, and floats too large to be
    exact are bad input naming the row, never rounded or wrapped around.
    """
    raw = df[column]
    empty = raw.isna().to_numpy()
    if empty.any():
        raise DataValidationError("expected a number, got an empty cell", path=str(path), column=column,
                                  example=_example(df, empty))
    if pd.api.types.is_signed_integer_dtype(raw.dtype):
        return raw.to_numpy(dtype=np.int64)
    if pd.api.types.is_unsigned_integer_dtype(raw.dtype):
        too_big = (raw > INT64_MAX).to_numpy()
        if too_big.any():
            raise DataValidationError(str(parse_user_id(int(raw[too_big].iloc[0]))), path=str(path),
                                      column=column, example=_example(df, too_big))
        return raw.to_numpy(dtype=np.int64)
    codes, uniques = pd.factorize(raw.astype(object) if pd.api.types.is_bool_dtype(raw.dtype) else raw)
    parsed = [parse_user_id(v) for v in np.asarray(uniques, dtype=object)]
    for i, value in enumerate(parsed):
        if isinstance(value, str):
            raise DataValidationError(value, path=str(path), column=column, example=_example(df, codes == i))
    return np.asarray(parsed, dtype=np.int64)[codes]


def validate_interactions(raw: pd.DataFrame, path: str | Path = "interactions", *,
                          allow_empty: bool = False) -> pd.DataFrame:
    """Canonical interactions frame from a raw one (``raw`` is not modified).

    No rows is an error, unless ``allow_empty`` (one part of a partitioned input: Spark and Dask write
    empty parts for empty partitions); the columns are required either way.
    """
    require_columns(raw, INTERACTIONS_REQUIRED, path)
    if raw.empty and not allow_empty:
        raise DataValidationError("no interactions: the file has no rows", path=str(path))
    user = user_id_column(raw, C.USER, path)
    minutes = numeric_column(raw, C.WATCHED_MINUTES, path, allow_missing=False).to_numpy()
    movie = categorical_ids(raw, C.MOVIE, path)
    _check_minute_sums(raw, user, movie, minutes, path)
    return pd.DataFrame(
        {
            C.USER: user,
            C.MOVIE: movie,
            C.WATCHED_MINUTES: minutes,
            C.DATETIME: _watch_datetime(raw, path).to_numpy(),
        }
    )


def parse_list_column(values: pd.Series) -> pd.Series:
    """Parse a list-valued column into tuples of stripped strings.

    Accepts JSON-like strings (``'["Драма", "Комедия"]'``), real lists/arrays,
    and comma-separated text. Missing becomes an empty tuple. The string work
    runs in Arrow kernels, not per row in Python.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    raw = values.astype(object)
    is_seq = np.fromiter((isinstance(v, (list, tuple, np.ndarray)) for v in raw), bool, len(raw))
    if is_seq.any():
        raw = raw.copy()
        raw[is_seq] = [",".join(map(str, v)) for v in raw[is_seq]]
    text = pa.array(pd.Series(raw, dtype="string").fillna("").to_numpy(dtype=object), type=pa.string())
    stripped = pc.replace_substring_regex(text, r"^\s*\[|\]\s*$|[\"']", "")
    parts = pc.split_pattern(stripped, ",")
    items = pc.utf8_trim_whitespace(pc.list_flatten(parts))
    rows = pc.list_parent_indices(parts).to_numpy()
    keep = pc.not_equal(items, "").to_numpy(zero_copy_only=False)
    counts = np.bincount(rows[keep], minlength=len(text))
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    lists = pa.ListArray.from_arrays(offsets, items.filter(pa.array(keep))).to_pylist()
    return pd.Series([tuple(x) for x in lists], index=values.index, dtype=object)


def validate_movies(raw: pd.DataFrame, path: str | Path = "movies metadata") -> pd.DataFrame:
    """Canonical movies frame; extra columns are kept."""
    require_columns(raw, MOVIES_REQUIRED, path)
    if raw.empty:
        raise DataValidationError("no movies: the file has no rows", path=str(path))
    df = raw.copy()
    df[C.MOVIE] = id_column(raw, C.MOVIE, path).to_numpy()
    dup = df[C.MOVIE].duplicated(keep=False).to_numpy()
    if dup.any():
        raise DataValidationError(
            f"duplicate movie_id {quote(df.loc[dup, C.MOVIE].iloc[0])} "
            f"({int(df[C.MOVIE].duplicated().sum())} duplicates)",
            path=str(path),
            column=C.MOVIE,
            example=_example(raw, dup),
        )
    df[C.TITLE] = raw[C.TITLE].astype("string").fillna("").str.strip().astype(object)
    if C.DURATION in raw.columns:
        df[C.DURATION] = numeric_column(raw, C.DURATION, path, allow_missing=True).to_numpy()
    else:
        df[C.DURATION] = np.nan
    for col in LIST_COLUMNS:
        df[col] = parse_list_column(raw[col]) if col in raw.columns else pd.Series([()] * len(df), index=df.index)
    if C.ENTITY_TYPE in raw.columns:
        df[C.ENTITY_TYPE] = raw[C.ENTITY_TYPE].astype("string").fillna("").astype(object)
    if C.RELEASE_YEAR in raw.columns:
        df[C.RELEASE_YEAR] = numeric_column(raw, C.RELEASE_YEAR, path, allow_missing=True).astype("Float64")
    return df.reset_index(drop=True)


def load_interactions(path: str | Path) -> pd.DataFrame:
    """The canonical interactions of ``path``: one file, a folder of parts, a glob or a URL.

    Each part is read and validated on its own (an error names the part);
    one local file takes exactly the path it always did.
    """
    if not is_url(path) and Path(path).is_file():
        return validate_interactions(read_table(path, what="interactions", categorical=(C.MOVIE,)), path)
    parts = resolve_parts(path)
    frames = [load_part(part) for part in parts]
    empty = [part.name for part, frame in zip(parts, frames, strict=True) if frame.empty]
    if len(empty) == len(parts):
        raise DataValidationError(f"no interactions: all {len(parts)} parts have no rows", path=str(path))
    if empty:
        log.warning("skipped %d of %d interaction parts with no rows: %s", len(empty), len(parts),
                    ", ".join(empty[:5]) + (" ..." if len(empty) > 5 else ""))
        frames = [frame for frame in frames if not frame.empty]
    out = concat_validated(frames)
    del frames
    if len(out) and float(out[C.WATCHED_MINUTES].sum()) >= _SAFE_MINUTES_TOTAL:  # sums across parts, as in one file
        _check_minute_sums(out, out[C.USER].to_numpy(), out[C.MOVIE].array,
                           out[C.WATCHED_MINUTES].to_numpy(), path)
    return out


def load_movies(path: str | Path) -> pd.DataFrame:
    return validate_movies(read_table(path, what="movies metadata"), path)


def load_ratings(path: str | Path, extra: pd.DataFrame | None = None) -> pd.DataFrame:
    """Cleaned ratings/descriptions; ``extra`` rows (the API cache) are put first so they win ties."""
    raw = read_table(path, what="ratings/descriptions")
    cleaned = clean_ratings(raw, path=str(path))
    if extra is not None and not extra.empty:
        cleaned = pd.concat([clean_ratings(extra, path="api cache"), cleaned], ignore_index=True)
    return cleaned


def load_part(part: Part) -> pd.DataFrame:
    """Read and validate one part: the canonical interactions frame (possibly empty), errors naming the part."""
    return validate_interactions(read_part(part, categorical=(C.MOVIE,)), part.name, allow_empty=True)


def concat_validated(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """One canonical frame from validated parts; the movie-id categoricals are unioned, not turned into strings."""
    if len(frames) == 1:
        return frames[0]
    movies = pd.api.types.union_categoricals([f[C.MOVIE].array for f in frames], ignore_order=True)
    out = pd.concat([f.drop(columns=[C.MOVIE]) for f in frames], ignore_index=True)
    out.insert(1, C.MOVIE, movies)
    return out
