"""The lean features stage (issue 13 b) gives the grouped-aggregation answers it replaced."""

import numpy as np
import pandas as pd
import pytest

from rekko.columns import Columns as C
from rekko.pipeline.features import aggregate_sessions, attach_movie_index, recency_rank, recency_rank_by_frame


def reference_aggregate(interactions: pd.DataFrame, movie_ids: pd.Index) -> pd.DataFrame:
    out = interactions.groupby([C.USER, "movie_idx"], sort=True).agg(
        **{C.WATCHED_MINUTES: (C.WATCHED_MINUTES, "sum"), C.DATETIME: (C.DATETIME, "max"),
           C.N_SESSIONS: (C.WATCHED_MINUTES, "size")}).reset_index()
    out[C.MOVIE] = pd.Categorical.from_codes(out["movie_idx"].to_numpy(), categories=movie_ids)
    return out[[C.USER, C.MOVIE, "movie_idx", C.WATCHED_MINUTES, C.DATETIME, C.N_SESSIONS]]


def random_log(seed: int, n: int = 5_000, *, far_apart: bool = False) -> tuple[pd.DataFrame, pd.Index]:
    rng = np.random.default_rng(seed)
    movie_ids = pd.Index([f"m{i}" for i in range(40)], dtype=object)
    dates = pd.to_datetime("2024-01-01") + pd.to_timedelta(rng.integers(0, 30, n), unit="D")
    dates = dates.to_numpy().copy()
    dates[rng.random(n) < 0.1] = np.datetime64("NaT")
    raw = pd.DataFrame({
        C.USER: (rng.integers(-5, 300, n).astype(np.int64) * (2**55 if far_apart else 7919)),
        C.MOVIE: pd.Categorical.from_codes(rng.integers(0, 45, n), categories=[*movie_ids, "x1", "x2", "x3", "x4", "x5"]),
        C.WATCHED_MINUTES: rng.integers(0, 200, n).astype(np.float64),
        C.DATETIME: dates,
    })
    return raw, movie_ids


@pytest.mark.parametrize("seed,far_apart", [(0, False), (1, False), (2, True)])
def test_aggregate_and_recency_match_the_grouped_versions(seed, far_apart):
    raw, movie_ids = random_log(seed, far_apart=far_apart)
    known, dropped = attach_movie_index(raw, movie_ids)
    assert dropped == int((~raw[C.MOVIE].isin(movie_ids)).sum()) and dropped > 0
    got = aggregate_sessions(known, movie_ids)
    want = reference_aggregate(known, movie_ids)
    pd.testing.assert_frame_equal(got, want, check_categorical=True)
    assert np.array_equal(recency_rank(got), recency_rank_by_frame(got))
    # all dates missing: row order decides
    no_dates = got.assign(**{C.DATETIME: pd.NaT}).astype({C.DATETIME: "datetime64[ns]"})
    assert np.array_equal(recency_rank(no_dates), recency_rank_by_frame(no_dates))
    # rows not grouped by user: the general version answers
    shuffled = got.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    assert np.array_equal(recency_rank(shuffled), recency_rank_by_frame(shuffled))


def test_every_movie_known_shares_the_columns():
    raw, movie_ids = random_log(3)
    raw = raw[raw[C.MOVIE].isin(movie_ids)].reset_index(drop=True)
    known, dropped = attach_movie_index(raw, movie_ids)
    assert dropped == 0 and np.shares_memory(known[C.WATCHED_MINUTES].to_numpy(), raw[C.WATCHED_MINUTES].to_numpy())
    assert (movie_ids[known["movie_idx"].to_numpy()] == raw[C.MOVIE].astype(str).to_numpy()).all()
