"""Stage 4: TF-IDF text of each movie and its top-k cosine neighbours.

The seed kept a dense N x N matrix per text (2.4 GB each at 17,500 movies). A
recommendation only ever reads a movie's strongest neighbours, so rekko keeps
the ``k`` largest similarities per row as a CSR matrix: O(N*k) memory, computed
by a sparse top-n product that never materialises a dense block.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from rekko.artifacts import TopKSimilarity
from rekko.columns import Columns as C
from rekko.config import SimilarityConfig

log = logging.getLogger(__name__)

#: One token per word, Cyrillic included (``\w`` is Unicode-aware).
TOKEN_PATTERN = r"(?u)\b\w\w+\b"






def _as_tokens(values: pd.Series) -> pd.Series:
    """List elements as single tokens: 'Иван Петров' -> 'иван_петров', so names match whole."""
    return values.map(lambda xs: " ".join(x.replace(" ", "_") for x in xs) if xs else "")


def metadata_text(movies: pd.DataFrame) -> pd.Series:
    """Title words, entity type, genres, director, actors and country as one document per movie."""
    parts: list[pd.Series] = [movies[C.TITLE].astype(str)]
    if C.ENTITY_TYPE in movies.columns:
        parts.append(movies[C.ENTITY_TYPE].astype(str).str.replace(" ", "_", regex=False))
    for col in (C.GENRES, C.DIRECTOR, C.ACTORS, C.COUNTRY):
        if col in movies.columns:
            parts.append(_as_tokens(movies[col]))
    text = parts[0]
    for p in parts[1:]:
        text = text.str.cat(p, sep=" ")
    return text


def description_text(movies: pd.DataFrame) -> pd.Series:
    if C.DESCRIPTION not in movies.columns:
        return pd.Series([""] * len(movies), index=movies.index)
    return movies[C.DESCRIPTION].astype("string").fillna("").astype(str)


def tokens(texts: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Every token of every text as ``(row, token)``: lower-cased maximal runs of 2+ word characters.

    The same tokens as the regular expression :data:`TOKEN_PATTERN` over the
    lower-cased text (a word character: a Unicode letter, digit or ``_``),
    found by Arrow's string kernels over the whole column, not per document in Python.
    """
    text = pa.array(texts.astype("string").fillna("").to_numpy(dtype=object), type=pa.string())
    parts = pc.split_pattern_regex(pc.utf8_lower(text), r"[^\pL\pN_]+")
    flat = pc.list_flatten(parts)
    rows = pc.list_parent_indices(parts)
    keep = pc.greater_equal(pc.utf8_length(flat), 2)
    return rows.filter(keep).to_numpy(), flat.filter(keep).to_numpy(zero_copy_only=False)


def tfidf_matrix(texts: pd.Series, *, min_df: int = 1, max_df: float = 1.0,
                 max_features: int | None = None) -> sp.csr_matrix:
    """L2-normalised TF-IDF rows (float32), columns in term order; an all-empty corpus gives an all-zero matrix.

    Sublinear term frequency ``1 + ln(count)``, smooth inverse document
    frequency ``ln((1 + n) / (1 + df)) + 1``; terms in more than ``max_df`` of
    the documents or fewer than ``min_df`` are dropped, then all but the
    ``max_features`` most frequent (ties: term order). The usual TF-IDF
    (scikit-learn's ``TfidfVectorizer`` with these settings gives the same
    matrix: a test checks it), built with vectorised counting: tokenising
    17,500 documents one by one in Python was a third of the content stage.
    """
    n = len(texts)
    rows, words = tokens(texts)
    if not len(words):
        return sp.csr_matrix((n, 1), dtype=np.float32)
    codes, _ = pd.factorize(words, sort=True)  # columns in term (code point) order
    counts = sp.csr_matrix((np.ones(len(codes), dtype=np.float32), (rows, codes)),
                           shape=(n, int(codes.max()) + 1))
    counts.sum_duplicates()
    n_docs = int(texts.fillna("").astype(str).str.len().gt(0).sum())
    low = min_df if n_docs >= 2 * min_df else 1
    high = max_df * n if n_docs >= 10 else float(n)
    df = np.bincount(counts.indices, minlength=counts.shape[1])
    keep = (df <= high) & (df >= low)
    if max_features is not None and keep.sum() > max_features:
        frequency = np.asarray(counts.sum(axis=0)).ravel()
        order = np.lexsort((np.arange(len(df)), -frequency))
        order = order[keep[order]][:max_features]
        keep = np.zeros_like(keep)
        keep[order] = True
    if not keep.any():  # every term pruned: no similarity to speak of
        return sp.csr_matrix((n, 1), dtype=np.float32)
    x = counts[:, np.flatnonzero(keep)].tocsr()
    x.sort_indices()
    idf = (np.log(np.float32(n + 1) / (df[keep].astype(np.float32) + np.float32(1))) + np.float32(1))
    x.data = (np.log(x.data) + np.float32(1)) * idf.astype(np.float32)[x.indices]
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1), dtype=np.float32).ravel())
    x = sp.csr_matrix(sp.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)) @ x,
                      dtype=np.float32)
    x.eliminate_zeros()
    return x


