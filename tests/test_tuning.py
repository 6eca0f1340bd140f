"""Tuning: the fast scorer agrees with the shipped recommender; the search only sees train; the manifest update."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pytest

from rekko.config import CollaborativeConfig
from rekko.columns import Columns as C
from rekko.evaluation import models as M
from rekko.evaluation.run import load_inputs
from rekko.evaluation.splitters import per_user_last_n_split
from rekko.recommend import BlendWeights
from rekko import metrics
from rekko.evaluation.tuning import tune
from rekko.tuning.search import TuneConfig
from tests.test_evaluation_run import tiny_inputs


@pytest.fixture()
def data(tmp_path: Path):
    return load_inputs(*tiny_inputs(tmp_path))


def test_each_candidate_is_scored_by_the_shipped_recommender(data) -> None:
    """The first trace entry (the start) is exactly evaluate's NDCG of rekko's model on the validation split."""
    interactions, movies, ratings = data
    outer = per_user_last_n_split(interactions, 1)
    start = M.RekkoParams(blend=BlendWeights(md=0.3, desc=0.2, cf=0.4, movie=0.1, recency_half_life=2.0),
                          collaborative=CollaborativeConfig(k=5))
    result = tune(outer.train, movies, ratings, partial(per_user_last_n_split, n=1), config=TuneConfig(k=2),
                  start=start, cf_k_grid=(5,), cf_weighting_grid=("bm25",), half_life_grid=(2.0,),
                  weight_grid=(1.0,))
    inner = per_user_last_n_split(outer.train, 1)
    fitted = M.fit(inner.train, movies, ratings, collaborative=start.collaborative)
    users = np.unique(inner.test[C.USER].to_numpy())
    expected = metrics.ndcg(M.rekko(fitted, users, 2, start), inner.test, 2)
    assert result.trace[0]["ndcg"] == pytest.approx(expected, abs=1e-12)


def test_tune_searches_on_a_validation_split_of_train_only(data) -> None:
    interactions, movies, ratings = data
    outer = per_user_last_n_split(interactions, 1)
    result = tune(
        outer.train,
        movies,
        ratings,
        partial(per_user_last_n_split, n=1),
        config=TuneConfig(k=2),
        start=M.RekkoParams(collaborative=CollaborativeConfig(k=5)),
        cf_k_grid=(5, 8),
        half_life_grid=(None, 1.0),
        weight_grid=(0.0, 0.1, 1.0),
        ratio_power_grid=(1.0, 3.0),
    )
    # the history's ratio power is searched last: a candidate with ratio ** 3 was scored
    assert any(t["blend"]["ratio_power"] == 3.0 for t in result.trace)
    assert any(t["collaborative"]["weighting"] == "ease" for t in result.trace)  # EASE was a candidate
    # the validation split is carved from the train part: 16 users lose one more watch each
    assert result.validation_stats["train_rows"] == len(outer.train) - 16
    assert result.validation_stats["test_users"] == 16
    assert result.validation_ndcg >= result.start_ndcg - 1e-9
    b = result.params.blend
    assert b.md + b.desc + b.cf + b.movie == pytest.approx(1.0, abs=1e-5)
    assert result.params.collaborative.k in (5, 8)
    # every candidate was scored on the validation pairs, and the best one is what was returned
    assert max(t["ndcg"] for t in result.trace) == pytest.approx(result.validation_ndcg, abs=1e-6)
    assert result.to_dict()["evaluations"] == len(result.trace) > 10


def test_successive_halving_scores_most_candidates_on_a_subset_deterministically(data) -> None:
    """Rungs of 4, 8 and 16 validation users: most candidates never reach all 16; same seed, same search."""
    interactions, movies, ratings = data
    outer = per_user_last_n_split(interactions, 1)
    kwargs = dict(config=TuneConfig(k=2, min_rung_users=4, seed=5), start=M.RekkoParams(collaborative=CollaborativeConfig(k=5)),
                  cf_k_grid=(5,), cf_weighting_grid=("bm25", "cosine"), half_life_grid=(None, 1.0, 3.0),
                  weight_grid=(0.0, 0.1, 0.5, 1.0))
    a = tune(outer.train, movies, ratings, partial(per_user_last_n_split, n=1), **kwargs)
    b = tune(outer.train, movies, ratings, partial(per_user_last_n_split, n=1), **kwargs)
    assert a.trace == b.trace and a.params == b.params
    sizes = {t["users"] for t in a.trace}
    assert sizes == {4, 8, 16}
    assert a.user_evaluations == sum(t["users"] for t in a.trace) < 16 * len({str(t) for t in a.trace})
    assert a.validation_ndcg >= a.start_ndcg - 1e-12 and a.complete


def test_ndcg_arrays_agrees_with_ndcg() -> None:
    import pandas as pd

    top = np.array([[2, 0, -1], [1, 3, 2], [-1, -1, -1]])
    relevant = np.array([0 * 4 + 0, 1 * 4 + 2, 1 * 4 + 3, 2 * 4 + 1])
    recs = pd.DataFrame({C.USER: [0, 0, 1, 1, 1], C.MOVIE: ["2", "0", "1", "3", "2"], C.RANK: [1, 2, 1, 2, 3]})
    test = pd.DataFrame({C.USER: [0, 1, 1, 2], C.MOVIE: ["0", "2", "3", "1"]})
    expected = metrics.ndcg(recs, test, 3)
    assert metrics.ndcg_arrays(top, relevant, np.array([1, 2, 1]), 3, 4) == pytest.approx(expected, abs=1e-12)
