"""Time splitters: hand-made histories with the expected train/test by hand, plus invariants."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rekko.columns import Columns as C
from rekko.evaluation.splitters import dates_only, global_time_split, per_user_last_n_split
from rekko.exceptions import ConfigError, DataValidationError


def _frame(rows: list[tuple[int, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            C.USER: [r[0] for r in rows],
            C.MOVIE: [r[1] for r in rows],
            C.WATCHED_MINUTES: 10.0,
            C.DATETIME: pd.to_datetime([r[2] for r in rows]),
        }
    )


HISTORY = _frame(
    [
        (1, "a", "2020-01-01"),
        (1, "c", "2020-01-03"),  # out of time order on purpose
        (1, "b", "2020-01-02"),
        (1, "d", "2020-01-10"),
        (2, "a", "2020-01-09"),  # the only watch of user 2
        (3, "x", "2020-01-01"),
        (3, "y", "2020-01-02"),
        (3, "x", "2020-01-08"),  # re-watch
        (4, "p", "2020-01-05"),
        (4, "q", "2020-01-05"),  # same time as p: input order decides
    ]
)


def _pairs(df: pd.DataFrame) -> set[tuple[int, str]]:
    return set(zip(df[C.USER], df[C.MOVIE], strict=True))


def test_per_user_last_one() -> None:
    s = per_user_last_n_split(HISTORY, 1)
    assert _pairs(s.test) == {(1, "d"), (4, "q")}
    assert _pairs(s.train) == {(1, "a"), (1, "b"), (1, "c"), (3, "x"), (3, "y"), (4, "p")}
    assert len(s.train) == 6
    assert s.stats["test_pairs_cold_user_dropped"] == 1  # user 2 has no train history
    assert s.stats["test_pairs_rewatch_dropped"] == 1  # user 3 re-watched x
    assert s.stats["test_users"] == 2


def test_per_user_last_two() -> None:
    s = per_user_last_n_split(HISTORY, 2)
    assert _pairs(s.test) == {(1, "c"), (1, "d"), (3, "y")}  # user 3: y and the x re-watch; 4: all test
    assert _pairs(s.train) == {(1, "a"), (1, "b"), (3, "x")}


def test_global_cutoff() -> None:
    s = global_time_split(HISTORY, days=2.5)  # latest 2020-01-10 -> after 2020-01-07 12:00
    assert _pairs(s.test) == {(1, "d")}  # (2, a): cold user; (3, x): re-watch
    assert s.stats["test_pairs_cold_user_dropped"] == 1 and s.stats["test_pairs_rewatch_dropped"] == 1
    assert s.train[C.DATETIME].max() == pd.Timestamp("2020-01-05")


def test_input_is_not_modified() -> None:
    before = HISTORY.copy()
    per_user_last_n_split(HISTORY, 1)
    global_time_split(HISTORY, 3)
    pd.testing.assert_frame_equal(HISTORY, before)


@pytest.mark.parametrize("n", [0, -1, 1.5, True])
def test_bad_n(n: object) -> None:
    with pytest.raises(ConfigError, match="integer >= 1"):
        per_user_last_n_split(HISTORY, n)  # type: ignore[arg-type]


def test_bad_days_and_missing_dates() -> None:
    with pytest.raises(ConfigError, match="positive"):
        global_time_split(HISTORY, 0)
    no_dates = HISTORY.assign(**{C.DATETIME: pd.NaT})
    with pytest.raises(DataValidationError, match="no watch date"):
        per_user_last_n_split(no_dates, 1)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 4), st.integers(0, 6), st.integers(0, 20)), min_size=1, max_size=40),
    st.integers(1, 4),
)
def test_per_user_split_invariants(rows: list[tuple[int, int, int]], n: int) -> None:
    df = pd.DataFrame(
        {
            C.USER: [r[0] for r in rows],
            C.MOVIE: [str(r[1]) for r in rows],
            C.DATETIME: pd.Timestamp("2020-01-01") + pd.to_timedelta([r[2] for r in rows], unit="D"),
        }
    )
    s = per_user_last_n_split(df, n)
    # every user keeps all but their last n rows in train
    expected_train = df.groupby(C.USER).size().sub(n).clip(lower=0).sum()
    assert len(s.train) == expected_train
    # test users have train history, never a movie they watched in train, and no pair twice
    assert s.test[C.USER].isin(s.train[C.USER]).all()
    assert not (_pairs(s.test) & _pairs(s.train))
    assert not s.test.duplicated().any()
    # nothing in train is later than that user's test
    if not s.test.empty:
        last_train = s.train.groupby(C.USER)[C.DATETIME].max()
        first_test = df.merge(s.test, on=[C.USER, C.MOVIE]).groupby(C.USER)[C.DATETIME].min()
        assert (last_train.reindex(first_test.index) <= first_test).all()
    assert np.isin(s.test[C.MOVIE], df[C.MOVIE]).all()


def test_dates_only_hides_the_time_of_day_from_the_model() -> None:
    from rekko.evaluation.run import EvalConfig

    when = pd.to_datetime(["2021-03-01 09:00", "2021-03-01 21:00", "2021-03-02 08:00", "2021-03-02 07:00"])
    frame = pd.DataFrame({C.USER: [1, 1, 1, 1], C.MOVIE: ["a", "b", "c", "d"], C.DATETIME: when})
    cut = dates_only(frame)
    assert cut[C.DATETIME].tolist() == list(pd.to_datetime(["2021-03-01", "2021-03-01", "2021-03-02", "2021-03-02"]))
    assert frame[C.DATETIME].tolist() == list(when)  # the input is not modified
    # the split still uses the exact time: "c" (08:00) is the last watch, although "d" is the last row
    split = EvalConfig(test_size=1, model_sees="dates").outer_split(frame)
    assert split.test[C.MOVIE].tolist() == ["c"]
    assert (split.train[C.DATETIME].dt.normalize() == split.train[C.DATETIME]).all()
    assert "dates only" in split.description
    exact = EvalConfig(test_size=1).outer_split(frame)
    assert exact.train[C.DATETIME].tolist() == list(when[[0, 1, 3]])
    with pytest.raises(ConfigError, match="model_sees"):
        EvalConfig(model_sees="hours")


def test_tie_seed_breaks_same_day_ties_at_random_not_in_file_order() -> None:
    # one user, 40 watches on one day and one the day before: the test is 5 of the day's 40
    day = pd.to_datetime(["2021-03-01"] * 40 + ["2021-02-28"])
    frame = pd.DataFrame({C.USER: 1, C.MOVIE: [f"m{i}" for i in range(41)], C.DATETIME: day})
    by_rows = per_user_last_n_split(frame, 5)
    assert by_rows.test[C.MOVIE].tolist() == ["m35", "m36", "m37", "m38", "m39"]  # the last rows
    seeded = per_user_last_n_split(frame, 5, tie_seed=0)
    assert sorted(seeded.test[C.MOVIE]) == sorted(per_user_last_n_split(frame, 5, tie_seed=0).test[C.MOVIE])
    assert set(seeded.test[C.MOVIE]) != set(by_rows.test[C.MOVIE])
    assert "m40" not in set(seeded.test[C.MOVIE])  # the older day is never in the test
    # distinct times: the seed changes nothing
    exact = frame.assign(**{C.DATETIME: pd.date_range("2021-01-01", periods=41, freq="h")})
    assert per_user_last_n_split(exact, 5, tie_seed=3).test.equals(per_user_last_n_split(exact, 5).test)
