"""The ranking kernel: candidate selection, scoring and top-n for every path that ranks movies.

The CLI (one user), batch recommend, the server, ``rekko evaluate`` and
``rekko tune`` all call :func:`rank`; nothing else ranks movies.

Score
-----
For a user whose history holds movies ``h_i`` with watch ratios ``r_i`` and
recency ranks ``q_i`` (0 = the latest watch)::

    w_i     = r_i ** p * 0.5 ** (q_i / half_life)   (no decay when half_life is None; p = ratio_power)
    wn_i    = w_i / sum_i w_i                         (all zero when the sum is 0)
    score_j = sum_i wn_i * C[h_i, j] + m_j            for every movie j the user has not watched
    C       = w_md * S_md + w_desc * S_desc + w_cf * S_cf     (sparse top-k, all entries >= 0)
    m_j     = w_movie * movie_score_j

Ties are broken by catalogue order: score descending, then movie index
ascending. This is the only tie rule in rekko.

Candidates
----------
A user's candidates are the movies ``j`` with a nonzero ``C[h_i, j]`` for some
watched ``h_i`` (the rows of ``C`` the history touches), plus the first
``n + |h|`` movies of the *cold order* ``P`` (``m`` descending, index
ascending), minus the watched movies. Every candidate is scored exactly.

Claim: no movie outside the candidates ranks in the top ``n``.
Proof. Let ``j`` be unwatched and not a candidate. No watched row of ``C``
has ``j``, so ``score_j = m_j``. ``j`` is not in the prefix of ``P`` of length
``n + |h|``; at most ``|h|`` prefix movies are watched, so at least ``n``
prefix movies ``p`` are unwatched candidates. For each, ``score_p >= m_p``
(the similarity part is a sum of products of non-negative numbers) and ``p``
precedes ``j`` in ``P``: ``m_p > m_j``, or ``m_p = m_j`` and ``p < j``. If
``score_p > score_j`` then ``p`` ranks before ``j``; otherwise
``score_p = score_j = m_j``, which forces ``m_p = m_j`` and so ``p < j``, and
the tie rule again ranks ``p`` first. So at least ``n`` movies rank before
``j``. The argument needs only ``C >= 0`` and ``m`` finite, both checked by
:func:`combine`. (``tests/test_kernel.py`` checks the kernel against a dense
brute force.)

Cost
----
Per user, the work is the nonzeros of the watched rows of ``C`` plus
``n + |h|`` prefix movies plus a size-``n`` heap: it grows with the nonzeros
touched, never with users x movies. Batch calls split users into one chunk
per thread (numba ``prange``; the loops release the GIL), each with its own
scratch arrays, and produce exactly the single-user answer for each user: the
per-user arithmetic is one scalar loop in a fixed order (float32 products and
sums, in the order of the history and of ``C``'s stored row entries).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from rekko.config import BlendWeights
from rekko.exceptions import ArtifactError

SIM_KINDS = ("md", "desc", "cf")


@dataclass(frozen=True)
class Scorer:
    """A blend fitted to one set of similarities: what :func:`rank` scores with.

    ``combined`` may hold every movie's row (``row_of`` = the history's movie
    indices) or only the rows one user needs (see :func:`combine`).
    """

    combined: sp.csr_matrix  # float32, canonical, entries >= 0
    movie_part: np.ndarray  # float32 per movie: w_movie * movie_score
    cold_order: np.ndarray  # int32: movie_part descending, index ascending
    half_life: float | None
    ratio_power: float = 1.0  # the history's watch ratios enter as ratio ** ratio_power (see ratio_weights)

    def __post_init__(self) -> None:
        if self.combined.dtype != np.float32 or self.movie_part.dtype != np.float32:
            raise ArtifactError("the scorer's similarity and movie part must be float32")


def combine(sims: dict[str, sp.csr_matrix], movie_score: np.ndarray, weights: BlendWeights) -> Scorer:
    """``C = sum_kind w_kind * S_kind`` (kinds in :data:`SIM_KINDS` order) plus the movie part.

    The sum is computed row by row in a fixed order, so combining a subset of
    rows (``S[rows]`` for each kind) gives exactly those rows of the full ``C``.
    """
    movie_part = (np.asarray(movie_score, dtype=np.float32) * np.float32(weights.movie)).astype(np.float32)
    if not np.isfinite(movie_part).all():
        raise ArtifactError("movie scores must be finite")
    shape = next(iter(sims.values())).shape if sims else (0, len(movie_part))
    combined = sp.csr_matrix(shape, dtype=np.float32)
    for kind in SIM_KINDS:
        w = getattr(weights, kind)
        if kind in sims and w:
            s = sims[kind]
            if s.nnz and (not np.isfinite(s.data).all() or s.data.min() < 0):
                raise ArtifactError(f"the {kind} similarity has negative or non-finite entries")
            combined = combined + s.astype(np.float32, copy=False) * np.float32(w)
    combined = sp.csr_matrix(combined, dtype=np.float32)
    combined.sort_indices()
    m = len(movie_part)
    cold_order = np.lexsort((np.arange(m), -movie_part)).astype(np.int32)
    return Scorer(combined, movie_part, cold_order, weights.recency_half_life, weights.ratio_power)


class Blendable:
    """Similarities laid out once on the union of their sparsity patterns, so a blend is an array sum.

    :func:`combine` merges the kinds' index structures for every blend; a
    caller that combines the same similarities with many weights (the tuning
    search: one blend per candidate) builds this once and gets each blend from
    :meth:`combine` as ``sum_kind w_kind * values_kind`` over aligned arrays.
    The result is :func:`combine`'s, bit for bit: the same float32 products
    added in the same kind order (an absent entry adds an exact 0), zeros
    dropped as scipy's sparse sum drops them.
    """

    def __init__(self, sims: dict[str, sp.csr_matrix], movie_score: np.ndarray,
                 rows: np.ndarray | None = None) -> None:
        """``rows``: the only rows any ranking will read (the movies in the histories ranked); the others are
        left empty, which the kernel never notices (it reads the rows of a user's watched movies only)."""
        kinds = [k for k in SIM_KINDS if k in sims]
        self.shape = sims[kinds[0]].shape if kinds else (0, 0)
        mats = {k: sp.csr_matrix(sims[k], dtype=np.float32) for k in kinds}
        if rows is not None:
            keep = np.zeros(self.shape[0], dtype=np.float32)
            keep[np.asarray(rows, dtype=np.int64)] = 1.0
            mats = {k: sp.csr_matrix(sp.diags(keep) @ m, dtype=np.float32) for k, m in mats.items()}
            for m in mats.values():
                m.eliminate_zeros()
        for k, m in mats.items():
            m.sum_duplicates()
            if m.nnz and (not np.isfinite(m.data).all() or m.data.min() < 0):
                raise ArtifactError(f"the {k} similarity has negative or non-finite entries")
        pattern = sp.csr_matrix(self.shape, dtype=np.int8)
        for m in mats.values():
            pattern = pattern + sp.csr_matrix((np.ones(m.nnz, np.int8), m.indices, m.indptr), shape=m.shape)
        pattern.sort_indices()
        self.indptr, self.indices = pattern.indptr, pattern.indices
        n_cols = max(int(self.shape[1]), 1)

        def keys(m: sp.csr_matrix) -> np.ndarray:
            rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
            return rows * n_cols + m.indices

        union = keys(pattern)
        self.movie_score = np.asarray(movie_score)
        self._movie_parts: dict[float, Scorer] = {}
        #: each kind's values on the union pattern (0 where the kind has no entry): a blend is contiguous arithmetic
        self.aligned: dict[str, np.ndarray] = {}
        for k, m in mats.items():
            values = np.zeros(len(union), dtype=np.float32)
            values[np.searchsorted(union, keys(m))] = m.data
            self.aligned[k] = values

    def combine(self, weights: BlendWeights) -> Scorer:
        """:func:`combine` of these similarities and movie scores with ``weights``."""
        data = np.zeros(len(self.indices), dtype=np.float32)
        for kind in SIM_KINDS:
            w = getattr(weights, kind)
            if kind in self.aligned and w:
                data += self.aligned[kind] * np.float32(w)
        combined = sp.csr_matrix((data, self.indices, self.indptr), shape=self.shape)
        if not data.all():  # entries only weight-0 kinds have (or a product that underflowed): dropped, as combine
            combined = sp.csr_matrix((data, self.indices.copy(), self.indptr.copy()), shape=self.shape)
            combined.eliminate_zeros()
        key = float(weights.movie)
        movie = self._movie_parts.get(key)
        if movie is None:  # the movie part depends on the movie weight only: computed once per weight
            movie = self._movie_parts[key] = combine({}, self.movie_score, weights)
        return replace(movie, combined=combined, half_life=weights.recency_half_life, ratio_power=weights.ratio_power)


# ----------------------------------------------------------------------------- the loop
#
# One plain Python function ranks a run of queries. Batch paths run it compiled by numba (its
# arithmetic is explicit float32/float64 numpy scalars, so compiled and interpreted runs give the
# same bits); the one-user CLI runs the same source interpreted, which costs milliseconds for a
# user's few thousand candidates and spares a command-line answer numba's start-up (~0.5 s).
# Recency decay comes in as a table (``decay[q] = 0.5 ** (q / half_life)``, computed once by
# numpy for every path) so no transcendental function is evaluated in two runtimes.


def _rank_queries(
    starts, ends,  # per query: its history entries [start, end)
    h_movie, h_row, h_ratio, h_recency, decay,
    c_indptr, c_indices, c_data,
    movie_part, cold_order, n,
    out_movie, out_score, out_len,
):  # pragma: no cover - compiled by numba; the interpreted run is covered by the one-user tests
    m = movie_part.shape[0]
    acc = np.zeros(m, np.float32)
    state = np.zeros(m, np.uint8)  # 0 untouched, 1 candidate, 2 watched
    touched = np.empty(m, np.int32)
    hs = np.empty(n, np.float32)  # a heap of the kept items whose root is the *worst* kept
    hj = np.empty(n, np.int32)
    longest = 0
    for q in range(starts.shape[0]):
        longest = max(longest, ends[q] - starts[q])
    w = np.empty(longest, np.float64)
    for q in range(starts.shape[0]):
        a = starts[q]
        b = ends[q]
        length = b - a
        # normalised history weights
        total = 0.0
        for t in range(length):
            wt = np.float64(h_ratio[a + t]) * decay[h_recency[a + t]]
            w[t] = wt
            total += wt
        for t in range(length):
            w[t] = w[t] / total if total > 0.0 else 0.0
        for t in range(a, b):
            state[h_movie[t]] = 2
        # candidates: the watched movies' rows of C, then the cold-order prefix
        nt = 0
        for t in range(length):
            wi = np.float32(w[t])
            row = h_row[a + t]
            for p in range(c_indptr[row], c_indptr[row + 1]):
                j = c_indices[p]
                s = state[j]
                if s == 2:
                    continue
                if s == 0:
                    state[j] = 1
                    acc[j] = np.float32(0.0)
                    touched[nt] = j
                    nt += 1
                acc[j] += wi * c_data[p]
        for t in range(min(n + length, m)):
            j = cold_order[t]
            if state[j] == 0:
                state[j] = 1
                acc[j] = np.float32(0.0)
                touched[nt] = j
                nt += 1
        # top n: (s1, j1) is better than (s2, j2) when s1 > s2 or (s1 == s2 and j1 < j2)
        size = 0
        for t in range(nt):
            j = touched[t]
            s = acc[j] + movie_part[j]
            if size < n:
                pos = size
                hs[pos] = s
                hj[pos] = j
                size += 1
                while pos > 0:  # sift up: a worse item moves toward the root
                    par = (pos - 1) // 2
                    if hs[par] > hs[pos] or (hs[par] == hs[pos] and hj[par] < hj[pos]):
                        hs[par], hs[pos] = hs[pos], hs[par]
                        hj[par], hj[pos] = hj[pos], hj[par]
                        pos = par
                    else:
                        break
                continue
            if not (s > hs[0] or (s == hs[0] and j < hj[0])):
                continue
            hs[0] = s
            hj[0] = j
            pos = 0
            while True:  # sift down
                worst = 2 * pos + 1
                if worst >= size:
                    break
                if worst + 1 < size and (hs[worst] > hs[worst + 1]
                                         or (hs[worst] == hs[worst + 1] and hj[worst] < hj[worst + 1])):
                    worst += 1
                if hs[pos] > hs[worst] or (hs[pos] == hs[worst] and hj[pos] < hj[worst]):
                    hs[pos], hs[worst] = hs[worst], hs[pos]
                    hj[pos], hj[worst] = hj[worst], hj[pos]
                    pos = worst
                else:
                    break
        # the heap holds the top n; ordering it is a selection sort over n items (n is small)
        out_len[q] = size
        for r in range(size):
            best = r
            for t in range(r + 1, size):
                if hs[t] > hs[best] or (hs[t] == hs[best] and hj[t] < hj[best]):
                    best = t
            hs[r], hs[best] = hs[best], hs[r]
            hj[r], hj[best] = hj[best], hj[r]
            out_score[q, r] = hs[r]
            out_movie[q, r] = hj[r]
        for t in range(nt):
            state[touched[t]] = 0
        for t in range(a, b):
            state[h_movie[t]] = 0


def _rank_queries_parallel(
    n_chunks, starts, ends, h_movie, h_row, h_ratio, h_recency, decay,
    c_indptr, c_indices, c_data, movie_part, cold_order, n, out_movie, out_score, out_len,
):  # pragma: no cover - compiled by numba
    total = starts.shape[0]
    for c in prange(n_chunks):
        lo = total * c // n_chunks
        hi = total * (c + 1) // n_chunks
        _rank_queries_jit(starts[lo:hi], ends[lo:hi], h_movie, h_row, h_ratio, h_recency, decay,
                          c_indptr, c_indices, c_data, movie_part, cold_order, n,
                          out_movie[lo:hi], out_score[lo:hi], out_len[lo:hi])


# set by _compiled(): the parallel driver refers to these module globals, which numba resolves when it compiles
_rank_queries_jit: Any = None
prange = range


@functools.cache
def _compiled():
    """The numba-compiled loop (one thread) and its parallel driver, compiled once per process (cached on disk)."""
    global _rank_queries_jit, prange
    import numba

    prange = numba.prange
    try:
        _rank_queries_jit = numba.njit(cache=True, nogil=True)(_rank_queries)
        parallel = numba.njit(parallel=True, cache=True)(_rank_queries_parallel)
    except RuntimeError:  # no writable cache location (a read-only install and home): compile per process
        _rank_queries_jit = numba.njit(nogil=True)(_rank_queries)
        parallel = numba.njit(parallel=True)(_rank_queries_parallel)
    return _rank_queries_jit, parallel


# ----------------------------------------------------------------------------- the entry points


@dataclass(frozen=True)
class History:
    """Users' watches as CSR-like arrays: entries ``indptr[u]:indptr[u+1]`` are user ``u``'s.

    ``movie`` is the movie index of each entry (sorted within a user),
    ``ratio`` the raw watch ratio, ``recency`` the recency rank (0 = latest).
    """

    indptr: np.ndarray
    movie: np.ndarray
    ratio: np.ndarray
    recency: np.ndarray

    def __post_init__(self) -> None:
        # the kernel's arithmetic is float32 on the ratio: fix the dtype here so every path computes the same bits
        # (a no-op, with no copy, for arrays already of the right type, e.g. a mapped bundle)
        object.__setattr__(self, "ratio", np.asarray(self.ratio, dtype=np.float32))
        for name in ("indptr", "movie", "recency"):
            if getattr(self, name).dtype.kind not in "iu":
                raise ArtifactError(f"history {name} must be integers, got {getattr(self, name).dtype}")
        if not (len(self.movie) == len(self.ratio) == len(self.recency) == (self.indptr[-1] if len(self.indptr) else 0)):
            raise ArtifactError("history arrays disagree in length")

    @property
    def n_users(self) -> int:
        return len(self.indptr) - 1

    @property
    def nnz(self) -> int:
        return len(self.movie)

    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    def take(self, rows: np.ndarray) -> History:
        """The histories of ``rows`` (in that order) as a new, compact History."""
        rows = np.asarray(rows, dtype=np.int64)
        starts, ends = self.indptr[rows], self.indptr[rows + 1]
        lengths = ends - starts
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        pick = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1])
        return History(indptr, self.movie[pick], self.ratio[pick], self.recency[pick])


