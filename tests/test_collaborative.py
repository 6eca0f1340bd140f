"""Co-watching similarity and recency weights against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rekko.config import CollaborativeConfig
from rekko.pipeline.collaborative import (
    bm25_weight,
    ease_weights,
    item_item_similarity,
    rp3beta_matrix,
    watch_matrix,
)
from rekko.pipeline.features import history_weights
from rekko.pipeline.features import recency_rank_by_frame as recency_rank
from rekko.columns import Columns as C
from rekko.exceptions import ConfigError

IDS = np.array(["m0", "m1", "m2", "m3"], dtype=object)


def _upd(rows: list[tuple[int, int, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=[C.USER, "movie_idx", C.WATCH_RATIO])


# user 7 watched m0 and m1 fully, user 3 watched m0 fully and half of m1, user 9 only m2; m3 is unwatched
UPD = _upd([(7, 0, 1.0), (7, 1, 1.0), (3, 0, 1.0), (3, 1, 0.5), (9, 2, 1.0)])


def test_watch_matrix_rows_are_sorted_user_ids() -> None:
    m = watch_matrix(UPD, 4).toarray()
    np.testing.assert_allclose(m, [[1.0, 0.5, 0, 0], [1.0, 1.0, 0, 0], [0, 0, 1.0, 0]])


def test_cosine_by_hand() -> None:
    sim = item_item_similarity(UPD, IDS, CollaborativeConfig(weighting="cosine", k=10)).matrix.toarray()
    expected = (1 * 1 + 0.5 * 1) / (math.sqrt(2) * math.sqrt(1.25))
    assert sim[0, 1] == pytest.approx(expected, rel=1e-6) and sim[1, 0] == pytest.approx(expected, rel=1e-6)
    assert np.count_nonzero(sim) == 2  # m2 co-watched with nothing, m3 unwatched, no diagonal


def test_bm25_weight_by_hand() -> None:
    # lengths: user 3 = 1.5, user 7 = 2, user 9 = 1 -> avg 1.5
    w = bm25_weight(watch_matrix(UPD, 4), k1=1.2, b=0.75).toarray()
    assert w[0, 0] == pytest.approx(2.2 * 1.0 / (1.2 * 1.0 + 1.0))  # user 3 has the average length
    assert w[0, 1] == pytest.approx(2.2 * 0.5 / (1.2 * 1.0 + 0.5))
    assert w[1, 0] == pytest.approx(2.2 / (1.2 * (0.25 + 0.75 * 2 / 1.5) + 1.0))  # heavier user: smaller weight
    assert w[2, 2] == pytest.approx(2.2 / (1.2 * (0.25 + 0.75 / 1.5) + 1.0))


def test_bm25_similarity_by_hand() -> None:
    a, b_, c = 2.2 / 2.2, 1.1 / 1.7, 2.2 / 2.5  # (user 3, m0), (user 3, m1), (user 7, both)
    expected = (a * b_ + c * c) / (math.hypot(a, c) * math.hypot(b_, c))
    sim = item_item_similarity(UPD, IDS, CollaborativeConfig(weighting="bm25", k=10)).matrix
    assert sim[0, 1] == pytest.approx(expected, rel=1e-6)


def test_top_k_keeps_the_strongest_neighbour() -> None:
    # m0 is co-watched with m1 by two users and with m2 by one
    upd = _upd([(1, 0, 1.0), (1, 1, 1.0), (2, 0, 1.0), (2, 1, 1.0), (3, 0, 1.0), (3, 2, 1.0)])
    sim = item_item_similarity(upd, IDS, CollaborativeConfig(weighting="cosine", k=1))
    row = sim.matrix[0]
    assert row.indices.tolist() == [1] and sim.k == 1
    assert list(sim.movie_ids) == list(IDS)


def test_no_interactions_gives_an_empty_matrix() -> None:
    sim = item_item_similarity(UPD.iloc[0:0], IDS)
    assert sim.matrix.shape == (4, 4) and sim.matrix.nnz == 0


@pytest.mark.parametrize("kwargs", [{"k": 0}, {"k": 2.5}, {"weighting": "jaccard"}, {"bm25_k1": 0}, {"bm25_b": 1.5},
                                    {"rp3_alpha": 0}, {"rp3_beta": -0.1}, {"rp3_beta": float("nan")},
                                    {"ease_lambda": 0}, {"ease_lambda": float("inf")}, {"ease_max_movies": 0},
                                    {"ease_max_movies": 10.5}, {"weighting": "EASE"}])
def test_bad_config(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        CollaborativeConfig(**kwargs)


def test_recency_rank_and_weights() -> None:
    upd = pd.DataFrame(
        {
            C.USER: [1, 1, 1, 2, 2],
            C.DATETIME: pd.to_datetime(["2020-01-03", "2020-01-01", "2020-01-03", "2020-01-01", None]),
        }
    )
    rank = recency_rank(upd)
    # user 1: the two 01-03 watches tie -> the later row is the more recent; user 2: a missing date is oldest
    assert rank.tolist() == [1, 2, 0, 0, 1]
    np.testing.assert_allclose(history_weights(np.array([1.0, 0.5, 0.8]), np.array([0, 1, 2]), 1.0), [1.0, 0.25, 0.2])
    np.testing.assert_allclose(history_weights(np.array([0.3]), np.array([5]), None), [0.3])
    with pytest.raises(ConfigError, match="half-life"):
        history_weights(np.array([1.0]), np.array([0]), 0.0)


RP3_ROWS = [(0, 0, 1.0), (0, 1, 1.0), (1, 0, 1.0), (1, 2, 1.0), (2, 1, 1.0), (2, 2, 1.0), (2, 3, 1.0)]


def test_rp3beta_walk_by_hand() -> None:
    """Users 0: {m0, m1}, 1: {m0, m2}, 2: {m1, m2, m3}; movie popularity 2, 2, 2, 1.

    From m1 a walk reaches user 0 or 2 (1/2 each); user 0 goes on to m0 (1/2), user 2 to m2 or m3 (1/3 each):
    W[1] = (1/4, ., 1/6, 1/6) before the popularity penalty, (1/8, ., 1/12, 1/6) with beta = 1.
    """
    x = watch_matrix(_upd(RP3_ROWS), 4)
    a, b = rp3beta_matrix(x, 1.0, 0.0)
    w = (a @ b).toarray()
    np.testing.assert_allclose(w[1], [1 / 4, 1 / 2 * 1 / 2 + 1 / 2 * 1 / 3, 1 / 6, 1 / 6])
    np.testing.assert_allclose(w.sum(axis=1), 1.0)  # a walk lands somewhere: rows are probabilities
    a, b = rp3beta_matrix(x, 1.0, 1.0)
    np.testing.assert_allclose((a @ b).toarray()[1, [0, 2, 3]], [1 / 8, 1 / 12, 1 / 6])
    a, b = rp3beta_matrix(x, 2.0, 0.0)
    np.testing.assert_allclose((a @ b).toarray()[1, [0, 2, 3]], [1 / 16, 1 / 36, 1 / 36])
    # the shipped top-k: self dropped, k = 2 strongest kept, each row scaled to a maximum of 1; not symmetric
    sim = item_item_similarity(_upd(RP3_ROWS), IDS, CollaborativeConfig(k=2, weighting="rp3beta", rp3_beta=1.0))
    dense = sim.matrix.toarray()
    np.testing.assert_allclose(dense[1], [0.75, 0.0, 0.0, 1.0], rtol=1e-6)  # m3 (1/6) first, m0 (1/8), m2 cut
    np.testing.assert_allclose(dense[3], [0.0, 1.0, 1.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(dense[0], [0.0, 1.0, 1.0, 0.0], rtol=1e-6)
    assert dense[1, 0] == 0.75 and dense[0, 1] == 1.0
    assert sim.matrix.dtype == np.float32 and (np.diag(dense) == 0).all()


def test_recency_modes_by_hand() -> None:
    """Day-resolution dates: ``order`` splits a day's watches by row order, ``dense`` and ``days`` do not."""
    upd = pd.DataFrame(
        {
            C.USER: [1, 1, 1, 1, 1, 2, 2, 3],
            C.DATETIME: pd.to_datetime(
                ["2020-01-01", "2020-01-01", "2020-01-02", "2020-01-05", "2020-01-05", "2020-03-01", None, None]
            ),
        }
    )
    # user 1 has three distinct days (01-05 latest, 01-02, 01-01); user 2's missing date is the oldest;
    # user 3 has no date at all
    assert recency_rank(upd, "order").tolist() == [4, 3, 2, 1, 0, 0, 1, 0]
    assert recency_rank(upd, "dense").tolist() == [2, 2, 1, 0, 0, 0, 1, 0]
    assert recency_rank(upd, "days").tolist() == [4, 4, 3, 0, 0, 0, 1, 0]
    # with exact (distinct) times, dense is order
    exact = upd.iloc[:5].assign(**{C.DATETIME: pd.date_range("2020-01-01", periods=5, freq="h")[[0, 1, 2, 4, 3]]})
    assert recency_rank(exact, "dense").tolist() == recency_rank(exact, "order").tolist() == [4, 3, 2, 0, 1]
    # the watch order inside a day does not matter to dense and days
    shuffled = upd.iloc[[1, 0, 2, 4, 3, 5, 6, 7]].reset_index(drop=True)
    assert recency_rank(shuffled, "dense").tolist() == [2, 2, 1, 0, 0, 0, 1, 0]
    # auto: dense for dates without a time of day, order as soon as one watch has a time
    assert recency_rank(upd, "auto").tolist() == recency_rank(upd, "dense").tolist()
    timed = upd.assign(**{C.DATETIME: upd[C.DATETIME].where(upd.index != 0, pd.Timestamp("2020-01-01 10:30"))})
    assert recency_rank(timed, "auto").tolist() == recency_rank(timed, "order").tolist() == [3, 4, 2, 1, 0, 0, 1, 0]
    assert CollaborativeConfig().recency == "auto"
    with pytest.raises(ConfigError, match="collaborative.recency"):
        recency_rank(upd, "newest")


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 6), st.integers(0, 5), st.floats(0.05, 1.0)), min_size=1, max_size=40),
    st.sampled_from(["bm25", "cosine"]),
)
def test_similarity_invariants(rows: list[tuple[int, int, float]], weighting: str) -> None:
    upd = _upd(rows).drop_duplicates([C.USER, "movie_idx"])
    ids = np.array([f"m{i}" for i in range(6)], dtype=object)
    sim = item_item_similarity(upd, ids, CollaborativeConfig(weighting=weighting, k=10)).matrix
    dense = sim.toarray()
    assert np.all(np.diag(dense) == 0)
    assert np.all((dense >= 0) & (dense <= 1))
    np.testing.assert_allclose(dense, dense.T, atol=1e-6)  # k >= n: nothing cut, cosine is symmetric
    watched = np.zeros(6, dtype=bool)
    watched[upd["movie_idx"].unique()] = True
    assert not dense[~watched].any() and not dense[:, ~watched].any()


