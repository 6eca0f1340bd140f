"""Time-based train/test splits of interactions.

Both splitters see the data as it arrives (one row per watch session, with
``last_watch_dt``) and return the raw train rows, which the pipeline then runs
on unchanged, and a test set of distinct (user, movie) pairs. Two rules keep
the measurement honest:

* only users with history in train are tested (a user the model has never
  seen is a cold-start case, counted, not scored);
* a test pair whose movie the user already watched in train is dropped
  (counted): a re-watch is not a discovery, and the models never recommend
  watched movies anyway.

Ties in time keep the input row order (a stable sort), so splits are
deterministic.

:func:`dates_only` hides the time of day from the model after a split: the
split still uses the exact time (the truth of what was watched last), while
the pipeline sees year/month/day only, as the seed's files give it
(``rekko evaluate --model-sees dates``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from rekko.columns import Columns as C
from rekko.exceptions import ConfigError, DataValidationError


@dataclass(frozen=True)
class Split:
    """Train rows (raw, as the pipeline expects them) and test (user, movie) pairs."""

    train: pd.DataFrame
    test: pd.DataFrame
    stats: dict[str, int] = field(default_factory=dict)
    description: str = ""


MODEL_SEES = ("exact", "dates")


def dates_only(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its watch times cut to the day (what the model sees with ``--model-sees dates``).

    The seed's interactions carry ``year``/``month``/``day`` only; ingest turns
    them into midnight of that day, which is exactly what this gives. Rows keep
    their order (the input file's order, the only tie-break the seed's data has).
    """
    if C.DATETIME not in frame.columns:
        return frame
    out = frame.copy()
    out[C.DATETIME] = pd.to_datetime(out[C.DATETIME]).dt.floor("D").to_numpy()
    return out


def hide_time_of_day(split: Split) -> Split:
    """The same split with the train part reduced to dates (the test pairs carry no time)."""
    return Split(train=dates_only(split.train), test=split.test, stats=split.stats,
                 description=split.description + " (by exact time; the model sees dates only)")


def _require_times(interactions: pd.DataFrame) -> pd.Series:
    if C.DATETIME not in interactions.columns:
        raise DataValidationError(
            f"a time split needs the watch date ({C.YEAR}/{C.MONTH}/{C.DAY} or {C.DATETIME})", column=C.DATETIME
        )
    when = interactions[C.DATETIME]
    missing = when.isna().to_numpy()
    if missing.any():
        raise DataValidationError(
            f"{int(missing.sum())} interactions have no watch date; a time split cannot place them",
            column=C.DATETIME,
            example=interactions.loc[missing].iloc[0].to_dict(),
        )
    return when


def _finish(train: pd.DataFrame, test_rows: pd.DataFrame, description: str) -> Split:
    """Distinct test pairs of users known in train, minus movies already watched in train."""
    pairs = test_rows[[C.USER, C.MOVIE]].drop_duplicates()
    known_user = pairs[C.USER].isin(train[C.USER].unique()).to_numpy()
    watched = pd.MultiIndex.from_frame(train[[C.USER, C.MOVIE]])
    rewatch = pd.MultiIndex.from_frame(pairs[[C.USER, C.MOVIE]]).isin(watched)
    test = pairs[known_user & ~rewatch].reset_index(drop=True)
    stats = {
        "train_rows": len(train),
        "test_rows": len(test_rows),
        "test_pairs": len(test),
        "test_users": int(test[C.USER].nunique()),
        "test_pairs_cold_user_dropped": int((~known_user).sum()),
        "test_pairs_rewatch_dropped": int((known_user & rewatch).sum()),
    }
    return Split(train=train.reset_index(drop=True), test=test, stats=stats, description=description)


def global_time_split(interactions: pd.DataFrame, days: float) -> Split:
    """The last ``days`` days (before the latest watch) are the test; everything earlier is train."""
    if not days > 0:
        raise ConfigError(f"the test window must be a positive number of days, got {days!r}")
    when = _require_times(interactions)
    cutoff = when.max() - pd.Timedelta(days=days)
    is_test = (when > cutoff).to_numpy()
    return _finish(
        interactions[~is_test], interactions[is_test], f"global time split: watches after {cutoff} ({days:g} days)"
    )


def per_user_last_n_split(interactions: pd.DataFrame, n: int, *, tie_seed: int | None = None) -> Split:
    """Each user's last ``n`` interactions by time are the test; the rest is train.

    Ties in time keep the row order, unless ``tie_seed`` is given: then they
    are broken by a random permutation drawn with that seed. ``rekko tune``
    carves its validation split this way: with dates only, a day's watches
    tie, and a validation split cut in file order would reward a model that
    ranks recency in the same file order (``collaborative.recency = "order"``)
    for an agreement no real future watch has.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"the per-user test size must be an integer >= 1, got {n!r}")
    when = _require_times(interactions)
    tie = np.arange(len(interactions)) if tie_seed is None else np.random.default_rng(tie_seed).permutation(
        len(interactions))
    order = pd.DataFrame(
        {"u": interactions[C.USER].to_numpy(), "t": when.to_numpy(), "tie": tie, "i": np.arange(len(interactions))}
    ).sort_values(["u", "t", "tie"], kind="stable")
    from_end = order.groupby("u", sort=False).cumcount(ascending=False).to_numpy()
    is_test = np.zeros(len(interactions), dtype=bool)
    is_test[order["i"].to_numpy()] = from_end < n
    return _finish(interactions[~is_test], interactions[is_test], f"per-user split: each user's last {n} watches")
