"""One configuration module: shared validation, refused unknown keys, one manifest layout."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rekko.config import (
    BlendWeights,
    CollaborativeConfig,
    MovieScoreConfig,
    PipelineConfig,
    RekkoParams,
    SimilarityConfig,
)
from rekko.exceptions import ConfigError


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: BlendWeights(md=math.nan), "blend.md"),
        (lambda: BlendWeights(cf=-0.1), "blend.cf"),
        (lambda: BlendWeights(movie=math.inf), "blend.movie"),
        (lambda: BlendWeights(md=0, desc=0, cf=0, movie=0), "all be zero"),
        (lambda: BlendWeights(recency_half_life=0), "recency_half_life"),
        (lambda: BlendWeights(desc="0.1"), "blend.desc"),
        (lambda: BlendWeights(ratio_power=-0.5), "blend.ratio_power"),
        (lambda: BlendWeights(ratio_power=math.nan), "blend.ratio_power"),
        (lambda: BlendWeights(ratio_power=11), "blend.ratio_power"),
        (lambda: SimilarityConfig(k=2.0), "similarity.k"),
        (lambda: SimilarityConfig(k=True), "similarity.k"),
        (lambda: SimilarityConfig(md_max_df=0), "md_max_df"),
        (lambda: CollaborativeConfig(k=0), "collaborative.k"),
        (lambda: CollaborativeConfig(weighting="tfidf"), "weighting"),
        (lambda: CollaborativeConfig(bm25_b=1.5), "bm25_b"),
        (lambda: CollaborativeConfig(recency="latest"), "collaborative.recency"),
        (lambda: MovieScoreConfig(w_rating=math.nan), "w_rating"),
        (lambda: MovieScoreConfig(w_rating=0, w_watch_ratio=0, w_popularity=0), "positive sum"),
    ],
)
def test_bad_values_are_refused_naming_the_field(make, field):
    with pytest.raises(ConfigError, match=field):
        make()


def test_numpy_integers_are_integers():
    assert SimilarityConfig(k=np.int64(7)).k == 7 and type(SimilarityConfig(k=np.int64(7)).k) is int
    assert CollaborativeConfig(k=np.int32(50)).k == 50


@pytest.mark.parametrize("kind", [BlendWeights, CollaborativeConfig, SimilarityConfig, MovieScoreConfig])
def test_unknown_keys_are_refused_by_name(kind):
    with pytest.raises(ConfigError, match="unknown key.*'wieght'"):
        kind.from_dict({"wieght": 1})


def test_manifest_parameters_round_trip():
    config = PipelineConfig(
        similarity=SimilarityConfig(k=20),
        collaborative=CollaborativeConfig(k=30, weighting="cosine", recency="dense", n_threads=2),
        blend=BlendWeights(md=0.1, desc=0.2, cf=0.3, movie=0.4, recency_half_life=None, ratio_power=2.0),
        tuned={"validation_ndcg": 0.1},
    )
    block = config.to_manifest()
    assert "n_threads" not in block["collaborative"]  # a machine setting, not a result
    back = PipelineConfig.from_manifest(block)
    assert back.to_manifest() == block
    assert block["collaborative"]["recency"] == "dense"
    assert block["blend"]["ratio_power"] == 2.0  # the history weighting is written to the manifest
    assert back.params == RekkoParams(config.blend, CollaborativeConfig(k=30, weighting="cosine", recency="dense"))


def test_manifest_parameters_with_unknown_sections_or_bad_types_are_refused():
    with pytest.raises(ConfigError, match="unknown key.*'blnd'"):
        PipelineConfig.from_manifest({"blnd": {}})
    with pytest.raises(ConfigError, match="parameters.blend must be a mapping"):
        PipelineConfig.from_manifest({"blend": [0.1]})
    with pytest.raises(ConfigError, match="blend.md"):
        PipelineConfig.from_manifest({"blend": {"md": None}})


def test_missing_sections_keep_their_defaults():
    assert PipelineConfig.from_manifest({}) == PipelineConfig()
    assert RekkoParams.from_dict({"blend": {"md": 1.0}}).collaborative == CollaborativeConfig()
