"""The Recommender: loaded artifacts, the kernel's answers, and why each movie was chosen.

Scoring, candidates and ranking live in :mod:`rekko.recommend.kernel` (its
docstring has the formula and the candidate proof); this module loads what the
kernel needs, calls it for one user or for many, and explains the answer:
``based_on`` is the watched movie contributing most to a recommendation, the
components are the score's parts.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

from rekko.artifacts import (
    ChunkTable,
    Manifest,
    VerifiedFile,
    read_manifest,
    read_topk,
    read_topk_rows,
    read_verified,
    verify_file,
)
from rekko.columns import Columns as C
from rekko.config import BlendWeights
from rekko.exceptions import ArtifactError, ConfigError
from rekko.locking import writer_active
from rekko.paths import ArtifactPaths
from rekko.recommend import kernel
from rekko.recommend.kernel import SIM_KINDS, History, RankedBlock

log = logging.getLogger(__name__)

_SIM_COLUMN = {"md": C.SIM_MD, "desc": C.SIM_DESC, "cf": C.SIM_CF}

#: Loads of an artifact set tried while a pipeline is publishing it (each after LOAD_RETRY_WAIT seconds).
LOAD_ATTEMPTS = 5
LOAD_RETRY_WAIT = 0.2

#: Users ranked per kernel call in batch, at most; fewer when n is large (see BATCH_BLOCK_BYTES).
BATCH_BLOCK = 65_536
#: Memory one batch block of results may take: bounds batch memory at any n.
BATCH_BLOCK_BYTES = 256 * 2**20


def validate_n(n: object) -> int:
    """``n`` must be an integer >= 1 (a bool or float is not)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        try:
            text = str(n).strip()
            if not text.lstrip("+").isdigit():
                raise ValueError
            n = int(text)
        except ValueError:
            raise ConfigError(f"number of recommendations must be an integer >= 1, got {n!r}") from None
    if n < 1:
        raise ConfigError(f"number of recommendations must be an integer >= 1, got {n}")
    return int(n)


