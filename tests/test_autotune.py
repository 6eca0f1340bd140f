"""The pipeline tunes on its own input: toward a planted truth, with its fallbacks, into the manifest, one line.

The planted data: 40 movies in 20 pairs (m_i, m_{i+20}). Metadata puts every
movie next to its *neighbour in number* (m_i and m_{i+1} share genre and
director), never its pair partner; viewers watch whole pairs, one movie a day,
the partner the day after. So co-watching knows each movie's partner and
metadata is pure misdirection: a start that leans on metadata (md 1, cf 0.01)
recommends the wrong movies, and tuning must move weight from metadata to
co-watching.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rekko.artifacts import read_manifest
from rekko.config import AutoTuneConfig, BlendWeights, PipelineConfig, RekkoParams
from rekko.exceptions import ConfigError
from rekko.paths import PipelinePaths
from rekko.build import compute, run_pipeline
from rekko.tuning import auto as autotune
from tests.conftest import run_cli

N_PAIRS = 20
METADATA_FIRST = BlendWeights(md=1.0, desc=0.0, cf=0.01, movie=0.0, recency_half_life=3.0)


def planted(users: int, seed: int = 3) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    n = 2 * N_PAIRS
    movies = pd.DataFrame({
        "movie_id": [f"m{i}" for i in range(n)],
        "title": [f"title {i}" for i in range(n)],
        "genres": [[f"g{i // 2}", f"g{(i + 1) // 2}"] for i in range(n)],  # m_i shares a genre with m_{i +- 1}
        "director": [[f"d{i // 2}"] for i in range(n)],
        "duration": 100.0,
    })
    rows = []
    for u in range(users):
        day = 1
        for p in rng.choice(N_PAIRS, size=3, replace=False):
            for movie in (p, p + N_PAIRS):
                rows.append((u, f"m{movie}", float(rng.integers(60, 101)), 2024, 1, day))
                day += 1
    interactions = pd.DataFrame(rows, columns=["user_id", "movie_id", "watch_duration_minutes", "year", "month",
                                               "day"])
    ratings = pd.DataFrame({"title": movies["title"], "rating": 7.0, "description": ""})
    return interactions, movies, ratings


def frames(users: int = 60):
    from rekko.pipeline import ingest
    from rekko.pipeline.ratings import clean_ratings

    interactions, movies, ratings = planted(users)
    return (ingest.validate_interactions(interactions, "interactions"), ingest.validate_movies(movies, "movies"),
            clean_ratings(ratings, path="ratings"))


def config(**tuning) -> PipelineConfig:
    settings = {"min_users": 20, **tuning}
    return PipelineConfig(blend=METADATA_FIRST, autotune=AutoTuneConfig(**settings))


class FakeClock:
    """A clock that moves ``step`` seconds at every reading: the budget is spent by readings, not by wall time."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


@pytest.fixture(scope="module")
def tuned_run():
    """One full tuning run on the planted data, shared (each costs seconds)."""
    return compute(*frames(), config())


def test_tuning_moves_weight_from_misleading_metadata_to_co_watching(tuned_run):
    result = tuned_run
    tuned = result.config.tuned
    assert tuned["source"] == "pipeline" and tuned["status"] == "tuned" and tuned["complete"] is True
    b = result.config.blend
    assert b.md / b.cf < METADATA_FIRST.md / METADATA_FIRST.cf / 10  # the planted truth: co-watching, not metadata
    assert tuned["validation_ndcg"] > tuned["start_ndcg"] + 0.2
    assert tuned["validation_users"] == 60 and tuned["validation_pairs"] == 60  # one of six watches each
    assert tuned["eligible_users"] == 60 and tuned["evaluations"] > 10
    # the artifacts are built on all the input with the chosen parameters
    assert result.counts["user_movie_pairs"] == 360
    assert RekkoParams.from_dict(tuned["parameters"]).blend == b


def test_same_input_same_choice(tuned_run):
    a = tuned_run.config.tuned
    b = compute(*frames(), config()).config.tuned
    assert a == b  # no wall-clock figure in the summary: the same input writes the same parameters
    assert "seconds" not in a and all("seconds_at_start" not in stage for stage in a["stages"])


