"""Reference points outside rekko (benchmark-only): implicit's ItemKNN cosine and BM25, and EASE, on rekko's protocol.

    .venv/bin/pip install -e '.[bench]'     # implicit
    .venv/bin/python benchmarks/bench_anchors.py --data benchmarks/out/quality/data [--model-sees dates]

The split, the train matrix and the metrics are rekko's own (``rekko evaluate``'s
per-user split, the pipeline's users x movies watch-ratio matrix on the train
part, :func:`rekko.metrics.evaluate`), so the figures sit beside
``rekko evaluate``'s table. None of these models sees a watch time: with
``--model-sees dates`` only the train part's times are cut to the day, which
changes nothing for them (the split is by exact time either way); the option
is there so the command line matches ``rekko evaluate``'s.

* ItemKNN cosine / BM25: ``implicit.nearest_neighbours`` with K = 100
  neighbours, fitted on the watch-ratio matrix, already-watched movies filtered;
* EASE (Steck 2019): ``B = I - P / diag(P)`` with ``P = (X'X + lambda I)^-1``
  on the binary watch matrix, lambda = 200, no recency; dense, so for a
  catalogue of MovieLens-small's size only (9.7k movies: ~0.4 GB).

Not part of rekko's runtime package: ``implicit`` is a benchmark extra.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from rekko.columns import Columns as C
from rekko import metrics
from rekko.evaluation import models as M
from rekko.evaluation.run import EvalConfig, load_inputs


def _frame(users: np.ndarray, top: np.ndarray, scores: np.ndarray, movie_ids: np.ndarray) -> pd.DataFrame:
    k = top.shape[1]
    valid = (top >= 0) & np.isfinite(scores)
    return pd.DataFrame(
        {
            C.USER: np.repeat(users, k)[valid.ravel()],
            C.MOVIE: movie_ids[np.maximum(top, 0)][valid],
            C.SCORE: scores[valid].astype(np.float64),
            C.RANK: np.tile(np.arange(1, k + 1), len(users))[valid.ravel()],
        }
    )


def itemknn(kind: str, x: sp.csr_matrix, rows: np.ndarray, k: int, neighbours: int = 100):
    from implicit.nearest_neighbours import BM25Recommender, CosineRecommender

    model = (CosineRecommender if kind == "cosine" else BM25Recommender)(K=neighbours)
    model.fit(x, show_progress=False)
    ids, scores = model.recommend(rows, x[rows], N=k, filter_already_liked_items=True)
    scores = np.where(ids >= 0, scores, -np.inf)
    return ids, scores


def ease(x: sp.csr_matrix, rows: np.ndarray, k: int, lam: float = 200.0):
    binary = x.copy()
    binary.data[:] = 1.0
    used = np.flatnonzero(np.diff(binary.tocsc().indptr) > 0)  # movies somebody watched
    xb = binary[:, used].astype(np.float32)
    g = (xb.T @ xb).toarray()
    g[np.diag_indices_from(g)] += lam
    p = np.linalg.inv(g)
    b = -p / np.diag(p)[None, :]
    b[np.diag_indices_from(b)] = 0.0
    del g, p
    scores = np.asarray(xb[rows] @ b)
    h = xb[rows]
    scores[np.repeat(np.arange(len(rows)), np.diff(h.indptr)), h.indices] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return used[order], np.take_along_axis(scores, order, axis=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="the folder `rekko import movielens` wrote")
    parser.add_argument("--model-sees", choices=("exact", "dates"), default="dates")
    parser.add_argument("--test-size", type=int, default=10)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--json", type=Path, help="write the metrics here")
    args = parser.parse_args(argv)
    d = args.data
    if not (d / "interactions.parquet").exists():
        print(f"skipped: {d / 'interactions.parquet'} not found (run `rekko import movielens` first)")
        return 0
    interactions, movies, ratings = load_inputs(d / "interactions.parquet", d / "movies_metdata.parquet",
                                                d / "Movies_r_d.xlsx")
    split = EvalConfig(test_size=args.test_size, k=args.k, model_sees=args.model_sees).outer_split(interactions)
    fitted = M.fit(split.train, movies, ratings)
    x = fitted.history.tocsr().astype(np.float32)
    users = np.unique(split.test[C.USER].to_numpy(dtype=np.int64))
    rows = fitted.artifacts.user_rows(users)
    users, rows = users[rows >= 0], rows[rows >= 0]
    genres = fitted.data.movies.set_index(C.MOVIE)[C.GENRES]
    out = {}
    for name, run in (
        ("implicit ItemKNN cosine K=100", lambda: itemknn("cosine", x, rows, args.k)),
        ("implicit ItemKNN BM25 K=100", lambda: itemknn("bm25", x, rows, args.k)),
        ("EASE lambda=200", lambda: ease(x, rows, args.k)),
    ):
        t = time.perf_counter()
        top, scores = run()
        recs = _frame(users, np.asarray(top), np.asarray(scores), fitted.movie_ids)
        m = metrics.evaluate(recs, split.test, args.k, train=split.train, catalog_size=len(movies), genres=genres)
        out[name] = {key: round(float(v), 6) for key, v in m.items()}
        print(f"{name:32s} NDCG@{args.k} {m['ndcg']:.4f}  HitRate {m['hit_rate']:.4f}  "
              f"coverage {m['coverage']:.4f}  ({time.perf_counter() - t:.1f} s)", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"split": split.stats, "model_sees": args.model_sees, "metrics": out},
                                        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
