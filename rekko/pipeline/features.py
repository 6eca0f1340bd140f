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
from rekko.config import RECENCY_MODES, MovieScoreConfig
from rekko.exceptions import ConfigError

log = logging.getLogger(__name__)




def attach_movie_index(interactions: pd.DataFrame, movie_ids: pd.Index) -> tuple[pd.DataFrame, int]:
    """Add a dense ``movie_idx``; drop (and count) interactions whose movie is unknown.

    A categorical ``movie_id`` (as :func:`rekko.pipeline.ingest.validate_interactions`
    makes it) is mapped through its few categories instead of every row. When
    every movie is known the rows are not copied: the columns are shared with
    ``interactions`` (a shallow copy plus the new column).
    """
    ids = interactions[C.MOVIE]
    if isinstance(ids.dtype, pd.CategoricalDtype):
        codes = ids.cat.codes.to_numpy()
        by_category = movie_ids.get_indexer(ids.cat.categories).astype(np.int32)
        idx = np.where(codes >= 0, by_category[codes], np.int32(-1))
    else:
        idx = movie_ids.get_indexer(ids)
    known = idx >= 0
    dropped = int((~known).sum())
    if dropped:
        out = interactions.loc[known].reset_index(drop=True)
        idx = idx[known]
    else:
        out = interactions.copy(deep=False).reset_index(drop=True)
    out["movie_idx"] = idx.astype(np.int64)
    return out, dropped


def aggregate_sessions(interactions: pd.DataFrame, movie_ids: pd.Index) -> pd.DataFrame:
    """One row per (user, movie): minutes summed, last watch date, session count; sorted by user, then movie.

    Expects the ``movie_idx`` column from :func:`attach_movie_index`; the
    ``movie_id`` of each row is read back from ``movie_ids`` by that index.
    One sort of a (user, movie) key and ``reduceat`` sums: at 30M rows a
    grouped aggregation took 34 s and several copies of the frame. A missing
    date is ignored by the max unless all of the pair's dates are missing.
    """
    user = interactions[C.USER].to_numpy()
    movie = interactions["movie_idx"].to_numpy()
    n_movies = max(len(movie_ids), int(movie.max()) + 1 if len(movie) else 0, 1)
    low = int(user.min()) if len(user) else 0
    span = (int(user.max()) - low + 1) if len(user) else 1
    if span <= (2**62) // n_movies:  # the (user, movie) key fits in int64 as it is
        key = (user - low) * n_movies + movie
    else:  # far-apart ids: their ranks instead
        key = pd.factorize(user, sort=True)[0].astype(np.int64) * n_movies + movie
    order = np.argsort(key)
    key = key[order]
    starts = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1]))) if len(key) else np.zeros(0, np.int64)
    first = order[starts]
    del key
    minutes = interactions[C.WATCHED_MINUTES].to_numpy(dtype=np.float64)
    summed = np.add.reduceat(minutes[order], starts) if len(starts) else minutes[:0]
    dt = interactions[C.DATETIME].to_numpy()
    stamps = dt.view(np.int64)  # NaT is the smallest int64: a max ignores it unless all are NaT
    last = (np.maximum.reduceat(stamps[order], starts) if len(starts) else stamps[:0]).view(dt.dtype)
    del order
    sessions = np.diff(np.append(starts, len(movie))).astype(np.int64)
    del starts
    idx = movie[first]
    users = user[first]
    del first
    return pd.DataFrame({
        C.USER: users,
        C.MOVIE: pd.Categorical.from_codes(idx, categories=movie_ids) if len(movie_ids) else idx,
        "movie_idx": idx,
        C.WATCHED_MINUTES: summed,
        C.DATETIME: last,
        C.N_SESSIONS: sessions,
    }, copy=False)  # the arrays are new: no second copy of a 30M-row frame


