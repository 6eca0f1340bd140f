"""The pipeline's stages on one machine: ratings -> features -> content similarity -> co-watching, and the write.

:func:`prepare` runs every stage up to the content similarities,
:func:`add_cowatch` the co-watching stage with the parameters it is given;
:func:`compute` is both. Nothing here chooses parameters or an engine: the
orchestrator (:mod:`rekko.build`) tunes between the two halves and picks the
engine; the Dask engine (:mod:`rekko.distributed.pipeline`) reuses these
stage functions and :func:`write_result`.

The write phase (:func:`write_result`) holds the artifact set's lock: every
artifact, the chunk table and the manifest are staged beside their targets,
then renamed into place with the manifest last; the old manifest is never
removed, only replaced (see :func:`write_result`).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Union

import numpy as np
import pandas as pd

from rekko import progress
from rekko.artifacts import (
    Manifest,
    TopKSimilarity,
    describe_file,
    manifest_files,
    read_manifest_bytes,
    topk_to_bytes,
)
from rekko.columns import LIST_COLUMNS
from rekko.columns import Columns as C
from rekko.config import PipelineConfig
from rekko.exceptions import ArtifactError, DataValidationError
from rekko.io import (
    StagedFiles,
    check_replaceable,
    remove_stale_temp_files,
    sha256_file,
    table_format,
    write_frame,
    write_frames,
)
from rekko.locking import DEFAULT_LOCK_TIMEOUT, exclusive_lock
from rekko.paths import PipelinePaths
from rekko.pipeline import sources
from rekko.pipeline.collaborative import item_item_similarity
from rekko.pipeline.features import (
    aggregate_sessions,
    attach_movie_index,
    effective_duration,
    movie_features,
    recency_rank,
    user_features,
    watch_ratio,
)
from rekko.pipeline.outputs import check_output_folders, check_output_paths
from rekko.pipeline.ratings import attach_ratings
from rekko.pipeline.similarity import content_similarities

log = logging.getLogger(__name__)

#: Rows per parquet row group of interactions_upd.
USER_ROW_GROUP = 32_768


@dataclass
class StreamedTable:
    """A table too long for one process, written from consecutive frames produced on demand.

    The Dask engine's ``interactions_upd`` and ``int_coef``: ``frames()``
    yields the partitions in order (sorted by user), fetched one at a time, and
    the write phase streams them into one file (:func:`rekko.io.write_frames`).
    """

    frames: Callable[[], Iterable[pd.DataFrame]]
    rows: int


Table = Union[pd.DataFrame, StreamedTable]


@dataclass
class PipelineResult:
    """What the pipeline computed, before it is written."""

    ratings: pd.DataFrame
    movies: pd.DataFrame
    interactions: Table
    users: Table
    sim_md: TopKSimilarity
    sim_desc: TopKSimilarity
    sim_cf: TopKSimilarity | None = None
    counts: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    #: the configuration the artifacts were built with: the caller's, with what tuning chose
    config: PipelineConfig | None = None
    #: tables whose artifact is an existing file, copied byte for byte instead of written from the frame
    #: (``rekko tune`` rebuilding a set: by role, e.g. ``movies_upd``)
    kept: dict[str, Path] = field(default_factory=dict)


class Timer:
    """Seconds per stage, by name, each lap since the previous one (the manifest's ``timings_s``)."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self._t, 3)
        self._t = now


def ratings_stage(movies_raw: pd.DataFrame, ratings: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Stage 2, reported as it runs: the movies with their ratings joined, and the join's counts (both engines)."""
    with progress.stage("ratings", of=progress.count(len(ratings), "ratings")) as report:
        movies, join_stats = attach_ratings(movies_raw, ratings)
        report.facts.update({"movies with a rating": join_stats["with_rating"],
                             "with a description": join_stats["with_description"]})
    return movies, join_stats


def compute(
    interactions_raw: pd.DataFrame,
    movies_raw: pd.DataFrame,
    ratings: pd.DataFrame,
    config: PipelineConfig = PipelineConfig(),
    *,
    paths: PipelinePaths | None = None,
) -> PipelineResult:
    """Every stage on validated frames (``ingest.validate_*`` / ``clean_ratings`` output), with ``config`` as given.

    No tuning here: :func:`rekko.build.compute` tunes on the input between
    :func:`prepare` and :func:`add_cowatch`, as the pipeline does.
    """
    return prepare({"interactions": interactions_raw}, movies_raw, ratings, config, paths=paths, cowatch=True)


def prepare(held: dict[str, pd.DataFrame], movies_raw: pd.DataFrame, ratings: pd.DataFrame,
            config: PipelineConfig, *, paths: PipelinePaths | None = None, cowatch: bool = False) -> PipelineResult:
    """The stages before co-watching: ratings, features (with ``config``'s recency), content similarities.

    ``cowatch``: the co-watching stage too, with ``config.collaborative``, while the content similarities are
    still being computed (when nothing will change its settings: no tuning to come).

    Takes the interactions out of ``held``: when the caller keeps no other
    reference, each long frame is freed as soon as the next one is built (one
    or two at a time, not four: 7.4 GB peak at 30M rows before). The result
    has no ``sim_cf`` yet.
    """
    timer = Timer()
    counts: dict[str, Any] = {"interaction_rows": len(held["interactions"]), "movies": len(movies_raw),
                              "ratings_rows": len(ratings)}
    movies, counts["ratings_join"] = ratings_stage(movies_raw, ratings)
    timer.lap("ratings")
    # the content similarities read the movies only: computed in a thread beside the interaction stages (its
    # products run in C without the GIL), as the Dask engine computes them on a worker beside its partitions
    content = _Background(content_similarities, movies, config.similarity)
    interactions, users, movies, _ = _features_stage({"raw": held.pop("interactions")}, movies, config, counts,
                                                     paths)
    timer.lap("features")
    partial = PipelineResult(ratings, movies, interactions, users, None, None, None, counts=counts,  # type: ignore[arg-type]
                             timings=timer.timings, config=config)
    if cowatch:
        partial = add_cowatch(partial, config)
        timer.lap("collaborative")
    with progress.stage("content similarity", of=progress.count(len(movies), "movies")) as report:
        sim_md, sim_desc = content.result()
        counts["sim_md_nnz"] = int(sim_md.matrix.nnz)
        counts["sim_desc_nnz"] = int(sim_desc.matrix.nnz)
        counts["movies_without_description"] = int(movies[C.DESCRIPTION].isna().sum())
        report.facts.update({"metadata pairs": counts["sim_md_nnz"], "description pairs": counts["sim_desc_nnz"]})
    timer.lap("similarity")
    return replace(partial, sim_md=sim_md, sim_desc=sim_desc, counts={**partial.counts, **counts},
                   timings=dict(timer.timings))


class _Background:
    """``fn(*args)`` in a daemon thread; :meth:`result` waits for it and re-raises its error.

    A daemon thread, not an executor's: a run that fails in the main thread
    exits at once instead of waiting for the catalogue-sized work to finish.
    """

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn, args), name="rekko-content", daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            self._value = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller by result()
            self._error = exc

    def result(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


def _features_stage(holder: dict[str, pd.DataFrame], movies: pd.DataFrame, config: PipelineConfig,
                    counts: dict[str, Any], paths: PipelinePaths | None
                    ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, int]:
    """Sessions, watch ratios, recency ranks, user and movie features (``counts`` filled in as it goes).

    Takes the raw interactions out of ``holder``, so they are freed as soon as they are aggregated.
    """
    interactions_raw = holder.pop("raw")
    with progress.stage("features", of=progress.count(len(interactions_raw), "interactions")) as report:
        movie_ids = pd.Index(movies[C.MOVIE])
        known, dropped = attach_movie_index(interactions_raw, movie_ids)
        if dropped:
            where = f" ({paths.interactions})" if paths else ""
            log.warning("dropped %d of %d interactions%s whose movie_id is not in the movies metadata",
                        dropped, len(interactions_raw), where)
        if known.empty:
            raise DataValidationError(
                "no interaction refers to a movie in the metadata: check that both files use the same movie_id",
                path=str(paths.interactions) if paths else "interactions", column=C.MOVIE,
                example=interactions_raw.iloc[0].to_dict(),
            )
        counts["interactions_unknown_movie_dropped"] = dropped
        del interactions_raw
        aggregated = aggregate_sessions(known, movie_ids)
        counts["interactions_sessions_merged"] = len(known) - len(aggregated)
        del known
        duration, n_imputed = effective_duration(movies)
        counts["movies_duration_imputed"] = n_imputed
        if n_imputed:
            log.info("%d movies have no duration: using the median length of their entity type", n_imputed)
        interactions = watch_ratio(aggregated, duration, copy=False)
        del aggregated
        interactions["movie_idx"] = interactions["movie_idx"].astype(np.int32)
        interactions[C.RECENCY_RANK] = recency_rank(interactions, config.collaborative.recency).astype(np.int32)
        users = user_features(interactions)
        movies = movie_features(movies, interactions, config.movie_score)
        counts["users"] = len(users)
        counts["user_movie_pairs"] = len(interactions)
        report.rows = len(interactions)
        report.facts.update({"users": len(users), "dropped (movie not in metadata)": dropped})
    return interactions, users, movies, dropped


def add_cowatch(result: PipelineResult, config: PipelineConfig) -> PipelineResult:
    """The co-watching stage with ``config.collaborative``: ``result`` with ``sim_cf`` and ``config``."""
    t = time.perf_counter()
    interactions = result.interactions
    assert isinstance(interactions, pd.DataFrame), "the local co-watching stage reads the interactions in memory"
    with progress.stage("co-watching similarity", of=progress.count(len(interactions), "user-movie pairs")) as report:
        sim_cf = item_item_similarity(interactions, result.movies[C.MOVIE].astype(str).to_numpy(),
                                      config.collaborative)
        report.facts["pairs"] = int(sim_cf.matrix.nnz)
    counts = {**result.counts, "sim_cf_nnz": int(sim_cf.matrix.nnz)}
    timings = {**result.timings, "collaborative": round(time.perf_counter() - t, 3)}
    return replace(result, sim_cf=sim_cf, counts=counts, timings=timings, config=config)


def _movies_for_parquet(movies: pd.DataFrame) -> pd.DataFrame:
    out = movies.copy()
    for col in LIST_COLUMNS:
        if col in out.columns:
            out[col] = out[col].map(list)
    return out


def _stage_table(staged: StagedFiles, df: Table, target: Path, *,
                 row_group_size: int | None = None) -> dict[str, Any]:
    """Write ``df`` (a frame, or a :class:`StreamedTable`) to a staged file for ``target``; its manifest entry."""
    tmp = staged.stage(target)
    if isinstance(df, StreamedTable):
        rows = write_frames(df.frames(), tmp, fmt=table_format(target), row_group_size=row_group_size)
        if rows != df.rows:
            raise RuntimeError(f"{target}: streamed {rows} rows, expected {df.rows}")
    else:
        write_frame(df, tmp, fmt=table_format(target), row_group_size=row_group_size)
        rows = len(df)
    return {**describe_file(tmp, rows=rows), "path": str(target)}


def _stage_copy(staged: StagedFiles, source: Path, target: Path, rows: int) -> dict[str, Any]:
    """Stage a byte-for-byte copy of an existing artifact (its content unchanged by this run)."""
    tmp = staged.stage(target)
    shutil.copyfile(source, tmp)
    return {**describe_file(tmp, rows=rows), "path": str(target)}


def _stage_topk(staged: StagedFiles, sim: TopKSimilarity, target: Path) -> dict[str, Any]:
    """Stage a similarity artifact (:func:`rekko.artifacts.topk_to_bytes`, the format's one writer)."""
    tmp = staged.stage(target)
    tmp.write_bytes(topk_to_bytes(sim))
    return {**describe_file(tmp, rows=int(sim.matrix.shape[0])), "path": str(target)}


def _rows(table: Table) -> int:
    return table.rows if isinstance(table, StreamedTable) else len(table)


def _sorted_by_user_and_movie(df: pd.DataFrame) -> bool:
    users = df[C.USER].to_numpy()
    movies = df["movie_idx"].to_numpy()
    if len(users) < 2:
        return True
    return bool(((users[1:] > users[:-1]) | ((users[1:] == users[:-1]) & (movies[1:] > movies[:-1]))).all())


def _stage_artifacts(result: PipelineResult, paths: PipelinePaths, staged: StagedFiles) -> dict[str, dict[str, Any]]:
    """Stage P4..P9 and cos_sim_cf.pkl; the manifest's ``artifacts`` block, by role."""
    # sorted by user in small row groups: recommend for one user reads one or two groups
    # (compute returns them in that order already: no sorted copy of a 30M-row frame then)
    interactions = result.interactions
    if not isinstance(interactions, StreamedTable) and not _sorted_by_user_and_movie(interactions):
        interactions = interactions.sort_values([C.USER, "movie_idx"], kind="stable")
    tables: dict[str, tuple[Callable[[], Table], Path, int | None]] = {
        "movies_rd": (lambda: result.ratings, paths.movies_rd, None),
        "int_coef": (lambda: result.users, paths.int_coef, None),
        "movies_upd": (lambda: _movies_for_parquet(result.movies), paths.movies_upd, None),
        "interactions_upd": (lambda: interactions, paths.interactions_upd, USER_ROW_GROUP),
    }
    artifacts = {}
    for role, (table, target, row_group_size) in tables.items():
        if role in result.kept:
            artifacts[role] = _stage_copy(staged, result.kept[role], target, _rows(table()))
        else:
            artifacts[role] = _stage_table(staged, table(), target, row_group_size=row_group_size)
    artifacts["sim_md"] = _stage_topk(staged, result.sim_md, paths.sim_md)
    artifacts["sim_desc"] = _stage_topk(staged, result.sim_desc, paths.sim_desc)
    if result.sim_cf is not None:
        artifacts["sim_cf"] = _stage_topk(staged, result.sim_cf, paths.sim_cf)
    return artifacts


def write_result(result: PipelineResult, paths: PipelinePaths, config: PipelineConfig,
                 inputs: dict[str, dict[str, Any]], *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
                 engine: str = "local", expect_manifest: bytes | None = None) -> Manifest:
    """Write P4..P9, cos_sim_cf.pkl and the manifest as one set; the old set stays servable until then.

    Before anything is touched: the paths must not collide, every output
    folder must take a new file, and every existing output must be one this
    uid may replace (a sticky folder lets only a file's owner, the folder's
    owner or root rename over it): else exit 2 with the old set intact.
    Then, holding the set's lock (:mod:`rekko.locking`): temporary files of
    interrupted runs are removed, every artifact, the chunk table and the new
    manifest are staged beside their targets and flushed to disk, and only
    then renamed into place (:meth:`rekko.io.StagedFiles.publish`), the
    manifest last. The old manifest is never removed, only replaced by one
    atomic rename, so there is always a manifest, and it is the old one until
    every new artifact is in place. A failure (or kill) while staging or
    flushing leaves the old set untouched; a failing rename puts the old
    files back before the error propagates. Readers verify every byte against
    the manifest they read, so one that overlaps the few renames sees a
    mismatch and loads again (:func:`rekko.recommend.load_artifacts`; the
    server keeps its loaded set and reloads on the next change).
    Long tables may come as :class:`StreamedTable` s (the Dask engine): they
    are streamed into their staged files here, under the same lock.
    ``expect_manifest``: the manifest's bytes the caller built ``result``
    from (``rekko tune`` rebuilding a set); if another run replaced it
    meanwhile, nothing is written (:class:`~rekko.exceptions.ArtifactError`).
    """
    check_output_paths(paths)
    check_output_folders(paths, create=True)
    check_replaceable(p for p in paths.outputs().values() if p != paths.lock)
    with contextlib.ExitStack() as locks:
        for lock in paths.write_locks():  # every output folder's: sets sharing data/ exclude each other too
            locks.enter_context(exclusive_lock(lock, timeout=lock_timeout,
                                               what=f"the artifact set of {paths.manifest} (folder {lock.parent})"))
        if expect_manifest is not None and _read_or_none(paths.manifest) != expect_manifest:
            raise ArtifactError(f"{paths.manifest} changed while this run read it (another pipeline or tune "
                                "wrote the set): nothing written; run it again")
        stale = remove_stale_temp_files(p for p in paths.outputs().values() if p != paths.lock)
        if stale:
            log.warning("removed %d temporary files left by an interrupted run: %s",
                        len(stale), ", ".join(map(str, stale[:5])) + (" ..." if len(stale) > 5 else ""))
        with StagedFiles() as staged:
            manifest = Manifest(
                parameters=config.to_manifest(),
                counts={**result.counts, "timings_s": result.timings},
                inputs=inputs,
                artifacts=_stage_artifacts(result, paths, staged),
                engine=engine,
            )
            for target, data in manifest_files(manifest, paths.manifest):  # the manifest is staged last
                staged.stage(target).write_bytes(data)
            staged.publish()
    return manifest


def _read_or_none(path: Path) -> bytes | None:
    try:
        return read_manifest_bytes(path)
    except (ArtifactError, OSError):
        return None


def input_fingerprints(paths: PipelinePaths, parts: list | None = None) -> dict[str, dict[str, Any]]:
    """sha256 of each input file; a partitioned interactions input lists its parts (:func:`sources.fingerprints`)."""
    out = {
        role: {"path": str(p), "sha256": sha256_file(p)}
        for role, p in (("interactions", paths.interactions), ("movies", paths.movies), ("ratings", paths.ratings))
        if not isinstance(p, str) and p.is_file()
    }
    if "interactions" not in out:
        out["interactions"] = sources.fingerprints(paths.interactions, parts or sources.resolve_parts(
            paths.interactions))
    return out
