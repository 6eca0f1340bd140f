"""The co-watching similarity on a Dask cluster: the families' partials per user partition, reduced per movie block.

The local engine (:func:`rekko.pipeline.collaborative.cowatch_matrix`) is the
one-partition case of the same definitions: every family
(:data:`rekko.pipeline.collaborative.FAMILIES`) says which movies-sized
statistics it sums over users, how one partition's rows become its factors
(``L_p^T``, ``R_p`` with ``W = sum_p L_p^T R_p``) or its Gram partial (EASE),
and how summed rows become the kept top-k. This module only decides where
those run; it has no branch per weighting, so a family added there is built
here the same way (or refused before any work, if it does not list ``dask``).

Product families (bm25, cosine, rp3beta): the statistics are reduced to the
client first (:func:`_reduce_statistics`, one tree of adds per pass); the
per-partition ``(L_p^T, R_p)`` are then built once and kept on the workers.

Why memory is bounded: the movies are cut into consecutive blocks ``B_i``
whose rows of ``X^T X`` can hold at most ``block_entries`` entries together
(:func:`movie_blocks`: row ``j`` has at most ``min(cooc_j, M)`` entries,
``cooc_j`` counting the movies of ``j``'s viewers, a movies-sized statistic
reduced first). A task computes one partial ``L_p^T[B_i] R_p`` (sparse, at
most ``block_entries`` entries however many users or rows there are), a reduce task adds two of
them (fan-in 2), and the block's selection task keeps ``k`` entries per row of
the sum. No task holds more than one partition's matrices plus three
``b x M`` blocks, and only a sliding window of blocks (two per worker by
default) is in flight at once. The one quantity that grows with the input is
the number of partials a block may hold before its reduce tree consumes them:
at most one per user partition ``P``; the reduces run at a higher priority
than new partials, so they are consumed as they come. What reaches the client
is the top-k rows (``M x k``) and the movies-sized statistics: the same
O(M k) as the artifact itself.

Gram families (ease): each partition's sparse share of ``X^T X`` over the
solved movies is tree-reduced on the cluster and the dense solve runs on one
worker (at most ``ease_max_movies`` squared, as on the local engine).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from rekko.config import CollaborativeConfig
from rekko.distributed.cluster import tree_reduce
from rekko.pipeline.collaborative import (
    EASE,
    Family,
    ProductFamily,
    add_statistics,
    family,
    fit_statistics,
    watch_matrix,
)

#: Largest ``b x M`` of a movie block (entries of one partial product): about 200 MB as a dense-worst sparse block.
BLOCK_ENTRIES = 1 << 24


def partition_statistics(part: pd.DataFrame, n_movies: int, fam: Family, config: CollaborativeConfig,
                         stats: dict[str, Any], step: int) -> dict[str, Any]:
    """Pass ``step`` of ``fam``'s statistics on one partition; the first pass adds the blocking's ``cooc``."""
    x = watch_matrix(part, n_movies)
    out = fam.statistics(x, config, stats, step)
    if step == 0:
        # entries movie j's row of X^T X can get from these users: the movies of each of its viewers
        out["cooc"] = np.asarray(x.T @ np.diff(x.indptr).astype(np.float64)).ravel()
    return out


def partition_matrices(part: pd.DataFrame, n_movies: int, fam: ProductFamily, config: CollaborativeConfig,
                       stats: dict[str, Any]) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """``(L_p^T, R_p)`` of one partition (movies x users_p, users_p x movies) for the global ``stats``."""
    return fam.factors(watch_matrix(part, n_movies), config, stats)


def partition_gram(part: pd.DataFrame, n_movies: int, fam: EASE, config: CollaborativeConfig,
                   stats: dict[str, Any]) -> sp.csr_matrix:
    """One partition's share of a Gram family's ``X^T X``."""
    return fam.gram(watch_matrix(part, n_movies), config, stats)


def block_partial(matrices: tuple[sp.csr_matrix, sp.csr_matrix], lo: int, hi: int) -> sp.csr_matrix:
    """``L_p^T[lo:hi] R_p``: one partition's contribution to the similarity rows ``lo..hi``."""
    left, right = matrices
    return (left[lo:hi] @ right).tocsr()


