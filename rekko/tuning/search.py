"""Fit rekko's ranking parameters on a validation split carved from the train part.

What is tuned (:data:`STAGES`, in order; each stage starts from the best so far):

1. ``recency``: the history's recency (``order``, ``dense`` or ``days``, see
   :class:`~rekko.config.CollaborativeConfig`) jointly with its half-life (in
   steps for the first two, days for ``days``), with the starting similarity
   and blend (given a co-watching weight equal to the rest if it had none);
2. ``blend``: the weights of metadata, description and movie score relative to
   the collaborative weight, one coordinate at a time over a log-spaced grid
   (scores are linear in the weights and a ranking is scale-free, so fixing
   ``cf = 1`` only rules out blends without it, which the start covers);
3. ``similarity``: the co-watching similarity (``k`` neighbours; BM25, cosine,
   or RP3beta with a few ``alpha``/``beta`` pairs) with that recency; then
   ``ease``: EASE (``weighting = "ease"``, one dense solve per ``lambda``) at
   the best ``k`` (``rekko tune`` only: the pipeline's own tuning skips it, a
   dense solve does not fit its budget);
4. ``blend`` once more, then ``half_life`` with the tuned weights, then
   ``ratio_power``: the history's watch ratios enter as ``ratio ** power``.

Each stage (each coordinate of ``blend``) is a **successive halving** over
validation users: every candidate is scored on a small random subset of the
validation users, the best ``1/eta`` are kept, the subset doubles, and so on
until the survivors are scored on all of them; the best survivor replaces the
incumbent only if it beats it on all of them. The subsets are prefixes of one
seeded permutation of the users (nested, deterministic given ``seed``).

The result is normalised to sum to 1 and is never worse than the start on the
whole validation split (the start is returned if nothing beats it).

The budget is counted in work (``TuneConfig.work_budget``: one unit per
validation user ranked for one candidate, ``refit_units`` per refit of the
co-watching similarity), checked before every candidate and every refit, so
the same input stops at the same place on any machine. An explicit wall cap
(``TuneConfig.budget_s``, an injectable clock) may stop it earlier. Either
way the search stops where it is: the best candidate so far has always been
scored on every validation user, so it is returned; if the budget runs out
before the start itself was scored on all of them, :class:`OutOfBudget` is
raised and the caller keeps its defaults.

The objective is NDCG@k on the validation pairs. The caller passes the train
part only; the test part never reaches this module.

Every candidate is ranked by the shipped kernel (:mod:`rekko.recommend.kernel`)
through :class:`~rekko.recommend.Recommender`, and scored by
:func:`rekko.metrics.ndcg`: what is tuned is exactly what serves
users. A candidate costs one combination of the sparse similarities and one
batch ranking of the users scored (nonzeros touched, not users x movies); a
change of similarity costs a refit of the co-watching matrix on the train part,
a change of recency mode a recomputation of the recency ranks.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import scipy.sparse as sp

from rekko import metrics
from rekko.columns import Columns as C
from rekko.config import BlendWeights, CollaborativeConfig, RekkoParams
from rekko.exceptions import ConfigError
from rekko.recommend import Recommender, kernel
from rekko.tuning.data import Fitted

log = logging.getLogger(__name__)
#: the search's progress (stage, candidates done, best so far) on stderr with the CLI's progress lines
progress_log = logging.getLogger("rekko.progress.tuning")

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


#: Similarity layouts kept for reuse (:class:`~rekko.recommend.kernel.Blendable`, about 60 MB each at the seed's scale)
SCORERS_KEPT = 2
#: The stages of the search, in order (see the module docstring). A stage name may repeat.
STAGES: tuple[str, ...] = ("half_life", "blend", "recency", "similarity", "ease", "blend", "half_life",
                          "ratio_power")
#: The blend weights tuned by coordinate, relative to ``cf = 1``.
BLEND_COORDINATES: tuple[str, ...] = ("movie", "md", "desc")


@dataclass(frozen=True)
class Grids:
    """The candidate values each stage draws from (data, so new options are one entry away)."""

    weight: Sequence[float] = WEIGHT_GRID
    half_life: Sequence[float | None] = HALF_LIFE_GRID
    days_half_life: Sequence[float | None] = DAYS_HALF_LIFE_GRID
    recency: Sequence[str] = RECENCY_GRID
    cf_k: Sequence[int] = CF_K_GRID
    cf_weighting: Sequence[str] = CF_WEIGHTING_GRID
    rp3: Sequence[tuple[float, float]] = RP3_GRID
    ease: Sequence[float] = EASE_GRID
    ratio_power: Sequence[float] = RATIO_POWER_GRID
    stages: Sequence[str] = STAGES

    def half_lives(self, recency: str) -> Sequence[float | None]:
        return self.days_half_life if recency == "days" else self.half_life

    def similarities(self, base: CollaborativeConfig) -> list[CollaborativeConfig]:
        """Every co-watching similarity of the grid, with ``base``'s other settings (recency, threads)."""
        out = []
        for k_cf in self.cf_k:
            for weighting in self.cf_weighting:
                for alpha, beta in (self.rp3 if weighting == "rp3beta" else ((None, None),)):
                    extra = {} if alpha is None else {"rp3_alpha": float(alpha), "rp3_beta": float(beta)}
                    out.append(replace(base, k=int(k_cf), weighting=weighting, **extra))
        return out


