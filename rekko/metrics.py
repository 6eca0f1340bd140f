"""Top-k recommendation metrics, each a pure vectorized function.

Conventions (the usual ones; where libraries differ the choice is named):

* ``recs`` has ``user_id``, ``movie_id`` and a 1-based ``rank``; only
  ``rank <= k`` counts. ``test`` has distinct (``user_id``, ``movie_id``) pairs.
* Ranking metrics average over the *test users*; a test user with no
  recommendations scores 0, so a model cannot win by staying silent.
* NDCG: binary gains, ``1 / log2(rank + 1)``, ideal DCG over ``min(|T_u|, k)``.
* MAP@k: the sum of precision at each hit's rank over ``min(|T_u|, k)``
  (implicit's and lenskit's normalisation, so a perfect list scores 1).
* MRR@k: ``1 / rank`` of the first hit, 0 without one.
* Catalog coverage: distinct recommended movies over the catalog size.
* Novelty: mean inverse user frequency ``-log2(n_users(i) / n_users)`` in
  train; a movie nobody watched in train counts as watched by one user.
* Intra-list diversity: 1 - mean pairwise cosine similarity of the genre
  vectors of a user's list (a movie without genres is unlike every other),
  over users with at least two recommendations.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from rekko.columns import Columns as C

ACCURACY_METRICS = ("hit_rate", "precision", "recall", "ndcg", "map", "mrr")
BEYOND_ACCURACY_METRICS = ("coverage", "novelty", "diversity")


def _top_k(recs: pd.DataFrame, k: int) -> pd.DataFrame:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return recs.loc[recs[C.RANK].to_numpy() <= k, [C.USER, C.MOVIE, C.RANK]]


def per_user_hits(recs: pd.DataFrame, test: pd.DataFrame, k: int) -> pd.DataFrame:
    """One row per test user: n_relevant, n_hits, dcg, idcg, ap_sum, first_hit_rank (NaN if none).

    Every ranking metric below is a mean of a column expression over these rows.
    """
    top = _top_k(recs, k)
    n_rel = test.groupby(C.USER, sort=True).size().rename("n_relevant")
    hits = top.merge(test[[C.USER, C.MOVIE]], on=[C.USER, C.MOVIE], how="inner").sort_values(
        [C.USER, C.RANK], kind="stable"
    )
    rank = hits[C.RANK].to_numpy(dtype="float64")
    hit_no = hits.groupby(C.USER, sort=False).cumcount().to_numpy() + 1  # 1st, 2nd... hit of the user
    per_hit = pd.DataFrame(
        {C.USER: hits[C.USER].to_numpy(), "gain": 1.0 / np.log2(rank + 1.0), "prec": hit_no / rank, "rank": rank}
    )
    agg = per_hit.groupby(C.USER, sort=True).agg(
        n_hits=("gain", "size"), dcg=("gain", "sum"), ap_sum=("prec", "sum"), first_hit_rank=("rank", "min")
    )
    out = n_rel.to_frame().join(agg, how="left")
    out[["n_hits", "dcg", "ap_sum"]] = out[["n_hits", "dcg", "ap_sum"]].fillna(0.0)
    discounts = np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))
    ideal_len = np.minimum(out["n_relevant"].to_numpy(), k)
    out["idcg"] = discounts[ideal_len - 1]
    out["ideal_len"] = ideal_len
    return out


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def hit_rate(recs: pd.DataFrame, test: pd.DataFrame, k: int) -> float:
    """Share of test users with at least one relevant movie in their top k."""
    return _mean((per_user_hits(recs, test, k)["n_hits"] > 0).to_numpy(dtype="float64"))


def precision(recs: pd.DataFrame, test: pd.DataFrame, k: int) -> float:
    """Mean over test users of hits / k."""
    return _mean(per_user_hits(recs, test, k)["n_hits"].to_numpy() / k)


def recall(recs: pd.DataFrame, test: pd.DataFrame, k: int) -> float:
    """Mean over test users of hits / |relevant|."""
    h = per_user_hits(recs, test, k)
    return _mean(h["n_hits"].to_numpy() / h["n_relevant"].to_numpy())


def ndcg(recs: pd.DataFrame, test: pd.DataFrame, k: int) -> float:
    """Mean over test users of DCG / ideal DCG with binary gains."""
    h = per_user_hits(recs, test, k)
    return _mean(h["dcg"].to_numpy() / h["idcg"].to_numpy())


def ndcg_arrays(top: np.ndarray, relevant: np.ndarray, n_relevant: np.ndarray, k: int, n_items: int) -> float:
    """:func:`ndcg` on arrays, for a tuner scoring many candidates on the same users (no frames).

    ``top`` is users x n ranked item codes in ``[0, n_items)`` (-1 = no item;
    the kernel's :class:`~rekko.recommend.kernel.RankedBlock` movies),
    ``relevant`` the sorted distinct codes ``user_row * n_items + item`` of the
    test pairs, ``n_relevant`` each user's number of test pairs (>= 1). The
    same formula as :func:`ndcg` (binary gains, ``1 / log2(rank + 1)``, ideal
    DCG over ``min(n_relevant, k)``, mean over the users, 0 without a hit); the
    tuner's tests check that both agree.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    top = np.asarray(top)[:, :k].astype(np.int64)
    if top.shape[0] == 0:
        return float("nan")
    rel = np.asarray(relevant, dtype=np.int64)
    keys = np.arange(top.shape[0], dtype=np.int64)[:, None] * int(n_items) + top
    if len(rel):
        at = np.minimum(np.searchsorted(rel, keys), len(rel) - 1)
        hit = (top >= 0) & (rel[at] == keys)
    else:
        hit = np.zeros(top.shape, dtype=bool)
    gains = 1.0 / np.log2(np.arange(2, top.shape[1] + 2, dtype=np.float64))
    dcg = (hit * gains).sum(axis=1)
    discounts = np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))
    idcg = discounts[np.minimum(np.asarray(n_relevant, dtype=np.int64), k) - 1]
    return float(np.mean(dcg / idcg))


