"""Recommend: candidate selection, scoring and ranking over the pipeline's artifacts.

For a user with watched movies ``h`` and watch ratios ``r`` the score of an
unwatched movie ``j`` is::

    score_j = w_md   * sim_md_j + w_desc * sim_desc_j + w_cf * sim_cf_j
            + w_movie * movie_score_j
    sim_X_j = sum_i r_i * S_X[h_i, j] / sum_i r_i          (a weighted mean)

i.e. the seed's blend of a movie score with per-watched-movie similarity,
weighted by how much of each watched movie the user saw — computed as one
sparse row-vector times matrix product, with watched movies removed and every
movie returned at most once. ``based_on`` is the watched movie that contributes
most to a recommendation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from rekko.artifacts import Manifest, read_manifest, read_topk, verify_file
from rekko.columns import Columns as C
from rekko.config import BlendWeights
from rekko.exceptions import ArtifactError, ConfigError
from rekko.paths import ArtifactPaths

log = logging.getLogger(__name__)

SIM_KINDS = ("md", "desc", "cf")
_SIM_COLUMN = {"md": C.SIM_MD, "desc": C.SIM_DESC, "cf": C.SIM_CF}




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


@dataclass
class Artifacts:
    """Everything recommend needs, aligned to one dense movie order."""

    movie_ids: np.ndarray
    titles: np.ndarray
    movie_score: np.ndarray
    user_ids: np.ndarray  # sorted int64
    history: sp.csr_matrix  # users x movies, watch ratio
    sims: dict[str, sp.csr_matrix]
    manifest: Manifest | None = None

    def __post_init__(self) -> None:
        n = len(self.movie_ids)
        if self.history.shape != (len(self.user_ids), n):
            raise ArtifactError(f"history shape {self.history.shape} does not match {len(self.user_ids)} users x {n} movies")
        for kind, m in self.sims.items():
            if m.shape != (n, n):
                raise ArtifactError(f"{kind} similarity has shape {m.shape}, expected ({n}, {n})")

    @property
    def blend(self) -> BlendWeights:
        params = (self.manifest.parameters if self.manifest else {}) or {}
        return BlendWeights.from_dict(params.get("blend"))

    @classmethod
    def from_frames(
        cls,
        movies: pd.DataFrame,
        interactions: pd.DataFrame,
        sims: dict[str, sp.csr_matrix],
        manifest: Manifest | None = None,
        *,
        recency_half_life: float | None = None,
    ) -> Artifacts:
        """Build from ``movies_md_upd`` and ``interactions_upd`` frames (movie order = movies rows).

        The history holds each watch's weight: its watch ratio, decayed by its
        ``recency_rank`` when a half-life is given (from the argument, else the
        manifest's blend parameters).
        """
        movie_ids = movies[C.MOVIE].astype(str).to_numpy(dtype=object)
        users = interactions[C.USER].to_numpy(dtype=np.int64)
        user_ids, user_rows = np.unique(users, return_inverse=True)
        cols = interactions["movie_idx"].to_numpy(dtype=np.int64)
        if len(cols) and (cols.min() < 0 or cols.max() >= len(movie_ids)):
            raise ArtifactError("interactions refer to movie indices outside the movies artifact")
        if recency_half_life is None and manifest is not None:
            recency_half_life = BlendWeights.from_dict((manifest.parameters or {}).get("blend")).recency_half_life
        ratios = interactions[C.WATCH_RATIO].to_numpy(dtype=np.float64)
        if recency_half_life is not None and C.RECENCY_RANK in interactions.columns:
            from rekko.pipeline.collaborative import history_weights

            ratios = history_weights(ratios, interactions[C.RECENCY_RANK].to_numpy(), recency_half_life)
        ratios = ratios.astype(np.float32)
        history = sp.csr_matrix((ratios, (user_rows, cols)), shape=(len(user_ids), len(movie_ids)), dtype=np.float32)
        history.sum_duplicates()
        # a 0.0 ratio is still "watched": keep the entry explicit
        if history.nnz != len(np.unique(user_rows.astype(np.int64) * len(movie_ids) + cols)):
            raise ArtifactError("interactions artifact has duplicate (user, movie) rows")
        return cls(
            movie_ids=movie_ids,
            titles=movies[C.TITLE].astype(str).to_numpy(dtype=object),
            movie_score=movies[C.MOVIE_SCORE].to_numpy(dtype=np.float32),
            user_ids=user_ids,
            history=history,
            sims={k: v.tocsr().astype(np.float32) for k, v in sims.items()},
            manifest=manifest,
        )


def load_artifacts(
    paths: ArtifactPaths = ArtifactPaths(),
    *,
    manifest_path: Path | None = None,
    user_ids: list[int] | None = None,
) -> Artifacts:
    """Load and verify the artifacts a pipeline run wrote (sha256 against the manifest first).

    With ``user_ids`` only those users' histories are read (the CLI's
    one-user case): the file is sorted by user, so parquet statistics skip
    every other row group.
    """
    manifest = read_manifest(manifest_path or paths.manifest)
    roles = {
        "interactions_upd": paths.interactions_upd,
        "movies_upd": paths.movies_upd,
        "int_coef": paths.int_coef,
    }
    for role, path in roles.items():
        verify_file(path, manifest, role)
    sim_paths = {"md": paths.sim_md, "desc": paths.sim_desc}
    if "sim_cf" in manifest.artifacts:
        sim_paths["cf"] = paths.sim_cf
    loaded = {kind: read_topk(path, manifest.sha256_of(f"sim_{kind}")) for kind, path in sim_paths.items()}
    sims = {kind: topk.matrix for kind, topk in loaded.items()}
    try:
        movies = pd.read_parquet(paths.movies_upd, columns=[C.MOVIE, C.TITLE, C.MOVIE_SCORE])
        filters = [(C.USER, "in", [int(u) for u in user_ids])] if user_ids is not None else None
        columns = [C.USER, "movie_idx", C.WATCH_RATIO]
        import pyarrow.parquet as pq

        if C.RECENCY_RANK in pq.read_schema(paths.interactions_upd).names:
            columns.append(C.RECENCY_RANK)
        interactions = pd.read_parquet(paths.interactions_upd, columns=columns, filters=filters)
    except Exception as exc:  # noqa: BLE001 - verified by hash, so this is a schema mismatch
        raise ArtifactError(f"cannot read artifacts: {type(exc).__name__}: {exc}") from exc
    movie_ids = movies[C.MOVIE].astype(str).to_numpy()
    for kind, topk in loaded.items():
        if len(topk.movie_ids) != len(movie_ids) or not np.array_equal(topk.movie_ids.astype(str), movie_ids):
            raise ArtifactError(f"the {kind} similarity artifact and movies_md_upd list different movies")
    return Artifacts.from_frames(movies, interactions, sims, manifest)


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
    """Scores unwatched movies for users; see the module docstring for the formula."""

    def __init__(self, artifacts: Artifacts, weights: BlendWeights | None = None) -> None:
        self.artifacts = artifacts
        self.weights = weights or artifacts.blend
        n = len(artifacts.movie_ids)
        self.kinds_ = [k for k in SIM_KINDS if k in artifacts.sims]
        combined = sp.csr_matrix((n, n), dtype=np.float32)
        for kind in self.kinds_:
            w = getattr(self.weights, kind)
            if w:
                combined = combined + artifacts.sims[kind] * np.float32(w)
        self.combined_ = combined.tocsr()
        self.movie_part_ = (artifacts.movie_score * np.float32(self.weights.movie)).astype(np.float32)
        self.cold_order_ = np.lexsort((np.arange(n), -artifacts.movie_score))
        self.movie_pos_ = pd.Index(artifacts.movie_ids)

    # -- candidate selection -------------------------------------------------
    def history_of(self, user_id: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Watched movie indices and watch ratios, or None for an unknown user."""
        a = self.artifacts
        pos = int(np.searchsorted(a.user_ids, user_id))
        if pos >= len(a.user_ids) or a.user_ids[pos] != user_id:
            return None
        start, end = a.history.indptr[pos], a.history.indptr[pos + 1]
        return a.history.indices[start:end], a.history.data[start:end]

    def movie_position(self, movie_id: str) -> int:
        """Dense position of a movie id, or -1."""
        return int(self.movie_pos_.get_indexer([str(movie_id)])[0])

    # -- scoring and ranking --------------------------------------------------
    def rank(self, user_id: int, n: int) -> Ranked:
        """Score every unwatched movie for ``user_id`` and keep the best ``n``."""
        n = validate_n(n)
        a = self.artifacts
        hist = self.history_of(int(user_id))
        if hist is None or len(hist[0]) == 0:
            top = self.cold_order_[:n]
            comps = {_SIM_COLUMN[k]: np.zeros(len(top)) for k in self.kinds_}
            comps[C.MOVIE_SCORE] = a.movie_score[top].astype(np.float64)
            return Ranked(top, self.movie_part_[top].astype(np.float64), np.full(len(top), -1), comps, True, 0)
        watched, ratios = hist
        total = float(ratios.sum())
        weights = (ratios / total).astype(np.float32) if total > 0 else np.zeros_like(ratios)
        rows = self.combined_[watched]
        scores = np.asarray(weights @ rows, dtype=np.float32).ravel() + self.movie_part_
        scores[watched] = -np.inf
        top = _top_n(scores, n)
        # explanations for the n kept movies only
        contrib = rows[:, top].toarray() * weights[:, None]
        has = contrib.max(axis=0, initial=0.0) > 0
        based_on = np.where(has, watched[contrib.argmax(axis=0)], -1)
        comps = {
            _SIM_COLUMN[k]: np.asarray(weights @ a.sims[k][watched][:, top].toarray(), dtype=np.float64).ravel()
            for k in self.kinds_
        }
        comps[C.MOVIE_SCORE] = a.movie_score[top].astype(np.float64)
        return Ranked(top, scores[top].astype(np.float64), based_on, comps, False, int(len(watched)))

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

    def recommend_all(self, n: int, *, user_ids: np.ndarray | None = None, block_size: int = 2048) -> pd.DataFrame:
        """Top-n for many users at once: one sparse product per block of users.

        Returns columns user_id, movie_id, score, rank; unknown users get the
        cold-start list.
        """
        n = validate_n(n)
        a = self.artifacts
        users = a.user_ids if user_ids is None else np.asarray(user_ids, dtype=np.int64)
        pos = np.searchsorted(a.user_ids, users)
        pos_c = np.minimum(pos, max(len(a.user_ids) - 1, 0))
        known = (pos < len(a.user_ids)) & (a.user_ids[pos_c] == users) if len(a.user_ids) else np.zeros(len(users), bool)
        hist = a.history
        row_sums = np.asarray(hist.sum(axis=1)).ravel()
        inv = np.divide(1.0, row_sums, out=np.zeros_like(row_sums), where=row_sums > 0).astype(np.float32)
        frames_u, frames_m, frames_s, frames_r = [], [], [], []
        known_pos = pos_c[known]
        known_users = users[known]
        for start in range(0, len(known_pos), block_size):
            rows = known_pos[start:start + block_size]
            h = hist[rows]
            weights = sp.diags(inv[rows]) @ h
            dense = (weights @ self.combined_).toarray() if self.combined_.nnz else np.zeros(h.shape, np.float32)
            dense += self.movie_part_
            # mask watched movies (explicit entries, including 0.0 ratios)
            r_idx = np.repeat(np.arange(h.shape[0]), np.diff(h.indptr))
            dense[r_idx, h.indices] = -np.inf
            top = _top_n_rows(dense, n)
            top_scores = np.take_along_axis(dense, top, axis=1)
            valid = np.isfinite(top_scores)
            k = top.shape[1]
            frames_u.append(np.repeat(known_users[start:start + block_size], k)[valid.ravel()])
            frames_m.append(top[valid])
            frames_s.append(top_scores[valid])
            frames_r.append(np.tile(np.arange(1, k + 1), len(rows))[valid.ravel()])
        cold_users = users[~known]
        if len(cold_users):
            top = self.cold_order_[:n]
            frames_u.append(np.repeat(cold_users, len(top)))
            frames_m.append(np.tile(top, len(cold_users)))
            frames_s.append(np.tile(self.movie_part_[top], len(cold_users)))
            frames_r.append(np.tile(np.arange(1, len(top) + 1), len(cold_users)))
        if not frames_u:
            return pd.DataFrame({C.USER: [], C.MOVIE: [], C.SCORE: [], C.RANK: []})
        return pd.DataFrame(
            {
                C.USER: np.concatenate(frames_u).astype(np.int64),
                C.MOVIE: a.movie_ids[np.concatenate(frames_m)],
                C.SCORE: np.concatenate(frames_s).astype(np.float64),
                C.RANK: np.concatenate(frames_r).astype(np.int32),
            }
        )

    def similar(self, movie_id: str, n: int, kind: str = "md") -> pd.DataFrame:
        """The ``n`` nearest neighbours of one movie in one similarity matrix."""
        n = validate_n(n)
        if kind not in self.artifacts.sims:
            raise ConfigError(f"unknown similarity kind {kind!r}; available: {sorted(self.artifacts.sims)}")
        i = self.movie_pos_.get_indexer([str(movie_id)])[0]
        if i < 0:
            raise ConfigError(f"unknown movie_id {movie_id!r}")
        row = self.artifacts.sims[kind][i]
        order = np.lexsort((row.indices, -row.data))[:n]
        idx = row.indices[order]
        return pd.DataFrame({C.MOVIE: self.artifacts.movie_ids[idx], C.TITLE: self.artifacts.titles[idx],
                             C.SCORE: row.data[order].astype(np.float64)})


def _top_n(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n highest finite scores, sorted by score desc then index asc."""
    finite = np.flatnonzero(np.isfinite(scores))
    if len(finite) <= n:
        cand = finite
    else:
        part = np.argpartition(-scores[finite], n - 1)[:n]
        # include ties at the boundary so the order is deterministic
        cut = scores[finite[part]].min()
        cand = finite[scores[finite] >= cut]
    order = np.lexsort((cand, -scores[cand]))
    return cand[order][:n]


def _top_n_rows(dense: np.ndarray, n: int) -> np.ndarray:
    """Row-wise top-n column indices sorted by score desc (ties by lower index)."""
    m = dense.shape[1]
    k = min(n, m)
    if k < m:
        part = np.argpartition(-dense, k - 1, axis=1)[:, :k]
    else:
        part = np.tile(np.arange(m), (dense.shape[0], 1))
    part = np.sort(part, axis=1)  # index order first, so the stable sort breaks ties by index
    vals = np.take_along_axis(dense, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)
