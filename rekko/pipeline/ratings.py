"""Stage 2: clean the external API's ratings/descriptions and attach them to movies.

The legacy cache (``Movies_r_d.xlsx``) stores a rating as ``dict_values([6.664])``,
uses ``-1`` or an empty cell for "unknown" and repeats titles (remakes, a film and
a series of the same name). Cleaning makes one float rating (NaN = unknown) and
one description per row; attaching never multiplies movie rows.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from rekko.columns import Columns as C
from rekko.exceptions import DataValidationError, MissingColumnsError

log = logging.getLogger(__name__)

TITLE_KEY = "title_key"
_NUMBER = r"(-?\d+(?:[.,]\d+)?(?:[eE][-+]?\d+)?)"


def normalize_title(titles: pd.Series) -> pd.Series:
    """Casefold, fold ``ё`` to ``е``, drop punctuation and collapse spaces.

    Works on Cyrillic and Latin alike; used as the join key between the
    metadata and the API cache.
    """
    s = titles.astype("string").fillna("").str.casefold().str.replace("ё", "е", regex=False)
    s = s.str.replace(r"[^\w\s]", " ", regex=True).str.replace(r"\s+", " ", regex=True).str.strip()
    return s.astype(object)


def parse_rating(values: pd.Series) -> pd.Series:
    """Parse ratings in every form the cache has seen into floats; unknown is NaN.

    Accepts numbers, numeric strings (``"7,2"`` too), and the legacy
    ``dict_values([6.664])``. ``-1``, ``0``-less negatives, empty cells and
    ``dict_values([])`` mean unknown.
    """
    if pd.api.types.is_numeric_dtype(values):
        out = values.astype("float64")
    else:
        text = values.astype("string")
        extracted = text.str.extract(_NUMBER, expand=False).str.replace(",", ".", regex=False)
        out = pd.to_numeric(extracted, errors="coerce").astype("float64")
    out = out.where(out >= 0)
    return pd.Series(np.asarray(out, dtype="float64"), index=values.index, name=C.RATING)


def clean_ratings(raw: pd.DataFrame, *, path: str = "ratings") -> pd.DataFrame:
    """Return one tidy row per cache row: title, title_key, rating, description[, release_year].

    ``raw`` is not modified. ``name`` is accepted for ``title``.
    """
    df = raw.copy()
    if C.TITLE not in df.columns and C.NAME in df.columns:
        df = df.rename(columns={C.NAME: C.TITLE})
    missing = [c for c in (C.TITLE, C.RATING, C.DESCRIPTION) if c not in df.columns]
    if missing:
        raise MissingColumnsError(missing, path=path, available=raw.columns)
    bad_rating = raw_bad = None
    rating = parse_rating(df[C.RATING])
    # a cell that has text but no number is bad data, not "unknown"
    if not pd.api.types.is_numeric_dtype(df[C.RATING]):
        text = df[C.RATING].astype("string").str.strip()
        unparsable = text.notna() & (text != "") & ~text.str.contains(r"\d", regex=True) & (
            ~text.str.fullmatch(r"dict_values\(\[\]\)|nan|None|null", case=False)
        )
        if unparsable.any():
            raw_bad = df.loc[unparsable].iloc[0]
            bad_rating = raw_bad[C.RATING]
    if bad_rating is not None:
        raise DataValidationError(
            f"rating is not a number: {bad_rating!r}",
            path=path,
            column=C.RATING,
            example=raw_bad.to_dict(),
        )
    description = df[C.DESCRIPTION].astype("string").str.strip()
    description = description.mask(description.isin(["", "-1", "nan", "None"]))
    out = pd.DataFrame(
        {
            C.TITLE: df[C.TITLE].astype("string").str.strip().astype(object),
            TITLE_KEY: normalize_title(df[C.TITLE]),
            C.RATING: rating.to_numpy(),
            C.DESCRIPTION: description.astype(object),
        },
        index=df.index,
    )
    year_col = next((c for c in (C.RELEASE_YEAR, "year") if c in df.columns), None)
    if year_col is not None:
        out[C.RELEASE_YEAR] = pd.to_numeric(df[year_col], errors="coerce").astype("Float64")
    untitled = out[TITLE_KEY] == ""
    if untitled.any():  # a row no movie can join: counted and said, never dropped silently
        log.warning("%s: dropped %d of %d rows without a title (they cannot be joined to a movie), e.g. %s",
                    path, int(untitled.sum()), len(out), df.loc[untitled].iloc[0].to_dict())
        out = out[~untitled]
    return out.reset_index(drop=True)


def _best_per_key(ratings: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per key: prefer a known rating, then a description, then the first seen."""
    ranked = ratings.assign(
        _has_rating=ratings[C.RATING].notna(),
        _has_desc=ratings[C.DESCRIPTION].notna(),
        _order=np.arange(len(ratings)),
    ).sort_values(["_has_rating", "_has_desc", "_order"], ascending=[False, False, True], kind="stable")
    return ranked.drop_duplicates(keys, keep="first").drop(columns=["_has_rating", "_has_desc", "_order"])


