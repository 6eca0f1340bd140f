"""``rekko pipeline --engine dask``: the interaction stages on a Dask cluster, the same artifacts as the local engine.

Plan (no step gathers all interactions into one process):

1. **Read** (workers): each part of the interactions input (one file, a folder,
   a glob, an ``s3://`` prefix: :mod:`rekko.pipeline.sources`) is read and
   validated on a worker by the local engine's own function
   (:func:`rekko.pipeline.ingest.validate_interactions`, via
   :func:`rekko.pipeline.ingest.load_part`), so a bad part fails naming the
   part, the column and an example row; its movie ids become ``movie_idx``
   there (:func:`rekko.pipeline.features.attach_movie_index`, unknown movies
   counted).
2. **Partition by user range** (Dask futures): boundaries from a sample of
   each part's users, each part split by range, each range's pieces
   concatenated on a worker: user-ordered partitions, every row of a user in
   one partition. (``dask.dataframe``'s ``set_index`` did the same with its
   quantile pass and shuffle at several times the cost at 1M rows.)
3. **Per user partition** (workers): the local engine's functions unchanged,
   :func:`~rekko.pipeline.features.aggregate_sessions`,
   :func:`~rekko.pipeline.features.watch_ratio`,
   :func:`~rekko.pipeline.features.recency_rank` (every mode: a user's rank
   needs only the user's rows; ``auto`` is resolved from a cluster-wide
   reduction first) and :func:`~rekko.pipeline.features.user_features`.
   The result stays on the workers (persisted, spilled to disk under memory
   pressure).
4. **Per movie** (reduced to the client, movies-sized):
   :func:`~rekko.pipeline.features.movie_stats` summed over partitions, then
   :func:`~rekko.pipeline.features.movie_features_from_stats`.
5. **Co-watching** (:mod:`rekko.distributed.cowatch`): partial products per
   user partition and movie block, tree-reduced, top-k per movie.
6. **Content similarities** run on ONE worker (``client.submit`` of
   :func:`rekko.pipeline.similarity.content_similarities`): they are
   catalogue-sized (200k movies is one machine's work) and start as soon as
   the ratings are joined, beside the interaction stages.
Between 4 and 5 the orchestrator (:mod:`rekko.build`) tunes exactly as on
the local engine: :func:`tuning_frame` gathers the columns the tuning reads
(user, movie index, ratio, date, recency rank: about 32 bytes a row) in the local engine's row
order, so both engines choose the same parameters; a changed recency mode is
re-ranked on the workers (:func:`rerank`).

7. **Write** (client): :func:`rekko.pipeline.run.write_result`, the local
   engine's staged, locked write, with ``interactions_upd`` and ``int_coef``
   streamed from the workers one partition at a time into one file each, in
   the local engine's row-group layout (sorted by user, then movie); the
   manifest records ``engine: dask``.

The client holds the movies, the ratings, movies-sized statistics, the
similarity artifacts (O(movies x k)) and one partition at a time while writing.
"""

from __future__ import annotations

import logging
import operator
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from rekko import progress
from rekko.artifacts import TopKSimilarity
from rekko.columns import Columns as C
from rekko.config import PipelineConfig
from rekko.distributed.cluster import tree_reduce
from rekko.distributed.cowatch import BLOCK_ENTRIES, cowatch_similarity
from rekko.exceptions import DataValidationError, InputFileError, shorten
from rekko.pipeline.features import (
    add_movie_stats,
    aggregate_sessions,
    attach_movie_index,
    effective_duration,
    movie_features_from_stats,
    movie_stats,
    recency_rank,
    user_features,
    watch_ratio,
)
from rekko.pipeline.run import PipelineResult, StreamedTable, Timer, ratings_stage
from rekko.pipeline.similarity import content_similarities
from rekko.pipeline.ingest import load_part
from rekko.pipeline.sources import Part

log = logging.getLogger(__name__)

MOVIE_IDX = "movie_idx"
#: Target rows per user partition after the shuffle (the partition is the unit a worker holds and the writer streams).
ROWS_PER_PARTITION = 1_000_000