def test_ease_by_hand() -> None:
    """Two movies; user 0 watched both, user 1 only m0; lambda 1.

    G + lambda I = [[3, 1], [1, 2]], P = its inverse = [[2, -1], [-1, 3]] / 5, B_ij = -P_ij / P_jj:
    B_01 = 1/3 (a ridge regression of m1's column on m0's: x0.x1 / (x0.x0 + 1) = 1 / 3), B_10 = 1/2.
    """
    x = watch_matrix(_upd([(0, 0, 1.0), (0, 1, 0.5), (1, 0, 0.8)]), 2)  # ratios count as watched (binary)
    np.testing.assert_allclose(ease_weights(x, 1.0), [[0.0, 1 / 3], [1 / 2, 0.0]])


def test_ease_is_a_ridge_regression_of_each_movie_on_the_others() -> None:
    """Every column of B solves its own ridge regression (an independent formula), negatives included."""
    x = watch_matrix(_upd(RP3_ROWS), 4)
    b = ease_weights(x, 0.5)
    dense = x.toarray() > 0
    for j in range(4):
        others = [i for i in range(4) if i != j]
        xo = dense[:, others].astype(float)
        expected = np.linalg.solve(xo.T @ xo + 0.5 * np.eye(3), xo.T @ dense[:, j])
        np.testing.assert_allclose(b[others, j], expected, atol=1e-12)
    assert (b < 0).any()  # m1 and m2 are substitutes here: the shipped matrix drops such weights


