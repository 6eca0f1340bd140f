import numpy as np
import pandas as pd
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.preprocessing import normalize

from rekko.pipeline.ingest import validate_movies
from rekko.pipeline.similarity import (
    SimilarityConfig,
    content_similarities,
    keep_top_k,
    metadata_text,
    tfidf_matrix,
    top_k_cosine,
)
from tests.conftest import tiny_movies


def brute_top_k(dense: np.ndarray, k: int) -> dict[int, set[int]]:
    d = dense.copy()
    np.fill_diagonal(d, 0)
    out = {}
    for i, row in enumerate(d):
        pos = np.flatnonzero(row > 0)
        order = pos[np.lexsort((pos, -row[pos]))][:k]
        out[i] = set(order.tolist())
    return out


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 25), st.integers(1, 8), st.integers(0, 10_000))
def test_keep_top_k_matches_brute_force(n, k, seed):
    rng = np.random.default_rng(seed)
    dense = np.round(rng.random((n, n)), 2) * (rng.random((n, n)) < 0.6)
    got = keep_top_k(sp.csr_matrix(dense), k)
    want = brute_top_k(dense, k)
    for i in range(n):
        row = got[i]
        assert set(row.indices.tolist()) == want[i]
        assert len(row.indices) <= k and i not in row.indices


@settings(max_examples=25, deadline=None)
@given(st.integers(3, 40), st.integers(1, 6), st.integers(0, 10_000))
def test_top_k_cosine_values_match_dense(n, k, seed):
    x = normalize(sp.random(n, 15, density=0.3, random_state=seed, format="csr", dtype=np.float32))
    got = top_k_cosine(x, k)
    dense = (x @ x.T).toarray()
    np.fill_diagonal(dense, 0)
    for i in range(n):
        row = got[i]
        assert len(row.data) <= k and i not in row.indices
        top_values = np.sort(dense[i][dense[i] > 1e-7])[::-1][:k]
        np.testing.assert_allclose(np.sort(row.data)[::-1], top_values, rtol=1e-4, atol=1e-5)


def test_cyrillic_tokens_and_whole_names():
    movies = validate_movies(tiny_movies())
    text = metadata_text(movies)
    assert "киану_ривз".casefold() in text[0].casefold()
    x = tfidf_matrix(text)
    assert x.shape[0] == 6 and x.nnz > 0


def test_content_similarity_links_sequels():
    movies = validate_movies(tiny_movies()).assign(description=[
        "хакер нео матрица", "нео снова в матрице хакер", "новый год ёлки", "данила багров брат",
        "данила багров америка брат", "сёстры",
    ])
    md, desc = content_similarities(movies, SimilarityConfig(k=2, desc_min_df=1))
    ids = list(md.movie_ids)
    best_md = {ids[i]: ids[md.matrix[i].indices[np.argmax(md.matrix[i].data)]] for i in range(6) if md.matrix[i].nnz}
    assert best_md["m1"] == "m2" and best_md["m4"] == "m5"
    row = desc.matrix[ids.index("m4")]
    assert ids[row.indices[np.argmax(row.data)]] == "m5"
    assert md.matrix.shape == (6, 6) and np.diff(md.matrix.indptr).max() <= 2


def test_empty_descriptions_give_empty_matrix():
    movies = validate_movies(tiny_movies()).assign(description=[""] * 6)
    _, desc = content_similarities(movies, SimilarityConfig(k=3))
    assert desc.matrix.shape == (6, 6) and desc.matrix.nnz == 0


_WORDS = st.text(alphabet=st.sampled_from(list("абвгдеёжзиклмнопрстуфхцчшщэюяАБВЁabcXYZ019_ -,.!'\"é")), max_size=30)


@settings(max_examples=80, deadline=None)
@given(st.lists(_WORDS, min_size=1, max_size=25), st.sampled_from([1, 2]), st.sampled_from([1.0, 0.5, 0.2]))
def test_tfidf_is_the_usual_tfidf(texts: list[str], min_df: int, max_df: float) -> None:
    """The vectorised TF-IDF equals scikit-learn's TfidfVectorizer with the same settings (the oracle)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from rekko.pipeline.similarity import TOKEN_PATTERN

    series = pd.Series(texts, dtype=object)
    got = tfidf_matrix(series, min_df=min_df, max_df=max_df)
    n_docs = sum(1 for t in texts if len(t) > 0)
    oracle = TfidfVectorizer(token_pattern=TOKEN_PATTERN, lowercase=True, sublinear_tf=True, dtype=np.float32,
                             min_df=min_df if n_docs >= 2 * min_df else 1, max_df=max_df if n_docs >= 10 else 1.0)
    try:
        expected = oracle.fit_transform(series.to_numpy()).toarray()
    except ValueError:  # no term left: rekko gives an all-zero column
        assert got.nnz == 0
        return
    assert got.shape == expected.shape
    np.testing.assert_allclose(got.toarray(), expected, atol=2e-7)
