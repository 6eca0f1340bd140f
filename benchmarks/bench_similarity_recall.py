"""Recall of the blocked top-k neighbours (SimilarityConfig.exact_max_movies) against the exact product.

    .venv/bin/python benchmarks/bench_similarity_recall.py --data benchmarks/out/wide-1 --sample 20000
    .venv/bin/python benchmarks/bench_similarity_recall.py --data benchmarks/out/wide-1 --sample 0 --rows 2000

Builds the two TF-IDF matrices of the generated catalogue in ``--data`` (as the
pipeline does), then for each: with ``--sample N``, N random movies, exact
top-k of every row vs :func:`blocked_top_k_cosine`; with ``--sample 0``, the
whole catalogue blocked, checked on ``--rows`` random rows whose exact top-k
is computed against every movie. Recall = shared neighbours / exact
neighbours; "score recall" also counts a neighbour tied with the k-th exact
score. Prints one line per matrix with times and the load average.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from rekko.config import SimilarityConfig
from rekko.pipeline import ingest
from rekko.pipeline.ratings import attach_ratings
from rekko.pipeline.similarity import (
    blocked_top_k_cosine,
    description_text,
    keep_top_k,
    metadata_text,
    tfidf_matrix,
    top_k_cosine,
)


def recall(exact: sp.csr_matrix, approx: sp.csr_matrix, rows: np.ndarray) -> tuple[float, float]:
    hits = tied = total = 0
    for i, r in enumerate(rows):
        truth = exact.indices[exact.indptr[i]:exact.indptr[i + 1]]
        if not len(truth):
            continue
        got = approx.indices[approx.indptr[r]:approx.indptr[r + 1]]
        kth = exact.data[exact.indptr[i]:exact.indptr[i + 1]].min()
        hits += len(set(truth) & set(got))
        tied += min(len(truth), int((approx.data[approx.indptr[r]:approx.indptr[r + 1]] >= kth - 1e-6).sum()))
        total += len(truth)
    return hits / max(total, 1), tied / max(total, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--sample", type=int, default=20_000)
    parser.add_argument("--rows", type=int, default=2_000)
    parser.add_argument("--k", type=int, default=100)
    args = parser.parse_args(argv)
    movies = ingest.load_movies(args.data / "movies_metdata.parquet")
    movies, _ = attach_ratings(movies, ingest.load_ratings(args.data / "Movies_r_d.xlsx"))
    rng = np.random.default_rng(0)
    if args.sample:
        movies = movies.iloc[np.sort(rng.choice(len(movies), args.sample, replace=False))].reset_index(drop=True)
    cfg = SimilarityConfig(k=args.k)
    matrices = {
        "md": tfidf_matrix(metadata_text(movies), max_df=cfg.md_max_df, max_features=cfg.max_features),
        "desc": tfidf_matrix(description_text(movies), min_df=cfg.desc_min_df, max_df=cfg.desc_max_df,
                             max_features=cfg.max_features),
    }
    for name, x in matrices.items():
        load = [round(v, 2) for v in os.getloadavg()]
        t = time.perf_counter()
        approx = blocked_top_k_cosine(x, args.k, cluster_size=cfg.cluster_size, spill=cfg.spill)
        t_blocked = time.perf_counter() - t
        t = time.perf_counter()
        if args.sample:
            rows = np.arange(x.shape[0])
            exact = top_k_cosine(x, args.k)
        else:
            from sparse_dot_topn import sp_matmul_topn

            rows = np.sort(rng.choice(x.shape[0], args.rows, replace=False))
            x32 = x.astype(np.float32).tocsr()
            top = sp.csr_matrix(sp_matmul_topn(x32[rows], x32.T.tocsr(), top_n=args.k + 1, threshold=1e-7))
            top = top.tolil()
            for i, r in enumerate(rows):
                top[i, r] = 0
            exact = keep_top_k(sp.csr_matrix(top), args.k, drop_diagonal=False)
        t_exact = time.perf_counter() - t
        r, tied = recall(exact, approx, rows)
        print(f"{name}: {x.shape[0]} movies, k={args.k}, cluster_size={cfg.cluster_size}, spill={cfg.spill}: "
              f"blocked {t_blocked:.1f} s, exact{'' if args.sample else f' ({len(rows)} rows)'} {t_exact:.1f} s, "
              f"recall {r:.4f}, score recall {tied:.4f}; load average {load}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
