"""The ranking kernel against a dense brute force, on data built to tie: candidates, tie rule, engines.

The brute force scores every movie with the module docstring's formula in the
kernel's float32 arithmetic (the same products, summed in the same order), so
any movie the sparse candidate set misses, or any tie broken another way,
shows up as a different list.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rekko.config import BlendWeights
from rekko.exceptions import ArtifactError
from rekko.recommend import kernel
from rekko.recommend.kernel import History, combine, rank, top_n_dense, user_weights


def tied_problem(seed: int, n_movies: int, n_users: int, density: float):
    """Similarities, movie scores and histories drawn from a few values only, so ties are everywhere."""
    rng = np.random.default_rng(seed)
    levels = np.array([0.25, 0.5, 0.75, 1.0], dtype=np.float32)

    def sim() -> sp.csr_matrix:
        mask = rng.random((n_movies, n_movies)) < density
        dense = np.where(mask, rng.choice(levels, size=(n_movies, n_movies)), 0).astype(np.float32)
        np.fill_diagonal(dense, 0)
        return sp.csr_matrix(dense)

    sims = {"md": sim(), "desc": sim(), "cf": sim()}
    movie_score = rng.choice(np.array([0.0, 0.0, 0.5, 1.0]), size=n_movies)  # most movies share a score
    lengths = rng.integers(0, max(1, n_movies // 2) + 1, size=n_users)
    rows = [np.sort(rng.choice(n_movies, size=min(k, n_movies), replace=False)) for k in lengths]
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum([len(r) for r in rows], out=indptr[1:])
    movie = np.concatenate(rows).astype(np.int32) if rows else np.zeros(0, np.int32)
    ratio = rng.choice(np.array([0.0, 0.5, 1.0], dtype=np.float32), size=len(movie))
    recency = np.concatenate([rng.permutation(len(r)) for r in rows]).astype(np.int32) if rows else movie
    return sims, movie_score, History(indptr, movie, ratio, recency)


def brute_force(scorer: kernel.Scorer, history: History, user: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    m = len(scorer.movie_part)
    if user < 0:
        watched, w = np.zeros(0, np.int64), np.zeros(0)
    else:
        a, b = history.indptr[user], history.indptr[user + 1]
        watched = history.movie[a:b].astype(np.int64)
        w = user_weights(history.ratio[a:b], history.recency[a:b], scorer.half_life, scorer.ratio_power)
    dense = scorer.combined.toarray()
    acc = np.zeros(m, dtype=np.float32)
    for t, i in enumerate(watched):  # float32 products, summed in history order, as the kernel does
        acc += np.float32(w[t]) * dense[i]
    scores = acc + scorer.movie_part
    scores[watched] = -np.inf
    order = np.lexsort((np.arange(m), -scores))  # score desc, then catalogue order
    order = order[np.isfinite(scores[order])][:n]
    return order, scores[order]


half_lives = st.sampled_from([None, 1.0, 3.0])
weights = st.builds(
    BlendWeights,
    md=st.sampled_from([0.0, 0.5, 1.0]), desc=st.sampled_from([0.0, 0.25]), cf=st.sampled_from([0.0, 1.0]),
    movie=st.sampled_from([0.25, 1.0]), recency_half_life=half_lives, ratio_power=st.sampled_from([1.0, 0.0, 3.0]),
)


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 10_000), n_movies=st.integers(1, 40), n_users=st.integers(1, 6),
       density=st.sampled_from([0.0, 0.05, 0.3]), n=st.integers(1, 45), blend=weights)
def test_kernel_equals_dense_brute_force_with_ties(seed, n_movies, n_users, density, n, blend):
    sims, movie_score, history = tied_problem(seed, n_movies, n_users, density)
    scorer = combine(sims, movie_score, blend)
    queries = np.arange(-1, n_users)
    for engine in ("python", "jit"):
        got = rank(scorer, history, queries, n, engine=engine)
        for q, user in enumerate(queries):
            expected, expected_scores = brute_force(scorer, history, int(user), n)
            assert got.movies[q, : got.lengths[q]].tolist() == expected.tolist(), (engine, user)
            np.testing.assert_array_equal(got.scores[q, : got.lengths[q]], expected_scores.astype(np.float32))
            assert (got.movies[q, got.lengths[q]:] == -1).all()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), n=st.integers(1, 30), blend=weights)
def test_every_engine_and_block_gives_the_same_bits(seed, n, blend, monkeypatch_threads):
    sims, movie_score, history = tied_problem(seed, 60, 40, 0.1)
    scorer = combine(sims, movie_score, blend)
    queries = np.arange(history.n_users)
    reference = rank(scorer, history, queries, n, engine="python")
    for options in ({"engine": "jit"}, {"engine": "jit", "parallel": True}, {"engine": "auto"}):
        got = rank(scorer, history, queries, n, **options)
        np.testing.assert_array_equal(got.movies, reference.movies)
        np.testing.assert_array_equal(got.scores, reference.scores)
    for user in queries[::7]:  # one user at a time = the same rows of the block
        single = rank(scorer, history, np.array([user]), n, engine="auto")
        np.testing.assert_array_equal(single.movies[0], reference.movies[user])
        np.testing.assert_array_equal(single.scores[0], reference.scores[user])


@pytest.fixture
def monkeypatch_threads(monkeypatch):
    monkeypatch.setenv("REKKO_THREADS", "2")  # the parallel driver runs even on a one-core CI machine


@pytest.mark.parametrize("ratio_power", [1.0, 3.0])
def test_rows_of_one_user_rank_exactly_as_the_full_matrix(ratio_power):
    """The one-user path combines only the watched rows: the same rows of C, so the same answer."""
    sims, movie_score, history = tied_problem(3, 50, 8, 0.2)
    blend = BlendWeights(md=0.5, desc=0.25, cf=1.0, movie=0.25, recency_half_life=3.0, ratio_power=ratio_power)
    full = rank(combine(sims, movie_score, blend), history, np.arange(8), 12)
    for user in range(8):
        one = history.take(np.array([user]))
        rows = one.movie.astype(np.int64)
        partial = combine({k: m[rows] for k, m in sims.items()}, movie_score, blend)
        got = rank(partial, one, np.array([0]), 12, rows_are_entries=True, engine="python")
        np.testing.assert_array_equal(got.movies[0], full.movies[user])
        np.testing.assert_array_equal(got.scores[0], full.scores[user])


def test_hand_computed_with_recency():
    # movies 0..3; user watched 0 (latest, ratio 1) and 1 (one watch earlier, ratio 1); half-life 1
    sim = sp.csr_matrix(np.array([[0, 0, 0.5, 0], [0, 0, 0, 1.0], [0.5, 0, 0, 0], [0, 1.0, 0, 0]], np.float32))
    scorer = combine({"cf": sim}, np.array([0.0, 0.0, 0.0, 0.0]), BlendWeights(md=0, desc=0, cf=1, movie=0,
                                                                             recency_half_life=1.0))
    history = History(np.array([0, 2]), np.array([0, 1], np.int32), np.ones(2, np.float32), np.array([0, 1], np.int32))
    got = rank(scorer, history, np.array([0]), 5)
    # weights 1 and 0.5 -> 2/3 and 1/3: movie 2 gets 2/3 * 0.5 = 1/3, movie 3 gets 1/3 * 1.0 = 1/3: a tie -> index order
    assert got.movies[0, : got.lengths[0]].tolist() == [2, 3]
    np.testing.assert_allclose(got.scores[0, :2], [1 / 3, 1 / 3], rtol=1e-6)
    no_decay = rank(combine({"cf": sim}, np.zeros(4), BlendWeights(md=0, desc=0, cf=1, movie=0,
                                                                 recency_half_life=None)), history, np.array([0]), 5)
    assert no_decay.movies[0, :2].tolist() == [3, 2]  # 0.5 * 1.0 beats 0.5 * 0.5


def test_negative_similarity_is_refused():
    sim = sp.csr_matrix(np.array([[0, -0.5], [0.5, 0]], np.float32))
    with pytest.raises(ArtifactError, match="negative"):
        combine({"md": sim}, np.zeros(2), BlendWeights())


def test_top_n_dense_uses_the_same_tie_rule():
    scores = np.array([[1.0, 2.0, 2.0, -np.inf, 2.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    assert top_n_dense(scores, 2).tolist() == [[1, 2], [0, 1]]
    assert top_n_dense(scores, 5)[0].tolist() == [1, 2, 4, 0, -1]


def test_n_beyond_the_catalogue_is_capped():
    sims, movie_score, history = tied_problem(0, 5, 2, 0.5)
    got = rank(combine(sims, movie_score, BlendWeights()), history, np.array([-1]), 10**9)
    assert got.movies.shape == (1, 5) and got.lengths[0] == 5


def test_ratio_power_weighs_the_history_by_ratio_to_that_power():
    """Hand-computed: ratios 1.0 and 0.5 with power 2 weigh 1 : 0.25, i.e. 0.8 and 0.2 after normalising;
    power 0 weighs every watch alike, a ratio of 0 included (0 ** 0 = 1)."""
    np.testing.assert_allclose(user_weights(np.array([1.0, 0.5]), np.array([0, 0]), None, 2.0), [0.8, 0.2])
    np.testing.assert_allclose(user_weights(np.array([1.0, 0.0]), np.array([0, 1]), None, 0.0), [0.5, 0.5])
    # movie 0 (ratio 1.0) points to movie 2, movie 1 (ratio 0.5) to movie 3 twice as strongly:
    # power 1 -> 2: 1/1.5 * 1 = 0.667 vs 3: 0.5/1.5 * 2 = 0.667 (a tie, catalogue order); power 2 -> 2: 0.8 vs 3: 0.4
    cf = sp.csr_matrix(np.array([[0, 0, 1, 0], [0, 0, 0, 2], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=np.float32))
    history = History(np.array([0, 2]), np.array([0, 1], np.int32), np.array([1.0, 0.5], np.float32),
                      np.array([0, 0], np.int32))
    for power, scores in ((1.0, [2 / 3, 2 / 3]), (2.0, [0.8, 0.4])):
        scorer = combine({"cf": cf}, np.zeros(4), BlendWeights(md=0, desc=0, cf=1, movie=0, ratio_power=power))
        for engine in ("python", "jit"):
            got = rank(scorer, history, np.array([0]), 2, engine=engine)
            assert got.movies[0].tolist() == [2, 3]
            np.testing.assert_allclose(got.scores[0], scores, rtol=1e-6)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([0.0, 0.013, 0.5, 1.0, 3.7]),
       st.sampled_from([0.0, 0.11, 1.0]), st.sampled_from([0.0, 0.56, 2.0]))
def test_blendable_combines_exactly_as_combine(seed: int, w_md: float, w_desc: float, w_cf: float) -> None:
    """The tuning search's aligned sum gives combine's matrix bit for bit (zeros dropped, same float32 order)."""
    from rekko.config import BlendWeights
    from rekko.recommend.kernel import Blendable, combine

    rng = np.random.default_rng(seed)
    n = 30
    sims = {kind: sp.random(n, n, density=rng.uniform(0.0, 0.3), format="csr", dtype=np.float32,
                            random_state=int(rng.integers(1 << 30))) for kind in ("md", "desc", "cf")}
    if w_md + w_desc + w_cf == 0:
        w_cf = 1.0
    weights = BlendWeights(md=w_md, desc=w_desc, cf=w_cf, movie=0.2, recency_half_life=3.0)
    score = rng.random(n)
    expected, got = combine(sims, score, weights), Blendable(sims, score).combine(weights)
    for a, b in ((expected.combined, got.combined),):
        np.testing.assert_array_equal(a.indptr, b.indptr)
        np.testing.assert_array_equal(a.indices, b.indices)
        assert a.data.tobytes() == b.data.tobytes()
    assert expected.movie_part.tobytes() == got.movie_part.tobytes()
    np.testing.assert_array_equal(expected.cold_order, got.cold_order)


def test_blendable_restricted_to_history_rows_ranks_those_histories_the_same() -> None:
    """Rows outside the ranked histories are left empty: the ranking of those users does not change."""
    from rekko.recommend.kernel import Blendable

    rng = np.random.default_rng(4)
    n = 40
    sims = {kind: sp.random(n, n, density=0.2, format="csr", dtype=np.float32, random_state=i)
            for i, kind in enumerate(("md", "desc", "cf"))}
    weights = BlendWeights(md=0.3, desc=0.1, cf=0.6, movie=0.05, recency_half_life=2.0)
    history = History(indptr=np.array([0, 3, 5]), movie=np.array([1, 7, 9, 2, 30]),
                      ratio=np.array([1.0, 0.5, 0.8, 1.0, 0.3]), recency=np.array([2, 1, 0, 1, 0], dtype=np.int32))
    score = rng.random(n)
    full = rank(combine(sims, score, weights), history, np.arange(2), 10)
    part = rank(Blendable(sims, score, rows=history.movie).combine(weights), history, np.arange(2), 10)
    np.testing.assert_array_equal(full.movies, part.movies)
    assert full.scores.tobytes() == part.scores.tobytes()
