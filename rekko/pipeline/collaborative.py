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

``rp3beta`` (Dacrema et al., "Are we really making much progress?", RecSys
2019, after Paudel et al.'s RP3beta) is not a cosine: it is a random walk of
three steps from a watched movie ``i`` to a viewer ``u`` of it to another movie
``j`` that viewer watched, with probabilities ``x_ui / sum_v x_vi`` and
``x_uj / sum_l x_ul`` (watch ratios), each raised to ``alpha``, and the
landing movie's score divided by its popularity (number of viewers) to the
power ``beta``::

    W_ij = sum_u (x_ui / d_i)^alpha (x_uj / d_u)^alpha / pop_j^beta

``beta`` > 0 takes the walk away from the blockbusters every walk reaches. The
matrix is not symmetric: row ``i`` holds where walks *from* ``i`` land, which
is the row the ranking kernel reads for a watched ``i``. It is scaled so that
each row's largest entry is 1 (the content similarities' scale, so the blend
weights mean the same), which leaves a row's ranking unchanged.

``ease`` (Steck, "Embarrassingly Shallow Autoencoders", WWW 2019) learns the
item-item weights ``B`` that best rebuild each user's (binary) row from their
other movies, ridge-regularised by ``lambda``: with ``P = (X^T X + lambda
I)^-1``, ``B_ij = -P_ij / P_jj`` and a zero diagonal. Row ``i`` of ``B`` is how
much having watched ``i`` votes for each ``j``, the row the kernel reads. The
kernel needs entries >= 0, so the negative weights are dropped before the
top-k cut, and rows are scaled to a maximum of 1 like RP3beta's. The solve is
dense (movies^2 memory, movies^3 time), so it covers at most
``ease_max_movies`` movies, the most watched (ties: catalogue order).

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

import os

import numpy as np
import pandas as pd
import scipy.sparse as sp

from rekko.columns import Columns as C
from rekko.exceptions import ConfigError
from rekko.artifacts import TopKSimilarity
from rekko.config import RECENCY_MODES, WEIGHTINGS, CollaborativeConfig  # noqa: F401 - re-exported
from rekko.pipeline.similarity import keep_top_k, top_k_cosine
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


def bm25_weight(matrix: sp.csr_matrix, k1: float = 1.2, b: float = 0.75, *, avg: float | None = None) -> sp.csr_matrix:
    """BM25 term-frequency saturation and per-row length normalisation (no IDF; see the module doc).

    ``avg`` is the mean length of the non-empty rows; None computes it from
    ``matrix`` (the Dask engine passes the mean over every partition).
    """
    m = matrix.tocsr().astype(np.float64)
    length = np.asarray(m.sum(axis=1)).ravel()
    if avg is None:
        avg = length[length > 0].mean() if (length > 0).any() else 1.0
    norm = np.repeat(k1 * (1.0 - b + b * length / avg), np.diff(m.indptr))
    out = m.copy()
    out.data = m.data * (k1 + 1.0) / (norm + m.data)
    return out


def _l2_rows(m: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    return sp.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)) @ m


def _row_normalised(m: sp.csr_matrix) -> sp.csr_matrix:
    sums = np.asarray(m.sum(axis=1)).ravel()
    return sp.diags(np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)) @ m


def rp3beta_matrix(x: sp.csr_matrix, alpha: float, beta: float) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """The walk's two steps as ``(A, B)`` with ``W = A @ B`` (see the module doc); ``x`` is users x movies.

    ``A`` = movies x users, ``(x_ui / d_i)^alpha``; ``B`` = users x movies,
    ``(x_uj / d_u)^alpha / pop_j^beta``.
    """
    x = x.tocsr().astype(np.float64)
    x.eliminate_zeros()
    a = _row_normalised(x.T.tocsr()).tocsr()
    a.data **= alpha
    b = _row_normalised(x).tocsr()
    b.data **= alpha
    pop = np.diff(x.tocsc().indptr).astype(np.float64)
    penalty = np.divide(1.0, pop**beta, out=np.zeros_like(pop), where=pop > 0)
    b = (b @ sp.diags(penalty)).tocsr()
    return a, b