def test_a_slow_clock_changes_nothing(tuned_run):
    """The default budget is work, not seconds: a clock that runs 1000 s per reading chooses the same."""
    slow = compute(*frames(), config(), clock=FakeClock(1000.0)).config.tuned
    assert slow == tuned_run.config.tuned


def test_work_budget_spent_before_a_first_full_evaluation_keeps_the_defaults():
    result = compute(*frames(), config(work_budget=59))  # the start alone ranks 60 validation users
    tuned = result.config.tuned
    assert tuned["status"] == "kept defaults" and "work budget of 59 units ran out" in tuned["reason"]
    assert result.config.blend == METADATA_FIRST


def test_work_budget_spent_mid_search_keeps_the_best_so_far(tuned_run):
    full = tuned_run.config.tuned
    cut = compute(*frames(), config(work_budget=full["work"] // 3)).config.tuned
    assert cut["status"] == "tuned" and cut["complete"] is False and cut["stopped_by"] == "work"
    assert "work budget" in cut["reason"] and cut["work"] <= full["work"] // 3
    assert cut["start_ndcg"] <= cut["validation_ndcg"] <= full["validation_ndcg"]
    assert cut["evaluations"] < full["evaluations"]
    again = compute(*frames(), config(work_budget=full["work"] // 3)).config.tuned
    assert again == cut


def test_too_few_users_keeps_the_defaults():
    result = compute(*frames(), config(min_users=61))
    tuned = result.config.tuned
    assert tuned["status"] == "skipped" and "60 users have >= 5 watched movies" in tuned["reason"]
    assert result.config.blend == METADATA_FIRST


def test_no_tune_keeps_the_defaults():
    result = compute(*frames(), config(enabled=False))
    assert result.config.tuned["status"] == "off" and result.config.blend == METADATA_FIRST


def test_budget_spent_before_a_first_full_evaluation_keeps_the_defaults():
    # every clock reading costs 10 s of a 5 s budget: the start is never scored on all users
    result = compute(*frames(), config(budget_s=5.0), clock=FakeClock(10.0))
    tuned = result.config.tuned
    assert tuned["status"] == "kept defaults" and "5 s time cap ran out before a first full evaluation" in tuned["reason"]
    assert result.config.blend == METADATA_FIRST


def test_budget_spent_mid_search_keeps_the_best_so_far(tuned_run):
    """The start is scored, then the clock runs out: the best fully scored candidate so far, never worse."""
    interactions, movies, ratings = frames()
    full = tuned_run
    readings = {"n": 0}

    def clock() -> float:  # 0 s for the first 12 readings (carving, the start, a few candidates), then 1000 s
        readings["n"] += 1
        return 0.0 if readings["n"] <= 12 else 1000.0

    cut = compute(interactions, movies, ratings, config(budget_s=100.0), clock=clock).config.tuned
    assert cut["status"] == "tuned" and cut["complete"] is False and "time cap ran out" in cut["reason"]
    assert cut["stopped_by"] == "time" and cut["budget_s"] == 100.0
    assert cut["start_ndcg"] <= cut["validation_ndcg"] <= full.config.tuned["validation_ndcg"]
    assert cut["evaluations"] < full.config.tuned["evaluations"]


def test_manifest_records_the_tuning_and_refuses_a_bad_summary(tmp_path: Path):
    interactions, movies, ratings = planted(60)
    data = tmp_path / "data"
    data.mkdir()
    interactions.to_parquet(data / "interactions.parquet")
    movies.to_parquet(data / "movies_metdata.parquet")
    ratings.to_parquet(data / "ratings.parquet")
    paths = PipelinePaths(interactions=data / "interactions.parquet", movies=data / "movies_metdata.parquet",
                          ratings=data / "ratings.parquet", movies_rd=tmp_path / "o/movies_rd.parquet",
                          int_coef=tmp_path / "o/int_coef.parquet", movies_upd=tmp_path / "o/movies_upd.parquet",
                          interactions_upd=tmp_path / "o/interactions_upd.parquet",
                          sim_md=tmp_path / "o/sim_md.pkl", sim_desc=tmp_path / "o/sim_desc.pkl")
    _, manifest = run_pipeline(paths, config())
    stored = read_manifest(paths.manifest).parameters
    assert stored["tuned"] == manifest.parameters["tuned"]
    assert stored["tuned"]["status"] == "tuned" and stored["tuned"]["source"] == "pipeline"
    assert stored["blend"] == stored["tuned"]["parameters"]["blend"]
    assert stored["collaborative"] == stored["tuned"]["parameters"]["collaborative"]
    with pytest.raises(ConfigError, match="status"):
        PipelineConfig.from_manifest({**stored, "tuned": {**stored["tuned"], "status": "maybe"}})
    with pytest.raises(ConfigError, match="validation_ndcg"):
        PipelineConfig.from_manifest({**stored, "tuned": {**stored["tuned"], "validation_ndcg": "high"}})


@pytest.mark.slow
def test_cli_tunes_by_default_and_says_so_in_one_line(tmp_path: Path):
    """Through the real CLI with its default threshold (500 users): 520 planted users are tuned on."""
    interactions, movies, ratings = planted(520)
    (tmp_path / "data").mkdir()
    interactions.to_parquet(tmp_path / "data/interactions.parquet")
    movies.to_parquet(tmp_path / "data/movies_metdata.parquet")
    ratings.to_excel(tmp_path / "data/Movies_r_d.xlsx", index=False)
    run = run_cli(["pipeline", "--tune-budget", "300"], tmp_path)
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stdout.splitlines() if line.startswith("tuning")]
    assert len(lines) == 1 and lines[0].startswith("tuning: validation NDCG@10 ") and " on 520 users" in lines[0]
    assert "tuning ..." in run.stderr  # progress
    tuned = json.loads((tmp_path / "matrix/manifest.json").read_text())["parameters"]["tuned"]
    assert tuned["status"] == "tuned" and tuned["validation_users"] == 520

    run = run_cli(["pipeline", "--no-tune"], tmp_path)
    assert run.returncode == 0, run.stderr
    assert [line for line in run.stdout.splitlines() if line.startswith("tuning")] == [
        "tuning: off, built-in defaults: tuning turned off (--no-tune) (0.0 s)"]


def test_describe_lines():
    assert autotune.describe(None).startswith("tuning: none")
    assert "rekko tune" in autotune.describe({"parameters": {}, "validation_ndcg": 0.2})
    skipped = {"source": "pipeline", "status": "skipped", "reason": "3 users"}
    assert autotune.describe(skipped, 0.01) == "tuning: skipped, built-in defaults: 3 users (0.0 s)"
    assert autotune.describe(skipped) == "tuning: skipped, built-in defaults: 3 users"
    assert replace(AutoTuneConfig(), budget_s=1.0).budget_s == 1.0
    with pytest.raises(ConfigError):
        AutoTuneConfig(min_users=0)


@pytest.mark.parametrize("mode", ["auto", "order", "dense", "days"])
def test_train_recency_equals_ranking_the_train_part_again(mode):
    """The train part's ranks, reused from the full log and redone for the sampled users, are recency_rank's."""
    from rekko.columns import Columns as C
    from rekko.pipeline.features import recency_rank
    from rekko.pipeline.run import compute as stages

    result = stages(*frames(), replace(config(), collaborative=replace(config().collaborative, recency=mode)))
    interactions = result.interactions
    is_validation, users, _ = autotune.carve(interactions, config())
    train = interactions.loc[~is_validation, [C.USER, C.MOVIE, "movie_idx", C.WATCH_RATIO, C.DATETIME]]
    train = train.reset_index(drop=True)
    expected = recency_rank(train, mode)
    got = autotune.train_recency(interactions, train, is_validation, users, mode)
    np.testing.assert_array_equal(got, expected)
    assert is_validation.any() and (got != interactions.loc[~is_validation, C.RECENCY_RANK].to_numpy()).any()