def dense_block(m: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``m[rows][:, cols]`` as a dense float64 array, straight from the CSR arrays.

    The server explains every answer with a few of these; scipy's fancy
    indexing costs ~0.1 ms a call in validation alone, this a few microseconds.
    """
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    out = np.zeros((len(rows), len(cols)), dtype=np.float64)
    if not len(rows) or not len(cols):
        return out
    starts = m.indptr[rows].astype(np.int64)
    lengths = m.indptr[rows + 1].astype(np.int64) - starts
    total = int(lengths.sum())
    if total == 0:
        return out
    offsets = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(total)
    found, values = m.indices[offsets], m.data[offsets]
    owner = np.repeat(np.arange(len(rows)), lengths)
    order = np.argsort(cols, kind="stable")
    sorted_cols = cols[order]
    at = np.minimum(np.searchsorted(sorted_cols, found), len(cols) - 1)
    hit = sorted_cols[at] == found
    out[owner[hit], order[at[hit]]] = values[hit]
    return out


def unique_sorted(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values and the row boundaries of each, for values already sorted (O(n), no hashing)."""
    if len(values) == 0:
        return values[:0], np.zeros(1, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate(([True], values[1:] != values[:-1])))
    return values[starts], np.append(starts, len(values)).astype(np.int64)


def history_from_frame(interactions: pd.DataFrame, n_movies: int) -> tuple[np.ndarray, History]:
    """Sorted user ids and their histories from ``interactions_upd`` rows (any order; one row per pair)."""
    users = interactions[C.USER].to_numpy(dtype=np.int64)
    movies = interactions["movie_idx"].to_numpy(dtype=np.int64)
    if len(movies) and (movies.min() < 0 or movies.max() >= n_movies):
        raise ArtifactError("interactions refer to movie indices outside the movies artifact")
    ratio = interactions[C.WATCH_RATIO].to_numpy(dtype=np.float32)
    recency = (interactions[C.RECENCY_RANK].to_numpy(dtype=np.int32) if C.RECENCY_RANK in interactions.columns
               else np.zeros(len(users), dtype=np.int32))
    if len(users) > 1 and not ((users[1:] > users[:-1]) | ((users[1:] == users[:-1]) & (movies[1:] > movies[:-1]))).all():
        order = np.lexsort((movies, users))  # the pipeline writes them sorted; anything else is sorted here
        users, movies, ratio, recency = users[order], movies[order], ratio[order], recency[order]
        if len(users) > 1 and ((users[1:] == users[:-1]) & (movies[1:] == movies[:-1])).any():
            raise ArtifactError("interactions artifact has duplicate (user, movie) rows")
    if len(recency) and recency.min() < 0:
        raise ArtifactError("interactions artifact has negative recency ranks")
    user_ids, indptr = unique_sorted(users)
    return user_ids, History(indptr, movies.astype(np.int32), ratio, recency)


@dataclass
class Artifacts:
    """Everything recommend needs, aligned to one dense movie order.

    ``history`` keeps raw watch ratios and recency ranks: the kernel applies the
    recency half-life, so one Artifacts serves every blend. ``sim_rows`` is
    None when ``sims`` hold every movie's row; the one-user loader sets it to
    the user's watched movies, whose rows alone were read.
    """

    movie_ids: np.ndarray
    titles: np.ndarray
    movie_score: np.ndarray
    user_ids: np.ndarray  # sorted int64
    history: History
    sims: dict[str, sp.csr_matrix]
    manifest: Manifest | None = None
    sim_rows: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.movie_ids)
        if self.history.n_users != len(self.user_ids):
            raise ArtifactError(f"history has {self.history.n_users} users, user ids {len(self.user_ids)}")
        rows = n if self.sim_rows is None else len(self.sim_rows)
        for kind, m in self.sims.items():
            if m.shape != (rows, n):
                raise ArtifactError(f"{kind} similarity has shape {m.shape}, expected ({rows}, {n})")

    @property
    def blend(self) -> BlendWeights:
        params = (self.manifest.parameters if self.manifest else {}) or {}
        return BlendWeights.from_dict(params.get("blend"), where="manifest parameters.blend")

    def history_matrix(self) -> sp.csr_matrix:
        """Users x movies raw watch ratios (explicit entries = watched, a 0.0 ratio included)."""
        h = self.history
        return sp.csr_matrix((h.ratio, h.movie, h.indptr), shape=(len(self.user_ids), len(self.movie_ids)))

    def user_row(self, user_id: int) -> int:
        """Row of ``user_id`` in the history, or -1."""
        pos = int(np.searchsorted(self.user_ids, user_id))
        return pos if pos < len(self.user_ids) and self.user_ids[pos] == user_id else -1

    def user_rows(self, user_ids: np.ndarray) -> np.ndarray:
        """Rows of many users (-1 for unknown ones)."""
        user_ids = np.asarray(user_ids, dtype=np.int64)
        if not len(self.user_ids):
            return np.full(len(user_ids), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.user_ids, user_ids), len(self.user_ids) - 1)
        return np.where(self.user_ids[pos] == user_ids, pos, -1)

    @classmethod
    def from_frames(
        cls,
        movies: pd.DataFrame,
        interactions: pd.DataFrame,
        sims: dict[str, sp.csr_matrix],
        manifest: Manifest | None = None,
    ) -> Artifacts:
        """Build from ``movies_md_upd`` and ``interactions_upd`` frames (movie order = movies rows)."""
        user_ids, history = history_from_frame(interactions, len(movies))
        return cls.from_movies(movies, user_ids, history, sims, manifest)

    @classmethod
    def from_movies(
        cls,
        movies: pd.DataFrame,
        user_ids: np.ndarray,
        history: History,
        sims: dict[str, sp.csr_matrix],
        manifest: Manifest | None = None,
        sim_rows: np.ndarray | None = None,
    ) -> Artifacts:
        """Assemble from the movies frame (ids, titles, scores) and the parts already built."""
        return cls(
            movie_ids=movies[C.MOVIE].astype(str).to_numpy(dtype=object),
            titles=movies[C.TITLE].astype(str).to_numpy(dtype=object),
            movie_score=movies[C.MOVIE_SCORE].to_numpy(dtype=np.float32),
            user_ids=user_ids,
            history=history,
            sims={k: sp.csr_matrix(v, dtype=np.float32) for k, v in sims.items()},
            manifest=manifest,
            sim_rows=sim_rows,
        )


