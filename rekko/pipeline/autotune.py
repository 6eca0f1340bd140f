"""``rekko pipeline`` tunes itself on its own input, by default.

The defaults were tuned on MovieLens; on other data they can be far off (on the
synthetic seed-scale data they scored half of what the co-watching similarity
alone does). So the pipeline carves a validation split from the interactions
it was given, searches the blend, the recency and the co-watching settings
there (:func:`rekko.evaluation.tuning.search`, successive halving over
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
  ``budget_s`` seconds. Otherwise, or with ``--no-tune``, the built-in defaults
  are used, and the summary says why.

The summary (``parameters.tuned`` of the manifest, ``source = "pipeline"``)
records the validation NDCG before and after, the users, the candidates, the
seconds, or why tuning was skipped; :func:`describe` makes the one line the
CLI prints.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from rekko.artifacts import TopKSimilarity
from rekko.columns import Columns as C
from rekko.config import PipelineConfig, RekkoParams

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
    ids, counts = np.unique(users, return_counts=True)
    eligible = ids[counts >= s.min_history]
    rng = np.random.default_rng(s.seed)
    chosen = np.sort(rng.choice(eligible, size=min(s.max_users, len(eligible)), replace=False)) if len(eligible) \
        else eligible
    in_sample = np.isin(users, chosen)
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


def tune_on_input(
    interactions: pd.DataFrame,
    movies: pd.DataFrame,
    sim_md: TopKSimilarity,
    sim_desc: TopKSimilarity,
    config: PipelineConfig,
    *,
    clock: Callable[[], float] = time.perf_counter,
    reference_s: float = 0.0,
) -> Outcome:
    """Tune ``config``'s blend and collaborative settings on a validation split of ``interactions``.

    ``interactions`` are the pipeline's ``interactions_upd`` rows (one per user
    and movie, watch ratio and dates), ``movies`` its movies in artifact order
    (with or without the movie features, which are recomputed on the train
    part), ``sim_md``/``sim_desc`` its content similarities. ``reference_s``:
    the seconds the build took so far, the budget when ``budget_s`` is None
    (at least ``min_budget_s``).
    """
    from rekko.evaluation.models import Fitted
    from rekko.evaluation.tuning import Grids, OutOfTime, TuneConfig, search
    from rekko.pipeline.collaborative import item_item_similarity
    from rekko.pipeline.features import movie_features, recency_rank
    from rekko.pipeline.run import PipelineResult

    t0 = clock()
    s = config.autotune
    budget = s.budget_s if s.budget_s is not None else round(max(s.min_budget_s, reference_s), 2)
    start = config.params
    base: dict[str, Any] = {"source": "pipeline", "objective": "ndcg", "k": s.k, "budget_s": budget,
                            "threshold": {"min_users": s.min_users, "min_history": s.min_history}}

    def done(status: str, reason: str | None = None, **extra: Any) -> dict[str, Any]:
        return {**base, "status": status, "reason": reason, **extra, "seconds": round(clock() - t0, 2)}

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
    needed = [c for c in (C.USER, C.MOVIE, "movie_idx", C.WATCH_RATIO, C.DATETIME) if c in interactions.columns]
    train = interactions.loc[~is_validation, needed].reset_index(drop=True)
    validation = interactions.loc[is_validation, [C.USER, C.MOVIE]].astype({C.MOVIE: str}).reset_index(drop=True)
    train[C.RECENCY_RANK] = recency_rank(train, start.collaborative.recency).astype(np.int32)
    movie_ids = movies[C.MOVIE].astype(str).to_numpy()
    sim_cf = item_item_similarity(train, movie_ids, start.collaborative)
    fitted = Fitted(PipelineResult(ratings=pd.DataFrame(), movies=movie_features(movies, train, config.movie_score),
                                   interactions=train, users=pd.DataFrame(), sim_md=sim_md, sim_desc=sim_desc,
                                   sim_cf=sim_cf), start.collaborative)
    base.update(validation_pairs=int(is_validation.sum()), train_rows=len(train))
    try:
        result = search(fitted, validation, config=TuneConfig(k=s.k, max_users=len(users), seed=s.seed,
                                                               budget_s=budget),
                        start=start, clock=clock, started=t0,
                        grids=Grids(ease=()))  # EASE's dense solve (30-55 s at 5,000 movies) exceeds the budget
    except OutOfTime:
        return Outcome(None, done("kept defaults", f"the {budget:g} s budget ran out before a first full "
                                                   "evaluation of the defaults"))
    summary = done(
        "tuned",
        None if result.complete else f"the {budget:g} s budget ran out: best of the stages searched",
        parameters=result.params.to_dict(),
        start_ndcg=round(float(result.start_ndcg), 6),
        validation_ndcg=round(float(result.validation_ndcg), 6),
        validation_users=result.users,
        evaluations=len(result.trace),
        user_evaluations=result.user_evaluations,
        complete=result.complete,
        stages=result.stages,
    )
    return Outcome(result.params, summary)


def describe(summary: dict[str, Any] | None) -> str:
    """The one line the CLI prints about tuning."""
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
                f"{summary['evaluations']} candidates in {summary['seconds']:.1f} s; chose md {b.md:.3g}, "
                f"desc {b.desc:.3g}, cf {b.cf:.3g}, movie {b.movie:.3g}, recency {cf.recency} half-life {half}, {cf_text}")
        return line + (f" ({summary['reason']})" if summary.get("reason") else "")
    return f"tuning: {status}, built-in defaults: {summary.get('reason')} ({summary.get('seconds', 0):.1f} s)"


def apply(config: PipelineConfig, outcome: Outcome) -> PipelineConfig:
    """``config`` with the tuned parameters (if any) and the summary for the manifest."""
    chosen = config if outcome.params is None else config.with_params(
        replace(outcome.params, collaborative=replace(outcome.params.collaborative,
                                                      n_threads=config.collaborative.n_threads)))
    return replace(chosen, tuned=outcome.summary)