def keep_top_k(matrix: sp.csr_matrix, k: int, *, drop_diagonal: bool = True) -> sp.csr_matrix:
    """Keep the ``k`` largest positive entries of each row (ties broken by column order)."""
    m = matrix.tocsr().copy()
    if drop_diagonal:
        m.setdiag(0)
    m.eliminate_zeros()
    m.data[m.data < 0] = 0
    m.eliminate_zeros()
    counts = np.diff(m.indptr)
    if counts.max(initial=0) <= k:
        m.sort_indices()
        return m
    rows = np.repeat(np.arange(m.shape[0]), counts)
    # sort within rows by value descending, column ascending: stable lexsort
    order = np.lexsort((m.indices, -m.data, rows))
    rank = np.arange(len(order)) - np.repeat(m.indptr[:-1], counts)
    keep = order[rank < k]
    keep.sort()
    kept_rows = rows[keep]
    out = sp.csr_matrix((m.data[keep], m.indices[keep], np.concatenate([[0], np.cumsum(np.bincount(kept_rows, minlength=m.shape[0]))])), shape=m.shape)
    out.sort_indices()
    return out


def top_k_cosine(x: sp.csr_matrix, k: int, *, n_threads: int | None = None) -> sp.csr_matrix:
    """Top-k cosine neighbours of every row of an L2-normalised matrix, self excluded.

    ``sp_matmul_topn`` keeps only ``k + 1`` results per row while multiplying
    (one row of accumulators per thread), so memory stays O(N*k).
    """
    from sparse_dot_topn import sp_matmul_topn

    n = x.shape[0]
    if n == 0:
        return sp.csr_matrix((0, 0), dtype=np.float32)
    x = x.astype(np.float32).tocsr()
    threads = n_threads if n_threads is not None else (os.cpu_count() or 1)
    top = sp_matmul_topn(x, x.T.tocsr(), top_n=min(k + 1, n), threshold=1e-7, sort=False,
                         n_threads=threads if threads > 1 else None)
    top = sp.csr_matrix(top, dtype=np.float32)
    # float rounding can push a self-similarity above 1
    np.clip(top.data, 0.0, 1.0, out=top.data)
    return keep_top_k(top, k, drop_diagonal=True).astype(np.float32)


def _spherical_clusters(emb: np.ndarray, n_clusters: int, *, seed: int) -> np.ndarray:
    """Unit-length centroids of ``n_clusters`` clusters of the unit rows of ``emb`` (k-means on a sample)."""
    from sklearn.cluster import MiniBatchKMeans

    rng = np.random.default_rng(seed)
    sample = emb if len(emb) <= 64 * n_clusters else emb[rng.choice(len(emb), 64 * n_clusters, replace=False)]
    km = MiniBatchKMeans(n_clusters=n_clusters, random_state=seed, batch_size=min(len(sample), 8192),
                         n_init=1, max_iter=50).fit(sample)
    centroids = km.cluster_centers_.astype(np.float32)
    norms = np.linalg.norm(centroids, axis=1, keepdims=True)
    return centroids / np.where(norms > 0, norms, 1.0)


def _top_clusters(emb: np.ndarray, centroids: np.ndarray, n: int, *, block: int = 65_536) -> np.ndarray:
    """The ``n`` nearest centroids (by cosine) of every row, nearest first."""
    out = np.empty((len(emb), n), dtype=np.int32)
    for start in range(0, len(emb), block):
        sims = emb[start:start + block] @ centroids.T
        top = np.argpartition(-sims, n - 1, axis=1)[:, :n] if n < sims.shape[1] else np.tile(
            np.arange(sims.shape[1]), (len(sims), 1))
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind="stable")
        out[start:start + block] = np.take_along_axis(top, order, axis=1)
    return out


def _balanced_centroids(emb: np.ndarray, n_clusters: int, cluster_size: int, *, seed: int,
                        rounds: int = 3) -> np.ndarray:
    """Centroids of k-means clusters, a cluster of more than ``2 * cluster_size`` rows split by k-means again.

    A product's cost grows with the square of its cluster: one cluster of
    40,000 short descriptions cost more than the other 99 together.
    """
    centroids = _spherical_clusters(emb, n_clusters, seed=seed)
    for r in range(rounds):
        own = _top_clusters(emb, centroids, 1)[:, 0]
        sizes = np.bincount(own, minlength=len(centroids))
        big = np.flatnonzero(sizes > 2 * cluster_size)
        if len(big) == 0:
            break
        parts = [centroids[sizes <= 2 * cluster_size]]
        for c in big:
            members = emb[own == c]
            parts.append(_spherical_clusters(members, int(np.ceil(len(members) / cluster_size)), seed=seed + r + 1))
        centroids = np.unique(np.vstack(parts), axis=0)
    return centroids


