"""The pipeline's own tuning: ``rekko pipeline`` tunes itself on its input, by default.

The defaults were tuned on MovieLens; on other data they can be far off (on the
synthetic seed-scale data they scored half of what the co-watching similarity
alone does). So the pipeline carves a validation split from the interactions
it was given, searches the blend, the recency and the co-watching settings
there (:func:`rekko.tuning.search.search`, successive halving over
validation users, every candidate ranked by the shipped kernel), and builds the
artifacts on *all* the input with what it found.

* **The split** (:func:`carve`): a seeded sample of at most ``max_users`` users
  with at least ``min_history`` distinct movies; each keeps their latest
  ``holdout_share`` of movies by watch date (1 to ``max_holdout``; same-day ties
  broken at random, seeded, as ``rekko tune`` does) as validation pairs. Every
  other watch, those of users not sampled included, is the train part: the
  co-watching similarity is fitted on all of it.
* **What is reused**: the content similarities depend on the movies' text only,
  not on who watched what, so the pipeline's own are used as they are. The
  train part's movie features (popularity, watch ratio) and recency ranks are
  recomputed on the train rows; the co-watching similarity is refitted on them
  for each candidate that changes it.
* **When it runs**: with at least ``min_users`` users of ``min_history``
  movies (:class:`rekko.config.AutoTuneConfig`); with dated watches; within
  its work budget (and an explicit ``budget_s`` cap, if given). Otherwise, or
  with ``--no-tune``, the built-in defaults are used, and the summary says why.
* **Same input, same choice**: the split is seeded, the search's budget is
  counted in work, and the summary holds no wall-clock figure (the seconds go
  to the manifest's ``counts.timings_s.tuning``), so two runs on the same
  input write the same ``parameters`` on any machine, at any load, on either
  engine (the Dask engine gathers the same rows to tune on).

The summary (``parameters.tuned`` of the manifest, ``source = "pipeline"``)
records the validation NDCG before and after, the users, the candidates, the
work spent, or why tuning was skipped; :func:`describe` makes the one line the
CLI prints.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from rekko.artifacts import TopKSimilarity
from rekko.columns import Columns as C
from rekko.config import PipelineConfig, RekkoParams
from rekko.pipeline.collaborative import item_item_similarity
from rekko.pipeline.features import dates_only, movie_features, recency_rank
from rekko.tuning.data import Fitted, TrainPart
from rekko.tuning.search import Grids, OutOfBudget, TuneConfig, search

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What tuning chose (None: keep the configured parameters) and the summary for the manifest."""

    params: RekkoParams | None
    summary: dict[str, Any]


def carve(interactions: pd.DataFrame, config: PipelineConfig) -> tuple[np.ndarray, np.ndarray, int]:
    """The validation rows of ``interactions`` (one row per user and movie): a boolean mask.

    Returns ``(is_validation, validation_users, eligible_users)``.
    """
    s = config.autotune
    users = interactions[C.USER].to_numpy()
    ids, counts = _distinct_counts(users)
    eligible = ids[counts >= s.min_history]
    rng = np.random.default_rng(s.seed)
    chosen = np.sort(rng.choice(eligible, size=min(s.max_users, len(eligible)), replace=False)) if len(eligible) \
        else eligible
    in_sample = _member(users, chosen)
    rows = np.flatnonzero(in_sample)
    when = interactions[C.DATETIME].to_numpy()[rows].view(np.int64)
    tie = rng.permutation(len(rows))
    order = np.lexsort((tie, when, users[rows]))  # by user, then date, then a random tie-break
    sorted_users = users[rows][order]
    starts = np.flatnonzero(np.concatenate(([True], sorted_users[1:] != sorted_users[:-1]))) if len(rows) \
        else np.zeros(0, dtype=np.int64)
    sizes = np.diff(np.append(starts, len(rows)))
    held = np.clip(np.round(sizes * s.holdout_share).astype(np.int64), 1, s.max_holdout)
    from_end = np.repeat(starts + sizes, sizes) - 1 - np.arange(len(rows))  # 0 = the user's latest
    is_validation = np.zeros(len(users), dtype=bool)
    is_validation[rows[order]] = from_end < np.repeat(held, sizes)
    return is_validation, chosen, len(eligible)