def mean_average_precision(recs: pd.DataFrame, test: pd.DataFrame, k: int) -> float:
    """MAP@k normalised by min(|relevant|, k)."""
    h = per_user_hits(recs, test, k)
    return _mean(h["ap_sum"].to_numpy() / h["ideal_len"].to_numpy())


def mrr(recs: pd.DataFrame, test: pd.DataFrame, k: int) -> float:
    """Mean reciprocal rank of the first hit (0 without a hit)."""
    h = per_user_hits(recs, test, k)
    return _mean(np.nan_to_num(1.0 / h["first_hit_rank"].to_numpy(dtype="float64"), nan=0.0))


def catalog_coverage(recs: pd.DataFrame, catalog_size: int, k: int) -> float:
    """Distinct movies anybody got in their top k, over the number of movies in the catalog."""
    if catalog_size < 1:
        raise ValueError(f"catalog_size must be >= 1, got {catalog_size}")
    return _top_k(recs, k)[C.MOVIE].nunique() / catalog_size


def novelty(recs: pd.DataFrame, train: pd.DataFrame | None, k: int, *,
            popularity: tuple[pd.Series, int] | None = None) -> float:
    """Mean over users of the mean ``-log2(n_users(i) / n_users)`` of their top k (train popularity).

    ``popularity``: ``(viewers per movie id, users)`` of the train part when the caller has them (the tuning
    search: its movie features), instead of counting them from ``train``'s rows (tens of millions at scale).
    """
    top = _top_k(recs, k)
    if popularity is not None:
        counts, n_users = popularity
    else:
        assert train is not None, "novelty needs the train rows or their popularity"
        pairs = train[[C.USER, C.MOVIE]].drop_duplicates()
        n_users = pairs[C.USER].nunique()
        counts = pairs[C.MOVIE].value_counts()
    if top.empty or n_users == 0:
        return float("nan")
    n_i = top[C.MOVIE].map(counts).fillna(0).clip(lower=1).to_numpy(dtype="float64")
    iuf = -np.log2(n_i / n_users)
    return float(pd.Series(iuf).groupby(top[C.USER].to_numpy()).mean().mean())


