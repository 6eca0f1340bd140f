"""``rekko evaluate`` end to end: load, split by time, fit on train, recommend, measure.

The pipeline runs on the train part only (in memory, nothing is written
beside the user's artifacts); every model recommends ``k`` movies to each test
user, and the metrics compare them with the test part.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from rekko import __version__
from rekko.pipeline import ingest
from rekko.columns import Columns as C
from rekko import metrics
from rekko.evaluation import models as M
from rekko.evaluation.splitters import MODEL_SEES, Split, global_time_split, hide_time_of_day, per_user_last_n_split
from rekko.config import AutoTuneConfig, PipelineConfig
from rekko.exceptions import ConfigError, InputFileError
from rekko.tuning import auto

log = logging.getLogger(__name__)

SPLITS = ("per-user", "global")


def _rekko(fitted: M.Fitted, users: np.ndarray, k: int, params: M.RekkoParams) -> pd.DataFrame:
    return M.rekko(fitted, users, k, params)


#: name -> (description, function(fitted, users, k, params))
MODELS: dict[str, tuple[str, Callable[..., pd.DataFrame]]] = {
    "most_popular": ("movies most train users watched", lambda f, u, k, p: M.most_popular(f, u, k)),
    "legacy": ("the seed's scoring, de-duplicated", lambda f, u, k, p: M.legacy(f, u, k)),
    "content": ("content similarity only (metadata + description)", lambda f, u, k, p: M.content_only(f, u, k)),
    "collaborative": (
        "co-watching similarity only, no recency (ItemKNN)",
        lambda f, u, k, p: M.collaborative_only(f, u, k),
    ),
    "rekko": ("rekko's full model: content + co-watching + movie score, recency-weighted", _rekko),
}


@dataclass(frozen=True)
class EvalConfig:
    split: str = "per-user"
    test_size: int = 10  # per-user split: each user's last N watches
    days: float = 30.0  # global split: the last D days
    k: int = 10
    models: tuple[str, ...] = tuple(MODELS)
    #: "exact": the model sees the watch times the split used; "dates": the split uses the exact time, the
    #: model (pipeline, tuning) sees year/month/day only, as the seed's data gives them
    model_sees: str = "exact"
    #: the "rekko" model without --params: what `rekko pipeline` ships, i.e. tuned on the train part as the
    #: pipeline tunes on its input (False: the built-in defaults, as `rekko pipeline --no-tune`)
    tune: bool = True
    tune_budget: float | None = None  # an explicit wall cap on the tuning (None: only its work budget, as the pipeline)

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ConfigError(f"split must be one of {SPLITS}, got {self.split!r}")
        if self.model_sees not in MODEL_SEES:
            raise ConfigError(f"model_sees must be one of {MODEL_SEES}, got {self.model_sees!r}")
        unknown = [m for m in self.models if m not in MODELS]
        if unknown:
            raise ConfigError(f"unknown models {unknown}; known: {list(MODELS)}")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ConfigError(f"k must be an integer >= 1, got {self.k!r}")

    def splitter(self, *, tie_seed: int | None = None) -> Callable[[pd.DataFrame], Split]:
        """The split as the protocol makes it (by exact time when the data has it).

        ``tie_seed``: break same-time ties of the per-user split at random
        (seeded) instead of in row order; the validation split of ``rekko tune``.
        """
        if self.split == "per-user":
            return partial(per_user_last_n_split, n=self.test_size, tie_seed=tie_seed)
        return partial(global_time_split, days=self.days)

    def outer_split(self, interactions: pd.DataFrame) -> Split:
        """The test split, with the train part as the model may see it (dates only with ``model_sees="dates"``)."""
        split = self.splitter()(interactions)
        return hide_time_of_day(split) if self.model_sees == "dates" else split


@dataclass
class EvaluationResult:
    config: EvalConfig
    params: M.RekkoParams
    split: Split
    table: pd.DataFrame  # model x metric
    seconds: dict[str, float] = field(default_factory=dict)
    counts: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "rekko_version": __version__,
            "protocol": {
                **asdict(self.config),
                "models": list(self.config.models),
                "split_description": self.split.description,
            },
            "split": self.split.stats,
            "parameters": self.params.to_dict(),
            "metrics": {
                model: {m: _num(v) for m, v in row.items()} for model, row in self.table.to_dict("index").items()
            },
            "descriptions": {m: MODELS[m][0] for m in self.config.models},
            "seconds": self.seconds,
            "counts": self.counts,
        }


def _num(v: float) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), 6)


def load_inputs(interactions: Path, movies: Path, ratings: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The three inputs, validated exactly as the pipeline reads them."""
    return ingest.load_interactions(interactions), ingest.load_movies(movies), ingest.load_ratings(ratings)


