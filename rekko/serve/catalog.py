"""Movie details for ``GET /movies/{movie_id}``: a read-only view of ``movies_md_upd``.

The recommender keeps only ids, titles and scores; the details page needs the
metadata too. The file is read from the same bytes whose sha256 is checked
against the manifest, so the details can never come from another pipeline run
than the similarity matrices they are served with.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rekko.artifacts import Manifest
from rekko.columns import Columns as C
from rekko.exceptions import ArtifactError

#: Columns shown by the details endpoint, in order, when the artifact has them.
DETAIL_COLUMNS = (
    C.TITLE,
    C.ENTITY_TYPE,
    C.GENRES,
    C.DIRECTOR,
    C.ACTORS,
    C.COUNTRY,
    C.AGE_RATING,
    C.DURATION,
    C.RELEASE_YEAR,
    C.RATING,
    C.DESCRIPTION,
    C.N_USERS,
    C.MEAN_WATCH_RATIO,
    C.POPULARITY,
    C.MOVIE_SCORE,
)


#: The type each detail column is served as (the ``Movie`` schema): inputs may hold other types,
#: e.g. MovieLens imported with ``age_rating`` as integers, and every input the pipeline accepts is served.
_TEXT_COLUMNS = (C.TITLE, C.ENTITY_TYPE, C.AGE_RATING, C.DESCRIPTION)
_LIST_COLUMNS = (C.GENRES, C.DIRECTOR, C.ACTORS, C.COUNTRY)
_FLOAT_COLUMNS = (C.DURATION, C.RATING, C.MEAN_WATCH_RATIO, C.POPULARITY, C.MOVIE_SCORE)
_INT_COLUMNS = (C.RELEASE_YEAR, C.N_USERS)


def _text(value: Any) -> str | None:
    value = json_value(value)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 16.0 (an integer column with gaps) is "16"
    if isinstance(value, list):
        return ", ".join(t for t in map(_text, value) if t is not None)
    return str(value)


def _text_list(value: Any) -> list[str] | None:
    value = json_value(value)
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    return [t for t in map(_text, items) if t is not None]


def _number(value: Any, kind: type) -> float | int | None:
    value = json_value(value)
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number):
        return None
    if kind is int:
        return int(number) if number.is_integer() and abs(number) < 2**63 else None
    return number


def served_types(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with each detail column as the type the API serves (text, list of text, number; None if missing).

    A value that cannot be that type (a year that is not an integer) is served as missing, not as an error.
    """
    out = frame.copy()
    for col in out.columns:
        if col in _TEXT_COLUMNS:
            convert = _text
        elif col in _LIST_COLUMNS:
            convert = _text_list
        elif col in _FLOAT_COLUMNS:
            def convert(v: Any) -> float | int | None:
                return _number(v, float)
        elif col in _INT_COLUMNS:
            def convert(v: Any) -> float | int | None:
                return _number(v, int)
        else:
            continue
        out[col] = pd.Series([convert(v) for v in out[col].tolist()], index=out.index, dtype=object)
    return out


@dataclass(frozen=True)
class MovieCatalog:
    """Per-movie metadata aligned to the recommender's movie order (row i = movie i)."""

    frame: pd.DataFrame  # columns: movie_id + the DETAIL_COLUMNS present

    def details(self, position: int) -> dict[str, Any]:
        """One movie as JSON-ready Python values (lists for list columns, None for missing)."""
        row = self.frame.iloc[position]
        return {col: json_value(row[col]) for col in self.frame.columns}


def json_value(value: Any) -> Any:
    """numpy/pandas scalars and arrays to JSON-ready Python values; NaN/NA to None."""
    if isinstance(value, np.ndarray):
        return [json_value(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_catalog(path: Path, manifest: Manifest, movie_ids: np.ndarray) -> MovieCatalog:
    """Read ``movies_md_upd`` from bytes verified against the manifest, in ``movie_ids`` order."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot read the movies artifact ({exc})") from exc
    expected = manifest.sha256_of("movies_upd")
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise ArtifactError(f"{path}: sha256 {actual[:12]}… does not match the manifest ({expected[:12]}…)")
    try:
        frame = pd.read_parquet(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - verified by hash, so this is a schema mismatch
        raise ArtifactError(f"{path}: cannot read the movies artifact: {type(exc).__name__}: {exc}") from exc
    columns = [C.MOVIE] + [c for c in DETAIL_COLUMNS if c in frame.columns]
    frame = frame[columns]
    ids = frame[C.MOVIE].astype(str).to_numpy()
    if len(ids) != len(movie_ids) or not np.array_equal(ids, np.asarray(movie_ids, dtype=str)):
        raise ArtifactError(f"{path}: the movies artifact lists other movies than the similarity artifacts")
    return MovieCatalog(served_types(frame.reset_index(drop=True)))
