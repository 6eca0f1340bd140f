"""The orchestrator: the one thing the CLI calls to build an artifact set.

It picks the engine and runs, in order: the stages before co-watching
(:func:`rekko.pipeline.run.prepare`, or
:func:`rekko.distributed.pipeline.prepare_on_cluster`), the pipeline's own
tuning (:mod:`rekko.tuning.auto`, the same on both engines), the co-watching
stage with what tuning chose, and the staged, locked write
(:func:`rekko.pipeline.run.write_result`). The pipeline's stage modules know
nothing of engines or tuning; the engines know nothing of each other.

A co-watching family an engine cannot build is refused here, before any
input is read (exit 2, naming the family and the engine).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from rekko import progress
from rekko.artifacts import Manifest, read_manifest
from rekko.columns import Columns as C
from rekko.config import PipelineConfig, RekkoParams, SimilarityConfig
from rekko.exceptions import ArtifactError, ConfigError
from rekko.locking import DEFAULT_LOCK_TIMEOUT
from rekko.paths import PipelinePaths
from rekko.pipeline import ingest
from rekko.pipeline.collaborative import family
from rekko.pipeline.features import recency_rank
from rekko.pipeline.outputs import check_outputs
from rekko.pipeline.run import PipelineResult, Timer, add_cowatch, input_fingerprints, prepare, write_result
from rekko.tuning import auto

log = logging.getLogger(__name__)

ENGINES = ("local", "dask")


def tune_step(interactions: pd.DataFrame, movies: pd.DataFrame, sims: Callable[[], tuple], config: PipelineConfig,
              *, clock: Callable[[], float] = time.perf_counter) -> PipelineConfig:
    """The pipeline's own tuning (both engines): ``config`` with what it chose and its summary.

    Skipped when ``rekko tune``'s parameters are kept (``config.tuned`` from
    it, autotune off): they are applied as they are.
    """
    if not config.autotune.enabled and config.tuned is not None:
        return config
    with progress.stage("tuning", of=f"work budget {config.autotune.work_budget:,} units") as report:
        sim_md, sim_desc = sims()
        outcome = auto.tune_on_input(interactions, movies, sim_md, sim_desc, config, clock=clock)
        report.facts["status"] = outcome.summary["status"]
    return auto.apply(config, outcome)


def compute(interactions_raw: pd.DataFrame, movies_raw: pd.DataFrame, ratings: pd.DataFrame,
            config: PipelineConfig = PipelineConfig(), *, paths: PipelinePaths | None = None,
            clock: Callable[[], float] = time.perf_counter) -> PipelineResult:
    """The local engine in memory: every stage, the pipeline's own tuning between them (as ``rekko pipeline``)."""
    return _compute_local({"interactions": interactions_raw}, movies_raw, ratings, config, paths=paths, clock=clock)


def _compute_local(held: dict[str, pd.DataFrame], movies_raw: pd.DataFrame, ratings: pd.DataFrame,
                   config: PipelineConfig, *, paths: PipelinePaths | None,
                   clock: Callable[[], float] = time.perf_counter) -> PipelineResult:
    # without tuning to come the co-watching settings are known: that stage runs beside the content similarities
    result = prepare(held, movies_raw, ratings, config, paths=paths, cowatch=not config.autotune.enabled)
    t = time.perf_counter()
    assert isinstance(result.interactions, pd.DataFrame)
    tuned = tune_step(result.interactions, result.movies, lambda: (result.sim_md, result.sim_desc), config,
                      clock=clock)
    timings = dict(result.timings)
    if tuned is not config:
        timings["tuning"] = round(time.perf_counter() - t, 3)
        if tuned.collaborative.recency != config.collaborative.recency:
            result.interactions[C.RECENCY_RANK] = recency_rank(result.interactions,
                                                               tuned.collaborative.recency).astype(np.int32)
    result = replace(result, timings=timings)
    return add_cowatch(result, tuned) if result.sim_cf is None else replace(result, config=tuned)


