import numpy as np
import pandas as pd
import pytest

from rekko.exceptions import ConfigError
from rekko.pipeline.features import (
    MovieScoreConfig,
    aggregate_sessions,
    attach_movie_index,
    effective_duration,
    movie_features,
    user_features,
    watch_ratio,
)
from rekko.pipeline.ingest import validate_interactions, validate_movies
from tests.conftest import tiny_interactions, tiny_movies


@pytest.fixture
def upd():
    movies = validate_movies(tiny_movies())
    inter, dropped = attach_movie_index(validate_interactions(tiny_interactions()), pd.Index(movies["movie_id"]))
    assert dropped == 1
    duration, n_imputed = effective_duration(movies)
    assert n_imputed == 1
    return movies, watch_ratio(aggregate_sessions(inter, pd.Index(movies["movie_id"])), duration)


def test_sessions_are_summed_not_double_counted(upd):
    _, df = upd
    m1 = df[(df.user_id == 1) & (df.movie_id == "m1")]
    assert len(m1) == 1
    assert m1.watch_duration_minutes.item() == 120.0 and m1.n_sessions.item() == 2
    assert m1.last_watch_dt.item() == pd.Timestamp("2021-01-02")


def test_watch_ratio_hand_computed(upd):
    _, df = upd
    got = df.set_index(["user_id", "movie_id"])["watch_ratio"]
    assert got[(1, "m1")] == 1.0
    assert got[(1, "m4")] == 0.5
    assert got[(2, "m3")] == 0.5
    assert got[(2, "m2")] == pytest.approx(0.1)
    # m5 has no duration: median film length of the 'Фильм' type = median(120, 120, 90, 100) = 110
    assert got[(3, "m5")] == pytest.approx(25 / 110)


def test_watch_ratio_clipped_to_one():
    df = pd.DataFrame({"movie_idx": [0], "watch_duration_minutes": [500.0]})
    assert watch_ratio(df, np.array([100.0]))["watch_ratio"].item() == 1.0


def test_user_features_int_coef_is_inverse_ratio_sum(upd):
    _, df = upd
    users = user_features(df).set_index("user_id")
    assert users.loc[1, "int_coef"] == pytest.approx(1 / 1.5)
    assert users.loc[2, "int_coef"] == pytest.approx(1 / 0.6)
    assert users.loc[1, "n_movies"] == 2 and users.loc[1, "watched_minutes_total"] == 170.0


def test_movie_features_hand_computed(upd):
    movies, df = upd
    movies = movies.assign(rating=[8.0, np.nan, 6.0, np.nan, np.nan, np.nan])
    cfg = MovieScoreConfig(w_rating=1, w_watch_ratio=1, w_popularity=2, prior_strength=0)
    out = movie_features(movies, df, cfg).set_index("movie_id")
    assert out.loc["m1", "n_users"] == 1 and out.loc["m6", "n_users"] == 0
    # every watched movie has one viewer -> popularity log1p(1)/log1p(1) = 1; unwatched 0
    assert out.loc["m1", "popularity"] == 1.0 and out.loc["m6", "popularity"] == 0.0
    # unknown rating takes the mean known normalized rating (0.8 + 0.6) / 2
    assert out.loc["m2", "rating_norm"] == pytest.approx(0.7)
    expected_m1 = (1 * 0.8 + 1 * 1.0 + 2 * 1.0) / 4
    assert out.loc["m1", "movie_score"] == pytest.approx(expected_m1)


def test_movie_features_does_not_mutate(upd):
    movies, df = upd
    before = movies.copy()
    movie_features(movies, df)
    pd.testing.assert_frame_equal(movies, before)


def test_movie_score_config_validates():
    with pytest.raises(ConfigError):
        MovieScoreConfig(w_rating=-1)
    with pytest.raises(ConfigError):
        MovieScoreConfig(w_rating=0, w_watch_ratio=0, w_popularity=0)