def load_artifacts(
    paths: ArtifactPaths = ArtifactPaths(),
    *,
    manifest_path: Path | None = None,
    user_ids: list[int] | None = None,
) -> Artifacts:
    """Load the artifacts a pipeline run wrote, parsing only bytes that hashed to the manifest's digests.

    Without ``user_ids`` every artifact is read once, hashed, and parsed from
    those same bytes. With ``user_ids`` (the CLI's one-user case) only what
    those users need is read: their row groups of ``interactions_upd``, the
    similarity rows of the movies they watched, and the movie columns; each
    read is checked chunk by chunk against the manifest's chunk table (see
    :class:`rekko.artifacts.VerifiedFile`), so the cost follows the user, not
    the catalogue. ``int_coef`` is not needed to rank and is not read.

    A pipeline publishes a set by renaming its files over the old ones, the
    manifest last: a load that overlaps those renames reads files that do not
    match the manifest it read. Such a load is tried again (up to
    ``LOAD_ATTEMPTS`` times) while the manifest changed under it or a writer
    holds the set's lock; a set that is simply broken fails at once.
    """
    manifest_path = manifest_path or paths.manifest
    attempt = 1
    while True:
        seen = _identity(manifest_path)
        try:
            return _load_once(paths, manifest_path, user_ids)
        except ArtifactError as exc:
            # a pipeline renaming its files into place: the manifest changes (or the set's lock is held)
            # while its files hash to the other run's digests; load the set again once it is whole
            if attempt >= LOAD_ATTEMPTS or (_identity(manifest_path) == seen and not writer_active(paths.lock)):
                raise
            log.info("artifacts changed while loading (%s); loading again", exc)
            attempt += 1
            time.sleep(LOAD_RETRY_WAIT)


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _load_once(paths: ArtifactPaths, manifest_path: Path, user_ids: list[int] | None) -> Artifacts:
    manifest = read_manifest(manifest_path)
    sim_paths = _sim_paths(paths, manifest)
    if user_ids is not None and _supports_partial(manifest, sim_paths):
        return _load_users(paths, manifest, manifest_path, sim_paths, [int(u) for u in user_ids])
    verify_file(paths.int_coef, manifest, "int_coef")
    movies, sims = _load_catalogue(paths, manifest, sim_paths)
    interactions = _read_parquet(read_verified(paths.interactions_upd, manifest, "interactions_upd"),
                                 paths.interactions_upd, _INTERACTION_COLUMNS, optional=(C.RECENCY_RANK,))
    return Artifacts.from_frames(movies, interactions, sims, manifest)


def _sim_paths(paths: ArtifactPaths, manifest: Manifest) -> dict[str, Path]:
    sim_paths = {"md": paths.sim_md, "desc": paths.sim_desc}
    if "sim_cf" in manifest.artifacts:
        sim_paths["cf"] = paths.sim_cf
    return sim_paths


