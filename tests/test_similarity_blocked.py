"""Large catalogues: top-k neighbours by candidate blocking, checked against the exact product (issue 13 a)."""

import numpy as np
import pytest
import scipy.sparse as sp

from rekko.config import SimilarityConfig
from rekko.pipeline.ingest import validate_movies
from rekko.pipeline.ratings import attach_ratings, clean_ratings
from rekko.pipeline.similarity import (
    blocked_top_k_cosine,
    content_similarities,
    description_text,
    metadata_text,
    neighbours,
    tfidf_matrix,
    top_k_cosine,
)
from rekko.testing.synth import generate

K = 20


@pytest.fixture(scope="module")
def catalogue():
    data = generate(6_000, 200, 2_000, seed=3)
    movies, _ = attach_ratings(validate_movies(data.movies), clean_ratings(data.ratings))
    cfg = SimilarityConfig()
    md = tfidf_matrix(metadata_text(movies), max_df=cfg.md_max_df, max_features=cfg.max_features)
    desc = tfidf_matrix(description_text(movies), min_df=cfg.desc_min_df, max_df=cfg.desc_max_df)
    return movies, md, desc


def recall(exact: sp.csr_matrix, approx: sp.csr_matrix) -> float:
    hits = total = 0
    for i in range(exact.shape[0]):
        truth = set(exact.indices[exact.indptr[i]:exact.indptr[i + 1]])
        hits += len(truth & set(approx.indices[approx.indptr[i]:approx.indptr[i + 1]]))
        total += len(truth)
    return hits / max(total, 1)


@pytest.mark.parametrize("which", ["md", "desc"])
def test_blocked_neighbours_recall_the_exact_top_k(catalogue, which):
    _, md, desc = catalogue
    x = md if which == "md" else desc
    exact = top_k_cosine(x, K)
    approx = blocked_top_k_cosine(x, K, cluster_size=200, spill=4)  # 30 clusters: the blocked path, not exact
    assert approx.shape == exact.shape and np.diff(approx.indptr).max() <= K
    assert recall(exact, approx) >= 0.95
    # every similarity kept is the exact cosine of its pair (a neighbour may be missed, never mis-scored)
    coo = approx.tocoo()
    xr = x.astype(np.float64).tocsr()
    true = np.asarray(xr[coo.row].multiply(xr[coo.col]).sum(axis=1)).ravel()
    assert np.allclose(coo.data, np.clip(true, 0, 1), atol=1e-5)
    assert not (coo.row == coo.col).any()
    # rows without text have no neighbours, as in the exact product
    empty = np.flatnonzero(np.diff(x.tocsr().indptr) == 0)
    assert (np.diff(approx.indptr)[empty] == 0).all()


def test_small_catalogues_stay_exact(catalogue):
    movies, md, desc = catalogue
    md_sim, desc_sim = content_similarities(movies, SimilarityConfig(k=K, exact_max_movies=10_000))
    assert (md_sim.matrix != top_k_cosine(md, K)).nnz == 0
    assert (desc_sim.matrix != top_k_cosine(desc, K)).nnz == 0


def test_above_the_threshold_the_blocked_path_runs(catalogue):
    _, md, _ = catalogue
    cfg = SimilarityConfig(k=K, exact_max_movies=1_000, cluster_size=200, spill=4)
    got = neighbours(md, cfg)
    assert (got != blocked_top_k_cosine(md, K, cluster_size=200, spill=4)).nnz == 0
    assert recall(top_k_cosine(md, K), got) >= 0.95