@dataclass(frozen=True)
class RankedBlock:
    """Top-n of many queries: ``movies[q, :lengths[q]]`` in rank order, with their ``scores``."""

    movies: np.ndarray  # (queries, n) int32, -1 past lengths[q]
    scores: np.ndarray  # (queries, n) float32, NaN past lengths[q]
    lengths: np.ndarray  # (queries,) int32


def n_threads() -> int:
    """Threads for batch ranking: ``REKKO_THREADS`` if set, else every core this process may use."""
    env = os.environ.get("REKKO_THREADS")
    if env:
        return max(1, int(env))
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


#: Above this many similarity entries to visit, the one-user path compiles the loop instead of interpreting it.
INTERPRET_MAX_ENTRIES = 20_000


def decay_table(recency: np.ndarray, half_life: float | None) -> np.ndarray:
    """``0.5 ** (q / half_life)`` for q = 0 .. max(recency); all ones without a half-life."""
    size = int(recency.max()) + 1 if len(recency) else 1
    if half_life is None:
        return np.ones(size, dtype=np.float64)
    return np.power(0.5, np.arange(size, dtype=np.float64) / float(half_life))


def rank(
    scorer: Scorer,
    history: History,
    queries: np.ndarray,
    n: int,
    *,
    rows_are_entries: bool = False,
    parallel: bool = False,
    engine: str = "jit",
) -> RankedBlock:
    """Top-``n`` movies for each query (a row of ``history``; -1 = a user with no history).

    ``scorer.combined`` holds every movie's row unless ``rows_are_entries``:
    then its row ``t`` belongs to history entry ``t`` (the one-user path, which
    reads only the rows a user needs). ``parallel`` spreads the queries over
    the cores. ``engine`` is ``"jit"`` (numba), ``"python"`` (the same loop,
    interpreted) or ``"auto"`` (interpreted when the work is small). The
    answers are the same bits whatever the options.
    """
    if engine not in ("jit", "python", "auto"):
        raise ValueError(f"engine must be 'jit', 'python' or 'auto', got {engine!r}")
    queries = np.asarray(queries, dtype=np.int64)
    known = queries >= 0
    safe = np.where(known, queries, 0)
    if history.n_users == 0:
        starts = ends = np.zeros(len(queries), dtype=np.int64)
    else:
        starts = np.where(known, history.indptr[safe], 0).astype(np.int64)
        ends = np.where(known, history.indptr[np.minimum(safe + 1, history.n_users)], 0).astype(np.int64)
    c = scorer.combined
    n = max(1, min(int(n), len(scorer.movie_part)))
    # arrays pass through without copies (a served bundle maps them): numba compiles one loop per dtype set
    h_movie = history.movie
    h_row = np.arange(len(h_movie), dtype=np.int32) if rows_are_entries else h_movie
    h_ratio, h_recency = history.ratio, history.recency
    if len(queries) == 1:  # one user: touch only their entries, never a whole-history array
        lo, hi = int(starts[0]), int(ends[0])
        decay = decay_table(np.asarray(history.recency[lo:hi]), scorer.half_life)
        work = int((c.indptr[np.asarray(h_row[lo:hi]) + 1] - c.indptr[np.asarray(h_row[lo:hi])]).sum())
        if scorer.ratio_power != 1.0:  # the user's own entries, re-based to 0, with their ratios weighted
            h_movie, h_row, h_recency = h_movie[lo:hi], h_row[lo:hi], h_recency[lo:hi]
            h_ratio = ratio_weights(history.ratio[lo:hi], scorer.ratio_power)
            starts, ends = starts - lo, ends - lo
    else:
        decay = decay_table(np.asarray(history.recency), scorer.half_life)
        work = c.nnz
        if scorer.ratio_power != 1.0:
            h_ratio = ratio_weights(history.ratio, scorer.ratio_power)
    out_movie = np.full((len(queries), n), -1, dtype=np.int32)
    out_score = np.full((len(queries), n), np.nan, dtype=np.float32)
    out_len = np.zeros(len(queries), dtype=np.int32)
    args = (
        starts, ends, h_movie, h_row, h_ratio, h_recency, decay,
        c.indptr, c.indices, c.data, scorer.movie_part, scorer.cold_order, n, out_movie, out_score, out_len,
    )
    if engine == "auto":
        engine = "python" if work + len(queries) * n <= INTERPRET_MAX_ENTRIES else "jit"
    if engine == "python":
        _rank_queries(*args)
        return RankedBlock(out_movie, out_score, out_len)
    one, many = _compiled()
    threads = n_threads()
    if parallel and threads > 1 and len(queries) >= 2 * threads:
        many(min(threads * 4, len(queries)), *args)
    else:
        one(*args)
    return RankedBlock(out_movie, out_score, out_len)