def run_pipeline(paths: PipelinePaths = PipelinePaths(), config: PipelineConfig = PipelineConfig(),
                 *, ratings_extra: pd.DataFrame | None = None,
                 lock_timeout: float = DEFAULT_LOCK_TIMEOUT, engine: str = "local",
                 scheduler: str | None = None, n_workers: int | None = None,
                 memory_limit: str | int | None = None,
                 block_entries: int | None = None) -> tuple[PipelineResult, Manifest]:
    """Check the output paths, read the inputs, run every stage on ``engine``, write the artifacts and the manifest.

    The output checks come first so a run that cannot write fails in a
    second, not after the whole computation; so does an engine that cannot
    build the configured co-watching family.
    """
    if engine not in ENGINES:
        raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    family(config.collaborative, engine)  # refused before any work
    check_outputs(paths)
    if engine == "dask":
        return _run_dask(paths, config, ratings_extra=ratings_extra, lock_timeout=lock_timeout, scheduler=scheduler,
                         n_workers=n_workers, memory_limit=memory_limit, block_entries=block_entries)
    timer = Timer()
    with progress.stage("ingest") as report:
        held = {"interactions": ingest.load_interactions(paths.interactions)}  # compute frees it once used
        movies = ingest.load_movies(paths.movies)
        ratings = ingest.load_ratings(paths.ratings, extra=ratings_extra)
        report.facts.update(interactions=len(held["interactions"]), movies=len(movies), ratings=len(ratings))
    timer.lap("ingest")
    result = _compute_local(held, movies, ratings, config, paths=paths)
    return _write(result, paths, {**timer.timings, **result.timings}, input_fingerprints(paths),
                  lock_timeout=lock_timeout, engine="local")


def _write(result: PipelineResult, paths: PipelinePaths, timings: dict[str, float], inputs: dict,
           *, lock_timeout: float, engine: str) -> tuple[PipelineResult, Manifest]:
    result.timings = timings
    t = time.perf_counter()
    with progress.stage("write artifacts"):
        manifest = write_result(result, paths, result.config or PipelineConfig(), inputs,
                                lock_timeout=lock_timeout, engine=engine)
    result.timings["write"] = round(time.perf_counter() - t, 3)
    return result, manifest


def _run_dask(paths: PipelinePaths, config: PipelineConfig, *, ratings_extra: pd.DataFrame | None,
              lock_timeout: float, scheduler: str | None, n_workers: int | None,
              memory_limit: str | int | None, block_entries: int | None) -> tuple[PipelineResult, Manifest]:
    """The Dask engine: the interaction stages on the cluster, tuning as on the local engine, the same write."""
    # optional dependency: imported only for --engine dask
    from rekko.distributed import pipeline as cluster_pipeline
    from rekko.distributed.cluster import connect
    from rekko.pipeline.sources import Part, redact, resolve_parts

    if logging.getLogger().getEffectiveLevel() > logging.INFO:  # without -v: Dask's own INFO chatter stays out
        logging.getLogger("distributed").setLevel(logging.WARNING)
    timer = Timer()
    with progress.stage("ingest") as report:
        # workers run in other folders (or on other machines sharing the mount): local parts go by absolute path
        parts = [p if p.remote else Part(str(Path(p.location).absolute())) for p in resolve_parts(paths.interactions)]
        movies = ingest.load_movies(paths.movies)
        ratings = ingest.load_ratings(paths.ratings, extra=ratings_extra)
        report.facts.update({"interaction parts": len(parts), "movies": len(movies), "ratings": len(ratings)})
    timer.lap("ingest")
    with connect(scheduler, n_workers=n_workers, memory_limit=memory_limit) as client:
        build = cluster_pipeline.prepare_on_cluster(client, parts, movies, ratings, config,
                                                    source=redact(str(paths.interactions)))
        t = time.perf_counter()
        tuned = config
        if config.autotune.enabled or config.tuned is None:
            tuned = tune_step(cluster_pipeline.tuning_frame(build), build.movies, build.content_similarities, config)
            build.timings["tuning"] = round(time.perf_counter() - t, 3)
            if tuned.collaborative.recency != config.collaborative.recency:
                cluster_pipeline.rerank(build, tuned.collaborative.recency)
        result = cluster_pipeline.finish_on_cluster(build, tuned, block_entries=block_entries)
        return _write(result, paths, {**timer.timings, **result.timings}, input_fingerprints(paths, parts),
                      lock_timeout=lock_timeout, engine="dask")


