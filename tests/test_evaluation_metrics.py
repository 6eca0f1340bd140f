"""Top-k metrics against values computed by hand."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rekko.columns import Columns as C
from rekko import metrics as M


def _recs(lists: dict[int, list[str]]) -> pd.DataFrame:
    rows = [(u, m, r) for u, ms in lists.items() for r, m in enumerate(ms, start=1)]
    return pd.DataFrame(rows, columns=[C.USER, C.MOVIE, C.RANK])


def _test(pairs: dict[int, list[str]]) -> pd.DataFrame:
    return pd.DataFrame([(u, m) for u, ms in pairs.items() for m in ms], columns=[C.USER, C.MOVIE])


# user 1: hits at ranks 1 and 3 of 3 relevant; user 2: hit at rank 2; user 3: relevant but no recommendations
RECS = _recs({1: ["a", "z", "b"], 2: ["p", "x", "q"], 4: ["a", "x", "b"]})  # user 4 is not a test user
TEST = _test({1: ["a", "b", "c"], 2: ["x"], 3: ["y"]})
L2, L3, L4 = 1.0, 1 / math.log2(3), 1 / math.log2(4)


@pytest.mark.parametrize(
    ("fn", "expected"),
    [
        (M.hit_rate, 2 / 3),
        (M.precision, (2 / 3 + 1 / 3 + 0) / 3),
        (M.recall, (2 / 3 + 1 + 0) / 3),
        (M.ndcg, ((L2 + L4) / (L2 + L3 + L4) + L3 / 1 + 0) / 3),
        (M.mean_average_precision, ((1 + 2 / 3) / 3 + (1 / 2) / 1 + 0) / 3),
        (M.mrr, (1 + 1 / 2 + 0) / 3),
    ],
)
def test_ranking_metrics_by_hand(fn, expected: float) -> None:
    recs = RECS[RECS[C.USER] != 4]
    assert fn(recs, TEST, 3) == pytest.approx(expected)


def test_only_top_k_counts() -> None:
    recs = RECS[RECS[C.USER] != 4]
    assert M.precision(recs, TEST, 1) == pytest.approx(1 / 3)  # only user 1's "a"
    assert M.ndcg(recs, TEST, 1) == pytest.approx(1 / 3)
    assert M.recall(recs, TEST, 2) == pytest.approx((1 / 3 + 1) / 3)


def test_evaluate_matches_the_single_functions_and_ignores_non_test_users() -> None:
    genres = pd.Series({m: ["g"] for m in "abzpxq"})
    train = _test({1: ["a"], 2: ["b"]})
    out = M.evaluate(RECS, TEST, 3, train=train, catalog_size=12, genres=genres)
    recs = RECS[RECS[C.USER] != 4]
    assert out["ndcg"] == pytest.approx(M.ndcg(recs, TEST, 3))
    assert out["map"] == pytest.approx(M.mean_average_precision(recs, TEST, 3))
    assert out["coverage"] == pytest.approx(6 / 12)  # a z b p x q
    assert out["diversity"] == pytest.approx(0.0)  # one genre for all
    assert list(out) == list(M.ACCURACY_METRICS + M.BEYOND_ACCURACY_METRICS)


def test_novelty_by_hand() -> None:
    train = _test({1: ["m1", "m2"], 2: ["m1", "m2"], 3: ["m1"], 4: ["m1"]})
    recs = _recs({1: ["m1", "m2"], 2: ["m3"]})
    # user 1: (-log2(4/4) - log2(2/4)) / 2 = 0.5; user 2: unseen m3 counts once: -log2(1/4) = 2
    assert M.novelty(recs, train, 10) == pytest.approx((0.5 + 2.0) / 2)


def test_intra_list_diversity_by_hand() -> None:
    genres = pd.Series({"A": ["x"], "B": ["x"], "C": ["y"], "D": ["x", "y"], "E": []})
    recs = _recs({1: ["A", "B", "C"], 2: ["A", "D"], 3: ["E"], 4: ["A", "E"]})
    # user 1: cosines AB=1, AC=0, BC=0 -> 1 - 1/3; user 2: 1 - 1/sqrt(2); user 3 skipped; user 4: 1 - 0
    expected = ((1 - 1 / 3) + (1 - 1 / math.sqrt(2)) + 1.0) / 3
    assert M.intra_list_diversity(recs, genres, 10) == pytest.approx(expected)


def test_perfect_and_empty_lists() -> None:
    test = _test({1: ["a", "b"], 2: ["c"]})
    perfect = _recs({1: ["a", "b", "z"], 2: ["c", "z"]})
    for fn in (M.hit_rate, M.recall, M.ndcg, M.mean_average_precision, M.mrr):
        assert fn(perfect, test, 3) == pytest.approx(1.0)
    empty = perfect.iloc[0:0]
    for fn in (M.hit_rate, M.precision, M.recall, M.ndcg, M.mean_average_precision, M.mrr):
        assert fn(empty, test, 3) == 0.0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="k must be"):
        M.ndcg(RECS, TEST, 0)
    with pytest.raises(ValueError, match="catalog_size"):
        M.catalog_coverage(RECS, 0, 3)
    with pytest.raises(ValueError, match="unknown metrics"):
        M.evaluate(RECS, TEST, 3, train=TEST, catalog_size=1, genres=pd.Series(dtype=object), metrics=["auc"])


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.integers(0, 5), st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=6, unique=True), min_size=1
    ),
    st.dictionaries(st.integers(0, 5), st.lists(st.sampled_from("abcdefgh"), max_size=6, unique=True)),
    st.integers(1, 6),
)
def test_metric_bounds(test_lists, rec_lists, k) -> None:
    test, recs = _test(test_lists), _recs(rec_lists)
    values = {
        fn.__name__: fn(recs, test, k)
        for fn in (M.hit_rate, M.precision, M.recall, M.ndcg, M.mean_average_precision, M.mrr)
    }
    for v in values.values():
        assert 0.0 <= v <= 1.0 + 1e-12
    assert values["precision"] <= values["hit_rate"] + 1e-12
    assert values["mrr"] <= values["hit_rate"] + 1e-12
    assert values["ndcg"] <= values["hit_rate"] + 1e-12


@settings(max_examples=40, deadline=None)
@given(
    st.dictionaries(st.integers(0, 5), st.lists(st.sampled_from("abcdefgh"), max_size=6, unique=True)),
    st.dictionaries(st.sampled_from("abcdefgh"), st.lists(st.sampled_from("xyz"), max_size=3, unique=True)),
    st.integers(1, 6),
)
def test_beyond_accuracy_bounds(rec_lists, genre_lists, k) -> None:
    recs = _recs(rec_lists)
    genres = pd.Series(genre_lists, dtype=object)
    train = _test({9: list("abcd"), 8: list("ab")})
    coverage = M.catalog_coverage(recs, 8, k)
    assert 0.0 <= coverage <= 1.0
    novelty, diversity = M.novelty(recs, train, k), M.intra_list_diversity(recs, genres, k)
    if recs.empty:
        assert math.isnan(novelty) and math.isnan(diversity)
    else:
        assert 0.0 <= novelty <= math.log2(2) + 1e-12  # 2 train users: -log2(1/2) at most
        assert math.isnan(diversity) or -1e-9 <= diversity <= 1.0 + 1e-9
