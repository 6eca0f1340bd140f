"""The models ``rekko evaluate`` compares, all fitted on the train part only.

* ``most_popular``: movies by the number of train users who watched them;
* ``legacy``: the seed's scoring, de-duplicated, as reconstructed from the
  seed's description and artifacts (its code is not in this repository):
  candidates are scored per watched movie: content similarity x that movie's watch ratio x the
  user's ``int_coef`` (1 / the sum of their watch ratios), plus the movie
  score (weights: metadata 0.5, description 0.3, movie score 0.2), and
  returned a movie once per watched movie it was close to. De-duplicated,
  each candidate keeps its best (maximum) per-watched-movie score. The
  ``int_coef`` factor makes the similarity part tiny for anyone with a real
  history, so the movie score (rating, watch ratio, popularity) dominates;
* ``content``: rekko's recommender on the two content similarities only;
* ``collaborative``: rekko's recommender on the co-watching similarity only
  (an ItemKNN baseline);
* ``rekko``: rekko's full recommender (content + collaborative + movie score,
  recency-weighted history) with the given parameters.

Every model ranks with the shipped kernel (:mod:`rekko.recommend.kernel`) where
one exists, so the figures measure the code that serves users. Watched movies
are never recommended.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pandas as pd
import scipy.sparse as sp

from rekko.columns import Columns as C
from rekko.config import SEED_BLEND, BlendWeights, CollaborativeConfig, PipelineConfig, RekkoParams
from rekko.pipeline.run import compute
from rekko.recommend import kernel
from rekko.tuning.data import Fitted, TrainPart


def fit(
    train: pd.DataFrame,
    movies: pd.DataFrame,
    ratings: pd.DataFrame,
    *,
    collaborative: CollaborativeConfig = PipelineConfig().collaborative,
) -> Fitted:
    """Run rekko's pipeline stages on validated train interactions, in memory (nothing is written, no tuning:
    callers tune explicitly, as ``evaluate``'s shipped parameters do)."""
    result = compute(train, movies, ratings, PipelineConfig(collaborative=collaborative))
    return Fitted(TrainPart.of(result), collaborative)


# --------------------------------------------------------------------------- models


def _ranked(users: np.ndarray, top: np.ndarray, scores: np.ndarray, movie_ids: np.ndarray) -> pd.DataFrame:
    valid = np.isfinite(scores)
    k = top.shape[1]
    return pd.DataFrame(
        {
            C.USER: np.repeat(users, k)[valid.ravel()],
            C.MOVIE: movie_ids[top[valid]],
            C.SCORE: scores[valid].astype(np.float64),
            C.RANK: np.tile(np.arange(1, k + 1), len(users))[valid.ravel()],
        }
    )


def _top_k_blocks(
    fitted: Fitted, users: np.ndarray, k: int, score_block: Callable[[sp.csr_matrix], np.ndarray], block: int = 1024
) -> pd.DataFrame:
    """Top-k unwatched movies per user from dense score blocks, for a model outside rekko's blend (legacy).

    Ranked by :func:`rekko.recommend.kernel.top_n_dense`, the kernel's tie rule.
    """
    hist = fitted.history
    pos = fitted.artifacts.user_rows(users)
    users, pos = users[pos >= 0], pos[pos >= 0]
    frames = []
    for start in range(0, len(users), block):
        h = hist[pos[start : start + block]]
        dense = np.asarray(score_block(h), dtype=np.float64)
        rows = np.repeat(np.arange(h.shape[0]), np.diff(h.indptr))
        dense[rows, h.indices] = -np.inf
        top = kernel.top_n_dense(dense, k)
        scores = np.take_along_axis(dense, np.maximum(top, 0), axis=1)
        scores[top < 0] = -np.inf
        frames.append(_ranked(users[start : start + block], np.maximum(top, 0), scores, fitted.movie_ids))
    if not frames:
        return pd.DataFrame({C.USER: [], C.MOVIE: [], C.SCORE: [], C.RANK: []})
    return pd.concat(frames, ignore_index=True)


