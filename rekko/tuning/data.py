"""What the tuning search works on: a train part (movies, interactions, similarities) and its fits."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from rekko.artifacts import TopKSimilarity
from rekko.columns import Columns as C
from rekko.config import CollaborativeConfig
from rekko.pipeline.collaborative import item_item_similarity
from rekko.pipeline.features import recency_rank
from rekko.recommend import Artifacts, Recommender
from rekko.config import RekkoParams


@dataclass(frozen=True)
class TrainPart:
    """The pipeline's in-memory output on a train part: what ranking and the co-watching fits read.

    ``movies`` in artifact order with their movie features, ``interactions``
    one row per user and movie (``movie_idx``, ``watch_ratio``, dates,
    ``recency_rank``), the three top-k similarities (``sim_cf`` may be None
    until a fit builds it), and the build's ``counts``.
    """

    movies: pd.DataFrame
    interactions: pd.DataFrame
    sim_md: TopKSimilarity
    sim_desc: TopKSimilarity
    sim_cf: TopKSimilarity | None = None
    counts: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, result: Any) -> TrainPart:
        """The train part of a pipeline result (anything with these attributes)."""
        return cls(result.movies, result.interactions, result.sim_md, result.sim_desc, result.sim_cf,
                   dict(getattr(result, "counts", {}) or {}))


@dataclass
class Fitted:
    """A train part with its co-watching similarity built with ``collaborative``."""

    data: TrainPart
    collaborative: CollaborativeConfig
    _artifacts: Artifacts | None = field(default=None, repr=False)

    @property
    def movie_ids(self) -> np.ndarray:
        return self.data.movies[C.MOVIE].astype(str).to_numpy(dtype=object)

    @property
    def sim_cf(self) -> sp.csr_matrix:
        if self.data.sim_cf is None:
            raise ValueError("this train part has no co-watching similarity yet")
        return self.data.sim_cf.matrix

    @property
    def artifacts(self) -> Artifacts:
        """What ``rekko recommend`` loads, built the same way (raw watch ratios: the kernel applies recency)."""
        if self._artifacts is None:
            sims = {"md": self.data.sim_md.matrix, "desc": self.data.sim_desc.matrix, "cf": self.sim_cf}
            self._artifacts = Artifacts.from_frames(self.data.movies, self.data.interactions, sims)
        return self._artifacts

    @property
    def history(self) -> sp.csr_matrix:
        """Users (sorted ids) x movies, plain watch ratios; explicit entries = watched."""
        return self.artifacts.history_matrix()

    @property
    def user_ids(self) -> np.ndarray:
        return self.artifacts.user_ids

    def recommender(self, params: RekkoParams) -> Recommender:
        """The shipped recommender with ``params`` (the co-watching similarity rebuilt if it differs)."""
        return Recommender(self.with_collaborative(params.collaborative).artifacts, params.blend)

    def with_collaborative(self, config: CollaborativeConfig, *, sim_cf: sp.csr_matrix | None = None) -> Fitted:
        """The same fit with other collaborative settings (everything else is reused).

        The co-watching similarity is rebuilt when its settings differ (or
        ``sim_cf`` is used, built by the caller for ``config``), the history's
        recency ranks when ``recency`` differs.
        """
        if config == self.collaborative and sim_cf is None and self.data.sim_cf is not None:
            return self
        data, artifacts = self.data, self._artifacts
        if (sim_cf is not None or data.sim_cf is None
                or similarity_settings(config) != similarity_settings(self.collaborative)):
            sim = (item_item_similarity(data.interactions, self.movie_ids, config) if sim_cf is None
                   else TopKSimilarity(np.asarray(self.movie_ids), sp.csr_matrix(sim_cf, dtype=np.float32)))
            data = replace(data, sim_cf=sim)
            if artifacts is not None:
                artifacts = replace(artifacts, sims={**artifacts.sims,
                                                     "cf": sp.csr_matrix(sim.matrix, dtype=np.float32)})
        if config.recency != self.collaborative.recency:
            interactions = data.interactions.copy()
            interactions[C.RECENCY_RANK] = recency_rank(interactions, config.recency).astype(np.int32)
            data, artifacts = replace(data, interactions=interactions), None
        return Fitted(data, config, artifacts)


def similarity_settings(config: CollaborativeConfig) -> dict[str, object]:
    """What decides the co-watching similarity (all but the recency, which only ranks the history)."""
    return {k: v for k, v in config.to_dict().items() if k != "recency"}
