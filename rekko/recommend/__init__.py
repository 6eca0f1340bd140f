"""Recommend: the ranking kernel, the :class:`Recommender` over loaded artifacts, and its presentation.

``kernel`` owns candidate selection, scoring and top-n for every path (CLI,
batch, server, evaluation, tuning); ``recommender`` loads artifacts and
explains answers; ``present`` formats them for people.
"""

from rekko.config import BlendWeights
from rekko.recommend.recommender import (
    SIM_KINDS,
    Artifacts,
    Ranked,
    Recommendations,
    Recommender,
    load_artifacts,
    validate_n,
)

__all__ = [
    "SIM_KINDS",
    "Artifacts",
    "BlendWeights",
    "Ranked",
    "Recommendations",
    "Recommender",
    "load_artifacts",
    "validate_n",
]
