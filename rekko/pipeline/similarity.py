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


def tfidf_matrix(texts: pd.Series, *, min_df: int = 1, max_df: float = 1.0,
                 max_features: int | None = None) -> sp.csr_matrix:
    """L2-normalised TF-IDF rows (float32); an all-empty corpus gives an all-zero matrix."""
    if not texts.str.contains(r"\w\w", regex=True).any():
        return sp.csr_matrix((len(texts), 1), dtype=np.float32)
    from sklearn.feature_extraction.text import TfidfVectorizer  # heavy: only the pipeline needs it

    n_docs = int(texts.str.len().gt(0).sum())
    vectorizer = TfidfVectorizer(
        token_pattern=TOKEN_PATTERN,
        lowercase=True,
        sublinear_tf=True,
        min_df=min_df if n_docs >= 2 * min_df else 1,
        max_df=max_df if n_docs >= 10 else 1.0,
        max_features=max_features,
        dtype=np.float32,
    )
    try:
        return vectorizer.fit_transform(texts.to_numpy()).tocsr()
    except ValueError:  # every term pruned by min_df/max_df: no similarity to speak of
        return sp.csr_matrix((len(texts), 1), dtype=np.float32)


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


def content_similarities(movies: pd.DataFrame, config: SimilarityConfig = SimilarityConfig()) -> tuple[TopKSimilarity, TopKSimilarity]:
    """Metadata and description top-k cosine similarities, in ``movies`` row order."""
    ids = movies[C.MOVIE].astype(str).to_numpy()
    md = tfidf_matrix(metadata_text(movies), max_df=config.md_max_df, max_features=config.max_features)
    desc = tfidf_matrix(
        description_text(movies), min_df=config.desc_min_df, max_df=config.desc_max_df,
        max_features=config.max_features,
    )
    return (
        TopKSimilarity(ids, top_k_cosine(md, config.k, n_threads=config.n_threads)),
        TopKSimilarity(ids, top_k_cosine(desc, config.k, n_threads=config.n_threads)),
    )