def _load_catalogue(paths: ArtifactPaths, manifest: Manifest,
                    sim_paths: dict[str, Path]) -> tuple[pd.DataFrame, dict[str, sp.csr_matrix]]:
    """The movies frame and every similarity matrix, verified against the manifest and against each other."""
    loaded = {kind: read_topk(path, manifest.sha256_of(f"sim_{kind}")) for kind, path in sim_paths.items()}
    movies = _read_parquet(read_verified(paths.movies_upd, manifest, "movies_upd"), paths.movies_upd,
                           [C.MOVIE, C.TITLE, C.MOVIE_SCORE])
    movie_ids = movies[C.MOVIE].astype(str).to_numpy()
    for kind, topk in loaded.items():
        if len(topk.movie_ids) != len(movie_ids) or not np.array_equal(topk.movie_ids.astype(str), movie_ids):
            raise ArtifactError(f"the {kind} similarity artifact and movies_md_upd list different movies")
    return movies, {kind: t.matrix for kind, t in loaded.items()}


def load_catalogue(paths: ArtifactPaths, manifest: Manifest) -> Artifacts:
    """Every catalogue-sized artifact (movies, all similarity rows) with no users' histories.

    For distributed batch: a worker loads this once and reads each partition's
    histories with :func:`read_user_history`; the log-sized history is never
    loaded whole anywhere.
    """
    movies, sims = _load_catalogue(paths, manifest, _sim_paths(paths, manifest))
    empty = History(np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32),
                    np.zeros(0, dtype=np.int32))
    return Artifacts.from_movies(movies, np.zeros(0, dtype=np.int64), empty, sims, manifest)


def read_user_history(table: ChunkTable, path: Path, row_groups: list[int], first_user: int, last_user: int,
                      n_movies: int) -> tuple[np.ndarray, History]:
    """Histories of users ``first_user..last_user`` from those row groups of ``interactions_upd``.

    Bytes are read through the manifest's chunk digests (only the chunks the
    row groups touch, each verified), so a partition costs its own rows.
    """
    with table.open(path, "interactions_upd") as vf:
        rows = _read_parquet(vf, path, _INTERACTION_COLUMNS, optional=(C.RECENCY_RANK,), row_groups=row_groups)
    users = rows[C.USER].to_numpy()
    rows = rows[(users >= first_user) & (users <= last_user)]
    return history_from_frame(rows, n_movies)


_INTERACTION_COLUMNS = [C.USER, "movie_idx", C.WATCH_RATIO]


def _read_parquet(source: bytes | pa.NativeFile | VerifiedFile, path: Path, columns: list[str], *,
                  optional: tuple[str, ...] = (), row_groups: list[int] | None = None) -> pd.DataFrame:
    """Columns of a parquet artifact from verified bytes or a verified file (a schema mismatch is an ArtifactError)."""
    try:
        pf = pq.ParquetFile(pa.BufferReader(source) if isinstance(source, bytes) else source)
        names = pf.schema_arrow.names
        wanted = columns + [c for c in optional if c in names]
        table = pf.read(columns=wanted) if row_groups is None else pf.read_row_groups(row_groups, columns=wanted)
        return table.to_pandas()
    except ArtifactError:
        raise
    except Exception as exc:  # noqa: BLE001 - the bytes were verified, so this is a schema mismatch
        raise ArtifactError(f"{path}: cannot read artifact: {type(exc).__name__}: {exc}") from exc


def _supports_partial(manifest: Manifest, sim_paths: dict[str, Path]) -> bool:
    entries = manifest.artifacts
    return manifest.chunk_table is not None and all(
        "chunks" in entries.get(role, {}) for role in ("movies_upd", "interactions_upd")
    ) and all("chunks" in entries.get(f"sim_{k}", {}) and "layout" in entries[f"sim_{k}"] for k in sim_paths)


def _user_row_groups(pf: pq.ParquetFile, users: list[int]) -> list[int]:
    """Row groups whose user_id statistics may contain one of ``users`` (the file is sorted by user)."""
    col = pf.schema_arrow.get_field_index(C.USER)
    wanted = np.asarray(sorted(users), dtype=np.int64)
    groups = []
    for g in range(pf.metadata.num_row_groups):
        stats = pf.metadata.row_group(g).column(col).statistics
        if stats is None or not stats.has_min_max:
            groups.append(g)
            continue
        i = np.searchsorted(wanted, stats.min)
        if i < len(wanted) and wanted[i] <= stats.max:
            groups.append(g)
    return groups