def _rp3beta_top_k(x: sp.csr_matrix, config: CollaborativeConfig) -> sp.csr_matrix:
    from sparse_dot_topn import sp_matmul_topn

    a, b = rp3beta_matrix(x, config.rp3_alpha, config.rp3_beta)
    n = a.shape[0]
    threads = config.n_threads if config.n_threads is not None else (os.cpu_count() or 1)
    top = sp_matmul_topn(a.astype(np.float32), b.astype(np.float32), top_n=min(config.k + 1, n), threshold=0.0,
                         sort=False, n_threads=threads if threads > 1 else None)
    return _row_max_scaled(keep_top_k(sp.csr_matrix(top, dtype=np.float64), config.k, drop_diagonal=True))


def _row_max_scaled(top: sp.csr_matrix) -> sp.csr_matrix:
    """Each row divided by its largest value (float32, sorted indices): the strongest neighbour scores 1."""
    n = top.shape[0]
    row_max = np.zeros(n)
    nonempty = np.diff(top.indptr) > 0
    row_max[nonempty] = np.maximum.reduceat(top.data, top.indptr[:-1][nonempty])
    top = sp.diags(np.divide(1.0, row_max, out=np.zeros_like(row_max), where=row_max > 0)) @ top
    out = sp.csr_matrix(top, dtype=np.float32)
    out.sort_indices()
    return out


def ease_weights(x: sp.csr_matrix, lam: float) -> np.ndarray:
    """EASE's dense item-item weights ``B`` (zero diagonal, negatives kept) for a users x movies matrix."""
    binary = sp.csr_matrix((np.ones(x.nnz), x.indices, x.indptr), shape=x.shape)
    gram = np.asarray((binary.T @ binary).toarray(), dtype=np.float64)
    gram[np.diag_indices_from(gram)] += lam
    p = np.linalg.inv(gram)
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b


def _ease_top_k(x: sp.csr_matrix, config: CollaborativeConfig) -> sp.csr_matrix:
    n = x.shape[1]
    viewers = np.diff(x.tocsc().indptr)
    order = np.lexsort((np.arange(n), -viewers))
    solved = np.sort(order[: config.ease_max_movies][viewers[order[: config.ease_max_movies]] > 0])
    b = ease_weights(x[:, solved], config.ease_lambda)
    b[b < 0] = 0.0
    small = keep_top_k(sp.csr_matrix(b), config.k, drop_diagonal=True).tocoo()
    full = sp.csr_matrix((small.data, (solved[small.row], solved[small.col])), shape=(n, n))
    return _row_max_scaled(full)


def item_item_similarity(
    interactions_upd: pd.DataFrame, movie_ids: np.ndarray, config: CollaborativeConfig = CollaborativeConfig()
) -> TopKSimilarity:
    """Top-k co-watching similarity of every movie (``config.weighting``), in ``movie_ids`` order.

    ``movie_idx`` indexes it.

    A movie nobody watched has an empty row; a movie is never its own neighbour.
    """
    n = len(movie_ids)
    x = watch_matrix(interactions_upd, n)
    if config.weighting in ("rp3beta", "ease"):
        build = _rp3beta_top_k if config.weighting == "rp3beta" else _ease_top_k
        matrix = build(x, config) if x.nnz else sp.csr_matrix((n, n), dtype=np.float32)
        return TopKSimilarity(np.asarray(movie_ids), matrix)
    if config.weighting == "bm25":
        x = bm25_weight(x, config.bm25_k1, config.bm25_b)
    items = _l2_rows(x.T.tocsr()).astype(np.float32)
    if items.nnz == 0:
        matrix = sp.csr_matrix((n, n), dtype=np.float32)
    else:
        matrix = top_k_cosine(items, config.k, n_threads=config.n_threads)
    return TopKSimilarity(np.asarray(movie_ids), matrix)


def dates_only(times: pd.Series) -> bool:
    """True when the watch times carry no time of day: every dated one is a midnight (and one is dated)."""
    t = pd.to_datetime(pd.Series(np.asarray(times))).dropna()
    return bool(len(t)) and bool((t == t.dt.normalize()).all())


def recency_rank(interactions_upd: pd.DataFrame, mode: str = "order") -> np.ndarray:
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
