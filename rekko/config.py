"""Every setting that decides what rekko builds and how it ranks, in one place.

Each config is a frozen dataclass validated on construction with the same
rules (:func:`_check_number`, :func:`_check_int`): NaN, infinite or negative
weights, a non-integer ``k`` (a numpy integer is an integer, a bool is not)
are refused with the field named. :meth:`ConfigBase.from_dict` refuses
unknown keys, naming them, so a typo in a manifest or a ``--params`` file is
an error rather than a silently ignored setting.

:class:`PipelineConfig` writes and reads the manifest's ``parameters`` block
(:meth:`PipelineConfig.to_manifest` / :meth:`PipelineConfig.from_manifest`);
nothing else lays that block out by hand.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, ClassVar, TypeVar

import numpy as np

from rekko.exceptions import ConfigError

T = TypeVar("T", bound="ConfigBase")


def _check_number(owner: str, name: str, value: object, *, minimum: float | None = 0.0,
                  maximum: float | None = None, strict: bool = False) -> float:
    """A finite real number within bounds (bools and strings are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{owner}.{name} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ConfigError(f"{owner}.{name} must be finite, got {value!r}")
    if minimum is not None and (v < minimum or (strict and v == minimum)):
        raise ConfigError(f"{owner}.{name} must be {'>' if strict else '>='} {minimum:g}, got {value!r}")
    if maximum is not None and v > maximum:
        raise ConfigError(f"{owner}.{name} must be <= {maximum:g}, got {value!r}")
    return v


def _check_int(owner: str, name: str, value: object, *, minimum: int = 1) -> int:
    """An integer >= ``minimum``; a numpy integer counts, a bool or float does not."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{owner}.{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{owner}.{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class ConfigBase:
    """Shared dictionary round trip for the frozen config dataclasses below."""

    #: fields that describe the machine (threads), not the result: not written to manifests
    RUNTIME_FIELDS: ClassVar[tuple[str, ...]] = ()

    def _set(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in self.RUNTIME_FIELDS}  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[T], raw: object, *, where: str | None = None) -> T:
        """Build from a mapping; unknown keys are refused by name. ``None`` or ``{}`` gives the defaults."""
        where = where or cls.__name__
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise ConfigError(f"{where} must be a mapping, got {type(raw).__name__}")
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(known)}")
        return cls(**raw)

    def replace(self: T, **changes: Any) -> T:
        return replace(self, **changes)  # type: ignore[type-var]


# --------------------------------------------------------------------------- pipeline stages


@dataclass(frozen=True)
class SimilarityConfig(ConfigBase):
    """How the two content similarity matrices are built.

    ``*_max_df`` drops terms found in more than that share of movies: they say
    little (``Фильм`` on three movies of four, stop words in descriptions) yet
    dominate the cost of the product, which grows with the sum of squared
    document frequencies.
    """

    k: int = 100
    md_max_df: float = 0.5
    desc_max_df: float = 0.1
    desc_min_df: int = 2
    max_features: int | None = 200_000
    n_threads: int | None = None  # None: all cores
    #: Above this many movies, top-k neighbours by candidate blocking
    #: (:func:`rekko.pipeline.similarity.blocked_top_k_cosine`) instead of the exact product.
    #: None (the default): always exact. Opt-in: at 200,000 generated movies its recall of the
    #: exact top-100 was 0.80 with the default cluster_size/spill (benchmarks/README.md).
    exact_max_movies: int | None = None
    cluster_size: int = 2_000
    spill: int = 4

    RUNTIME_FIELDS: ClassVar[tuple[str, ...]] = ()  # n_threads stays: old manifests carry it

    def __post_init__(self) -> None:
        o = "similarity"
        self._set("k", _check_int(o, "k", self.k))
        for name in ("md_max_df", "desc_max_df"):
            self._set(name, _check_number(o, name, getattr(self, name), strict=True, maximum=1.0))
        self._set("desc_min_df", _check_int(o, "desc_min_df", self.desc_min_df))
        for name in ("cluster_size", "spill"):
            self._set(name, _check_int(o, name, getattr(self, name)))
        if self.exact_max_movies is not None:
            self._set("exact_max_movies", _check_int(o, "exact_max_movies", self.exact_max_movies))
        if self.max_features is not None:
            self._set("max_features", _check_int(o, "max_features", self.max_features))
        if self.n_threads is not None:
            self._set("n_threads", _check_int(o, "n_threads", self.n_threads))


@dataclass(frozen=True)
class MovieScoreConfig(ConfigBase):
    """Weights of the per-movie score: external rating, mean watch ratio, popularity.

    ``prior_strength`` shrinks a movie's mean watch ratio toward the global mean
    (a Bayesian average), so one full view of an obscure film is not a 1.0.
    """

    w_rating: float = 0.4
    w_watch_ratio: float = 0.3
    w_popularity: float = 0.3
    prior_strength: float = 5.0

    def __post_init__(self) -> None:
        o = "movie_score"
        for name in ("w_rating", "w_watch_ratio", "w_popularity", "prior_strength"):
            self._set(name, _check_number(o, name, getattr(self, name)))
        if self.w_rating + self.w_watch_ratio + self.w_popularity <= 0:
            raise ConfigError(f"movie score weights must have a positive sum, got {self.to_dict()}")


WEIGHTINGS = ("bm25", "cosine", "rp3beta", "ease")
RECENCY_MODES = ("auto", "order", "dense", "days")


@dataclass(frozen=True)
class CollaborativeConfig(ConfigBase):
    """How the collaborative signals are built: the co-watching similarity and the history's recency ranks.

    ``weighting`` is the co-watching method (:mod:`rekko.pipeline.collaborative`):
    ``bm25`` or ``cosine`` (cosine of the movies' viewer columns, BM25-weighted
    or raw), or ``rp3beta`` (a three-step random walk movie -> viewer -> movie,
    each step's probabilities raised to ``rp3_alpha``, divided by the target's
    popularity to the power ``rp3_beta``). Every method keeps the top ``k``
    neighbours of each movie, so the artifact, the kernel and serving are the
    same whichever is chosen. ``ease`` (Steck 2019) solves a dense ridge
    regression of every movie on the others (an inverse of the movies x
    movies co-watching matrix plus ``ease_lambda``), keeps the positive
    weights, the top ``k`` per movie, rows scaled to a maximum of 1. The dense
    solve is limited to the ``ease_max_movies`` most-watched movies (its memory
    grows with the square, its time with the cube: ~30 s for 4,900 movies on
    this project's 2-core machine while busy); the others get no co-watching row.

    ``recency`` decides the integer recency of each watch, which the kernel
    decays by ``0.5 ** (recency / half_life)``
    (:func:`rekko.pipeline.collaborative.recency_rank`):

    * ``order``: the watch's place from the user's latest (0, 1, 2, ...);
      watches at the same time (the same day, with the seed's dates) get
      distinct ranks in file order, an arbitrary order;
    * ``dense``: the place of the watch's *time* among the user's distinct
      times, latest 0: watches at the same time share a rank (with dates only,
      a day's watches are one step); with exact times it is ``order``;
    * ``days``: whole days between the watch and the user's latest watch (the
      half-life is then in days);
    * ``auto`` (default): ``dense`` when the data has no time of day (every
      watch time is a midnight, as with the seed's year/month/day), else
      ``order``. Measured on MovieLens-small (docs/quality.md): with dates
      only, ``dense`` lifts NDCG@10 from 0.064 to 0.077; with exact times
      ``order`` is the better one on the validation split.
    """

    k: int = 100
    weighting: str = "bm25"
    bm25_k1: float = 1.2
    bm25_b: float = 0.75
    rp3_alpha: float = 1.0
    rp3_beta: float = 0.5
    ease_lambda: float = 500.0  # chosen among 50, 200, 500 on the validation splits (docs/quality.md)
    ease_max_movies: int = 5_000
    recency: str = "auto"
    n_threads: int | None = None  # None: all cores

    RUNTIME_FIELDS: ClassVar[tuple[str, ...]] = ("n_threads",)

    def __post_init__(self) -> None:
        o = "collaborative"
        self._set("k", _check_int(o, "k", self.k))
        if self.weighting not in WEIGHTINGS:
            raise ConfigError(f"{o}.weighting must be one of {WEIGHTINGS}, got {self.weighting!r}")
        if self.recency not in RECENCY_MODES:
            raise ConfigError(f"{o}.recency must be one of {RECENCY_MODES}, got {self.recency!r}")
        self._set("bm25_k1", _check_number(o, "bm25_k1", self.bm25_k1, strict=True))
        self._set("bm25_b", _check_number(o, "bm25_b", self.bm25_b, maximum=1.0))
        self._set("rp3_alpha", _check_number(o, "rp3_alpha", self.rp3_alpha, strict=True, maximum=10.0))
        self._set("rp3_beta", _check_number(o, "rp3_beta", self.rp3_beta, maximum=10.0))
        self._set("ease_lambda", _check_number(o, "ease_lambda", self.ease_lambda, strict=True))
        self._set("ease_max_movies", _check_int(o, "ease_max_movies", self.ease_max_movies))
        if self.n_threads is not None:
            self._set("n_threads", _check_int(o, "n_threads", self.n_threads))

    @classmethod
    def from_dict(cls, raw: object, *, where: str | None = None) -> CollaborativeConfig:
        return super().from_dict(raw, where=where or "collaborative")


# --------------------------------------------------------------------------- ranking


@dataclass(frozen=True)
class BlendWeights(ConfigBase):
    """Weights of the score's parts (non-negative, positive sum) and the history's recency half-life.

    ``recency_half_life`` (in watches, None = no decay) multiplies each watched
    movie's watch ratio by ``0.5 ** (recency_rank / half_life)`` when the
    ranking kernel builds a user's history: what a user watched last says most
    about what they watch next.
    """

    # `rekko tune` on a validation split carved from MovieLens-small's train part (docs/quality.md);
    # the test part was never looked at. A tuned manifest overrides these.
    md: float = 0.28
    desc: float = 0.11
    cf: float = 0.56
    movie: float = 0.06
    recency_half_life: float | None = 3.0
    #: the history's watch ratios enter the kernel as ``ratio ** ratio_power``: above 1 the movies a user
    #: watched through (liked) lead the history, 0 weighs every watch alike. See RATIO_POWER_DEFAULT.
    ratio_power: float = 1.0

    WEIGHT_FIELDS: ClassVar[tuple[str, ...]] = ("md", "desc", "cf", "movie")

    def __post_init__(self) -> None:
        for name in self.WEIGHT_FIELDS:
            self._set(name, _check_number("blend", name, getattr(self, name)))
        if sum(getattr(self, name) for name in self.WEIGHT_FIELDS) <= 0:
            raise ConfigError(f"blend weights must not all be zero, got {self.to_dict()}")
        self._set("ratio_power", _check_number("blend", "ratio_power", self.ratio_power, maximum=10.0))
        if self.recency_half_life is not None:
            self._set("recency_half_life",
                      _check_number("blend", "recency_half_life", self.recency_half_life, strict=True))

    @classmethod
    def from_dict(cls, raw: object, *, where: str | None = None) -> BlendWeights:
        return super().from_dict(raw, where=where or "blend")

    def with_half_life(self, half_life: float | None) -> BlendWeights:
        return replace(self, recency_half_life=half_life)


#: The seed's weights: metadata 0.5, description 0.3, movie score 0.2, no co-watching, no recency.
SEED_BLEND = BlendWeights(md=0.5, desc=0.3, cf=0.0, movie=0.2, recency_half_life=None)


@dataclass(frozen=True)
class RekkoParams(ConfigBase):
    """What decides rekko's ranking beyond the content similarities: the blend and the co-watching config.

    This is what ``rekko tune`` searches and what ``--params`` files hold.
    """

    blend: BlendWeights = field(default_factory=BlendWeights)
    collaborative: CollaborativeConfig = field(default_factory=CollaborativeConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.blend, BlendWeights) or not isinstance(self.collaborative, CollaborativeConfig):
            raise ConfigError("RekkoParams needs a BlendWeights and a CollaborativeConfig")

    @property
    def recency_half_life(self) -> float | None:
        return self.blend.recency_half_life

    def with_half_life(self, half_life: float | None) -> RekkoParams:
        return replace(self, blend=self.blend.with_half_life(half_life))

    def to_dict(self) -> dict[str, Any]:
        return {"blend": self.blend.to_dict(), "collaborative": self.collaborative.to_dict()}

    @classmethod
    def from_dict(cls, raw: object, *, where: str | None = None) -> RekkoParams:
        """Read the layout :meth:`to_dict` writes; missing parts keep their defaults, unknown keys are refused."""
        where = where or "parameters"
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise ConfigError(f"{where} must be a mapping, got {type(raw).__name__}")
        unknown = sorted(set(raw) - {"blend", "collaborative"})
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; expected some of ['blend', 'collaborative']")
        return cls(
            blend=BlendWeights.from_dict(raw.get("blend"), where=f"{where}.blend"),
            collaborative=CollaborativeConfig.from_dict(raw.get("collaborative"), where=f"{where}.collaborative"),
        )


@dataclass(frozen=True)
class AutoTuneConfig(ConfigBase):
    """How ``rekko pipeline`` tunes the blend, the recency and the co-watching settings on its own input.

    A validation split is carved from the input: for up to ``max_users``
    users (a seeded sample of those with at least ``min_history`` distinct
    movies), their latest ``holdout_share`` of movies by watch date (at least
    1, at most ``max_holdout``; same-day ties broken at random, seeded) are the
    validation pairs, the rest is the train part. Tuning runs when at least
    ``min_users`` users have ``min_history`` movies: below that, the
    validation NDCG's standard error (about 0.3 / sqrt(users), 0.013 at 500)
    is as large as the differences tuning looks for, and the defaults are the
    safer choice.

    The search's budget is counted in work, never in seconds, so the same
    input gives the same choice on any machine at any load: ``work_budget``
    units, where ranking one validation user for one candidate costs 1 and a
    refit of the co-watching similarity costs ``train pairs / refit_pairs_per_unit``
    (a refit's cost grows with the rows, a ranking's does not). When the
    budget would be passed, the search stops where it is and keeps the best
    candidate scored on every validation user (the defaults if none was).
    ``budget_s`` is an explicit cap in wall seconds on top of it (None, the
    default: none); when it cuts the search the summary says so, and the
    result then depends on the machine.
    """

    enabled: bool = True
    #: wall seconds for tuning, an explicit cap (None: none; the default budget is ``work_budget``)
    budget_s: float | None = None
    #: units of work for the search: one per validation user ranked for one candidate, plus each refit's share
    #: (at the seed's scale, 30,000 units take about 5 s on 2 cores: benchmarks/README.md)
    work_budget: int = 30_000
    #: train pairs that cost one unit of a co-watching refit (a refit of the seed's 1M rows costs about as
    #: much as ranking 6,400 users; at 10M rows one refit is over the whole budget, so none is tried)
    refit_pairs_per_unit: int = 150
    min_users: int = 500
    min_history: int = 5
    max_users: int = 1000
    holdout_share: float = 0.2
    max_holdout: int = 10
    k: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        o = "tuning"
        if not isinstance(self.enabled, bool):
            raise ConfigError(f"{o}.enabled must be true or false, got {self.enabled!r}")
        if self.budget_s is not None:
            self._set("budget_s", _check_number(o, "budget_s", self.budget_s))
        for name in ("work_budget", "refit_pairs_per_unit", "min_users", "min_history", "max_users", "max_holdout", "k"):
            self._set(name, _check_int(o, name, getattr(self, name)))
        self._set("holdout_share", _check_number(o, "holdout_share", self.holdout_share, strict=True, maximum=1.0))
        self._set("seed", _check_int(o, "seed", self.seed, minimum=0))


#: what ``parameters.tuned.status`` of a pipeline's own tuning may say
TUNED_STATUSES = ("tuned", "kept defaults", "skipped", "off")


def check_tuned(tuned: dict[str, Any], where: str = "parameters.tuned") -> None:
    """The schema of the ``tuned`` summary: a pipeline's own (``source = "pipeline"``) or ``rekko tune``'s."""
    source = tuned.get("source", "rekko tune")
    if source not in ("pipeline", "rekko tune"):
        raise ConfigError(f"{where}.source must be 'pipeline' or 'rekko tune', got {source!r}")
    if "parameters" in tuned:
        RekkoParams.from_dict(tuned["parameters"], where=f"{where}.parameters")
    for name in ("validation_ndcg", "start_ndcg", "seconds", "budget_s"):
        value = tuned.get(name)
        if value is not None:
            _check_number(where, name, value, minimum=None)
    for name in ("validation_users", "evaluations", "user_evaluations", "eligible_users"):
        value = tuned.get(name)
        if value is not None:
            _check_int(where, name, value, minimum=0)
    if source == "pipeline":
        if tuned.get("status") not in TUNED_STATUSES:
            raise ConfigError(f"{where}.status must be one of {TUNED_STATUSES}, got {tuned.get('status')!r}")
        if tuned["status"] == "tuned" and "parameters" not in tuned:
            raise ConfigError(f"{where}: a tuned summary needs its parameters")


@dataclass(frozen=True)
class PipelineConfig(ConfigBase):
    """Everything a pipeline run is configured with; its manifest's ``parameters`` block."""

    similarity: SimilarityConfig = field(default_factory=SimilarityConfig)
    movie_score: MovieScoreConfig = field(default_factory=MovieScoreConfig)
    collaborative: CollaborativeConfig = field(default_factory=CollaborativeConfig)
    blend: BlendWeights = field(default_factory=BlendWeights)
    #: the tuning summary: the pipeline's own (``source = "pipeline"``, written by every run that tunes or
    #: says why not) or the one `rekko tune` wrote, carried into every later manifest with its parameters
    tuned: dict[str, Any] | None = None
    #: how the pipeline tunes on its input (a run setting: the manifest records what it did in ``tuned``)
    autotune: AutoTuneConfig = field(default_factory=AutoTuneConfig)

    SECTIONS: ClassVar[dict[str, type[ConfigBase]]] = {
        "similarity": SimilarityConfig,
        "movie_score": MovieScoreConfig,
        "collaborative": CollaborativeConfig,
        "blend": BlendWeights,
    }

    @property
    def params(self) -> RekkoParams:
        return RekkoParams(blend=self.blend, collaborative=self.collaborative)

    def with_params(self, params: RekkoParams) -> PipelineConfig:
        return replace(self, blend=params.blend, collaborative=params.collaborative)

    def to_manifest(self) -> dict[str, Any]:
        """The ``parameters`` block a pipeline run with this config writes into its manifest."""
        out: dict[str, Any] = {name: getattr(self, name).to_dict() for name in self.SECTIONS}
        if self.tuned:
            out["tuned"] = self.tuned
        return out

    @classmethod
    def from_manifest(cls, raw: object, *, where: str = "parameters") -> PipelineConfig:
        """Read a manifest's ``parameters`` block (missing sections keep their defaults)."""
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise ConfigError(f"{where} must be a mapping, got {type(raw).__name__}")
        unknown = sorted(set(raw) - set(cls.SECTIONS) - {"tuned"})
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(cls.SECTIONS)} or 'tuned'")
        sections = {name: kind.from_dict(raw.get(name), where=f"{where}.{name}") for name, kind in cls.SECTIONS.items()}
        tuned = raw.get("tuned")
        if tuned is not None and not isinstance(tuned, dict):
            raise ConfigError(f"{where}.tuned must be a mapping, got {type(tuned).__name__}")
        if tuned is not None:
            check_tuned(tuned, f"{where}.tuned")
        return cls(**sections, tuned=tuned)  # type: ignore[arg-type]