def _load_users(paths: ArtifactPaths, manifest: Manifest, manifest_path: Path, sim_paths: dict[str, Path],
                users: list[int]) -> Artifacts:
    table = ChunkTable(manifest, manifest_path)
    with table.open(paths.movies_upd, "movies_upd") as vf:
        movies = _read_parquet(vf, paths.movies_upd, [C.MOVIE, C.TITLE, C.MOVIE_SCORE])
    with table.open(paths.interactions_upd, "interactions_upd") as vf:
        pf = pq.ParquetFile(vf)
        rows = _read_parquet(vf, paths.interactions_upd, _INTERACTION_COLUMNS, optional=(C.RECENCY_RANK,),
                             row_groups=_user_row_groups(pf, users))
    rows = rows[rows[C.USER].isin(users)]
    user_ids, history = history_from_frame(rows, len(movies))
    sims = {}
    for kind, path in sim_paths.items():
        with table.open(path, f"sim_{kind}") as vf:
            sims[kind] = read_topk_rows(vf, manifest.artifacts[f"sim_{kind}"]["layout"], history.movie, len(movies))
    return Artifacts.from_movies(movies, user_ids, history, sims, manifest, sim_rows=history.movie)


@dataclass(frozen=True)
class Recommendations:
    user_id: int
    items: pd.DataFrame
    cold_start: bool


@dataclass(frozen=True)
class Ranked:
    """Top-n for one user as arrays: movie positions, scores, the watched movie each is based on (-1: none).

    The server turns these straight into JSON; :meth:`Recommender.recommend`
    turns them into a frame.
    """

    movies: np.ndarray
    scores: np.ndarray
    based_on: np.ndarray
    components: dict[str, np.ndarray]  # sim_md, sim_desc[, sim_cf], movie_score
    cold_start: bool
    history_size: int