@dataclass(frozen=True)
class TuneConfig:
    k: int = 10  # the cut-off of the objective, NDCG@k
    max_users: int = 1000  # validation users scored (a fixed random sample above this); bounds memory
    rounds: int = 2  # coordinate-ascent passes over the weights in the first "blend" stage
    seed: int = 0
    #: successive halving: keep the best 1/eta of the candidates at each rung
    eta: int = 3
    #: the smallest subset of validation users a rung scores candidates on
    min_rung_users: int = 100
    #: units of work for the whole search (None: no limit): one per user ranked for one candidate
    work_budget: int | None = None
    #: the units one refit of the co-watching similarity costs (its train pairs over a constant)
    refit_units: int = 0
    #: wall seconds for the whole search, an explicit cap (None: none); see :class:`OutOfBudget`
    budget_s: float | None = None

    def __post_init__(self) -> None:
        if self.k < 1 or self.max_users < 1 or self.rounds < 1 or self.min_rung_users < 1:
            raise ConfigError(f"tuning needs k, max_users, rounds and min_rung_users >= 1, got {self}")
        if self.eta < 2:
            raise ConfigError(f"successive halving needs eta >= 2, got {self.eta}")
        if self.work_budget is not None and self.work_budget < 0 or self.refit_units < 0:
            raise ConfigError(f"the tuning work budget must be >= 0 units, got {self.work_budget!r}")
        if self.budget_s is not None and not self.budget_s >= 0:
            raise ConfigError(f"the tuning budget must be >= 0 seconds, got {self.budget_s!r}")


class OutOfBudget(Exception):
    """The budget ran out before the start was scored on every validation user: nothing to choose from."""

    def __init__(self, by: str) -> None:
        super().__init__(by)
        #: "work" or "time": which budget stopped the search
        self.by = by


@dataclass
class TuneResult:
    params: RekkoParams
    validation_ndcg: float
    validation_metrics: dict[str, float]
    start_ndcg: float
    trace: list[dict[str, object]] = field(default_factory=list)
    seconds: float = 0.0
    validation_stats: dict[str, int] = field(default_factory=dict)
    #: validation users every candidate that reached the last rung was scored on
    users: int = 0
    #: candidate x user rankings done, summed over the search (its cost, in users ranked)
    user_evaluations: int = 0
    #: False when the budget stopped the search before its last stage
    complete: bool = True
    #: units of work spent (see :class:`TuneConfig`); "work" or "time" when a budget stopped the search
    work: int = 0
    stopped_by: str | None = None
    #: the best validation NDCG and the seconds spent when each stage began (then "end")
    stages: list[dict[str, object]] = field(default_factory=list)

    def to_dict(self, *, timing: bool = True) -> dict[str, object]:
        """The summary; without ``timing`` no wall-clock figure (a manifest's parameters: the same input
        gives the same parameters)."""
        stages = self.stages if timing else [{k: v for k, v in s.items() if k != "seconds_at_start"}
                                             for s in self.stages]
        out: dict[str, object] = {
            "parameters": self.params.to_dict(),
            "objective": "ndcg",
            "validation_ndcg": self.validation_ndcg,
            "start_ndcg": self.start_ndcg,
            "validation_metrics": self.validation_metrics,
            "validation_split": self.validation_stats,
            "validation_users": self.users,
            "evaluations": len(self.trace),
            "user_evaluations": self.user_evaluations,
            "work": self.work,
            "complete": self.complete,
            "stopped_by": self.stopped_by,
            "stages": stages,
        }
        if timing:
            out["seconds"] = round(self.seconds, 2)
        return out


