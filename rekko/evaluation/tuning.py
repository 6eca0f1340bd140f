"""Fit rekko's ranking parameters on a validation split carved from the train part.

What is tuned, in this order (each step keeps the best of the previous ones):

1. the history's recency (``order``, ``dense`` or ``days``, see
   :class:`~rekko.config.CollaborativeConfig`) and its half-life (in steps
   for the first two, days for ``days``), with the starting similarity and
   blend (given a co-watching weight equal to the rest if it had none); then
   the co-watching similarity (``k`` neighbours; BM25, cosine, or RP3beta
   with a few ``alpha``/``beta`` pairs) with that recency; then EASE
   (``weighting = "ease"``, one dense solve per ``lambda``) at the best ``k``;
2. the blend weights of metadata, description and movie score relative to the
   collaborative weight, by coordinate ascent over a log-spaced grid (scores
   are linear in the weights and a ranking is scale-free, so fixing
   ``cf = 1`` only rules out blends without it, which the start covers);
3. the half-life once more with the tuned weights;
4. the history's ratio power (``blend.ratio_power``: watch ratios enter as
   ``ratio ** power``) with everything else tuned.

The result is normalised to sum to 1 and is never worse than the start on the
validation split (the start is returned if nothing beats it).

The objective is NDCG@k on the validation pairs. The caller passes the train
part only; the test part never reaches this module.

Every candidate is ranked by the shipped kernel (:mod:`rekko.recommend.kernel`)
through :class:`~rekko.recommend.Recommender`, and scored by
:func:`rekko.evaluation.metrics.ndcg`: what is tuned is exactly what serves
users. A candidate costs one combination of the sparse similarities and one
batch ranking of the validation users (nonzeros touched, not users x movies).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from rekko.config import BlendWeights, CollaborativeConfig, RekkoParams
from rekko.columns import Columns as C
from rekko.evaluation import metrics
from rekko.evaluation.models import Fitted, fit
from rekko.evaluation.splitters import Split
from rekko.exceptions import ConfigError

log = logging.getLogger(__name__)

KINDS = ("md", "desc", "cf")
WEIGHT_GRID = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
HALF_LIFE_GRID: tuple[float | None, ...] = (None, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0)
#: half-lives in days, for ``recency = "days"``
DAYS_HALF_LIFE_GRID: tuple[float | None, ...] = (None, 1.0, 3.0, 7.0, 30.0, 90.0, 365.0)
RECENCY_GRID = ("order", "dense", "days")
CF_K_GRID = (50, 100, 200)
CF_WEIGHTING_GRID = ("bm25", "cosine", "rp3beta")
#: (alpha, beta) pairs tried for RP3beta
RP3_GRID: tuple[tuple[float, float], ...] = ((1.0, 0.5), (0.8, 0.3), (0.6, 0.4))
#: ``blend.ratio_power`` values tried last (docs/quality.md: 3 helps on MovieLens with dates only, hurts with exact times)
RATIO_POWER_GRID: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0)
#: EASE's lambda values tried (each a dense solve over up to ``collaborative.ease_max_movies`` movies; () skips EASE)
EASE_GRID: tuple[float, ...] = (500.0,)


@dataclass(frozen=True)
class TuneConfig:
    k: int = 10  # the cut-off of the objective, NDCG@k
    max_users: int = 1000  # validation users scored (a fixed random sample above this); bounds memory
    rounds: int = 2  # coordinate-ascent passes over the weights
    seed: int = 0

    def __post_init__(self) -> None:
        if self.k < 1 or self.max_users < 1 or self.rounds < 1:
            raise ConfigError(f"tuning needs k, max_users and rounds >= 1, got {self}")


@dataclass
class TuneResult:
    params: RekkoParams
    validation_ndcg: float
    validation_metrics: dict[str, float]
    start_ndcg: float
    trace: list[dict[str, object]] = field(default_factory=list)
    seconds: float = 0.0
    validation_stats: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "parameters": self.params.to_dict(),
            "objective": "ndcg",
            "validation_ndcg": self.validation_ndcg,
            "start_ndcg": self.start_ndcg,
            "validation_metrics": self.validation_metrics,
            "validation_split": self.validation_stats,
            "evaluations": len(self.trace),
            "seconds": round(self.seconds, 2),
        }


# --------------------------------------------------------------------------- search


def tune(
    train: pd.DataFrame,
    movies: pd.DataFrame,
    ratings: pd.DataFrame,
    split: Callable[[pd.DataFrame], Split],
    *,
    config: TuneConfig = TuneConfig(),
    start: RekkoParams = RekkoParams(),
    cf_k_grid: Sequence[int] = CF_K_GRID,
    cf_weighting_grid: Sequence[str] = CF_WEIGHTING_GRID,
    half_life_grid: Sequence[float | None] = HALF_LIFE_GRID,
    weight_grid: Sequence[float] = WEIGHT_GRID,
    recency_grid: Sequence[str] = RECENCY_GRID,
    days_half_life_grid: Sequence[float | None] = DAYS_HALF_LIFE_GRID,
    rp3_grid: Sequence[tuple[float, float]] = RP3_GRID,
    ratio_power_grid: Sequence[float] = RATIO_POWER_GRID,
    ease_grid: Sequence[float] = EASE_GRID,
    fitted: Fitted | None = None,
) -> TuneResult:
    """Tune on ``split(train)``: fit on its train part, score NDCG@k on its test part (the validation)."""
    t0 = time.perf_counter()
    inner = split(train)
    if inner.test.empty:
        raise ConfigError("the validation split carved from train is empty: too little history to tune on")
    base = fitted or fit(inner.train, movies, ratings, collaborative=start.collaborative)
    users = np.unique(inner.test[C.USER].to_numpy(dtype=np.int64))
    users = users[np.isin(users, base.user_ids)]
    if len(users) > config.max_users:
        users = np.sort(np.random.default_rng(config.seed).choice(users, size=config.max_users, replace=False))
    validation = inner.test[inner.test[C.USER].isin(users)]
    trace: list[dict[str, object]] = []
    fits: dict[CollaborativeConfig, Fitted] = {base.collaborative: base}
    pinned: list[CollaborativeConfig] = [start.collaborative]  # the best candidate's similarity

    def fitted_for(cf: CollaborativeConfig) -> Fitted:
        if cf not in fits:
            # keep the best candidate's similarity and this one's (each is a full top-k matrix)
            for stale in [c for c in fits if c not in (pinned[0], base.collaborative)]:
                del fits[stale]
            fits[cf] = base.with_collaborative(cf)
        return fits[cf]

    def score(params: RekkoParams) -> float:
        recs = fitted_for(params.collaborative).recommender(params).recommend_all(config.k, user_ids=users)
        value = metrics.ndcg(recs, validation, config.k)
        trace.append({**params.to_dict(), "ndcg": value})
        return value

    start_value = score(start)
    # search with weights relative to cf = 1 (a start without the co-watching part gets it, or step 1 is blind)
    seed = replace(start, blend=_relative_to_cf(start.blend))
    best, best_value = seed, score(seed)

    def consider(candidate: RekkoParams) -> None:
        nonlocal best, best_value
        value = score(candidate)
        if value > best_value + 1e-12:
            best, best_value = candidate, value
            pinned[0] = candidate.collaborative

    def half_lives(recency: str) -> Sequence[float | None]:
        return days_half_life_grid if recency == "days" else half_life_grid

    # 1. recency and half-life with the starting similarity and blend, then the similarity with that recency
    for recency in recency_grid:
        for half_life in half_lives(recency):
            cf = replace(start.collaborative, recency=recency)
            consider(replace(best, collaborative=cf).with_half_life(half_life))
    for k_cf in cf_k_grid:
        for weighting in cf_weighting_grid:
            for alpha, beta in (rp3_grid if weighting == "rp3beta" else ((None, None),)):
                extra = {} if alpha is None else {"rp3_alpha": float(alpha), "rp3_beta": float(beta)}
                cf = replace(best.collaborative, k=int(k_cf), weighting=weighting, **extra)
                consider(replace(best, collaborative=cf))
    for lam in ease_grid:
        consider(replace(best, collaborative=replace(best.collaborative, weighting="ease", ease_lambda=float(lam))))
    # 2. blend weights relative to cf = 1, coordinate ascent
    for _ in range(config.rounds):
        before = best_value
        for name in ("movie", "md", "desc"):
            for w in weight_grid:
                consider(replace(best, blend=replace(best.blend, **{name: float(w)})))
        if best_value <= before + 1e-12:
            break
    # 3. half-life again with the tuned weights
    for half_life in half_lives(best.collaborative.recency):
        consider(best.with_half_life(half_life))
    # 4. the history's ratio power with the tuned rest
    for power in ratio_power_grid:
        consider(replace(best, blend=replace(best.blend, ratio_power=float(power))))

    if start_value >= best_value:  # never hand back something worse than the start on validation
        best, best_value = start, start_value
    best = replace(best, blend=_normalised(best.blend))
    chosen = fitted_for(best.collaborative)
    recs = chosen.recommender(best).recommend_all(config.k, user_ids=users)
    measured = metrics.evaluate(
        recs,
        validation,
        config.k,
        train=inner.train,
        catalog_size=len(base.movie_ids),
        genres=base.result.movies.set_index(C.MOVIE)[C.GENRES],
    )
    seconds = time.perf_counter() - t0
    log.info(
        "tuned in %.1f s over %d candidates: NDCG@%d %.4f -> %.4f",
        seconds,
        len(trace),
        config.k,
        start_value,
        best_value,
    )
    return TuneResult(
        params=best,
        validation_ndcg=measured["ndcg"],
        validation_metrics=measured,
        start_ndcg=start_value,
        trace=trace,
        seconds=seconds,
        validation_stats=inner.stats,
    )


def _relative_to_cf(blend: BlendWeights) -> BlendWeights:
    if blend.cf <= 0:
        total = blend.md + blend.desc + blend.movie
        return replace(blend, md=blend.md / total, desc=blend.desc / total, cf=1.0, movie=blend.movie / total)
    return replace(blend, md=blend.md / blend.cf, desc=blend.desc / blend.cf, cf=1.0, movie=blend.movie / blend.cf)


def _normalised(blend: BlendWeights) -> BlendWeights:
    total = blend.md + blend.desc + blend.cf + blend.movie
    return replace(
        blend,
        md=round(blend.md / total, 6),
        desc=round(blend.desc / total, 6),
        cf=round(blend.cf / total, 6),
        movie=round(blend.movie / total, 6),
    )


def update_manifest(path, result: TuneResult) -> str:
    """Store the tuned parameters in an existing manifest (atomically); return a note for the user, if any.

    ``parameters.blend`` (with ``recency_half_life``) is what recommend reads;
    ``parameters.tuned`` keeps the whole tuning summary. The co-watching
    artifact is built by the pipeline, so when the manifest's own
    ``collaborative`` parameters differ from the tuned ones the note says to
    rerun the pipeline.
    """
    from pathlib import Path

    from rekko.artifacts import read_manifest, write_manifest
    from rekko.locking import exclusive_lock
    from rekko.paths import LOCK_NAME

    # the pipeline's lock: a tuning run never rewrites a manifest while a pipeline replaces the set
    with exclusive_lock(Path(path).parent / LOCK_NAME, what=f"the artifact set of {path}"):
        manifest = read_manifest(Path(path))
        tuned = result.params.to_dict()
        built = manifest.parameters.get("collaborative")
        note = ""
        if "sim_cf" not in manifest.artifacts:
            note = "these artifacts have no co-watching similarity yet: rerun `rekko pipeline`"
        elif built is not None and {k: built.get(k) for k in tuned["collaborative"]} != tuned["collaborative"]:
            note = (
                f"the co-watching similarity was built with {built}, tuned {tuned['collaborative']}: "
                "rerun `rekko pipeline` to rebuild it"
            )
        manifest.parameters = {**manifest.parameters, "blend": tuned["blend"], "tuned": result.to_dict()}
        write_manifest(manifest, Path(path))
    return note