def ratio_weights(ratio: np.ndarray, power: float) -> np.ndarray:
    """``ratio ** power`` as float32, computed once by numpy for every path (so compiled and interpreted
    runs read the same bits). ``power`` > 1 lets the movies a user liked (watched through) lead their
    history; 0 weighs every watch alike (``0 ** 0`` is 1: a watch counts even at ratio 0)."""
    r = np.asarray(ratio, dtype=np.float32)
    if power == 1.0:
        return r
    return np.power(r.astype(np.float64), float(power)).astype(np.float32)


def user_weights(ratio: np.ndarray, recency: np.ndarray, half_life: float | None,
                 ratio_power: float = 1.0) -> np.ndarray:
    """One user's normalised history weights, as :func:`rank` computes them (float64)."""
    decay = decay_table(np.asarray(recency), half_life)
    w = ratio_weights(ratio, ratio_power).astype(np.float64) * decay[np.asarray(recency, dtype=np.int64)]
    total = 0.0
    for v in w:  # the loop's summation order, not numpy's pairwise sum
        total += float(v)
    return w / total if total > 0 else np.zeros_like(w)


def top_n_dense(scores: np.ndarray, n: int) -> np.ndarray:
    """Row-wise top-``n`` column indices of a dense score block with the kernel's tie rule; -1 pads.

    For models scored outside the blend (the seed's legacy max-aggregation in
    ``rekko evaluate``); ``-inf`` marks excluded movies.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"expected a 2-d score block, got shape {scores.shape}")
    order = np.lexsort((np.broadcast_to(np.arange(scores.shape[1]), scores.shape), -scores), axis=-1)[:, :n]
    top = order.astype(np.int64)
    top[~np.isfinite(np.take_along_axis(scores, order, axis=1))] = -1
    return top
