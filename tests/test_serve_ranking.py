"""rekko.serve.ranking gives exactly what Recommender.recommend gives, for every user."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rekko.columns import Columns as C
from rekko.exceptions import ConfigError
from rekko.recommend import Recommender, load_artifacts
from rekko.serve.ranking import rank
from tests.serve_support import build_artifacts


@pytest.fixture(scope="module")
def recommender(tmp_path_factory):
    return Recommender(load_artifacts(build_artifacts(tmp_path_factory.mktemp("serve-ranking"), seed=3)))


def _as_frame_values(rec: Recommender, user: int, n: int) -> dict[str, list]:
    r = rank(rec, user, n)
    a = rec.artifacts
    return {
        C.MOVIE: a.movie_ids[r.movies].tolist(),
        C.SCORE: r.scores.tolist(),
        C.BASED_ON: [a.movie_ids[b] if b >= 0 else None for b in r.based_on.tolist()],
        **{k: v.tolist() for k, v in r.components.items()},
    }


@pytest.mark.parametrize("n", [1, 10, 1000])
def test_rank_equals_recommend_for_every_user(recommender, n):
    users = np.concatenate([recommender.artifacts.user_ids, [-1, 10**12]])
    for user in users.tolist():
        expected = recommender.recommend(user, n)
        got = _as_frame_values(recommender, user, n)
        items = expected.items
        assert rank(recommender, user, n).cold_start == expected.cold_start
        assert got[C.MOVIE] == items[C.MOVIE].tolist(), user
        np.testing.assert_allclose(got[C.SCORE], items[C.SCORE], rtol=1e-6)
        assert got[C.BASED_ON] == [v if isinstance(v, str) else None for v in items[C.BASED_ON]], user
        for col in (C.SIM_MD, C.SIM_DESC, C.MOVIE_SCORE):
            np.testing.assert_allclose(got[col], items[col], rtol=1e-5, atol=1e-7)


def test_rank_rejects_a_bad_n(recommender):
    with pytest.raises(ConfigError):
        rank(recommender, int(recommender.artifacts.user_ids[0]), 0)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), n=st.integers(1, 300))
def test_rank_invariants(recommender, data, n):
    a = recommender.artifacts
    user = data.draw(st.one_of(st.sampled_from(a.user_ids.tolist()), st.integers(-(2**63), 2**63 - 1)))
    r = rank(recommender, user, n)
    hist = recommender.history_of(user)
    watched = set() if hist is None else set(hist[0].tolist())
    movies = r.movies.tolist()
    assert len(movies) <= n and len(set(movies)) == len(movies)
    assert not watched & set(movies)
    assert np.all(np.isfinite(r.scores)) and np.all(np.diff(r.scores) <= 0)
    assert set(r.based_on.tolist()) <= watched | {-1}
    assert r.cold_start == (not watched) and r.history_size == len(watched)
    assert all(len(v) == len(movies) for v in r.components.values())