def recency_rank(interactions_upd: pd.DataFrame, mode: str = "order") -> np.ndarray:
    """Per row: the watch's integer recency within its user (0 = the latest), by ``mode``.

    The modes are :func:`recency_rank_by_frame`'s (the reference, over a
    sorted frame), which computes all but ``order``. For ``order`` (how many of the same user's
    watches are more recent; ties in time keep the row order; a missing date
    is the oldest) this is the same answer for rows grouped by user as
    :func:`aggregate_sessions` returns them, in one stable sort of the dates
    and int32 positions instead of a sorted three-column frame.
    """
    if mode == "auto":
        has_time = C.DATETIME in interactions_upd
        mode = "dense" if has_time and dates_only(interactions_upd[C.DATETIME]) else "order"
    if mode != "order":
        return recency_rank_by_frame(interactions_upd, mode)
    user = interactions_upd[C.USER].to_numpy()
    n = len(user)
    if n == 0 or n >= 2**31 or C.DATETIME not in interactions_upd or (user[1:] < user[:-1]).any():
        return recency_rank_by_frame(interactions_upd)
    stamps = interactions_upd[C.DATETIME].to_numpy().view(np.int64)  # NaT sorts first: the oldest
    starts = np.flatnonzero(np.concatenate(([True], user[1:] != user[:-1])))
    sizes = np.diff(np.append(starts, n))
    dates, distinct = pd.factorize(stamps, sort=True)  # a log has few distinct dates
    if len(starts) * len(distinct) * int(sizes.max()) < 2**62:
        # one unique key per row (user block, date, row within the block): ties keep the row order
        block_start = np.repeat(starts, sizes)
        key = (np.repeat(np.arange(len(starts), dtype=np.int64), sizes) * len(distinct) + dates) * int(sizes.max())
        key += np.arange(n, dtype=np.int64) - block_start
        del dates
        order = np.argsort(key).astype(np.int32)
        del key
    else:
        order = np.lexsort((stamps, user)).astype(np.int32)  # stable: equal times keep the row order
        block_start = np.repeat(starts, sizes)
    rank = np.empty(n, dtype=np.int32)
    # the row at sorted position p of its user's block [start, start + size) has start + size - 1 - p more recent rows
    rank[order] = (block_start + np.repeat(sizes, sizes) - 1 - np.arange(n)).astype(np.int32)
    return rank


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


def watch_ratio(aggregated: pd.DataFrame, duration: np.ndarray, *, copy: bool = True) -> pd.DataFrame:
    """Add ``watch_ratio`` = minutes / length clipped to [0, 1] (to ``aggregated`` itself with ``copy=False``)."""
    out = aggregated.copy() if copy else aggregated
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
            C.N_MOVIES: (C.WATCH_RATIO, "size"),
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
    return movie_features_from_stats(movies, movie_stats(interactions_upd, len(movies)), config)


def movie_stats(interactions_upd: pd.DataFrame, n_movies: int) -> dict[str, np.ndarray | float | int]:
    """What :func:`movie_features` needs from the interactions: viewers and ratio sums per movie, and totals.

    Movies-sized and additive: the Dask engine computes it per partition and
    sums the partitions' answers (:func:`add_movie_stats`).
    """
    idx = interactions_upd["movie_idx"].to_numpy()
    ratios = interactions_upd[C.WATCH_RATIO].to_numpy()
    return {"n_users": np.bincount(idx, minlength=n_movies).astype(np.int64),
            "ratio_sum": np.bincount(idx, weights=ratios, minlength=n_movies),
            "ratio_total": float(ratios.sum()), "rows": int(len(ratios)),
            "ratio_mean": float(ratios.mean()) if len(ratios) else 0.5}


def add_movie_stats(a: dict, b: dict) -> dict:
    """The :func:`movie_stats` of two disjoint sets of rows together."""
    rows = a["rows"] + b["rows"]
    total = a["ratio_total"] + b["ratio_total"]
    return {"n_users": a["n_users"] + b["n_users"], "ratio_sum": a["ratio_sum"] + b["ratio_sum"],
            "ratio_total": total, "rows": rows, "ratio_mean": total / rows if rows else 0.5}