def test_ease_shipped_matrix_keeps_positive_top_k_within_the_cap() -> None:
    # m3 has one viewer: with ease_max_movies = 3 it is outside the solve (no row, no column)
    sim = item_item_similarity(_upd(RP3_ROWS), IDS, CollaborativeConfig(weighting="ease", k=1, ease_lambda=0.5,
                                                                        ease_max_movies=3)).matrix
    dense = sim.toarray()
    assert sim.dtype == np.float32 and (dense >= 0).all() and (np.diag(dense) == 0).all()
    assert not dense[3].any() and not dense[:, 3].any()
    assert (np.diff(sim.indptr) <= 1).all() and np.allclose(dense.max(axis=1)[:3], 1.0)
    b = ease_weights(watch_matrix(_upd(RP3_ROWS), 4)[:, :3], 0.5)
    for i in range(3):  # each row keeps its strongest positive weight
        assert dense[i].argmax() == int(np.argmax(b[i]))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 5), st.floats(0.05, 1.0)), min_size=1, max_size=40),
       st.integers(1, 6), st.integers(1, 6))
def test_ease_invariants(rows: list[tuple[int, int, float]], k: int, cap: int) -> None:
    upd = _upd(rows).drop_duplicates([C.USER, "movie_idx"])
    ids = np.array([f"m{i}" for i in range(6)], dtype=object)
    sim = item_item_similarity(upd, ids, CollaborativeConfig(weighting="ease", k=k, ease_max_movies=cap)).matrix
    dense = sim.toarray()
    assert np.isfinite(dense).all() and (dense >= 0).all() and (dense <= 1).all() and (np.diag(dense) == 0).all()
    assert (np.diff(sim.indptr) <= k).all()
    touched = (dense > 0).any(axis=0) | (dense > 0).any(axis=1)
    assert touched.sum() <= cap  # only the solved movies have rows or columns
    watched = np.zeros(6, dtype=bool)
    watched[upd["movie_idx"].unique()] = True
    assert not touched[~watched].any()


def test_an_engine_refuses_a_family_it_cannot_build_before_any_work(monkeypatch, tmp_path) -> None:
    """A family listed for the local engine only: the Dask engine refuses it naming both, before reading a file."""
    from dataclasses import replace as dc_replace

    from rekko.build import run_pipeline
    from rekko.config import PipelineConfig
    from rekko.paths import PipelinePaths
    from rekko.pipeline import collaborative

    class LocalOnly(collaborative.RP3Beta):
        engines = ("local",)

    monkeypatch.setitem(collaborative.FAMILIES, "rp3beta", LocalOnly())
    config = CollaborativeConfig(weighting="rp3beta")
    assert collaborative.family(config, "local").name == "rp3beta"
    with pytest.raises(ConfigError, match="the dask engine cannot build the 'rp3beta' co-watching family"):
        collaborative.family(config, "dask")
    missing = PipelinePaths(**{f: tmp_path / "nowhere" / f for f in PipelinePaths.__dataclass_fields__})
    with pytest.raises(ConfigError, match="dask engine cannot build"):  # not "file not found": no input was read
        run_pipeline(missing, dc_replace(PipelineConfig(), collaborative=config), engine="dask")
