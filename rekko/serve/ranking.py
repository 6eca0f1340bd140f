"""The recommender's answer as plain arrays, for serving.

Scoring lives in the core (:meth:`rekko.recommend.Recommender.rank`); the
server only turns its arrays into JSON. This module keeps the serve-side name.
"""

from __future__ import annotations

from rekko.recommend import Ranked, Recommender

__all__ = ["Ranked", "rank"]


def rank(rec: Recommender, user_id: int, n: int) -> Ranked:
    """Same movies, order, scores and explanations as ``rec.recommend(user_id, n)``."""
    return rec.rank(user_id, n)