def read_indexed_part(part: Part, movie_ids: pd.Index) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read and validate one part on a worker; its rows with ``movie_idx`` (known movies only) and its counts.

    A worker may run as another user or on another machine than the client: an input it cannot
    open is bad input naming the part and the worker's uid (exit 2), not an unexpected error.
    """
    try:
        raw = load_part(part)
    except OSError as exc:
        raise InputFileError(f"{part.name}: a Dask worker (uid {os.geteuid()}) cannot read this interactions "
                             f"part: {type(exc).__name__}: {shorten(exc.strerror or str(exc), 300)}") from None
    known, dropped = attach_movie_index(raw, movie_ids)
    counts = {"rows": len(raw), "dropped": dropped,
              "example": raw.iloc[0].to_dict() if len(raw) else None}
    del raw
    frame = pd.DataFrame({C.USER: known[C.USER].to_numpy(), MOVIE_IDX: known[MOVIE_IDX].to_numpy(np.int32),
                          C.WATCHED_MINUTES: known[C.WATCHED_MINUTES].to_numpy(),
                          C.DATETIME: known[C.DATETIME].to_numpy()}, copy=False)
    return frame, counts


def user_partition(shuffled: pd.DataFrame, n_movies: int, duration: np.ndarray) -> pd.DataFrame:
    """One user partition: sessions aggregated and watch ratios, as the local features stage makes them.

    Sorted by user, then movie (``aggregate_sessions``'s order); ``movie_id``
    is left out (the writer adds it from ``movie_idx``).
    """
    df = shuffled.reset_index() if shuffled.index.name == C.USER else shuffled
    df = df.astype({MOVIE_IDX: np.int64}, copy=False)
    agg = aggregate_sessions(df, pd.RangeIndex(n_movies))
    del df
    agg = agg.drop(columns=[C.MOVIE])
    out = watch_ratio(agg, duration, copy=False)
    out[MOVIE_IDX] = out[MOVIE_IDX].astype(np.int32)
    return out


#: Users sampled per part to place the partition boundaries (quantiles of the sample).
SAMPLE_USERS = 10_000


def user_sample(frame: pd.DataFrame) -> np.ndarray:
    """Up to :data:`SAMPLE_USERS` evenly spaced distinct user ids of a part (for the boundaries)."""
    user = frame[C.USER].to_numpy()
    if len(user) > 20 * SAMPLE_USERS:  # evenly spaced rows first: np.unique of a whole part is the cost
        user = user[np.linspace(0, len(user) - 1, 20 * SAMPLE_USERS).astype(np.int64)]
    users = np.unique(user)
    if len(users) <= SAMPLE_USERS:
        return users
    return users[np.linspace(0, len(users) - 1, SAMPLE_USERS).astype(np.int64)]


def user_cuts(samples: list[np.ndarray], n_out: int) -> np.ndarray:
    """At most ``n_out - 1`` increasing user ids cutting the sampled users into equal ranges."""
    users = np.unique(np.concatenate(samples)) if samples else np.zeros(0, np.int64)
    if n_out <= 1 or len(users) < 2:
        return users[:0]
    cuts = users[np.linspace(0, len(users), n_out + 1).astype(np.int64)[1:-1].clip(0, len(users) - 1)]
    return np.unique(cuts)


def split_by_user(frame: pd.DataFrame, cuts: np.ndarray) -> list[pd.DataFrame]:
    """``frame``'s rows by user range: piece ``j`` holds users in ``[cuts[j-1], cuts[j])`` (a user in one piece)."""
    target = np.searchsorted(cuts, frame[C.USER].to_numpy(), side="right")
    order = np.argsort(target, kind="stable")
    bounds = np.searchsorted(target[order], np.arange(len(cuts) + 2))
    return [frame.iloc[order[bounds[j]:bounds[j + 1]]].reset_index(drop=True) for j in range(len(cuts) + 1)]


def user_partition_from_pieces(n_movies: int, duration: np.ndarray, *pieces: pd.DataFrame) -> pd.DataFrame:
    """One user range's pieces from every part, concatenated, then :func:`user_partition`."""
    frame = pd.concat(pieces, ignore_index=True) if len(pieces) > 1 else pieces[0]
    return user_partition(frame, n_movies, duration)


def with_recency(part: pd.DataFrame, mode: str) -> pd.DataFrame:
    """Add ``recency_rank`` (``mode`` resolved: not ``auto``) per user, exactly as the local engine does."""
    part = part.copy(deep=False)
    part[C.RECENCY_RANK] = recency_rank(part, mode).astype(np.int32)
    return part


def date_flags(part: pd.DataFrame) -> tuple[bool, bool]:
    """(any dated watch, every dated watch at midnight): ``dates_only`` of the whole log is ``all(...)`` of them."""
    t = part[C.DATETIME].dropna()
    if t.empty:
        return False, True
    return True, bool((t == t.dt.normalize()).all())


def partition_summary(part: pd.DataFrame, n_movies: int) -> dict[str, Any]:
    """Movie statistics, user count, pair count and the date flags of one partition (all additive or and-able)."""
    dated, midnight = date_flags(part)
    return {"movies": movie_stats(part, n_movies), "users": int(part[C.USER].nunique()), "pairs": len(part),
            "dated": dated, "midnight": midnight}


def _add_summaries(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {"movies": add_movie_stats(a["movies"], b["movies"]), "users": a["users"] + b["users"],
            "pairs": a["pairs"] + b["pairs"], "dated": a["dated"] or b["dated"],
            "midnight": a["midnight"] and b["midnight"]}


def _interactions_frame(part: pd.DataFrame, movie_ids: pd.Index) -> pd.DataFrame:
    """A worker partition in ``interactions_upd``'s columns and dtypes (movie_id categorical over every movie)."""
    idx = part[MOVIE_IDX].to_numpy()
    out = part.copy(deep=False)
    out.insert(1, C.MOVIE, pd.Categorical.from_codes(idx, categories=movie_ids))
    return out


def _stream(client: Any, futures: list[Any], convert: Any) -> Any:
    """Yield ``convert(partition)`` in partition (user) order, fetching one partition at a time to the client."""
    for future in futures:
        frame = future.result()
        yield convert(frame)
        del frame


@dataclass
class ClusterBuild:
    """The stages before co-watching on a cluster: movies-sized results here, the user partitions on the workers."""

    client: Any
    ratings: pd.DataFrame
    movies: pd.DataFrame
    movie_ids: pd.Index
    #: futures of the user partitions (recency-ranked) and of their user features, in user order
    ranked: list[Any]
    users_parts: list[Any]
    #: future of ``(sim_md, sim_desc)``, computed on one worker
    content: Any
    pairs: int
    users: int
    mode: str
    counts: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def content_similarities(self) -> tuple[TopKSimilarity, TopKSimilarity]:
        return self.content.result()


def prepare_on_cluster(client: Any, parts: list[Part], movies_raw: pd.DataFrame, ratings: pd.DataFrame,
                       config: PipelineConfig, *, source: str = "interactions") -> ClusterBuild:
    """:func:`rekko.pipeline.run.prepare` with the interaction stages on ``client``'s cluster."""
    from distributed import wait

    timer = Timer()
    counts: dict[str, Any] = {"movies": len(movies_raw), "ratings_rows": len(ratings)}
    movies, counts["ratings_join"] = ratings_stage(movies_raw, ratings)
    timer.lap("ratings")
    # catalogue-sized: one worker computes both, beside the interaction stages
    content = client.submit(content_similarities, client.scatter(movies), config.similarity, pure=False)

    movie_ids = pd.Index(movies[C.MOVIE])
    n_movies = len(movie_ids)
    with progress.stage("features", of=f"{len(parts)} interaction parts on the cluster") as report:
        started = time.perf_counter()
        ids_future = client.scatter(movie_ids, broadcast=True)
        read = client.map(read_indexed_part, parts, movie_ids=ids_future, pure=False)
        read_counts = client.gather([client.submit(operator.getitem, f, 1) for f in read])
        frames = [client.submit(operator.getitem, f, 0) for f in read]
        rows = sum(c["rows"] for c in read_counts)
        empty = [part.name for part, c in zip(parts, read_counts, strict=True) if c["rows"] == 0]
        if len(empty) == len(parts):
            raise DataValidationError(f"no interactions: all {len(parts)} parts have no rows", path=source)
        if empty:
            log.warning("skipped %d of %d interaction parts with no rows: %s", len(empty), len(parts),
                        ", ".join(empty[:5]) + (" ..." if len(empty) > 5 else ""))
        dropped = sum(c["dropped"] for c in read_counts)
        counts["interaction_rows"] = rows
        if dropped:
            log.warning("dropped %d of %d interactions (%s) whose movie_id is not in the movies metadata",
                        dropped, rows, source)
        if rows == dropped:
            example = next((c["example"] for c in read_counts if c["example"] is not None), None)
            raise DataValidationError(
                "no interaction refers to a movie in the metadata: check that both files use the same movie_id",
                path=source, column=C.MOVIE, example=example)
        counts["interactions_unknown_movie_dropped"] = dropped
        duration, n_imputed = effective_duration(movies)
        counts["movies_duration_imputed"] = n_imputed
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        # at least one partition per worker (all of them work), about ROWS_PER_PARTITION rows each
        n_out = max(n_workers, int(np.ceil((rows - dropped) / ROWS_PER_PARTITION)))
        cuts = user_cuts(client.gather([client.submit(user_sample, f) for f in frames]), n_out)
        duration_future = client.scatter(duration, broadcast=True)
        split = [client.submit(split_by_user, f, cuts) for f in frames]
        pieces = [[client.submit(operator.getitem, f, j) for f in split] for j in range(len(cuts) + 1)]
        pair_parts = [client.submit(user_partition_from_pieces, n_movies, duration_future, *range_pieces)
                      for range_pieces in pieces]
        wait(pair_parts)
        # every intermediate future is held until its dependents are done: a future released while its
        # dependent's graph is still on its way to the scheduler is forgotten ("lost dependencies")
        del read, frames, split, pieces
        log.info("features: read %d parts, range-partitioned by user into %d partitions, sessions aggregated "
                 "(%.1f s)", len(parts), len(pair_parts), time.perf_counter() - started)
        summary = tree_reduce(client, [client.submit(partition_summary, p, n_movies) for p in pair_parts],
                              _add_summaries)
        counts["interactions_sessions_merged"] = (rows - dropped) - summary["pairs"]
        mode = config.collaborative.recency
        if mode == "auto":
            mode = "dense" if summary["dated"] and summary["midnight"] else "order"
        ranked = [client.submit(with_recency, p, mode) for p in pair_parts]
        wait(ranked)
        del pair_parts
        users_parts = [client.submit(user_features, p) for p in ranked]
        movies = movie_features_from_stats(movies, summary["movies"], config.movie_score)
        counts["users"] = summary["users"]
        counts["user_movie_pairs"] = summary["pairs"]
        report.rows = summary["pairs"]
        report.facts.update({"users": summary["users"], "partitions": len(ranked),
                             "dropped (movie not in metadata)": dropped})
    timer.lap("features")
    return ClusterBuild(client, ratings, movies, movie_ids, ranked, users_parts, content, summary["pairs"],
                        summary["users"], mode, counts, timer.timings)


def _tuning_columns(part: pd.DataFrame) -> pd.DataFrame:
    """What the tuning reads of one partition, as the local engine's interactions hold it."""
    return part[[C.USER, MOVIE_IDX, C.WATCH_RATIO, C.DATETIME, C.RECENCY_RANK]]


def tuning_frame(build: ClusterBuild) -> pd.DataFrame:
    """The partitions' tuning columns gathered in user order: the rows the local engine's tuning sees."""
    client = build.client
    parts = client.gather([client.submit(_tuning_columns, p) for p in build.ranked])
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def rerank(build: ClusterBuild, mode: str) -> None:
    """Recompute the partitions' recency ranks by ``mode`` on the workers (after tuning chose another mode)."""
    from distributed import wait

    if mode == "auto":
        mode = build.mode if build.mode != "auto" else "order"
    if mode == build.mode:
        return
    ranked = [build.client.submit(with_recency, p, mode) for p in build.ranked]
    wait(ranked)
    build.ranked, build.mode = ranked, mode
    build.users_parts = [build.client.submit(user_features, p) for p in ranked]


def finish_on_cluster(build: ClusterBuild, config: PipelineConfig, *,
                      block_entries: int | None = None) -> PipelineResult:
    """The co-watching stage on the cluster, the content similarities fetched: the result to write.

    Its interactions and users are :class:`~rekko.pipeline.run.StreamedTable` s
    (fetched from the workers while the write phase streams them); keep the
    client open until written.
    """
    client, movies, counts = build.client, build.movies, dict(build.counts)
    timer = Timer()
    n_movies = len(build.movie_ids)
    with progress.stage("co-watching similarity", of=progress.count(build.pairs, "user-movie pairs")) as report:
        cf = cowatch_similarity(client, build.ranked, n_movies, config.collaborative,
                                block_entries=block_entries or BLOCK_ENTRIES)
        sim_cf = TopKSimilarity(movies[C.MOVIE].astype(str).to_numpy(), cf)
        counts["sim_cf_nnz"] = int(cf.nnz)
        report.facts["pairs"] = counts["sim_cf_nnz"]
    timer.lap("collaborative")
    with progress.stage("content similarity (one worker)", of=progress.count(n_movies, "movies")) as report:
        sim_md, sim_desc = build.content_similarities()
        counts["sim_md_nnz"] = int(sim_md.matrix.nnz)
        counts["sim_desc_nnz"] = int(sim_desc.matrix.nnz)
        counts["movies_without_description"] = int(movies[C.DESCRIPTION].isna().sum())
        report.facts.update({"metadata pairs": counts["sim_md_nnz"], "description pairs": counts["sim_desc_nnz"]})
    timer.lap("similarity")
    ranked, users_parts, movie_ids = build.ranked, build.users_parts, build.movie_ids
    interactions = StreamedTable(lambda: _stream(client, ranked, lambda p: _interactions_frame(p, movie_ids)),
                                 rows=build.pairs)
    users = StreamedTable(lambda: _stream(client, users_parts, lambda p: p), rows=build.users)
    return PipelineResult(build.ratings, movies, interactions, users, sim_md, sim_desc, sim_cf, counts=counts,
                          timings={**build.timings, **timer.timings}, config=config)