def add_blocks(a: sp.csr_matrix, b: sp.csr_matrix) -> sp.csr_matrix:
    return (a + b).tocsr()


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
    fam = family(config, "dask")
    t0 = time.perf_counter()
    if n_movies == 0:
        return sp.csr_matrix((0, 0), dtype=np.float32)
    cooc: list[np.ndarray] = []

    def summed(step: int, so_far: dict[str, Any]) -> dict[str, Any]:
        total = _reduce_statistics(client, parts, n_movies, fam, config, so_far, step)
        if step == 0:
            cooc.append(total.pop("cooc"))
        return total

    stats = fit_statistics(fam, config, summed)
    stats_future = client.scatter(stats, broadcast=True)
    if isinstance(fam, EASE):
        grams = [client.submit(partition_gram, p, n_movies, fam, config, stats_future) for p in parts]
        total = _tree(client, grams, add_blocks)
        out = client.submit(fam.solve, total, n_movies, config, stats_future).result()
        log.info("co-watching (%s): Gram matrix of %d movies solved in %.1f s", fam.name, len(stats["solved"]),
                 time.perf_counter() - t0)
        return out
    assert isinstance(fam, ProductFamily)
    matrices = [client.submit(partition_matrices, p, n_movies, fam, config, stats_future) for p in parts]
    wait(matrices)
    log.info("co-watching: statistics and %d partition matrices in %.1f s", len(matrices), time.perf_counter() - t0)
    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    # at least two blocks per worker (all of them busy), none above block_entries
    spread = float(np.minimum(cooc[0], n_movies).sum()) / (2 * n_workers)
    blocks = movie_blocks(cooc[0], max(1, int(min(block_entries, np.ceil(spread)))))
    starts = [lo for lo, _ in blocks]
    ends = dict(blocks)
    window = wave or 2 * n_workers
    done: dict[int, sp.csr_matrix] = {}
    held: dict[int, list[Any]] = {}  # a block's intermediate futures, referenced until its result is in
    pending = as_completed()
    queue = iter(starts)

    def submit(lo: int) -> None:
        final, futures = _submit_block(client, matrices, lo, ends[lo], fam, config)
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


def _block_result(total: sp.csr_matrix, lo: int, fam: ProductFamily, config: CollaborativeConfig
                  ) -> tuple[int, sp.csr_matrix]:
    return lo, fam.select(total, lo, config)


def _tree(client: Any, level: list[Any], add: Any, held: list[Any] | None = None) -> Any:
    """A fan-in-2 tree of ``add`` over futures on the cluster (reduces before new partials); the root future."""
    while len(level) > 1:
        nxt = [client.submit(add, level[i], level[i + 1], priority=1) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
        if held is not None:
            held.extend(level)
    return level[0]


def _submit_block(client: Any, matrices: list[Any], lo: int, hi: int, fam: ProductFamily,
                  config: CollaborativeConfig) -> tuple[Any, list[Any]]:
    """Futures of one block: a partial per partition, a fan-in-2 tree of sums, the selection.

    Returns the selection's future and every intermediate one (the caller
    holds them until the result is in: a future released while its
    dependent's graph is on its way to the scheduler is forgotten).
    """
    level = [client.submit(block_partial, m, lo, hi, priority=0) for m in matrices]
    held = list(level)
    root = _tree(client, level, add_blocks, held)
    return client.submit(_block_result, root, lo, fam, config, priority=2), held


def _reduce_statistics(client: Any, parts: list[Any], n_movies: int, fam: Family, config: CollaborativeConfig,
                       so_far: dict[str, Any], step: int) -> dict[str, Any]:
    """Pass ``step`` of ``fam``'s statistics summed over the partitions (a tree of adds; the total to the client)."""
    return tree_reduce(client, [client.submit(partition_statistics, p, n_movies, fam, config, so_far, step)
                                for p in parts], add_statistics)
