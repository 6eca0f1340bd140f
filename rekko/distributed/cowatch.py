"""The co-watching similarity on a Dask cluster: partial products per user partition, reduced per movie block.

The local engine (:func:`rekko.pipeline.collaborative.item_item_similarity`)
builds the whole users x movies matrix ``X`` in one process. Here the rows of
``X`` stay on the workers, split by user (each user's watches live in one
partition ``p``). Every weighting is ``W = L^T R`` summed over users, with
per-user factors that need only the user's own row and per-movie factors that
are movies-sized:

* ``cosine``/``bm25``: ``R = X' D`` (``X'`` = raw or BM25-weighted ratios,
  ``D`` = 1 / the L2 norm of each movie column), ``L = R``: ``W`` is the cosine;
* ``rp3beta``: ``L = (X / d_i)^alpha`` (``d_i`` = the movie's ratio sum) and
  ``R = (X / d_u)^alpha / pop_j^beta`` (``d_u`` = the user's ratio sum).

So ``W = sum_p L_p^T R_p``. The movie-sized factors (column norms, ratio sums,
viewer counts, the BM25 mean row length) are reduced to the client first
(:func:`partition_stats`); the per-partition ``(L_p^T, R_p)`` are then built
once and kept on the workers (:func:`partition_matrices`).

Why memory is bounded: the movies are cut into consecutive blocks ``B_i``
whose rows of ``X^T X`` can hold at most ``block_entries`` entries together
(:func:`movie_blocks`: row ``j`` has at most ``min(cooc_j, M)`` entries,
``cooc_j`` counting the movies of ``j``'s viewers, a movies-sized statistic
reduced first). A task computes one partial ``L_p^T[B_i] R_p`` (sparse, at
most ``block_entries`` entries however many users or rows there are), a reduce task adds two of
them (fan-in 2), and the block's top-k task keeps ``k`` entries per row of
the sum. No task holds more than one partition's matrices plus three
``b x M`` blocks, and only a sliding window of blocks (two per worker by
default) is in flight at once. The one quantity that grows with the input is
the number of partials a block may hold before its reduce tree consumes them:
at most one per user partition ``P`` (each at most ``b x M`` entries, in
practice the co-occurrences of ``b`` movies within one partition); the reduces
run at a higher priority than new partials, so they are consumed as they come. What
reaches the client is the top-k rows (``M x k``) and the movies-sized
statistics: the same O(M k) as the artifact itself.

The arithmetic is :mod:`rekko.pipeline.collaborative`'s (its ``bm25_weight``
and ``_row_normalised`` formulas, :func:`rekko.pipeline.similarity.keep_top_k`'s
selection rule: largest first, ties to the lower column); values are rounded to float32 before the top-k is chosen,
as the local engine's float32 product does, so ties break the same way (by
column).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from rekko.config import CollaborativeConfig
from rekko.distributed.cluster import tree_reduce
from rekko.pipeline.collaborative import bm25_weight, watch_matrix

#: Largest ``b x M`` of a movie block (entries of one partial product): about 200 MB as a dense-worst sparse block.
BLOCK_ENTRIES = 1 << 24
#: Threshold the local engine's cosine product applies (``top_k_cosine``); rp3beta keeps anything positive.
_COSINE_THRESHOLD = 1e-7


def partition_stats(part: pd.DataFrame, n_movies: int, config: CollaborativeConfig,
                    bm25_avg: float | None = None) -> dict[str, Any]:
    """Movies-sized sums of one partition the weighting needs (additive over partitions).

    ``bm25_avg`` None: the first pass (row lengths for the BM25 mean); given:
    the column sums of squares of the BM25-weighted rows.
    """
    x = watch_matrix(part, n_movies)
    per_user = np.diff(x.indptr).astype(np.float64)
    # entries movie j's row of X^T X can get from these users: the movies of each of its viewers
    out: dict[str, Any] = {"cooc": np.asarray(x.T @ per_user).ravel()}
    if config.weighting == "cosine":
        out["col_sq"] = np.asarray(x.multiply(x).sum(axis=0)).ravel()
    elif config.weighting == "bm25":
        length = np.asarray(x.sum(axis=1)).ravel()
        out["len_sum"] = float(length[length > 0].sum())
        out["len_count"] = int((length > 0).sum())
        if bm25_avg is not None:
            w = bm25_weight(x, config.bm25_k1, config.bm25_b, avg=bm25_avg)
            out["col_sq"] = np.asarray(w.multiply(w).sum(axis=0)).ravel()
    else:
        out["col_sum"] = np.asarray(x.sum(axis=0)).ravel()
        out["pop"] = np.diff(x.tocsc().indptr).astype(np.float64)
    return out


def add_stats(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {k: a[k] + b[k] for k in a}


def _inverse(v: np.ndarray) -> np.ndarray:
    return np.divide(1.0, v, out=np.zeros_like(v, dtype=np.float64), where=v > 0)


def partition_matrices(part: pd.DataFrame, n_movies: int, config: CollaborativeConfig,
                       stats: dict[str, Any]) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """``(L_p^T, R_p)`` of one partition (movies x users_p, users_p x movies) for the global ``stats``."""
    x = watch_matrix(part, n_movies)
    if config.weighting in ("cosine", "bm25"):
        if config.weighting == "bm25":
            x = bm25_weight(x, config.bm25_k1, config.bm25_b, avg=stats["bm25_avg"])
        right = (x @ sp.diags(_inverse(np.sqrt(stats["col_sq"])))).tocsr()
        return right.T.tocsr(), right
    a = (x @ sp.diags(_inverse(stats["col_sum"]))).tocsr()
    a.data **= config.rp3_alpha
    b = (sp.diags(_inverse(np.asarray(x.sum(axis=1)).ravel())) @ x).tocsr()
    b.data **= config.rp3_alpha
    pop = stats["pop"]
    penalty = np.divide(1.0, pop ** config.rp3_beta, out=np.zeros_like(pop), where=pop > 0)
    b = (b @ sp.diags(penalty)).tocsr()
    return a.T.tocsr(), b


def block_partial(matrices: tuple[sp.csr_matrix, sp.csr_matrix], lo: int, hi: int) -> sp.csr_matrix:
    """``L_p^T[lo:hi] R_p``: one partition's contribution to the similarity rows ``lo..hi``."""
    left, right = matrices
    return (left[lo:hi] @ right).tocsr()