class Recommender:
    """Ranks unwatched movies for users with one blend (:mod:`rekko.recommend.kernel` has the formula).

    ``engine`` is how one user is ranked: ``"jit"`` (the compiled kernel; for a
    long-lived process such as the server, where it answers in microseconds once
    compiled) or ``"auto"`` (the same loop interpreted when the user's work is
    small: for a one-shot command, which would otherwise spend longer starting
    the compiler than ranking). Both give the same bits.
    """

    engine = "jit"

    def __init__(self, artifacts: Artifacts, weights: BlendWeights | None = None, *, engine: str = "jit",
                 scorer: kernel.Scorer | None = None) -> None:
        """``scorer``: these artifacts combined with these weights, computed before (the tuning search makes it
        with :class:`~rekko.recommend.kernel.Blendable`); its half-life and ratio power are taken from ``weights``."""
        self.engine = engine
        self.artifacts = artifacts
        self.weights = weights or artifacts.blend
        self.kinds_ = [k for k in SIM_KINDS if k in artifacts.sims]
        if scorer is None:
            self.scorer_ = kernel.combine(artifacts.sims, artifacts.movie_score, self.weights)
        else:
            self.scorer_ = replace(scorer, half_life=self.weights.recency_half_life,
                                   ratio_power=self.weights.ratio_power)
        self.movie_pos_ = pd.Index(artifacts.movie_ids)

    def with_history(self, user_ids: np.ndarray, history: History) -> Recommender:
        """This blend over other users' histories, sharing the combined similarity (no recombination).

        Distributed batch keeps one Recommender per worker process (the
        catalogue-sized part) and swaps in each partition's users here.
        """
        if self.artifacts.sim_rows is not None:
            raise ValueError("with_history needs artifacts holding every movie's similarity row")
        clone = object.__new__(Recommender)
        clone.__dict__.update(self.__dict__)
        clone.artifacts = Artifacts(self.artifacts.movie_ids, self.artifacts.titles, self.artifacts.movie_score,
                                    np.asarray(user_ids, dtype=np.int64), history, self.artifacts.sims,
                                    self.artifacts.manifest)
        return clone

    def warm(self) -> Recommender:
        """Compile (or load from the disk cache) the kernel for these arrays now, not on a first request."""
        if self.engine == "jit":
            self.rank_rows(np.array([0 if len(self.artifacts.user_ids) else -1]), 1, parallel=False)
        return self

    def history_of(self, user_id: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Watched movie indices and raw watch ratios of a user, or None for an unknown user."""
        row = self.artifacts.user_row(int(user_id))
        if row < 0:
            return None
        h = self.artifacts.history
        start, end = int(h.indptr[row]), int(h.indptr[row + 1])
        return h.movie[start:end].astype(np.int64), h.ratio[start:end]

    def movie_position(self, movie_id: str) -> int:
        """Dense position of a movie id, or -1."""
        return int(self.movie_pos_.get_indexer([str(movie_id)])[0])

    # -- ranking ----------------------------------------------------------------
    def rank_rows(self, rows: np.ndarray, n: int, *, parallel: bool = True, engine: str = "jit") -> RankedBlock:
        """The kernel's top-n for history rows (-1 = no history: the cold-start list)."""
        partial = self.artifacts.sim_rows is not None
        return kernel.rank(self.scorer_, self.artifacts.history, rows, validate_n(n), rows_are_entries=partial,
                           parallel=parallel, engine=engine)

    def rank(self, user_id: int, n: int) -> Ranked:
        """Top-n for one user, with explanations: the same kernel call as batch, for a block of one."""
        n = validate_n(n)
        a = self.artifacts
        row = a.user_row(int(user_id))
        block = self.rank_rows(np.array([row]), n, parallel=False, engine=self.engine)
        top = block.movies[0, : block.lengths[0]].astype(np.int64)
        scores = block.scores[0, : block.lengths[0]].astype(np.float64)
        h = a.history
        start, end = (int(h.indptr[row]), int(h.indptr[row + 1])) if row >= 0 else (0, 0)
        comps: dict[str, np.ndarray] = {}
        if end == start:
            for kind in self.kinds_:
                comps[_SIM_COLUMN[kind]] = np.zeros(len(top))
            comps[C.MOVIE_SCORE] = a.movie_score[top].astype(np.float64)
            return Ranked(top, scores, np.full(len(top), -1), comps, True, 0)
        watched = h.movie[start:end].astype(np.int64)
        weights = kernel.user_weights(h.ratio[start:end], h.recency[start:end], self.weights.recency_half_life,
                                      self.weights.ratio_power)
        sim_rows = np.arange(start, end) if a.sim_rows is not None else watched
        contrib = dense_block(self.scorer_.combined, sim_rows, top) * weights[:, None]
        based_on = np.where(contrib.max(axis=0, initial=0.0) > 0, watched[contrib.argmax(axis=0)], -1)
        for kind in self.kinds_:
            comps[_SIM_COLUMN[kind]] = weights @ dense_block(a.sims[kind], sim_rows, top)
        comps[C.MOVIE_SCORE] = a.movie_score[top].astype(np.float64)
        return Ranked(top, scores, based_on, comps, False, int(end - start))

    def recommend(self, user_id: int, n: int) -> Recommendations:
        """Top-n for one user as a frame: rank, movie_id, title, score, based_on[_title], components."""
        r = self.rank(user_id, n)
        a = self.artifacts
        has = r.based_on >= 0
        src = np.where(has, r.based_on, 0)
        items = pd.DataFrame(
            {
                C.RANK: np.arange(1, len(r.movies) + 1),
                C.MOVIE: a.movie_ids[r.movies],
                C.TITLE: a.titles[r.movies],
                C.SCORE: r.scores,
                C.BASED_ON: pd.Series(np.where(has, a.movie_ids[src], None), dtype=object),
                C.BASED_ON_TITLE: pd.Series(np.where(has, a.titles[src], None), dtype=object),
                **r.components,
            }
        )
        return Recommendations(int(user_id), items, cold_start=r.cold_start)

    def iter_recommend_all(
        self, n: int, *, user_ids: np.ndarray | None = None, block_size: int | None = None, parallel: bool = True
    ) -> Iterator[pd.DataFrame]:
        """Top-n for many users, one frame per block of users (user_id, movie_id, score, rank).

        Unknown users get the cold-start list. Movie ids come as a categorical
        over the catalogue, so a block costs its users x n, not a string each.
        Blocks hold at most :data:`BATCH_BLOCK_BYTES` of results (about 40
        bytes per recommendation across the kernel's output and the frame).
        ``parallel=False`` ranks each block on one thread (a Dask worker's
        threads are its parallelism); the answers are the same bits.
        """
        n = validate_n(n)
        a = self.artifacts
        if block_size is None:
            block_size = int(min(BATCH_BLOCK, max(1, BATCH_BLOCK_BYTES // (40 * min(n, len(a.movie_ids) or 1)))))
        users = a.user_ids if user_ids is None else np.asarray(user_ids, dtype=np.int64)
        categories = pd.Index(np.asarray(a.movie_ids, dtype=object))
        for start in range(0, len(users), block_size):
            block_users = users[start : start + block_size]
            ranked = self.rank_rows(a.user_rows(block_users), n, parallel=parallel)
            valid = ranked.movies >= 0
            counts = valid.sum(axis=1)
            yield pd.DataFrame(
                {
                    C.USER: np.repeat(block_users, counts),
                    C.MOVIE: pd.Categorical.from_codes(ranked.movies[valid], categories=categories),
                    C.SCORE: ranked.scores[valid].astype(np.float64),
                    C.RANK: (np.nonzero(valid)[1] + 1).astype(np.int32),
                }
            )

    def recommend_all(self, n: int, *, user_ids: np.ndarray | None = None,
                      block_size: int | None = None) -> pd.DataFrame:
        """Top-n for many users as one frame; see :meth:`iter_recommend_all`."""
        frames = list(self.iter_recommend_all(n, user_ids=user_ids, block_size=block_size))
        if not frames:
            return pd.DataFrame({C.USER: np.array([], dtype=np.int64), C.MOVIE: np.array([], dtype=object),
                                 C.SCORE: np.array([], dtype=np.float64), C.RANK: np.array([], dtype=np.int32)})
        out = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        return out.assign(**{C.MOVIE: out[C.MOVIE].astype(str).astype(object)})

    def similar(self, movie_id: str, n: int, kind: str = "md") -> pd.DataFrame:
        """The ``n`` nearest neighbours of one movie in one similarity matrix.

        ``kind="blend"``: in the blend of every kind that ranks recommendations
        (each kind times its weight, the movie score left out).
        """
        n = validate_n(n)
        if kind != "blend" and kind not in self.artifacts.sims:
            raise ConfigError(f"unknown similarity kind {kind!r}; available: {sorted(self.artifacts.sims)} "
                              "or 'blend'")
        if self.artifacts.sim_rows is not None:
            raise ConfigError("similar needs artifacts loaded with every movie's similarity row")
        i = self.movie_pos_.get_indexer([str(movie_id)])[0]
        if i < 0:
            raise ConfigError(f"unknown movie_id {movie_id!r}")
        row = (self.scorer_.combined if kind == "blend" else self.artifacts.sims[kind])[i]
        order = np.lexsort((row.indices, -row.data))[:n]
        idx = row.indices[order]
        return pd.DataFrame({C.MOVIE: self.artifacts.movie_ids[idx], C.TITLE: self.artifacts.titles[idx],
                             C.SCORE: row.data[order].astype(np.float64)})
