"""``rekko tune``'s protocol: carve a validation split from an evaluation's train part and run the search there."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import pandas as pd

from rekko.config import RekkoParams
from rekko.evaluation.models import fit
from rekko.evaluation.splitters import Split
from rekko.exceptions import ConfigError
from rekko.tuning.data import Fitted
from rekko.tuning.search import (
    CF_K_GRID,
    CF_WEIGHTING_GRID,
    DAYS_HALF_LIFE_GRID,
    EASE_GRID,
    HALF_LIFE_GRID,
    RATIO_POWER_GRID,
    RECENCY_GRID,
    RP3_GRID,
    WEIGHT_GRID,
    Grids,
    TuneConfig,
    TuneResult,
    search,
)


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
    clock: Callable[[], float] = time.perf_counter,
) -> TuneResult:
    """Tune on ``split(train)``: fit on its train part, score NDCG@k on its test part (the validation)."""
    t0 = clock()
    inner = split(train)
    if inner.test.empty:
        raise ConfigError("the validation split carved from train is empty: too little history to tune on")
    base = fitted or fit(inner.train, movies, ratings, collaborative=start.collaborative)
    grids = Grids(weight=weight_grid, half_life=half_life_grid, days_half_life=days_half_life_grid,
                  recency=recency_grid, cf_k=cf_k_grid, cf_weighting=cf_weighting_grid, rp3=rp3_grid,
                  ease=ease_grid, ratio_power=ratio_power_grid)
    return search(base, inner.test, config=config, start=start, grids=grids, clock=clock, started=t0,
                  validation_stats=inner.stats)