def add_blocks(a: sp.csr_matrix, b: sp.csr_matrix) -> sp.csr_matrix:
    return (a + b).tocsr()


def top_k_rows(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int], k: int
               ) -> sp.csr_matrix:
    """The ``k`` largest positive float32 ``values`` of each row, ties to the lower column: :func:`keep_top_k`'s rule.

    Entries must come in row, then column order. One stable sort of a 64-bit
    key (row, then the value's bits, which order positive float32s as their
    values) instead of ``keep_top_k``'s three-key lexsort: a block's
    selection was most of the co-watching stage's time.
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


def block_top_k(total: sp.csr_matrix, lo: int, config: CollaborativeConfig) -> sp.csr_matrix:
    """The kept neighbours of rows ``lo..lo+b`` from their summed products (float32, like the local engine)."""
    m = total.tocsr()
    m.sum_duplicates()  # canonical: columns ascending within each row
    rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
    values = m.data.astype(np.float32)
    keep = m.indices != rows + lo  # a movie is never its own neighbour
    if config.weighting == "rp3beta":
        keep &= values > 0
    else:
        keep &= values > _COSINE_THRESHOLD
        np.clip(values, 0.0, 1.0, out=values)
    top = top_k_rows(rows[keep], m.indices[keep], values[keep], m.shape, config.k)
    if config.weighting == "rp3beta":
        top = top.astype(np.float64)
        n = top.shape[0]
        row_max = np.zeros(n)
        nonempty = np.diff(top.indptr) > 0
        row_max[nonempty] = np.maximum.reduceat(top.data, top.indptr[:-1][nonempty])
        top = sp.diags(_inverse(row_max)) @ top
    out = sp.csr_matrix(top, dtype=np.float32)
    out.sort_indices()
    return out


def movie_blocks(cooc: np.ndarray, block_entries: int = BLOCK_ENTRIES) -> list[tuple[int, int]]:
    """Consecutive movie ranges whose product rows hold at most ``block_entries`` entries together.

    Row ``j`` of ``X^T X`` has at most ``min(cooc_j, M)`` entries (``cooc_j``:
    the movies watched by ``j``'s viewers, counted with repetition), in every
    partial and in their sum; a range is closed before its bound passes
    ``block_entries``. A single movie above the budget gets a range of its own
    (at most ``M`` entries). Sparse logs get few, long blocks (few tasks);
    dense ones short blocks (bounded memory).
    """
    n = len(cooc)
    bound = np.minimum(np.asarray(cooc, dtype=np.float64), float(n))
    blocks: list[tuple[int, int]] = []
    total = np.concatenate(([0.0], np.cumsum(bound)))
    lo = 0
    while lo < n:
        hi = int(np.searchsorted(total, total[lo] + block_entries, side="right")) - 1
        hi = min(max(hi, lo + 1), n)
        blocks.append((lo, hi))
        lo = hi
    return blocks


def cowatch_similarity(client: Any, parts: list[Any], n_movies: int, config: CollaborativeConfig, *,
                       block_entries: int = BLOCK_ENTRIES, wave: int | None = None) -> sp.csr_matrix:
    """The top-k co-watching matrix (``n_movies`` square, float32 CSR) from user partitions on the cluster.

    ``parts`` are futures (or delayed objects) of the per-user-partition
    frames (``user_id``, ``movie_idx``, ``watch_ratio``). See the module doc
    for the plan and why its memory is bounded.
    """
    import itertools
    import logging
    import time

    from distributed import as_completed, wait

    log = logging.getLogger(__name__)
    t0 = time.perf_counter()
    if n_movies == 0:
        return sp.csr_matrix((0, 0), dtype=np.float32)
    stats = _reduce_stats(client, parts, n_movies, config, None)
    if config.weighting == "bm25":
        avg = stats["len_sum"] / stats["len_count"] if stats["len_count"] else 1.0
        stats = _reduce_stats(client, parts, n_movies, config, avg)
        stats["bm25_avg"] = avg
    stats_future = client.scatter(stats, broadcast=True)
    matrices = [client.submit(partition_matrices, p, n_movies, config, stats_future) for p in parts]
    wait(matrices)
    log.info("co-watching: statistics and %d partition matrices in %.1f s", len(matrices), time.perf_counter() - t0)
    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    # at least two blocks per worker (all of them busy), none above block_entries
    spread = float(np.minimum(stats["cooc"], n_movies).sum()) / (2 * n_workers)
    blocks = movie_blocks(stats["cooc"], max(1, int(min(block_entries, np.ceil(spread)))))
    starts = [lo for lo, _ in blocks]
    ends = dict(blocks)
    window = wave or 2 * n_workers
    done: dict[int, sp.csr_matrix] = {}
    held: dict[int, list[Any]] = {}  # a block's intermediate futures, referenced until its result is in
    pending = as_completed()
    queue = iter(starts)

    def submit(lo: int) -> None:
        final, futures = _submit_block(client, matrices, lo, ends[lo], config)
        held[lo] = futures
        pending.add(final)

    for lo in itertools.islice(queue, window):  # a sliding window of blocks in flight: memory bounded by it
        submit(lo)
    for future in pending:
        lo, top = future.result()
        done[lo] = top
        del held[lo]
        future.release()
        nxt = next(queue, None)
        if nxt is not None:
            submit(nxt)
    del matrices
    rows = [done[lo] for lo in starts]
    log.info("co-watching: %d movie blocks in %.1f s", len(starts), time.perf_counter() - t0)
    out = sp.vstack(rows, format="csr").astype(np.float32)
    out.sort_indices()
    return out


def _block_result(total: sp.csr_matrix, lo: int, config: CollaborativeConfig) -> tuple[int, sp.csr_matrix]:
    return lo, block_top_k(total, lo, config)


def _submit_block(client: Any, matrices: list[Any], lo: int, hi: int, config: CollaborativeConfig
                  ) -> tuple[Any, list[Any]]:
    """Futures of one block: a partial per partition, a fan-in-2 tree of sums, the top-k.

    Returns the top-k future and every intermediate one (the caller holds
    them until the result is in: a future released while its dependent's
    graph is on its way to the scheduler is forgotten).
    """
    level = [client.submit(block_partial, m, lo, hi, priority=0) for m in matrices]
    held = list(level)
    while len(level) > 1:  # fan-in 2: a reduce holds two partials and their sum
        nxt = [client.submit(add_blocks, level[i], level[i + 1], priority=1) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
        held.extend(level)
    return client.submit(_block_result, level[0], lo, config, priority=2), held


def _reduce_stats(client: Any, parts: list[Any], n_movies: int, config: CollaborativeConfig,
                  bm25_avg: float | None) -> dict[str, Any]:
    """Sum :func:`partition_stats` over the partitions (a tree of adds on the cluster; the total to the client)."""
    return tree_reduce(client, [client.submit(partition_stats, p, n_movies, config, bm25_avg) for p in parts],
                       add_stats)