def most_popular(fitted: Fitted, users: np.ndarray, k: int) -> pd.DataFrame:
    """The movies most train users watched (ties: catalogue order), minus each user's own.

    No dense users x movies block: with a user's watched movies as sorted
    popularity ranks w_1 < w_2 < ..., the j-th unwatched rank (from 0) is
    ``j + #{i : w_i - (i - 1) <= j}``, a count per user for each j < k.
    """
    popularity = fitted.data.movies[C.N_USERS].to_numpy(dtype=np.float64)
    n = len(popularity)
    order = np.lexsort((np.arange(n), -popularity))
    rank_of = np.empty(n, dtype=np.int64)
    rank_of[order] = np.arange(n)
    users = np.asarray(users, dtype=np.int64)
    users = users[np.isin(users, fitted.user_ids)]
    h = fitted.history[np.searchsorted(fitted.user_ids, users)]
    counts = np.diff(h.indptr)
    row = np.repeat(np.arange(len(users)), counts)
    ranks = rank_of[h.indices]
    o = np.lexsort((ranks, row))
    row, ranks = row[o], ranks[o]
    shifted = ranks - (np.arange(len(ranks)) - np.repeat(h.indptr[:-1], counts))
    kk = min(k, n)
    top = np.empty((len(users), kk), dtype=np.int64)
    for j in range(kk):
        top[:, j] = j + np.bincount(row[shifted <= j], minlength=len(users))
    valid = top < n  # a user who watched (almost) everything gets fewer
    movies = order[np.minimum(top, n - 1)]
    scores = np.where(valid, popularity[movies], -np.inf)
    return _ranked(users, movies, scores, fitted.movie_ids)


def legacy(fitted: Fitted, users: np.ndarray, k: int, weights: BlendWeights = SEED_BLEND) -> pd.DataFrame:
    """The seed's scoring, de-duplicated: max over watched movies of ratio x int_coef x similarity, + movie score."""
    combined = (fitted.data.sim_md.matrix * weights.md + fitted.data.sim_desc.matrix * weights.desc).tocsr()
    movie_part = fitted.data.movies[C.MOVIE_SCORE].to_numpy(dtype=np.float64) * weights.movie

    def score(h: sp.csr_matrix) -> np.ndarray:
        owner = np.repeat(np.arange(h.shape[0]), np.diff(h.indptr))
        # the seed's per-watched-movie weight: watch ratio x int_coef (1 / the user's sum of ratios)
        sums = np.asarray(h.sum(axis=1)).ravel()
        int_coef = np.divide(1.0, sums, out=np.zeros_like(sums, dtype=np.float64), where=sums > 0)
        rows = combined[h.indices]  # one row per (user, watched movie)
        contrib = (sp.diags(h.data.astype(np.float64) * int_coef[owner]) @ rows).tocoo()
        best = np.zeros(h.shape, dtype=np.float64)
        np.maximum.at(best, (owner[contrib.row], contrib.col), contrib.data)
        return best + movie_part

    return _top_k_blocks(fitted, users, k, score)


def rekko(fitted: Fitted, users: np.ndarray, k: int, params: RekkoParams = RekkoParams()) -> pd.DataFrame:
    """rekko's shipped recommender with ``params`` (the kernel's batch path), for users with a train history."""
    users = np.asarray(users, dtype=np.int64)
    known = np.isin(users, fitted.user_ids)
    recs = fitted.recommender(params).recommend_all(k, user_ids=users[known])
    return recs[[C.USER, C.MOVIE, C.SCORE, C.RANK]]


def content_only(fitted: Fitted, users: np.ndarray, k: int) -> pd.DataFrame:
    """rekko's recommender on the metadata and description similarities alone (the seed's 0.5 / 0.3)."""
    default = SEED_BLEND
    params = RekkoParams(
        blend=BlendWeights(md=default.md, desc=default.desc, cf=0.0, movie=0.0, recency_half_life=None)
    )
    return rekko(fitted, users, k, replace(params, collaborative=fitted.collaborative))


def collaborative_only(fitted: Fitted, users: np.ndarray, k: int) -> pd.DataFrame:
    """rekko's recommender on the co-watching similarity alone, no recency (ItemKNN)."""
    params = RekkoParams(blend=BlendWeights(md=0.0, desc=0.0, cf=1.0, movie=0.0, recency_half_life=None))
    return rekko(fitted, users, k, replace(params, collaborative=fitted.collaborative))