def check_recommendations(name: str, recs: pd.DataFrame, train: pd.DataFrame, k: int) -> None:
    """A model that recommends a watched movie, a movie twice or more than k is a bug: fail loudly."""
    watched = pd.MultiIndex.from_frame(train[[C.USER, C.MOVIE]].astype({C.MOVIE: str}))
    pairs = pd.MultiIndex.from_frame(recs[[C.USER, C.MOVIE]].astype({C.MOVIE: str}))
    problems = {
        "already watched": int(pairs.isin(watched).sum()),
        "duplicates": int(pairs.duplicated().sum()),
        "beyond k": int((recs[C.RANK] > k).sum()),
    }
    bad = {what: n for what, n in problems.items() if n}
    if bad:
        raise AssertionError(f"model {name!r} broke the recommendation contract: {bad}")


def shipped_params(fitted: M.Fitted, config: EvalConfig) -> tuple[M.RekkoParams, dict[str, object]]:
    """What ``rekko pipeline`` would ship when given ``fitted``'s train part: its own tuning on that input.

    The same function the pipeline calls (:func:`rekko.tuning.auto.tune_on_input`) on the same
    frames (interactions_upd, movies, content similarities); returns the parameters and the summary.
    """
    pipeline = PipelineConfig(autotune=AutoTuneConfig(enabled=config.tune, budget_s=config.tune_budget))
    r = fitted.data
    outcome = auto.tune_on_input(r.interactions, r.movies, r.sim_md, r.sim_desc, pipeline)
    return (outcome.params or pipeline.params), outcome.summary


def evaluate_models(
    split: Split,
    movies: pd.DataFrame,
    ratings: pd.DataFrame,
    config: EvalConfig,
    params: M.RekkoParams | None,
    fitted: M.Fitted | None = None,
) -> tuple[pd.DataFrame, dict[str, float], M.Fitted, M.RekkoParams, dict[str, object] | None]:
    """Fit on ``split.train``, recommend to the test users with every model, return the metric table.

    ``params`` None: rekko's parameters are what the pipeline ships for this train part
    (:func:`shipped_params`); also returned, with the tuning summary (None when ``params`` were given).
    """
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    fitted = fitted or M.fit(split.train, movies, ratings,
                             collaborative=(params or M.RekkoParams()).collaborative)
    seconds["fit"] = round(time.perf_counter() - t, 3)
    tuned = None
    if params is None:
        t = time.perf_counter()
        params, tuned = shipped_params(fitted, config)
        seconds["tune"] = round(time.perf_counter() - t, 3)
    users = np.unique(split.test[C.USER].to_numpy(dtype=np.int64))
    genres = fitted.data.movies.set_index(C.MOVIE)[C.GENRES]
    rows = {}
    for name in config.models:
        t = time.perf_counter()
        recs = MODELS[name][1](fitted, users, config.k, params)
        check_recommendations(name, recs, split.train, config.k)
        rows[name] = metrics.evaluate(
            recs, split.test, config.k, train=split.train, catalog_size=len(movies), genres=genres
        )
        seconds[name] = round(time.perf_counter() - t, 3)
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "model"
    return table, seconds, fitted, params, tuned


def run_evaluation(
    interactions: pd.DataFrame,
    movies: pd.DataFrame,
    ratings: pd.DataFrame,
    config: EvalConfig = EvalConfig(),
    params: M.RekkoParams | None = None,
) -> EvaluationResult:
    """Split ``interactions`` by time and compare the models on the test part.

    ``params`` None: rekko is what ``rekko pipeline`` ships for the train part (tuned on it by default).
    """
    t0 = time.perf_counter()
    split = config.outer_split(interactions)
    if split.test.empty:
        raise ConfigError(f"the test part is empty ({split.description}); nothing to evaluate")
    table, seconds, fitted, params, tuned = evaluate_models(split, movies, ratings, config, params)
    seconds["total"] = round(time.perf_counter() - t0, 3)
    counts = {"movies": len(movies), "interactions": len(interactions), "pipeline": fitted.data.counts}
    if tuned is not None:
        counts["tuned"] = tuned
    return EvaluationResult(config, params, split, table, seconds, counts)


def format_table(table: pd.DataFrame, k: int) -> str:
    """The metric table as fixed-width text, metric names suffixed with @k."""
    shown = table.rename(columns={c: f"{c}@{k}" for c in table.columns})
    return shown.to_string(float_format=lambda v: f"{v:.4f}")


def params_from_file(path: Path) -> M.RekkoParams:
    """Parameters from a ``rekko tune`` JSON or a manifest (both keep them under ``parameters``)."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputFileError(f"{path}: parameters file not found") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise InputFileError(f"{path}: cannot read parameters as JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise InputFileError(f"{path}: expected a JSON object with 'parameters'")
    return M.RekkoParams.from_dict(raw.get("parameters", raw))


def describe_models(names: Sequence[str]) -> str:
    return "\n".join(f"  {n:14s} {MODELS[n][0]}" for n in names)
