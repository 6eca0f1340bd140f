"""Collaborative signal: item-item similarity from co-watching, and recency weights of a history.

Two movies are similar when the same people watch (most of) them. Rows of the
users x movies watch-ratio matrix are the "documents"; each movie is the
column of its viewers, and the similarity of two movies is the cosine of
their columns after weighting:

* ``cosine``: the raw watch ratios;
* ``bm25`` (default): each entry saturated and length-normalised per user,
  ``x (K1 + 1) / (K1 (1 - B + B len_u / avg_len) + x)``, so a heavy watcher,
  who co-watches everything, weighs less than a selective one. BM25's IDF
  factor multiplies a whole movie column, which the cosine normalisation
  cancels, so it is left out.

Only the ``k`` strongest neighbours of each movie are kept (the same sparse
top-k representation and kernel as the content similarities), so memory is
O(N k) at any catalogue size.

A user's taste drifts, and what they watched last predicts what they watch
next far better than what they watched years ago: :func:`history_weights`
decays each watched movie's weight by its recency rank with a half-life
counted in watches (not days, so a user who pauses for a year is not wiped
out).
"""

from __future__ import annotations


import numpy as np
import pandas as pd
import scipy.sparse as sp

from rekko.columns import Columns as C
from rekko.exceptions import ConfigError
from rekko.artifacts import TopKSimilarity
from rekko.config import WEIGHTINGS, CollaborativeConfig  # noqa: F401 - re-exported
from rekko.pipeline.similarity import top_k_cosine
MOVIE_IDX = "movie_idx"




def watch_matrix(interactions_upd: pd.DataFrame, n_movies: int) -> sp.csr_matrix:
    """Users x movies matrix of watch ratios (rows in sorted user-id order).

    Expects one row per (user, movie), as ``interactions_upd`` has them.
    """
    _, rows = np.unique(interactions_upd[C.USER].to_numpy(), return_inverse=True)
    cols = interactions_upd[MOVIE_IDX].to_numpy(dtype=np.int64)
    values = interactions_upd[C.WATCH_RATIO].to_numpy(dtype=np.float64)
    n_users = int(rows.max()) + 1 if len(rows) else 0
    m = sp.csr_matrix((values, (rows, cols)), shape=(n_users, n_movies))
    m.sum_duplicates()
    m.eliminate_zeros()
    return m


def bm25_weight(matrix: sp.csr_matrix, k1: float = 1.2, b: float = 0.75) -> sp.csr_matrix:
    """BM25 term-frequency saturation and per-row length normalisation (no IDF; see the module doc)."""
    m = matrix.tocsr().astype(np.float64)
    length = np.asarray(m.sum(axis=1)).ravel()
    avg = length[length > 0].mean() if (length > 0).any() else 1.0
    norm = np.repeat(k1 * (1.0 - b + b * length / avg), np.diff(m.indptr))
    out = m.copy()
    out.data = m.data * (k1 + 1.0) / (norm + m.data)
    return out


def _l2_rows(m: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    return sp.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)) @ m


def item_item_similarity(
    interactions_upd: pd.DataFrame, movie_ids: np.ndarray, config: CollaborativeConfig = CollaborativeConfig()
) -> TopKSimilarity:
    """Top-k co-watching cosine similarity of every movie, in ``movie_ids`` order (``movie_idx`` indexes it).

    A movie nobody watched has an empty row; a movie is never its own neighbour.
    """
    n = len(movie_ids)
    x = watch_matrix(interactions_upd, n)
    if config.weighting == "bm25":
        x = bm25_weight(x, config.bm25_k1, config.bm25_b)
    items = _l2_rows(x.T.tocsr()).astype(np.float32)
    if items.nnz == 0:
        matrix = sp.csr_matrix((n, n), dtype=np.float32)
    else:
        matrix = top_k_cosine(items, config.k, n_threads=config.n_threads)
    return TopKSimilarity(np.asarray(movie_ids), matrix)


def recency_rank(interactions_upd: pd.DataFrame) -> np.ndarray:
    """Per row: how many of the same user's watches are more recent (0 = the latest).

    Ties in time (day-resolution dates) keep the row order, later rows counting
    as more recent; a missing date sorts first (oldest).
    """
    order = pd.DataFrame(
        {
            "u": interactions_upd[C.USER].to_numpy(),
            "t": interactions_upd[C.DATETIME].to_numpy() if C.DATETIME in interactions_upd else 0,
            "i": np.arange(len(interactions_upd)),
        }
    ).sort_values(["u", "t", "i"], kind="stable", na_position="first")
    rank = np.empty(len(interactions_upd), dtype=np.int64)
    rank[order["i"].to_numpy()] = order.groupby("u", sort=False).cumcount(ascending=False).to_numpy()
    return rank


def history_weights(watch_ratio: np.ndarray, rank: np.ndarray, half_life: float | None) -> np.ndarray:
    """``watch_ratio x 0.5 ** (rank / half_life)``: the seed's weight, decayed by recency (None: no decay)."""
    ratio = np.asarray(watch_ratio, dtype=np.float64)
    if half_life is None:
        return ratio
    if not half_life > 0:
        raise ConfigError(f"recency half-life must be a positive number of watches or None, got {half_life!r}")
    return ratio * np.exp2(-np.asarray(rank, dtype=np.float64) / float(half_life))
