"""Stage 3: watch-ratio features per interaction, per user and per movie.

The watch ratio (minutes watched / film length, clipped to [0, 1]) is rekko's
implicit "how much did they like it". Several sessions of one user on one movie
are summed first, so a film watched in two halves counts once, fully.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from rekko.columns import Columns as C
from rekko.config import MovieScoreConfig

log = logging.getLogger(__name__)




def attach_movie_index(interactions: pd.DataFrame, movie_ids: pd.Index) -> tuple[pd.DataFrame, int]:
    """Add a dense ``movie_idx``; drop (and count) interactions whose movie is unknown.

    A categorical ``movie_id`` (as :func:`rekko.pipeline.ingest.validate_interactions`
    makes it) is mapped through its few categories instead of every row.
    """
    ids = interactions[C.MOVIE]
    if isinstance(ids.dtype, pd.CategoricalDtype):
        codes = ids.cat.codes.to_numpy()
        by_category = movie_ids.get_indexer(ids.cat.categories)
        idx = np.where(codes >= 0, by_category[codes], -1)
    else:
        idx = movie_ids.get_indexer(ids)
    known = idx >= 0
    dropped = int((~known).sum())
    out = interactions.loc[known].copy()
    out["movie_idx"] = idx[known].astype(np.int64)
    return out.reset_index(drop=True), dropped


def aggregate_sessions(interactions: pd.DataFrame, movie_ids: pd.Index) -> pd.DataFrame:
    """One row per (user, movie): minutes summed, last watch date, session count.

    Expects the ``movie_idx`` column from :func:`attach_movie_index`; the
    ``movie_id`` of each row is read back from ``movie_ids`` by that index.
    """
    grouped = interactions.groupby([C.USER, "movie_idx"], sort=True)
    out = grouped.agg(
        **{
            C.WATCHED_MINUTES: (C.WATCHED_MINUTES, "sum"),
            C.DATETIME: (C.DATETIME, "max"),
            C.N_SESSIONS: (C.WATCHED_MINUTES, "size"),
        }
    ).reset_index()
    idx = out["movie_idx"].to_numpy()
    out[C.MOVIE] = pd.Categorical.from_codes(idx, categories=movie_ids) if len(movie_ids) else idx
    return out[[C.USER, C.MOVIE, "movie_idx", C.WATCHED_MINUTES, C.DATETIME, C.N_SESSIONS]]


def effective_duration(movies: pd.DataFrame) -> tuple[np.ndarray, int]:
    """Film length per movie; an unknown or zero length takes the median of its entity type.

    Returns the lengths and how many were imputed.
    """
    duration = movies[C.DURATION].astype("float64").to_numpy(copy=True)
    unknown = ~(duration > 0)
    n_unknown = int(unknown.sum())
    if n_unknown:
        known = ~unknown
        global_median = float(np.median(duration[known])) if known.any() else 90.0
        if C.ENTITY_TYPE in movies.columns:
            types = movies[C.ENTITY_TYPE].astype(str).to_numpy()
            medians = pd.Series(duration[known]).groupby(types[known]).median()
            fill = pd.Series(types[unknown]).map(medians).fillna(global_median).to_numpy()
        else:
            fill = np.full(n_unknown, global_median)
        duration[unknown] = fill
    return duration, n_unknown


def watch_ratio(aggregated: pd.DataFrame, duration: np.ndarray) -> pd.DataFrame:
    """Add ``watch_ratio`` = minutes / length clipped to [0, 1]."""
    out = aggregated.copy()
    lengths = duration[out["movie_idx"].to_numpy()]
    out[C.WATCH_RATIO] = np.clip(out[C.WATCHED_MINUTES].to_numpy() / lengths, 0.0, 1.0)
    return out


def user_features(interactions_upd: pd.DataFrame) -> pd.DataFrame:
    """Per-user coefficients (``int_coef.parquet``).

    ``int_coef`` = 1 / sum of the user's watch ratios, the seed's per-user
    factor, kept in the seed's file for its readers. Ranking does not read it:
    the kernel normalises each user's (recency-decayed) weights itself, which is
    the same thing when there is no decay. Zero-ratio users get 0.
    """
    g = interactions_upd.groupby(C.USER, sort=True)
    out = g.agg(
        **{
            C.N_MOVIES: (C.MOVIE, "size"),
            C.TOTAL_MINUTES: (C.WATCHED_MINUTES, "sum"),
            C.MEAN_WATCH_RATIO: (C.WATCH_RATIO, "mean"),
            "ratio_sum": (C.WATCH_RATIO, "sum"),
        }
    ).reset_index()
    ratio_sum = out.pop("ratio_sum").to_numpy()
    with np.errstate(divide="ignore"):
        out[C.INT_COEF] = np.where(ratio_sum > 0, 1.0 / np.where(ratio_sum > 0, ratio_sum, 1.0), 0.0)
    return out


def movie_features(
    movies: pd.DataFrame,
    interactions_upd: pd.DataFrame,
    config: MovieScoreConfig = MovieScoreConfig(),
) -> pd.DataFrame:
    """Per-movie popularity, shrunk mean watch ratio, normalized rating and the combined score."""
    n = len(movies)
    idx = interactions_upd["movie_idx"].to_numpy()
    ratios = interactions_upd[C.WATCH_RATIO].to_numpy()
    n_users = np.bincount(idx, minlength=n).astype(np.int64)
    ratio_sum = np.bincount(idx, weights=ratios, minlength=n)
    global_mean = float(ratios.mean()) if len(ratios) else 0.5
    m = config.prior_strength
    mean_ratio = (ratio_sum + m * global_mean) / (n_users + m) if m > 0 else np.divide(
        ratio_sum, n_users, out=np.full(n, global_mean), where=n_users > 0
    )
    max_users = n_users.max() if n else 0
    popularity = np.log1p(n_users) / np.log1p(max_users) if max_users > 0 else np.zeros(n)

    rating = movies[C.RATING].astype("float64").to_numpy() if C.RATING in movies.columns else np.full(n, np.nan)
    rating_norm = np.clip(rating / 10.0, 0.0, 1.0)
    known = np.isfinite(rating_norm)
    fill = float(rating_norm[known].mean()) if known.any() else 0.5
    rating_norm = np.where(known, rating_norm, fill)

    w = np.array([config.w_rating, config.w_watch_ratio, config.w_popularity])
    w = w / w.sum()
    score = w[0] * rating_norm + w[1] * mean_ratio + w[2] * popularity

    out = movies.copy()
    out[C.N_USERS] = n_users
    out[C.MEAN_WATCH_RATIO] = mean_ratio
    out[C.POPULARITY] = popularity
    out[C.RATING_NORM] = rating_norm
    out[C.MOVIE_SCORE] = score
    return out