def _distinct_counts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_counts=True)``, in one pass when ``values`` is sorted (the pipeline's rows are,
    by user: a sort of tens of millions of ids was a good part of the tuning's cost at scale)."""
    if len(values) and bool((values[1:] >= values[:-1]).all()):
        starts = np.flatnonzero(np.concatenate(([True], values[1:] != values[:-1])))
        return values[starts], np.diff(np.append(starts, len(values)))
    return np.unique(values, return_counts=True)


def _member(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """``np.isin(values, sorted_set)`` by binary search in the (small, sorted) set: no sort of ``values``."""
    if not len(sorted_set):
        return np.zeros(len(values), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return sorted_set[pos] == values


def train_recency(interactions: pd.DataFrame, train: pd.DataFrame, is_validation: np.ndarray,
                  sampled: np.ndarray, mode: str) -> np.ndarray:
    """The train part's recency ranks: those of ``interactions`` (ranked with ``mode``), recomputed for the users
    who lost validation rows. A user's ranks depend on that user's rows only, so this is exactly
    ``recency_rank(train, mode)``, without ranking tens of millions of rows again."""
    if mode == "auto":  # resolved on the train part, as recency_rank(train, "auto") does
        def resolved(frame: pd.DataFrame) -> str:
            return "dense" if C.DATETIME in frame.columns and dates_only(frame[C.DATETIME]) else "order"

        mode = resolved(train)
        if mode != resolved(interactions):  # the held-out rows alone had a time of day: rank it all again
            return recency_rank(train, mode).astype(np.int32)
    ranks = interactions[C.RECENCY_RANK].to_numpy()[~is_validation].astype(np.int32)
    touched = np.flatnonzero(_member(train[C.USER].to_numpy(), sampled))
    if len(touched):
        ranks[touched] = recency_rank(train.iloc[touched].reset_index(drop=True), mode).astype(np.int32)
    return ranks


def tune_on_input(
    interactions: pd.DataFrame,
    movies: pd.DataFrame,
    sim_md: TopKSimilarity,
    sim_desc: TopKSimilarity,
    config: PipelineConfig,
    *,
    clock: Callable[[], float] = time.perf_counter,
) -> Outcome:
    """Tune ``config``'s blend and collaborative settings on a validation split of ``interactions``.

    ``interactions`` are the pipeline's ``interactions_upd`` rows (one per user
    and movie, watch ratio and dates), ``movies`` its movies in artifact order
    (with or without the movie features, which are recomputed on the train
    part), ``sim_md``/``sim_desc`` its content similarities. ``clock`` serves
    only an explicit ``budget_s`` cap.
    """
    t0 = clock()
    s = config.autotune
    start = config.params
    base: dict[str, Any] = {"source": "pipeline", "objective": "ndcg", "k": s.k, "work_budget": s.work_budget,
                            "threshold": {"min_users": s.min_users, "min_history": s.min_history}}
    if s.budget_s is not None:
        base["budget_s"] = s.budget_s

    def done(status: str, reason: str | None = None, **extra: Any) -> dict[str, Any]:
        return {**base, "status": status, "reason": reason, **extra}

    if not s.enabled:
        return Outcome(None, done("off", "tuning turned off (--no-tune)"))
    if C.DATETIME not in interactions.columns or interactions[C.DATETIME].isna().all():
        return Outcome(None, done("skipped", "the interactions have no watch dates to carve a validation split by"))
    is_validation, users, eligible = carve(interactions, config)
    base["eligible_users"] = eligible
    if eligible < s.min_users:
        return Outcome(None, done("skipped", f"{eligible} users have >= {s.min_history} watched movies, "
                                             f"fewer than the {s.min_users} tuning needs"))
    # only what ranking, the co-watching fits and the recency modes read: each recency mode tried copies it
    needed = [c for c in (C.USER, "movie_idx", C.WATCH_RATIO, C.DATETIME) if c in interactions.columns]
    train = interactions.loc[~is_validation, needed].reset_index(drop=True)
    movie_ids = movies[C.MOVIE].astype(str).to_numpy()
    validation = pd.DataFrame({C.USER: interactions[C.USER].to_numpy()[is_validation],
                               C.MOVIE: movie_ids[interactions["movie_idx"].to_numpy()[is_validation]]})
    if _same_recency(interactions, start.collaborative.recency, config.collaborative.recency):
        train[C.RECENCY_RANK] = train_recency(interactions, train, is_validation, users, start.collaborative.recency)
    else:
        train[C.RECENCY_RANK] = recency_rank(train, start.collaborative.recency).astype(np.int32)
    sim_cf = item_item_similarity(train, movie_ids, start.collaborative)
    part = TrainPart(movies=movie_features(movies, train, config.movie_score), interactions=train,
                     sim_md=sim_md, sim_desc=sim_desc, sim_cf=sim_cf)
    refit_units = math.ceil(len(train) / s.refit_pairs_per_unit)
    base.update(validation_pairs=int(is_validation.sum()), train_rows=len(train), refit_units=refit_units)
    tune_config = TuneConfig(k=s.k, max_users=len(users), seed=s.seed, work_budget=s.work_budget,
                             refit_units=refit_units, budget_s=s.budget_s)
    try:
        result = search(Fitted(part, start.collaborative), validation, config=tune_config, start=start,
                        clock=clock, started=t0,
                        grids=Grids(ease=()))  # EASE's dense solve (30-55 s at 5,000 movies) is `rekko tune`'s
    except OutOfBudget as out:
        return Outcome(None, done("kept defaults", f"the {_budget_text(s, out.by)} ran out before a first full "
                                                   "evaluation of the defaults"))
    summary = done(
        "tuned",
        None if result.complete else f"the {_budget_text(s, result.stopped_by)} ran out: best of the stages searched",
        parameters=result.params.to_dict(),
        start_ndcg=round(float(result.start_ndcg), 6),
        validation_ndcg=round(float(result.validation_ndcg), 6),
        validation_users=result.users,
        evaluations=len(result.trace),
        user_evaluations=result.user_evaluations,
        work=result.work,
        complete=result.complete,
        stopped_by=result.stopped_by,
        stages=result.to_dict(timing=False)["stages"],
    )
    return Outcome(result.params, summary)


def _same_recency(interactions: pd.DataFrame, wanted: str, built: str) -> bool:
    """Whether ``interactions`` carries recency ranks made with the mode the tuning starts from."""
    return C.RECENCY_RANK in interactions.columns and wanted == built


def _budget_text(s: Any, by: str | None) -> str:
    return f"{s.budget_s:g} s time cap" if by == "time" else f"work budget of {s.work_budget:,} units"


def describe(summary: dict[str, Any] | None, seconds: float | None = None) -> str:
    """The one line the CLI prints about tuning (``seconds``: what it took, from the manifest's timings)."""
    if not summary:
        return "tuning: none (built-in parameters)"
    if summary.get("source", "rekko tune") != "pipeline":
        ndcg = summary.get("validation_ndcg")
        return ("tuning: kept the parameters `rekko tune` stored in the manifest"
                + (f" (validation NDCG {ndcg:.4f})" if isinstance(ndcg, (int, float)) else "")
                + "; --default-params to tune on this input instead")
    status = summary.get("status")
    if status == "tuned":
        p = RekkoParams.from_dict(summary["parameters"])
        b, cf = p.blend, p.collaborative
        cf_text = f"{cf.weighting} k={cf.k}" + (f" alpha={cf.rp3_alpha:g} beta={cf.rp3_beta:g}"
                                                 if cf.weighting == "rp3beta" else "")
        half = "none" if b.recency_half_life is None else f"{b.recency_half_life:g}"
        line = (f"tuning: validation NDCG@{summary['k']} {summary['start_ndcg']:.4f} (defaults) -> "
                f"{summary['validation_ndcg']:.4f} on {summary['validation_users']} users, "
                f"{summary['evaluations']} candidates{_took(seconds)}; chose md {b.md:.3g}, "
                f"desc {b.desc:.3g}, cf {b.cf:.3g}, movie {b.movie:.3g}, recency {cf.recency} half-life {half}, {cf_text}")
        return line + (f" ({summary['reason']})" if summary.get("reason") else "")
    return f"tuning: {status}, built-in defaults: {summary.get('reason')}" + (
        f" ({seconds:.1f} s)" if seconds is not None else "")


def _took(seconds: float | None) -> str:
    return "" if seconds is None else f" in {seconds:.1f} s"


def apply(config: PipelineConfig, outcome: Outcome) -> PipelineConfig:
    """``config`` with the tuned parameters (if any) and the summary for the manifest."""
    chosen = config if outcome.params is None else config.with_params(
        replace(outcome.params, collaborative=replace(outcome.params.collaborative,
                                                      n_threads=config.collaborative.n_threads)))
    return replace(chosen, tuned=outcome.summary)