def tuned_config(manifest_path: Path, base: PipelineConfig) -> PipelineConfig | None:
    """``base`` with the blend and co-watching settings ``rekko tune`` stored in a manifest, or None.

    Rebuilding the artifacts must not silently throw away a tuning run: a
    manifest whose parameters carry a ``tuned`` summary of ``rekko tune``
    keeps its blend and collaborative settings across pipeline runs, and the
    pipeline's own tuning is then off (``--default-params`` drops them and
    tunes again). A summary the pipeline wrote itself (``source =
    "pipeline"``) is not kept: each run tunes on its own input.
    """
    try:
        stored = PipelineConfig.from_manifest(read_manifest(manifest_path).parameters)
        if not stored.tuned or stored.tuned.get("source") == "pipeline":  # the pipeline's own: tuned again
            return None
        tuned = RekkoParams.from_dict(stored.tuned.get("parameters") or {}, where="parameters.tuned.parameters")
    except (ArtifactError, ConfigError):
        return None
    collaborative = tuned.collaborative if (stored.tuned.get("parameters") or {}).get("collaborative") \
        else stored.collaborative
    # an explicit `rekko tune` run wins over the pipeline's own tuning, which would replace it
    return replace(base, blend=stored.blend, collaborative=replace(collaborative, n_threads=base.collaborative.n_threads),
                   tuned=stored.tuned, autotune=replace(base.autotune, enabled=False))


def run_with_enrichment(paths: PipelinePaths = PipelinePaths(), *, top_k: int = 100,
                        config: PipelineConfig | None = None,
                        keep_tuned: bool = True,
                        tune: bool = True,
                        tune_budget: float | None = None,
                        lock_timeout: float = DEFAULT_LOCK_TIMEOUT, engine: str = "local",
                        scheduler: str | None = None) -> tuple[PipelineResult, Manifest]:
    """The pipeline as the CLI and the entrypoint run it.

    With ``REKKO_API_KEY`` set, titles the API cache lacks are fetched first
    (``rekko enrich``); with or without a key, an existing cache beside the
    ratings file adds its rows to the ratings the pipeline joins. Parameters
    found by ``rekko tune`` in the current manifest are kept unless
    ``keep_tuned`` is false; otherwise the pipeline tunes on its input unless
    ``tune`` is false (``tune_budget``: an explicit cap in seconds on top of
    the work budget). ``lock_timeout`` is how long the write phase waits for
    another run writing the same artifact set.
    """
    cfg = config or PipelineConfig(similarity=SimilarityConfig(k=top_k))
    if config is None:
        cfg = replace(cfg, autotune=replace(cfg.autotune, enabled=tune, budget_s=tune_budget))
    tuned = tuned_config(paths.manifest, cfg) if keep_tuned and config is None else None
    if tuned is not None:
        log.warning("keeping the blend and co-watching parameters `rekko tune` stored in %s "
                    "(--default-params to drop them)", paths.manifest)
        cfg = tuned
    family(cfg.collaborative, engine)  # refused before any network traffic or input is read
    extra = None
    try:
        from rekko.enrich import EnrichSettings, default_cache_path, enrich_titles, read_cache_as_ratings
    except ImportError:  # built without the enrichment client
        return run_pipeline(paths, cfg, lock_timeout=lock_timeout, engine=engine, scheduler=scheduler)
    cache_path = default_cache_path(paths.ratings)
    if os.environ.get("REKKO_API_KEY"):
        movies = ingest.load_movies(paths.movies)  # validate before any network traffic
        titles = movies[[c for c in (C.TITLE, C.RELEASE_YEAR) if c in movies.columns]]
        summary = enrich_titles(titles, cache_path, EnrichSettings.from_env(), legacy_path=paths.ratings)
        log.info("enrichment: %s", summary)
    journal = cache_path.parent / f".{cache_path.name}.journal"
    if cache_path.exists() or journal.exists():
        extra = read_cache_as_ratings(cache_path)
    return run_pipeline(paths, cfg, ratings_extra=extra, lock_timeout=lock_timeout, engine=engine,
                        scheduler=scheduler)
