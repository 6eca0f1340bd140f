"""The recommender's answer as plain arrays, for serving.

:meth:`Recommender.recommend` returns a DataFrame, which is the right shape for
the CLI but costs more to build than the scoring itself (about half the time
per request at seed scale). The server needs numbers it turns straight into
JSON, so this module evaluates the same formula on the same fitted attributes
(``combined_``, ``movie_part_``, ``cold_order_``, the core's ``_top_n`` for the
tie order) and returns arrays. ``tests/test_serve_ranking.py`` checks it equals
``Recommender.recommend`` for every user of a generated data set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rekko.columns import Columns as C
from rekko.recommend import _SIM_COLUMN, Recommender, _top_n, validate_n


@dataclass(frozen=True)
class Ranked:
    """Top-n for one user: movie positions, scores, the watched movie each is based on (-1: none)."""

    movies: np.ndarray
    scores: np.ndarray
    based_on: np.ndarray
    components: dict[str, np.ndarray]  # sim_md, sim_desc[, sim_cf], movie_score
    cold_start: bool
    history_size: int


def rank(rec: Recommender, user_id: int, n: int) -> Ranked:
    """Same movies, order, scores and explanations as ``rec.recommend(user_id, n)``."""
    n = validate_n(n)
    a = rec.artifacts
    hist = rec.history_of(int(user_id))
    if hist is None or len(hist[0]) == 0:
        top = rec.cold_order_[:n]
        comps = {_SIM_COLUMN[k]: np.zeros(len(top)) for k in rec.kinds_}
        comps[C.MOVIE_SCORE] = a.movie_score[top].astype(np.float64)
        return Ranked(top, rec.movie_part_[top].astype(np.float64), np.full(len(top), -1), comps, True, 0)
    watched, ratios = hist
    total = float(ratios.sum())
    weights = (ratios / total).astype(np.float32) if total > 0 else np.zeros_like(ratios)
    rows = rec.combined_[watched]
    scores = np.asarray(weights @ rows, dtype=np.float32).ravel() + rec.movie_part_
    scores[watched] = -np.inf
    top = _top_n(scores, n)
    contrib = rows[:, top].toarray() * weights[:, None]
    has = contrib.max(axis=0, initial=0.0) > 0
    based_on = np.where(has, watched[contrib.argmax(axis=0)], -1)
    comps = {_SIM_COLUMN[k]: np.asarray(weights @ a.sims[k][watched][:, top].toarray(), dtype=np.float64).ravel()
             for k in rec.kinds_}
    comps[C.MOVIE_SCORE] = a.movie_score[top].astype(np.float64)
    return Ranked(top, scores[top].astype(np.float64), based_on, comps, False, int(len(watched)))
