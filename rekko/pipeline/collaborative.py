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

The recency of a user's watches (which the kernel decays) is the features
stage's: :func:`rekko.pipeline.features.recency_rank`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from rekko.artifacts import TopKSimilarity
from rekko.columns import Columns as C
from rekko.config import CollaborativeConfig
from rekko.exceptions import ConfigError
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


def _inverse(v: np.ndarray) -> np.ndarray:
    """``1 / v`` where ``v > 0``, else 0 (an unwatched movie or an empty user scales nothing)."""
    v = np.asarray(v, dtype=np.float64)
    return np.divide(1.0, v, out=np.zeros_like(v), where=v > 0)


def _row_normalised(m: sp.csr_matrix) -> sp.csr_matrix:
    return sp.diags(_inverse(np.asarray(m.sum(axis=1)).ravel())) @ m


def rp3beta_matrix(x: sp.csr_matrix, alpha: float, beta: float) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """The walk's two steps as ``(A, B)`` with ``W = A @ B`` (see the module doc); ``x`` is users x movies.

    ``A`` = movies x users, ``(x_ui / d_i)^alpha``; ``B`` = users x movies,
    ``(x_uj / d_u)^alpha / pop_j^beta``. The one-partition case of
    :class:`RP3Beta`'s factors.
    """
    x = x.tocsr().astype(np.float64)
    x.eliminate_zeros()
    fam = RP3Beta()
    config = CollaborativeConfig(weighting="rp3beta", rp3_alpha=alpha, rp3_beta=beta)
    stats = fit_statistics(fam, config, lambda step, so_far: fam.statistics(x, config, so_far, step))
    return fam.factors(x, config, stats)


def ease_weights(x: sp.csr_matrix, lam: float) -> np.ndarray:
    """EASE's dense item-item weights ``B`` (zero diagonal, negatives kept) for a users x movies matrix."""
    b = _binary(x)
    return _ease_solve((b.T @ b).toarray(), lam)


def _binary(x: sp.csr_matrix) -> sp.csr_matrix:
    x = x.tocsr()
    return sp.csr_matrix((np.ones(x.nnz), x.indices, x.indptr), shape=x.shape)


def _ease_solve(gram: np.ndarray, lam: float) -> np.ndarray:
    """``B = -P / diag(P)``, ``P = (G + lam I)^-1``, zero diagonal: EASE's closed form from the Gram matrix."""
    g = np.array(gram, dtype=np.float64)
    g[np.diag_indices_from(g)] += lam
    p = np.linalg.inv(g)
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b


def row_max_scaled(top: sp.csr_matrix) -> sp.csr_matrix:
    """Each row divided by its largest value (float32, sorted indices): the strongest neighbour scores 1."""
    top = sp.csr_matrix(top, dtype=np.float64)
    n = top.shape[0]
    row_max = np.zeros(n)
    nonempty = np.diff(top.indptr) > 0
    row_max[nonempty] = np.maximum.reduceat(top.data, top.indptr[:-1][nonempty])
    out = sp.csr_matrix(sp.diags(_inverse(row_max)) @ top, dtype=np.float32)
    out.sort_indices()
    return out


def top_k_rows(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int], k: int
               ) -> sp.csr_matrix:
    """The ``k`` largest positive float32 ``values`` of each row, ties to the lower column: :func:`keep_top_k`'s rule.

    Entries must come in row, then column order. One stable sort of a 64-bit
    key (row, then the value's bits, which order positive float32s as their
    values) instead of ``keep_top_k``'s three-key lexsort.
    """
    n = shape[0]
    bits = values.astype(np.float32).view(np.uint32).astype(np.int64)
    key = (rows.astype(np.int64) << 32) | (np.int64(0xFFFFFFFF) - bits)  # value descending within a row
    order = np.argsort(key, kind="stable")  # stable: equal values keep the column order
    counts = np.bincount(rows, minlength=n)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.arange(len(order)) - np.repeat(starts, counts)
    keep = np.sort(order[rank < k])
    kept_rows = rows[keep]
    indptr = np.concatenate(([0], np.cumsum(np.bincount(kept_rows, minlength=n))))
    out = sp.csr_matrix((values[keep].astype(np.float32), cols[keep].astype(np.int32), indptr), shape=shape)
    out.sort_indices()
    return out