# --------------------------------------------------------------------------- search


def search(
    base: Fitted,
    validation: pd.DataFrame,
    *,
    config: TuneConfig = TuneConfig(),
    start: RekkoParams = RekkoParams(),
    grids: Grids = Grids(),
    clock: Callable[[], float] = time.perf_counter,
    started: float | None = None,
    validation_stats: dict[str, int] | None = None,
) -> TuneResult:
    """Search ``grids`` from ``start`` for the best NDCG@k on ``validation`` (user, movie pairs) given ``base``.

    ``base`` is the fit on the train part (its co-watching similarity built
    with ``base.collaborative``); ``started`` is the ``clock()`` reading the
    budget counts from (default: now). Raises :class:`OutOfTime` when the
    budget runs out before the start was scored on every validation user.
    """
    t0 = clock() if started is None else started
    deadline = None if config.budget_s is None else t0 + config.budget_s
    budget = _Budget(config.work_budget, config.refit_units, clock, deadline)
    users = np.unique(validation[C.USER].to_numpy(dtype=np.int64))
    users = users[np.isin(users, base.user_ids)]
    if not len(users):
        raise ConfigError("no validation user has a history in the train part: nothing to tune on")
    # one seeded order of the users: every subset scored is a prefix of it (nested, deterministic)
    users = np.random.default_rng(config.seed).permutation(users)[: config.max_users]
    validation = validation[validation[C.USER].isin(users)]
    run = _Search(base, validation, users, config.k, budget, start.collaborative, wide_ks=grids.cf_k)

    start_value = run.score(start, len(users))  # OutOfBudget here: no full evaluation, the caller keeps defaults
    best, best_value = start, start_value
    complete = True
    stages: list[dict[str, object]] = []
    try:
        # search with weights relative to cf = 1 (a start without the co-watching part gets it, or step 1 is blind)
        seed = replace(start, blend=_relative_to_cf(start.blend))
        if seed != start:
            value = run.score(seed, len(users))
            if value > best_value + 1e-12:
                best, best_value = seed, value
        blend_rounds = config.rounds
        for number, stage in enumerate(grids.stages, 1):
            stages.append({"stage": stage, "ndcg_before": round(best_value, 6),
                           "seconds_at_start": round(clock() - t0, 2)})
            progress_log.info("tuning stage %d/%d %s: %d candidates scored, best validation NDCG@%d %.4f, "
                              "work %s/%s units", number, len(grids.stages), stage, len(run.trace), config.k,
                              best_value, f"{budget.spent:,}",
                              "unlimited" if config.work_budget is None else f"{config.work_budget:,}")
            if stage == "recency":
                candidates = [replace(best, collaborative=replace(best.collaborative, recency=recency))
                              .with_half_life(half_life)
                              for recency in grids.recency for half_life in grids.half_lives(recency)]
                best, best_value = run.halving(candidates, best, best_value, config)
            elif stage == "half_life":
                candidates = [best.with_half_life(h) for h in grids.half_lives(best.collaborative.recency)]
                best, best_value = run.halving(candidates, best, best_value, config)
            elif stage == "similarity":
                candidates = [replace(best, collaborative=cf) for cf in grids.similarities(best.collaborative)]
                best, best_value = run.halving(candidates, best, best_value, config)
            elif stage == "ease":
                candidates = [replace(best, collaborative=replace(best.collaborative, weighting="ease",
                                                                  ease_lambda=float(lam)))
                              for lam in grids.ease]
                best, best_value = run.halving(candidates, best, best_value, config)
            elif stage == "ratio_power":
                candidates = [replace(best, blend=replace(best.blend, ratio_power=float(p))) for p in grids.ratio_power]
                best, best_value = run.halving(candidates, best, best_value, config)
            elif stage == "blend":
                for _ in range(blend_rounds):
                    before = best_value
                    for name in BLEND_COORDINATES:
                        candidates = [replace(best, blend=replace(best.blend, **{name: float(w)}))
                                      for w in grids.weight]
                        best, best_value = run.halving(candidates, best, best_value, config)
                    if best_value <= before + 1e-12:
                        break
                blend_rounds = 1  # later blend stages: one pass
            else:
                raise ConfigError(f"unknown tuning stage {stage!r}; known: recency, blend, similarity, ease, "
                                  "half_life, ratio_power")
    except OutOfBudget as out:
        complete = False
        budget.stopped_by = out.by
        log.info("the tuning's %s budget ran out: keeping the best candidate so far", out.by)

    if start_value >= best_value:  # never hand back something worse than the start on validation
        best, best_value = start, start_value
    else:
        best = replace(best, blend=_normalised(best.blend))
    budget.units = budget.deadline = None  # the chosen candidate is evaluated whatever is left
    # the search's own recommender: its similarity rows restricted to the validation histories, so the final
    # evaluation does not combine every movie's rows (at 200,000 movies that was the tuning's peak memory)
    recs = run.recommender(best).recommend_all(config.k, user_ids=users)
    measured = metrics.evaluate(
        recs,
        validation,
        config.k,
        train=None if C.N_USERS in base.data.movies.columns else base.data.interactions[[C.USER, C.MOVIE]],
        popularity=((pd.Series(base.data.movies[C.N_USERS].to_numpy(), index=base.movie_ids),
                     len(base.user_ids)) if C.N_USERS in base.data.movies.columns else None),
        catalog_size=len(base.movie_ids),
        genres=base.data.movies.set_index(C.MOVIE)[C.GENRES],
    )
    seconds = clock() - t0
    log.info("tuned in %.1f s over %d candidates: NDCG@%d %.4f -> %.4f", seconds, len(run.trace), config.k,
             start_value, best_value)
    return TuneResult(
        params=best,
        validation_ndcg=measured["ndcg"],
        validation_metrics=measured,
        start_ndcg=start_value,
        trace=run.trace,
        seconds=seconds,
        validation_stats=dict(validation_stats or {}),
        users=len(users),
        user_evaluations=run.user_evaluations,
        complete=complete,
        work=budget.spent,
        stopped_by=budget.stopped_by,
        stages=stages + [{"stage": "end", "ndcg_before": round(best_value, 6),
                          "seconds_at_start": round(seconds, 2)}],
    )