def attach_ratings(movies: pd.DataFrame, ratings: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Left-join cleaned ratings onto movies by normalized title (and year when both have one).

    Returns the movies frame with ``rating`` and ``description`` columns (same
    rows, same order) and counts: matched, matched by year, ambiguous titles.
    """
    keys = normalize_title(movies[C.TITLE])
    left = pd.DataFrame({TITLE_KEY: keys.to_numpy()}, index=movies.index)
    rating = pd.Series(np.nan, index=movies.index, dtype="float64")
    desc = pd.Series(None, index=movies.index, dtype=object)
    matched_by_year = np.zeros(len(movies), dtype=bool)

    has_year = C.RELEASE_YEAR in ratings.columns and C.RELEASE_YEAR in movies.columns
    if has_year:
        left[C.RELEASE_YEAR] = pd.to_numeric(movies[C.RELEASE_YEAR], errors="coerce").astype("Float64").to_numpy()
        with_year = ratings[ratings[C.RELEASE_YEAR].notna()]
        by_year = _best_per_key(with_year, [TITLE_KEY, C.RELEASE_YEAR])
        j = left.reset_index().merge(by_year, on=[TITLE_KEY, C.RELEASE_YEAR], how="inner").set_index("index")
        rating.loc[j.index] = j[C.RATING].to_numpy()
        desc.loc[j.index] = j[C.DESCRIPTION].to_numpy()
        matched_by_year = movies.index.isin(j.index)

    counts_per_key = ratings[TITLE_KEY].value_counts()
    by_title = _best_per_key(ratings, [TITLE_KEY])
    rest = left.loc[~matched_by_year, [TITLE_KEY]].reset_index()
    j2 = rest.merge(by_title[[TITLE_KEY, C.RATING, C.DESCRIPTION]], on=TITLE_KEY, how="inner").set_index("index")
    rating.loc[j2.index] = j2[C.RATING].to_numpy()
    desc.loc[j2.index] = j2[C.DESCRIPTION].to_numpy()

    out = movies.copy()
    out[C.RATING] = rating.to_numpy()
    out[C.DESCRIPTION] = desc.to_numpy()
    ambiguous = int(keys[~matched_by_year].map(counts_per_key).fillna(0).gt(1).sum())
    stats = {
        "movies": len(movies),
        "matched": int(matched_by_year.sum() + len(j2)),
        "matched_by_year": int(matched_by_year.sum()),
        "ambiguous_title_matches": ambiguous,
        "with_rating": int(out[C.RATING].notna().sum()),
        "with_description": int(out[C.DESCRIPTION].notna().sum()),
    }
    assert len(out) == len(movies)
    return out, stats