def movie_features_from_stats(movies: pd.DataFrame, stats: dict, config: MovieScoreConfig = MovieScoreConfig()
                              ) -> pd.DataFrame:
    """:func:`movie_features` from :func:`movie_stats` (one process) or their sum (partitions)."""
    n = len(movies)
    n_users = stats["n_users"]
    ratio_sum = stats["ratio_sum"]
    global_mean = float(stats["ratio_mean"])
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


def dates_only(times: pd.Series) -> bool:
    """True when the watch times carry no time of day: every dated one is a midnight (and one is dated)."""
    t = pd.to_datetime(pd.Series(np.asarray(times))).dropna()
    return bool(len(t)) and bool((t == t.dt.normalize()).all())


def recency_rank_by_frame(interactions_upd: pd.DataFrame, mode: str = "order") -> np.ndarray:
    """Per row: the watch's integer recency within its user (0 = the latest), by ``mode``.

    * ``order``: how many of the same user's watches are more recent; ties in
      time (day-resolution dates) keep the row order, later rows counting as
      more recent, so a day's watches get distinct, arbitrary ranks;
    * ``dense``: how many *distinct* times of the user are more recent: watches
      at the same time share a rank (``[d1, d1, d2, d3, d3]`` -> 2, 2, 1, 0, 0);
    * ``days``: whole days between the watch and the user's latest watch
      (``floor((latest - t) / 1 day)``);
    * ``auto``: ``dense`` when every dated watch is at midnight (dates without
      a time of day), else ``order``.

    A missing date sorts first (oldest): with ``order`` it takes the oldest
    ranks, with ``dense`` one rank past the user's oldest dated watch, with
    ``days`` one day past it. A user without any date has all ranks 0 for
    ``dense`` and ``days``.
    """
    if mode not in RECENCY_MODES:
        raise ConfigError(f"collaborative.recency must be one of {RECENCY_MODES}, got {mode!r}")
    n = len(interactions_upd)
    users = interactions_upd[C.USER].to_numpy()
    has_time = C.DATETIME in interactions_upd
    if mode == "auto":
        mode = "dense" if has_time and dates_only(interactions_upd[C.DATETIME]) else "order"
    if mode == "order" or not has_time:
        if mode != "order":
            return np.zeros(n, dtype=np.int64)
        order = pd.DataFrame(
            {"u": users, "t": interactions_upd[C.DATETIME].to_numpy() if has_time else 0, "i": np.arange(n)}
        ).sort_values(["u", "t", "i"], kind="stable", na_position="first")
        rank = np.empty(n, dtype=np.int64)
        rank[order["i"].to_numpy()] = order.groupby("u", sort=False).cumcount(ascending=False).to_numpy()
        return rank
    t = pd.to_datetime(pd.Series(interactions_upd[C.DATETIME].to_numpy()))
    frame = pd.DataFrame({"u": users, "t": t})
    latest = frame.groupby("u", sort=False)["t"].transform("max")
    if mode == "dense":
        rank = frame.groupby("u", sort=False)["t"].rank(method="dense", ascending=False) - 1
        missing_rank = frame.assign(r=rank).groupby("u", sort=False)["r"].transform("max") + 1
        out = rank.fillna(missing_rank).fillna(0)
    else:
        days = (latest - frame["t"]) // pd.Timedelta(days=1)
        oldest = days.groupby(frame["u"], sort=False).transform("max") + 1
        out = days.astype("float64").fillna(oldest.astype("float64")).fillna(0)
    return out.to_numpy(dtype=np.int64)


def history_weights(watch_ratio: np.ndarray, rank: np.ndarray, half_life: float | None) -> np.ndarray:
    """``watch_ratio x 0.5 ** (rank / half_life)``: the seed's weight, decayed by recency (None: no decay)."""
    ratio = np.asarray(watch_ratio, dtype=np.float64)
    if half_life is None:
        return ratio
    if not half_life > 0:
        raise ConfigError(f"recency half-life must be a positive number of watches or None, got {half_life!r}")
    return ratio * np.exp2(-np.asarray(rank, dtype=np.float64) / float(half_life))