def blocked_top_k_cosine(x: sp.csr_matrix, k: int, *, cluster_size: int = 2_000, spill: int = 4,
                         dims: int = 64, n_threads: int | None = None, seed: int = 0) -> sp.csr_matrix:
    """Approximate :func:`top_k_cosine` in time linear in the rows at fixed ``k``, ``cluster_size`` and ``spill``.

    Candidate blocking: the rows are embedded by a truncated SVD (``dims``
    components, unit length) and clustered by k-means into clusters of about
    ``cluster_size`` rows. Each row is then compared, by the exact sparse
    top-k product, with the rows that list its cluster among their ``spill``
    nearest clusters: about ``spill * cluster_size`` candidates instead of all
    ``N``. A neighbour is found unless its own ``spill`` nearest clusters all
    miss the row's cluster. Every similarity kept is exact: a neighbour can
    be missed (recall), never mis-scored.
    """
    from sklearn.decomposition import TruncatedSVD
    from sparse_dot_topn import sp_matmul_topn

    n = x.shape[0]
    x = x.astype(np.float32).tocsr()
    nonzero = np.flatnonzero(np.diff(x.indptr) > 0)  # all-zero rows have no neighbours
    n_clusters = int(max(2, round(len(nonzero) / cluster_size)))
    if len(nonzero) <= 2 * cluster_size or x.shape[1] < 3:
        return top_k_cosine(x, k, n_threads=n_threads)
    sub = x[nonzero]
    svd = TruncatedSVD(n_components=min(dims, x.shape[1] - 1), algorithm="randomized", n_iter=3, random_state=seed)
    fit_rows = np.random.default_rng(seed).choice(sub.shape[0], min(sub.shape[0], 50_000), replace=False)
    svd.fit(sub[np.sort(fit_rows)])
    emb = np.asarray(sub @ svd.components_.T.astype(np.float32), dtype=np.float32)
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    emb /= np.where(norms > 0, norms, 1.0)
    centroids = _balanced_centroids(emb, n_clusters, cluster_size, seed=seed)
    n_clusters = len(centroids)
    nearest = _top_clusters(emb, centroids, min(spill, n_clusters))
    del emb
    own = nearest[:, 0]
    # candidates of a cluster's rows: every row listing that cluster among its nearest
    doc_rows = np.repeat(np.arange(sub.shape[0]), nearest.shape[1])
    doc_clusters = nearest.ravel()
    order = np.argsort(doc_clusters, kind="stable")
    doc_bounds = np.searchsorted(doc_clusters[order], np.arange(n_clusters + 1))
    query_order = np.argsort(own, kind="stable")
    query_bounds = np.searchsorted(own[query_order], np.arange(n_clusters + 1))
    threads = n_threads if n_threads is not None else (os.cpu_count() or 1)

    rows, cols, vals = [], [], []
    for c in range(n_clusters):
        queries = query_order[query_bounds[c]:query_bounds[c + 1]]
        if len(queries) == 0:
            continue
        docs = doc_rows[order[doc_bounds[c]:doc_bounds[c + 1]]]
        top = sp_matmul_topn(sub[queries], sub[docs].T.tocsr(), top_n=min(k + 1, len(docs)), threshold=1e-7,
                             sort=False, n_threads=threads if threads > 1 else None).tocoo()
        rows.append(nonzero[queries[top.row]])
        cols.append(nonzero[docs[top.col]])
        vals.append(top.data.astype(np.float32))
    top = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n),
                        dtype=np.float32)
    np.clip(top.data, 0.0, 1.0, out=top.data)
    return keep_top_k(top, k, drop_diagonal=True).astype(np.float32)


def content_similarities(movies: pd.DataFrame, config: SimilarityConfig = SimilarityConfig()) -> tuple[TopKSimilarity, TopKSimilarity]:
    """Metadata and description top-k cosine similarities, in ``movies`` row order."""
    ids = movies[C.MOVIE].astype(str).to_numpy()
    md = tfidf_matrix(metadata_text(movies), max_df=config.md_max_df, max_features=config.max_features)
    desc = tfidf_matrix(
        description_text(movies), min_df=config.desc_min_df, max_df=config.desc_max_df,
        max_features=config.max_features,
    )
    return TopKSimilarity(ids, neighbours(md, config)), TopKSimilarity(ids, neighbours(desc, config))


def neighbours(x: sp.csr_matrix, config: SimilarityConfig = SimilarityConfig()) -> sp.csr_matrix:
    """Top-k cosine neighbours: exact up to ``config.exact_max_movies`` rows (None: always), candidate blocking above."""
    if config.exact_max_movies is None or x.shape[0] <= config.exact_max_movies:
        return top_k_cosine(x, config.k, n_threads=config.n_threads)
    log.info("%d movies > %d: top-%d neighbours by candidate blocking (clusters of ~%d, spill %d)",
             x.shape[0], config.exact_max_movies, config.k, config.cluster_size, config.spill)
    return blocked_top_k_cosine(x, config.k, cluster_size=config.cluster_size, spill=config.spill,
                                n_threads=config.n_threads)