def intra_list_diversity(recs: pd.DataFrame, genres: pd.Series, k: int) -> float:
    """Mean over users (>= 2 recommendations) of 1 - mean pairwise genre cosine similarity of the list.

    ``genres`` maps movie_id -> a sequence of genre names. With L2-normalised
    genre vectors g_i, the sum of pairwise cosines of a list is
    (|sum g_i|^2 - sum |g_i|^2) / 2, so one sparse product does every user.
    """
    top = _top_k(recs, k)
    if top.empty:
        return float("nan")
    long = genres.rename("genre").explode().dropna()
    movies = pd.Index(
        pd.unique(np.concatenate([top[C.MOVIE].to_numpy(dtype=object), long.index.to_numpy(dtype=object)]))
    )
    g_codes, g_uniques = pd.factorize(long.to_numpy())
    g = sp.csr_matrix(
        (np.ones(len(long)), (movies.get_indexer(long.index), g_codes)), shape=(len(movies), max(len(g_uniques), 1))
    )
    g.sum_duplicates()
    g.data[:] = 1.0
    norms = np.sqrt(np.asarray(g.multiply(g).sum(axis=1)).ravel())
    g = sp.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)) @ g
    u_codes, u_uniques = pd.factorize(top[C.USER])
    r = sp.csr_matrix(
        (np.ones(len(top)), (u_codes, movies.get_indexer(top[C.MOVIE]))), shape=(len(u_uniques), len(movies))
    )
    summed = r @ g
    sq_of_sum = np.asarray(summed.multiply(summed).sum(axis=1)).ravel()
    sum_of_sq = r @ np.asarray(g.multiply(g).sum(axis=1)).ravel()
    m = np.asarray(r.sum(axis=1)).ravel()
    ok = m >= 2
    if not ok.any():
        return float("nan")
    mean_sim = (sq_of_sum[ok] - sum_of_sq[ok]) / (m[ok] * (m[ok] - 1))
    return float(np.mean(1.0 - mean_sim))


def evaluate(
    recs: pd.DataFrame,
    test: pd.DataFrame,
    k: int,
    *,
    train: pd.DataFrame | None,
    catalog_size: int,
    genres: pd.Series,
    metrics: Sequence[str] = ACCURACY_METRICS + BEYOND_ACCURACY_METRICS,
    popularity: tuple[pd.Series, int] | None = None,
) -> dict[str, float]:
    """Every metric @k for recommendations to the test users, computing the hit table once.

    ``popularity`` (see :func:`novelty`) replaces ``train`` where the caller has it."""
    recs = recs[recs[C.USER].isin(test[C.USER].unique())]
    h = per_user_hits(recs, test, k)
    n_hits, n_rel = h["n_hits"].to_numpy(), h["n_relevant"].to_numpy()
    values = {
        "hit_rate": lambda: _mean((n_hits > 0).astype("float64")),
        "precision": lambda: _mean(n_hits / k),
        "recall": lambda: _mean(n_hits / n_rel),
        "ndcg": lambda: _mean(h["dcg"].to_numpy() / h["idcg"].to_numpy()),
        "map": lambda: _mean(h["ap_sum"].to_numpy() / h["ideal_len"].to_numpy()),
        "mrr": lambda: _mean(np.nan_to_num(1.0 / h["first_hit_rank"].to_numpy(dtype="float64"), nan=0.0)),
        "coverage": lambda: catalog_coverage(recs, catalog_size, k),
        "novelty": lambda: novelty(recs, train, k, popularity=popularity),
        "diversity": lambda: intra_list_diversity(recs, genres, k),
    }
    unknown = sorted(set(metrics) - set(values))
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; known: {list(values)}")
    return {name: values[name]() for name in metrics}