def add_statistics(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two partitions' statistics summed (every statistic is additive over users)."""
    return {k: a[k] + b[k] for k in a}


# --------------------------------------------------------------------------- the families
#
# A family is the one definition of a co-watching weighting that every engine builds from.
# Its statistics are movies-sized sums over users (additive over user partitions, reduced
# before the product); its factors or its Gram partial need only one partition's rows and
# those statistics; its selection turns summed rows into the kept top-k. The local engine
# is the one-partition case (`item_item_similarity`); the Dask engine
# (`rekko.distributed.cowatch`) sums the same partials over partitions.


class Family:
    """What every co-watching family defines (see above); a subclass is a product or a Gram family."""

    name: ClassVar[str] = ""
    #: the engines that can build it: an engine outside refuses before any work
    engines: ClassVar[tuple[str, ...]] = ("local", "dask")
    #: passes over the partitions to collect the statistics (BM25 needs the mean row length first)
    passes: ClassVar[int] = 1

    def statistics(self, x: sp.csr_matrix, config: CollaborativeConfig, stats: dict[str, Any],
                   step: int) -> dict[str, Any]:
        """Pass ``step``'s movies-sized sums over one partition's users x movies matrix ``x``."""
        raise NotImplementedError

    def finish_statistics(self, total: dict[str, Any], config: CollaborativeConfig, stats: dict[str, Any],
                          step: int) -> dict[str, Any]:
        """The statistics after pass ``step`` from the summed ``total`` (default: the sums themselves)."""
        return {**stats, **total}


class ProductFamily(Family):
    """``W = sum_p L_p^T R_p`` over user partitions, then each row's kept top-k (:meth:`select`)."""

    #: entries at or below this are not kept (the cosine's product threshold; 0 keeps anything positive)
    threshold: ClassVar[float] = 0.0
    #: rows scaled to a maximum of 1 (a walk's scores have no natural scale; a cosine has)
    scaled: ClassVar[bool] = False

    def factors(self, x: sp.csr_matrix, config: CollaborativeConfig, stats: dict[str, Any]
                ) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """``(L_p^T, R_p)``: movies x users and users x movies factors of partition ``x``."""
        raise NotImplementedError

    def local_product(self, left_t: sp.csr_matrix, right: sp.csr_matrix, config: CollaborativeConfig
                      ) -> sp.csr_matrix:
        """``L^T R`` in one process, each row cut to its ``k + 1`` largest while multiplying (memory O(M k))."""
        from sparse_dot_topn import sp_matmul_topn

        n = left_t.shape[0]
        threads = config.n_threads if config.n_threads is not None else (os.cpu_count() or 1)
        top = sp_matmul_topn(left_t.astype(np.float32).tocsr(), right.astype(np.float32).tocsr(),
                             top_n=min(config.k + 1, n), threshold=self.threshold, sort=False,
                             n_threads=threads if threads > 1 else None)
        return sp.csr_matrix(top, dtype=np.float32)

    def select(self, block: sp.csr_matrix, lo: int, config: CollaborativeConfig) -> sp.csr_matrix:
        """Rows ``lo..lo+b`` of the similarity from their summed products: the kept top-k (float32).

        Values are rounded to float32 before the top-k is chosen (ties break
        by column, whatever precision the sum had); a movie is never its own
        neighbour; entries at or below :attr:`threshold` are dropped; a cosine
        is clipped to [0, 1] (rounding can push a self-product above 1).
        """
        m = sp.csr_matrix(block)
        m.sum_duplicates()  # canonical: columns ascending within each row
        rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
        values = m.data.astype(np.float32)
        keep = (m.indices != rows + lo) & (values > self.threshold)
        if not self.scaled:
            np.clip(values, 0.0, 1.0, out=values)
        top = top_k_rows(rows[keep], m.indices[keep], values[keep], m.shape, config.k)
        return row_max_scaled(top) if self.scaled else top


class _ColumnCosine(ProductFamily):
    """The cosine of the movies' viewer columns after a per-user weighting (:meth:`weighted`)."""

    threshold: ClassVar[float] = 1e-7

    def weighted(self, x: sp.csr_matrix, config: CollaborativeConfig, stats: dict[str, Any]) -> sp.csr_matrix:
        return x

    def statistics(self, x: sp.csr_matrix, config: CollaborativeConfig, stats: dict[str, Any],
                   step: int) -> dict[str, Any]:
        w = self.weighted(x, config, stats)
        return {"col_sq": np.asarray(w.multiply(w).sum(axis=0)).ravel()}

    def factors(self, x: sp.csr_matrix, config: CollaborativeConfig, stats: dict[str, Any]
                ) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        right = (self.weighted(x, config, stats) @ sp.diags(_inverse(np.sqrt(stats["col_sq"])))).tocsr()
        return right.T.tocsr(), right

    def local_product(self, left_t: sp.csr_matrix, right: sp.csr_matrix, config: CollaborativeConfig
                      ) -> sp.csr_matrix:
        return top_k_cosine(left_t, config.k, n_threads=config.n_threads)  # L = R: the symmetric product


class Cosine(_ColumnCosine):
    """``cosine``: the raw watch ratios."""

    name = "cosine"


class BM25(_ColumnCosine):
    """``bm25``: saturated, length-normalised ratios (:func:`bm25_weight`) with the log's mean row length."""

    name = "bm25"
    passes = 2

    def weighted(self, x: sp.csr_matrix, config: CollaborativeConfig, stats: dict[str, Any]) -> sp.csr_matrix:
        return bm25_weight(x, config.bm25_k1, config.bm25_b, avg=stats["bm25_avg"])

    def statistics(self, x: sp.csr_matrix, config: CollaborativeConfig, stats: dict[str, Any],
                   step: int) -> dict[str, Any]:
        if step == 0:
            length = np.asarray(x.sum(axis=1)).ravel()
            return {"len_sum": float(length[length > 0].sum()), "len_count": int((length > 0).sum())}
        return super().statistics(x, config, stats, step)

    def finish_statistics(self, total: dict[str, Any], config: CollaborativeConfig, stats: dict[str, Any],
                          step: int) -> dict[str, Any]:
        if step == 0:
            return {**stats, "bm25_avg": total["len_sum"] / total["len_count"] if total["len_count"] else 1.0}
        return {**stats, **total}


class RP3Beta(ProductFamily):
    """``rp3beta``: the three-step walk ``(x_ui / d_i)^a (x_uj / d_u)^a / pop_j^b``, rows scaled to max 1."""

    name = "rp3beta"
    scaled = True

    def statistics(self, x: sp.csr_matrix, config: CollaborativeConfig, stats: dict[str, Any],
                   step: int) -> dict[str, Any]:
        return {"col_sum": np.asarray(x.sum(axis=0)).ravel(), "pop": np.diff(x.tocsc().indptr).astype(np.float64)}

    def factors(self, x: sp.csr_matrix, config: CollaborativeConfig, stats: dict[str, Any]
                ) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        a = (x @ sp.diags(_inverse(stats["col_sum"]))).tocsr()
        a.data **= config.rp3_alpha
        b = _row_normalised(x).tocsr()
        b.data **= config.rp3_alpha
        pop = stats["pop"]
        penalty = np.divide(1.0, pop ** config.rp3_beta, out=np.zeros_like(pop), where=pop > 0)
        return a.T.tocsr(), (b @ sp.diags(penalty)).tocsr()


class EASE(Family):
    """``ease``: the closed-form ridge regression of each movie on the others over the most-watched movies.

    Its Gram matrix ``X^T X`` (binary) is a sum over users, so partitions add
    their partials (:meth:`gram`); the solve (:meth:`solve`) runs once on the
    sum, over at most ``ease_max_movies`` movies (the most watched; ties:
    catalogue order): dense, movies^2 memory and movies^3 time.
    """

    name = "ease"

    def statistics(self, x: sp.csr_matrix, config: CollaborativeConfig, stats: dict[str, Any],
                   step: int) -> dict[str, Any]:
        return {"viewers": np.diff(x.tocsc().indptr).astype(np.int64)}

    def finish_statistics(self, total: dict[str, Any], config: CollaborativeConfig, stats: dict[str, Any],
                          step: int) -> dict[str, Any]:
        viewers = total["viewers"]
        order = np.lexsort((np.arange(len(viewers)), -viewers))[: config.ease_max_movies]
        return {**stats, **total, "solved": np.sort(order[viewers[order] > 0])}

    def gram(self, x: sp.csr_matrix, config: CollaborativeConfig, stats: dict[str, Any]) -> sp.csr_matrix:
        """One partition's share of ``X^T X`` over the solved movies (sparse: co-watched pairs only)."""
        b = _binary(x[:, stats["solved"]])
        return (b.T @ b).tocsr()

    def solve(self, gram: sp.csr_matrix, n_movies: int, config: CollaborativeConfig,
              stats: dict[str, Any]) -> sp.csr_matrix:
        """The kept top-k of EASE's weights (negatives dropped, rows scaled to max 1), ``n_movies`` square."""
        solved = stats["solved"]
        if not len(solved):
            return sp.csr_matrix((n_movies, n_movies), dtype=np.float32)
        b = _ease_solve(sp.csr_matrix(gram).toarray(), config.ease_lambda)
        b[b < 0] = 0.0
        small = keep_top_k(sp.csr_matrix(b), config.k, drop_diagonal=True).tocoo()
        full = sp.csr_matrix((small.data, (solved[small.row], solved[small.col])), shape=(n_movies, n_movies))
        return row_max_scaled(full)


#: Every co-watching family by its ``weighting`` name: the one place a new family is added.
FAMILIES: dict[str, Family] = {f.name: f for f in (BM25(), Cosine(), RP3Beta(), EASE())}


def family(config: CollaborativeConfig, engine: str = "local") -> Family:
    """The family ``config.weighting`` names, refused (before any work) if ``engine`` cannot build it."""
    found = FAMILIES.get(config.weighting)
    if found is None:
        raise ConfigError(f"collaborative.weighting {config.weighting!r} has no definition; known: {sorted(FAMILIES)}")
    if engine not in found.engines:
        raise ConfigError(f"the {engine} engine cannot build the {found.name!r} co-watching family "
                          f"(it is built by: {', '.join(found.engines)})")
    return found


def fit_statistics(fam: Family, config: CollaborativeConfig,
                   summed: Callable[[int, dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    """Every pass of ``fam``'s statistics.

    ``summed(step, stats)`` is ``fam.statistics(x_p, config, stats, step)``
    summed over the engine's partitions ``x_p`` (one for the local engine).
    """
    stats: dict[str, Any] = {}
    for step in range(fam.passes):
        stats = fam.finish_statistics(summed(step, stats), config, stats, step)
    return stats


def cowatch_matrix(x: sp.csr_matrix, config: CollaborativeConfig) -> sp.csr_matrix:
    """The top-k co-watching similarity of a users x movies matrix: the local engine, one partition."""
    n = x.shape[1]
    fam = family(config, "local")
    if x.nnz == 0:
        return sp.csr_matrix((n, n), dtype=np.float32)
    stats = fit_statistics(fam, config, lambda step, so_far: fam.statistics(x, config, so_far, step))
    if isinstance(fam, EASE):
        return fam.solve(fam.gram(x, config, stats), n, config, stats)
    assert isinstance(fam, ProductFamily)
    left_t, right = fam.factors(x, config, stats)
    return fam.select(fam.local_product(left_t, right, config), 0, config)


def item_item_similarity(
    interactions_upd: pd.DataFrame, movie_ids: np.ndarray, config: CollaborativeConfig = CollaborativeConfig()
) -> TopKSimilarity:
    """Top-k co-watching similarity of every movie (``config.weighting``), in ``movie_ids`` order.

    ``movie_idx`` indexes it.

    A movie nobody watched has an empty row; a movie is never its own neighbour.
    """
    x = watch_matrix(interactions_upd, len(movie_ids))
    return TopKSimilarity(np.asarray(movie_ids), cowatch_matrix(x, config))