class _Budget:
    """Work spent and the wall cap: :meth:`spend` raises :class:`OutOfBudget` before a step would pass either."""

    def __init__(self, units: int | None, refit_units: int, clock: Callable[[], float],
                 deadline: float | None) -> None:
        self.units, self.refit_units = units, refit_units
        self.clock, self.deadline = clock, deadline
        self.spent = 0
        self.stopped_by: str | None = None

    def spend(self, units: int) -> None:
        if self.units is not None and self.spent + units > self.units:
            raise OutOfBudget("work")
        if self.deadline is not None and self.clock() > self.deadline:
            raise OutOfBudget("time")
        self.spent += units


class _Search:
    """Scores candidates on prefixes of the validation users; keeps the co-watching fits it still needs."""

    def __init__(self, base: Fitted, validation: pd.DataFrame, users: np.ndarray, k: int,
                 budget: _Budget, incumbent: CollaborativeConfig, wide_ks: Sequence[int] = ()) -> None:
        self.base, self.users, self.k = base, users, k
        self.budget = budget
        self.fits: dict[CollaborativeConfig, Fitted] = {base.collaborative: base}
        self.keep: set[CollaborativeConfig] = {base.collaborative, incumbent}
        # the validation pairs as codes (position of the user in the seeded order) x movies + movie position:
        # sorted, so the pairs of a prefix of users are a prefix of the codes
        n_movies = len(base.movie_ids)
        position = pd.Series(np.arange(len(users)), index=users)
        user_pos = position.reindex(validation[C.USER].to_numpy()).to_numpy()
        movie_pos = pd.Index(base.movie_ids).get_indexer(validation[C.MOVIE].astype(str).to_numpy())
        known = movie_pos >= 0  # a validation movie outside the catalogue can never be recommended: a miss
        self.codes = np.unique(user_pos[known].astype(np.int64) * n_movies + movie_pos[known])
        self.n_relevant = np.bincount(user_pos.astype(np.int64), minlength=len(users))
        self.n_movies = n_movies
        self.rows = base.artifacts.user_rows(users)
        # the similarity rows any candidate's ranking reads: the movies in the validation users' histories
        self.history_movies = np.unique(base.history[self.rows[self.rows >= 0]].indices)
        self.memo: dict[tuple[RekkoParams, int], float] = {}
        self.wide_k = max([incumbent.k, *wide_ks])
        self.wide: dict[tuple, _RowRanked] = {}
        self.by_recency: dict[str, Fitted] = {}
        self.blendables: OrderedDict[CollaborativeConfig, kernel.Blendable] = OrderedDict()
        self.trace: list[dict[str, object]] = []
        self.user_evaluations = 0

    def fitted_for(self, cf: CollaborativeConfig) -> Fitted:
        if cf not in self.fits:
            self.budget.spend(0)  # the wall cap, if any
            base_cf = self.base.collaborative
            if cf.recency != base_cf.recency:
                # the recency ranks once per mode (not once per similarity tried with it)
                if cf.recency not in self.by_recency:
                    self.by_recency[cf.recency] = self.base.with_collaborative(replace(base_cf, recency=cf.recency))
                self.fits[cf] = self._with_similarity(self.by_recency[cf.recency], cf)
            else:
                self.fits[cf] = self._with_similarity(self.base, cf)
        return self.fits[cf]

    def _with_similarity(self, start: Fitted, cf: CollaborativeConfig) -> Fitted:
        """``start`` (the base with ``cf``'s recency) with ``cf``'s co-watching similarity."""
        start.artifacts  # built once here, shared by every similarity tried with this recency
        wide_k = max(self.wide_k, cf.k)
        base_cf = self.base.collaborative
        if _similarity_key(cf) == _similarity_key(base_cf) and cf.k == base_cf.k:
            return start.with_collaborative(cf)  # the base's own similarity
        # the top-k of a similarity is the top of its top-K (K >= k): one product serves every k of the
        # grid (equal up to ties at the k-th neighbour, where the product's own cut may pick another)
        key = _similarity_key(cf)
        if key not in self.wide:
            self.budget.spend(self.budget.refit_units)
            self.wide[key] = _RowRanked(self.base.with_collaborative(replace(base_cf, **{
                **{n: getattr(cf, n) for n in ("weighting", "bm25_k1", "bm25_b", "rp3_alpha", "rp3_beta",
                                               "ease_lambda", "ease_max_movies")},
                "k": wide_k})).sim_cf)
        return start.with_collaborative(cf, sim_cf=self.wide[key].top(cf.k))

    def recommender(self, params: RekkoParams) -> Recommender:
        """The shipped recommender for ``params``, its similarities laid out once per co-watching fit.

        :class:`rekko.recommend.kernel.Blendable` gives each candidate's
        combined similarity as an array sum (bit for bit what
        :func:`~rekko.recommend.kernel.combine` makes), instead of a sparse
        merge per candidate, which was most of the search's time.
        """
        fitted = self.fitted_for(params.collaborative)
        key = params.collaborative
        blendable = self.blendables.get(key)
        if blendable is None:
            blendable = kernel.Blendable(fitted.artifacts.sims, fitted.artifacts.movie_score, rows=self.history_movies)
            self.blendables[key] = blendable
            while len(self.blendables) > SCORERS_KEPT:  # each holds the similarities' values: a few, not one per fit
                self.blendables.popitem(last=False)
        else:
            self.blendables.move_to_end(key)
        scorer = blendable.combine(params.blend)
        return Recommender(fitted.artifacts, params.blend, scorer=scorer)

    def forget(self, alive: Sequence[RekkoParams]) -> None:
        """Drop the fits and combined similarities no live candidate or the incumbent uses (each is a full
        top-k matrix: memory stays a few of them, not one per candidate)."""
        wanted = self.keep | {p.collaborative for p in alive}
        for cf in [c for c in self.fits if c not in wanted]:
            del self.fits[cf]
        similarities = {_similarity_key(cf) for cf in wanted}
        self.wide = {k: v for k, v in self.wide.items() if k in similarities}
        recencies = {cf.recency for cf in wanted}
        self.by_recency = {k: v for k, v in self.by_recency.items() if k in recencies}
        self.blendables = OrderedDict((k, v) for k, v in self.blendables.items() if k in wanted)

    def score(self, params: RekkoParams, n: int) -> float:
        """NDCG@k of ``params`` over the first ``n`` validation users of the seeded order (memoised)."""
        key = (params, n)
        if key in self.memo:
            return self.memo[key]
        self.budget.spend(n)
        ranked = self.recommender(params).rank_rows(self.rows[:n], self.k)  # the kernel's batch path, as arrays
        relevant = self.codes[: np.searchsorted(self.codes, n * self.n_movies)]
        value = metrics.ndcg_arrays(ranked.movies, relevant, self.n_relevant[:n], self.k, self.n_movies)
        self.memo[key] = value
        self.user_evaluations += n
        self.trace.append({**params.to_dict(), "ndcg": value, "users": n})
        return value

    def rungs(self, n_candidates: int, config: TuneConfig) -> list[int]:
        """User counts of the rungs, smallest first, ending with all users.

        Halving the users per rung down to ``min_rung_users``, and no more rungs
        than it takes to cut ``n_candidates`` to one by ``eta``.
        """
        n_all = len(self.users)
        sizes = [n_all]
        wanted = 1 + math.ceil(math.log(max(n_candidates, 1), config.eta)) if n_candidates > 1 else 1
        while len(sizes) < wanted and sizes[-1] // 2 >= config.min_rung_users:
            sizes.append(sizes[-1] // 2)
        return sizes[::-1]

    def halving(self, candidates: Sequence[RekkoParams], incumbent: RekkoParams, incumbent_value: float,
                config: TuneConfig) -> tuple[RekkoParams, float]:
        """The best of ``candidates`` and the incumbent, by successive halving over validation users.

        The incumbent's value is on all users; a candidate replaces it only
        with a higher value on all users. Ties keep the earlier candidate.
        """
        alive = list(dict.fromkeys(c for c in candidates if c != incumbent))
        if not alive:
            return incumbent, incumbent_value
        self.keep = {self.base.collaborative, incumbent.collaborative}
        sizes = self.rungs(len(alive), config)
        values: list[float] = []
        for n in sizes:
            values = [self.score(c, n) for c in alive]
            if n == sizes[-1]:
                break
            keep = max(1, math.ceil(len(alive) / config.eta))
            order = sorted(range(len(alive)), key=lambda i: (-values[i], i))[:keep]
            alive = [alive[i] for i in sorted(order)]
            self.forget([incumbent, *alive])
        i = max(range(len(alive)), key=lambda j: (values[j], -j))
        self.forget([incumbent, alive[i]])
        if values[i] > incumbent_value + 1e-12:
            self.keep = {self.base.collaborative, alive[i].collaborative}
            return alive[i], values[i]
        return incumbent, incumbent_value


class _RowRanked:
    """A top-K similarity with each row's entries ranked once (value descending, column ascending: the order
    :func:`rekko.pipeline.similarity.keep_top_k` keeps), so its top-k for any k <= K is a mask, not a sort."""

    def __init__(self, matrix: sp.csr_matrix) -> None:
        m = sp.csr_matrix(matrix, dtype=np.float32)
        m.sort_indices()
        counts = np.diff(m.indptr)
        rows = np.repeat(np.arange(m.shape[0]), counts)
        slot = np.arange(m.nnz) - np.repeat(m.indptr[:-1], counts)  # place in the row (column order)
        width = int(counts.max(initial=0))
        # one short stable sort per row (rows hold <= K entries): equal values keep the column order
        padded = np.full((m.shape[0], max(width, 1)), np.inf, dtype=np.float32)
        padded[rows, slot] = -m.data
        order = np.argsort(padded, axis=1, kind="stable")
        rank_of_slot = np.empty_like(order)
        np.put_along_axis(rank_of_slot, order, np.arange(order.shape[1])[None, :], axis=1)
        self.matrix = m
        self.rank = rank_of_slot[rows, slot].astype(np.int32)
        self.rows = rows.astype(np.int32)

    def top(self, k: int) -> sp.csr_matrix:
        keep = self.rank < k
        m = self.matrix
        indptr = np.concatenate([[0], np.cumsum(np.bincount(self.rows[keep], minlength=m.shape[0]))])
        return sp.csr_matrix((m.data[keep], m.indices[keep], indptr), shape=m.shape, dtype=np.float32)


def _similarity_key(cf: CollaborativeConfig) -> tuple:
    """What decides a co-watching similarity besides ``k`` (recency and threads do not)."""
    return tuple(sorted((k, v) for k, v in cf.to_dict().items() if k not in ("k", "recency")))


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
