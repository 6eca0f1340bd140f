"""One contract for every top-k similarity the pipeline writes (metadata, description, co-watching).

Whatever the signal, recommend relies on the same properties: the movie order of
the catalogue, at most k neighbours per row, no movie its own neighbour,
similarities in (0, 1], a well-formed CSR that survives the artifact round trip.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rekko.artifacts import topk_from_bytes, topk_to_bytes
from rekko.config import CollaborativeConfig
from rekko.pipeline.collaborative import item_item_similarity
from rekko.pipeline.similarity import SimilarityConfig, TopKSimilarity, content_similarities
from rekko.testing.synth import generate

K = 7


@pytest.fixture(scope="module")
def catalogue():
    from rekko.pipeline.run import compute
    from rekko.pipeline.ingest import validate_interactions, validate_movies
    from rekko.pipeline.ratings import clean_ratings

    data = generate(80, 40, 600, seed=5)
    result = compute(validate_interactions(data.interactions), validate_movies(data.movies),
                     clean_ratings(data.ratings))
    return result.movies, result.interactions


def build_md(movies, interactions) -> TopKSimilarity:
    return content_similarities(movies, SimilarityConfig(k=K))[0]


def build_desc(movies, interactions) -> TopKSimilarity:
    return content_similarities(movies, SimilarityConfig(k=K))[1]


def build_cf(movies, interactions) -> TopKSimilarity:
    return item_item_similarity(interactions, movies["movie_id"].astype(str).to_numpy(), CollaborativeConfig(k=K))


class TopKContract:
    """Mixin: subclasses name a builder; every property below must hold for it."""

    builder = staticmethod(build_md)

    @pytest.fixture
    def sim(self, catalogue) -> TopKSimilarity:
        movies, interactions = catalogue
        return self.builder(movies, interactions)

    def test_movie_order_is_the_catalogue_order(self, sim, catalogue):
        assert list(sim.movie_ids) == list(catalogue[0]["movie_id"].astype(str))

    def test_at_most_k_neighbours_and_not_empty(self, sim):
        per_row = np.diff(sim.matrix.indptr)
        assert per_row.max() <= K and sim.matrix.nnz > 0

    def test_no_movie_is_its_own_neighbour(self, sim):
        rows = np.repeat(np.arange(sim.matrix.shape[0]), np.diff(sim.matrix.indptr))
        assert not (rows == sim.matrix.indices).any()

    def test_similarities_in_unit_interval(self, sim):
        assert np.isfinite(sim.matrix.data).all()
        assert (sim.matrix.data > 0).all() and (sim.matrix.data <= 1 + 1e-6).all()

    def test_kept_neighbours_are_the_strongest(self, sim):
        # a row with k entries cannot have dropped a stronger one: compare with the symmetric partner rows
        m = sim.matrix.tocsr()
        full = np.diff(m.indptr) == K
        for i in np.flatnonzero(full)[:10]:
            weakest = m[i].data.min()
            # any j that lists i with similarity above i's weakest kept value must be among i's neighbours
            col = m[:, i].toarray().ravel()
            stronger = set(np.flatnonzero(col > weakest + 1e-5).tolist())
            assert stronger <= set(m[i].indices.tolist())

    def test_artifact_round_trip(self, sim):
        back = topk_from_bytes(topk_to_bytes(sim))
        assert list(back.movie_ids) == list(sim.movie_ids)
        assert (back.matrix != sim.matrix).nnz == 0


class TestMetadataSimilarity(TopKContract):
    builder = staticmethod(build_md)


class TestDescriptionSimilarity(TopKContract):
    builder = staticmethod(build_desc)


class TestCollaborativeSimilarity(TopKContract):
    builder = staticmethod(build_cf)
