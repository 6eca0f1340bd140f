import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from rekko.exceptions import ConfigError
from rekko.recommend import Artifacts, BlendWeights, Recommender, validate_n


def sym(n, entries):
    m = np.zeros((n, n), dtype=np.float32)
    for i, j, v in entries:
        m[i, j] = m[j, i] = v
    return sp.csr_matrix(m)


@pytest.fixture
def hand():
    movies = pd.DataFrame({"movie_id": ["A", "B", "C", "D"], "title": ["a", "b", "c", "d"],
                           "movie_score": [0.5, 0.1, 0.3, 0.9]})
    inter = pd.DataFrame({"user_id": [1, 1, 2], "movie_idx": [0, 1, 3], "watch_ratio": [1.0, 0.5, 0.0]})
    sims = {"md": sym(4, [(0, 1, 0.5), (0, 2, 0.2), (1, 3, 0.4)]), "desc": sp.csr_matrix((4, 4), dtype=np.float32)}
    art = Artifacts.from_frames(movies, inter, sims)
    return Recommender(art, BlendWeights(md=1.0, desc=0.0, cf=0.0, movie=0.5))


def test_scores_hand_computed(hand):
    recs = hand.recommend(1, 10)
    items = recs.items
    assert not recs.cold_start
    assert list(items.movie_id) == ["D", "C"]  # A and B are watched
    # D: (1/3)*0.4 + 0.5*0.9 ; C: (2/3)*0.2 + 0.5*0.3
    np.testing.assert_allclose(items.score, [0.4 / 3 + 0.45, 0.4 / 3 + 0.15], rtol=1e-6)
    assert list(items.based_on) == ["B", "A"]
    np.testing.assert_allclose(items.sim_md, [0.4 / 3, 0.4 / 3], rtol=1e-6)
    assert list(items["rank"]) == [1, 2]


def test_zero_ratio_watch_still_excluded(hand):
    items = hand.recommend(2, 10).items
    assert "D" not in set(items.movie_id) and len(items) == 3


def test_unknown_user_gets_labelled_cold_start(hand):
    recs = hand.recommend(999, 2)
    assert recs.cold_start
    assert list(recs.items.movie_id) == ["D", "A"]  # best movie scores
    assert recs.items.based_on.isna().all()


@pytest.mark.parametrize("bad", [0, -1, "x", 2.5, "1.5", True, None])
def test_bad_n_is_an_error(bad):
    with pytest.raises(ConfigError):
        validate_n(bad)


def test_validate_n_accepts_integer_strings():
    assert validate_n("7") == 7 and validate_n(np.int64(3)) == 3


def test_blend_weights_validate():
    with pytest.raises(ConfigError):
        BlendWeights(md=-1)
    with pytest.raises(ConfigError):
        BlendWeights(md=0, desc=0, cf=0, movie=0)


def test_similar(hand):
    got = hand.similar("A", 5, "md")
    assert list(got.movie_id) == ["B", "C"]
    with pytest.raises(ConfigError):
        hand.similar("nope", 1)


def random_recommender(seed: int, n_movies: int, n_users: int) -> Recommender:
    rng = np.random.default_rng(seed)
    movies = pd.DataFrame({"movie_id": [f"m{i}" for i in range(n_movies)], "title": [f"t{i}" for i in range(n_movies)],
                           "movie_score": rng.random(n_movies)})
    pairs = {(int(u), int(m)) for u, m in zip(rng.integers(0, n_users, 4 * n_users), rng.integers(0, n_movies, 4 * n_users))}
    users, items = zip(*sorted(pairs))
    inter = pd.DataFrame({"user_id": users, "movie_idx": items, "watch_ratio": rng.random(len(items))})
    def rand_sim():
        d = rng.random((n_movies, n_movies)) * (rng.random((n_movies, n_movies)) < 0.3)
        np.fill_diagonal(d, 0)
        return sp.csr_matrix(d.astype(np.float32))
    art = Artifacts.from_frames(movies, inter, {"md": rand_sim(), "desc": rand_sim()})
    return Recommender(art, BlendWeights(md=rng.random(), desc=rng.random(), movie=rng.random() + 0.01))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), n_movies=st.integers(1, 30), n_users=st.integers(1, 8), n=st.integers(1, 40),
       user=st.integers(-1, 9))
def test_recommend_invariants(seed, n_movies, n_users, n, user):
    rec = random_recommender(seed, n_movies, n_users)
    result = rec.recommend(user, n)
    items = result.items
    assert len(items) <= n
    assert items.movie_id.is_unique
    assert np.isfinite(items.score).all()
    assert (np.diff(items.score.to_numpy()) <= 1e-12).all()
    hist = rec.history_of(user)
    if hist is not None:
        watched = set(rec.artifacts.movie_ids[hist[0]])
        assert not watched & set(items.movie_id)
        assert len(items) == min(n, n_movies - len(watched))
    else:
        assert result.cold_start and len(items) == min(n, n_movies)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 12))
def test_batch_agrees_with_single(seed, n):
    rec = random_recommender(seed, 20, 6)
    batch = rec.recommend_all(n, user_ids=np.array([0, 1, 2, 3, 4, 5, 42]), block_size=3)
    for user in (0, 1, 2, 3, 4, 5, 42):
        single = rec.recommend(user, n).items
        got = batch[batch.user_id == user].sort_values("rank")
        assert list(got.movie_id) == list(single.movie_id)
        np.testing.assert_allclose(got.score, single.score, rtol=1e-5, atol=1e-6)
