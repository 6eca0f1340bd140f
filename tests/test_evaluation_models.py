"""Baseline models and rekko's model wrapper on hand-made similarity matrices."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from rekko.config import CollaborativeConfig
from rekko.columns import Columns as C
from rekko.evaluation import models as M
from rekko.evaluation.run import check_recommendations
from rekko.tuning.data import TrainPart
from rekko.recommend import BlendWeights
from rekko.pipeline.similarity import TopKSimilarity

IDS = np.array(["a", "b", "c", "d"], dtype=object)


def _fitted(md: np.ndarray, desc: np.ndarray, cf: np.ndarray, movie_score: list[float], n_users: list[int]) -> M.Fitted:
    movies = pd.DataFrame(
        {
            C.MOVIE: IDS,
            C.TITLE: ["A", "B", "C", "D"],
            C.MOVIE_SCORE: movie_score,
            C.N_USERS: n_users,
            C.GENRES: [("x",)] * 4,
        }
    )
    # user 1 watched a (ratio 1.0) and b (0.5); user 2 watched c; b is user 1's latest
    upd = pd.DataFrame(
        {
            C.USER: [1, 1, 2],
            "movie_idx": [0, 1, 2],
            C.MOVIE: ["a", "b", "c"],
            C.WATCH_RATIO: [1.0, 0.5, 1.0],
            C.DATETIME: pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-01"]),
            C.RECENCY_RANK: [1, 0, 0],
        }
    )
    result = TrainPart(
        movies=movies,
        interactions=upd,
        sim_md=TopKSimilarity(IDS, sp.csr_matrix(md, dtype=np.float32)),
        sim_desc=TopKSimilarity(IDS, sp.csr_matrix(desc, dtype=np.float32)),
        sim_cf=TopKSimilarity(IDS, sp.csr_matrix(cf, dtype=np.float32)),
    )
    return M.Fitted(result, CollaborativeConfig())


Z = np.zeros((4, 4))


def _sym(pairs: dict[tuple[int, int], float]) -> np.ndarray:
    m = np.zeros((4, 4))
    for (i, j), v in pairs.items():
        m[i, j] = m[j, i] = v
    return m


def test_most_popular_skips_watched() -> None:
    f = _fitted(Z, Z, Z, [0, 0, 0, 0], n_users=[9, 5, 7, 1])
    recs = M.most_popular(f, np.array([1, 2, 99]), 2)
    assert recs[recs[C.USER] == 1][C.MOVIE].tolist() == ["c", "d"]
    assert recs[recs[C.USER] == 2][C.MOVIE].tolist() == ["a", "b"]
    assert 99 not in recs[C.USER].to_numpy()  # no history: not scored


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.lists(st.booleans(), min_size=4, max_size=4), min_size=1, max_size=2),
    st.integers(1, 5),
    st.lists(st.integers(0, 3), min_size=4, max_size=4),
)
def test_most_popular_equals_a_dense_sort(watched_rows, k, n_users) -> None:
    """The counting shortcut ranks exactly like sorting every unwatched movie by popularity."""
    f = _fitted(Z, Z, Z, [0, 0, 0, 0], n_users=n_users)
    upd = pd.DataFrame(
        [(u + 1, j, 1.0, 0) for u, row in enumerate(watched_rows) for j, w in enumerate(row) if w] or [(1, 0, 1.0, 0)],
        columns=[C.USER, "movie_idx", C.WATCH_RATIO, C.RECENCY_RANK],
    )
    f = M.Fitted(replace(f.data, interactions=upd), f.collaborative)
    recs = M.most_popular(f, f.user_ids, k)
    for user in f.user_ids:
        seen = set(upd.loc[upd[C.USER] == user, "movie_idx"])
        expected = sorted((j for j in range(4) if j not in seen), key=lambda j: (-n_users[j], j))[:k]
        assert recs.loc[recs[C.USER] == user, C.MOVIE].tolist() == [IDS[j] for j in expected]


def test_legacy_takes_the_best_single_watched_movie() -> None:
    # c is close to a (0.4) and to b (0.8); d only to a (0.6). Ratios: a 1.0, b 0.5.
    md = np.array([[0, 0, 0.4, 0.6], [0, 0, 0.8, 0], [0.4, 0.8, 0, 0], [0.6, 0, 0, 0]])
    f = _fitted(md, Z, Z, [0, 0, 0.1, 0.0], n_users=[1, 1, 1, 1])
    w = BlendWeights(md=1.0, desc=0.0, cf=0.0, movie=1.0)
    recs = M.legacy(f, np.array([1]), 2, w)
    # int_coef = 1 / (1.0 + 0.5). c: max(1.0*0.4, 0.5*0.8) / 1.5 + 0.1 = 0.3667; d: 1.0*0.6 / 1.5 = 0.4
    # (a sum over watched movies would have put c first: 0.8 / 1.5 + 0.1)
    assert recs[C.MOVIE].tolist() == ["d", "c"]
    np.testing.assert_allclose(recs[C.SCORE], [0.4, 0.4 / 1.5 + 0.1], rtol=1e-6)


def test_rekko_uses_recency_and_the_cf_matrix() -> None:
    # a's co-watching neighbour is c... for user 2 (watched c) and d is b's neighbour
    cf = _sym({(0, 3): 0.5, (1, 2): 0.9, (2, 3): 0.1})
    f = _fitted(Z, Z, cf, [0, 0, 0, 0], n_users=[1, 1, 1, 1])
    only_cf = BlendWeights(md=0, desc=0, cf=1, movie=0, recency_half_life=None)
    # no recency: user 1's weights a 1.0, b 0.5 -> c = 0.5*0.9/1.5 = 0.30, d = 1.0*0.5/1.5 = 0.33
    plain = M.rekko(f, np.array([1]), 2, M.RekkoParams(blend=only_cf))
    assert plain[C.MOVIE].tolist() == ["d", "c"]
    # half-life 1 watch: a (rank 1) weighs 0.5, b (latest) 0.5 -> c = 0.45/1, d = 0.25/1
    recent = M.rekko(f, np.array([1]), 2, M.RekkoParams(blend=only_cf).with_half_life(1.0))
    assert recent[C.MOVIE].tolist() == ["c", "d"]
    np.testing.assert_allclose(recent[C.SCORE], [0.45, 0.25], rtol=1e-5)


def test_params_round_trip() -> None:
    p = M.RekkoParams(
        blend=BlendWeights(md=0.1, desc=0.2, cf=0.6, movie=0.1, recency_half_life=2.0),
        collaborative=CollaborativeConfig(k=50, weighting="cosine"),
    )
    assert M.RekkoParams.from_dict(p.to_dict()) == p
    assert M.RekkoParams.from_dict(None) == M.RekkoParams()
    # rekko evaluate without --params measures what the pipeline ships
    from rekko.config import PipelineConfig

    assert M.RekkoParams().blend == PipelineConfig().blend


def test_check_recommendations_catches_broken_models() -> None:
    train = pd.DataFrame({C.USER: [1], C.MOVIE: ["a"]})
    ok = pd.DataFrame({C.USER: [1, 1], C.MOVIE: ["b", "c"], C.RANK: [1, 2]})
    check_recommendations("ok", ok, train, 2)
    for bad, what in [
        (pd.DataFrame({C.USER: [1], C.MOVIE: ["a"], C.RANK: [1]}), "already watched"),
        (pd.DataFrame({C.USER: [1, 1], C.MOVIE: ["b", "b"], C.RANK: [1, 2]}), "duplicates"),
        (pd.DataFrame({C.USER: [1], C.MOVIE: ["b"], C.RANK: [3]}), "beyond k"),
    ]:
        with pytest.raises(AssertionError, match=what):
            check_recommendations("bad", bad, train, 2)
