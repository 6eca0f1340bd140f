"""The recency and co-watching ablation of docs/quality.md: rekko's recommender with one setting changed at a time.

    .venv/bin/python benchmarks/bench_ablation.py --data benchmarks/out/quality/data

Same protocol as ``rekko evaluate --split per-user --test-size 10 -k 10``, for
``--model-sees dates`` and ``exact``; every variant is ranked by the shipped
kernel. Measured on the test part to *explain* the model: no default was
chosen from these figures (the defaults come from ``rekko tune``'s validation
split).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from rekko.columns import Columns as C
from rekko.config import BlendWeights, RekkoParams
from rekko import metrics
from rekko.evaluation import models as M
from rekko.evaluation.run import EvalConfig, load_inputs

DEFAULT = RekkoParams()
CF_ONLY = BlendWeights(md=0.0, desc=0.0, cf=1.0, movie=0.0, recency_half_life=DEFAULT.blend.recency_half_life)


def variant(label: str, *, blend: BlendWeights = DEFAULT.blend, half_life: float | None | str = "default",
            **collaborative: object) -> tuple[str, RekkoParams]:
    params = RekkoParams(blend=blend, collaborative=replace(DEFAULT.collaborative, **collaborative))
    if half_life != "default":
        params = params.with_half_life(half_life)  # type: ignore[arg-type]
    return label, params


VARIANTS = [
    variant("default (recency auto, half-life 3, BM25 k=100)"),
    variant("recency order (file order inside a day)", recency="order"),
    variant("recency dense", recency="dense"),
    variant("recency days, half-life 7 days", recency="days", half_life=7.0),
    variant("no recency", half_life=None),
    variant("cosine co-watching", weighting="cosine"),
    variant("RP3beta alpha 1, beta 0.5", weighting="rp3beta", rp3_alpha=1.0, rp3_beta=0.5),
    variant("RP3beta alpha 0.8, beta 0.3", weighting="rp3beta", rp3_alpha=0.8, rp3_beta=0.3),
    variant("co-watching only, BM25", blend=CF_ONLY),
    variant("co-watching only, RP3beta alpha 1, beta 0.5", blend=CF_ONLY, weighting="rp3beta"),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="the folder `rekko import movielens` wrote")
    parser.add_argument("--protocols", default="dates,exact")
    args = parser.parse_args(argv)
    d = args.data
    if not (d / "interactions.parquet").exists():
        print(f"skipped: {d / 'interactions.parquet'} not found (run `rekko import movielens` first)")
        return 0
    interactions, movies, ratings = load_inputs(d / "interactions.parquet", d / "movies_metdata.parquet",
                                                d / "Movies_r_d.xlsx")
    rows: dict[str, dict[str, tuple[float, float]]] = {}
    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    for sees in protocols:
        split = EvalConfig(model_sees=sees).outer_split(interactions)
        fitted = M.fit(split.train, movies, ratings)
        users = np.unique(split.test[C.USER].to_numpy(dtype=np.int64))
        genres = fitted.data.movies.set_index(C.MOVIE)[C.GENRES]
        for label, params in VARIANTS:
            recs = M.rekko(fitted.with_collaborative(params.collaborative), users, 10, params)
            m = metrics.evaluate(recs, split.test, 10, train=split.train, catalog_size=len(movies), genres=genres)
            rows.setdefault(label, {})[sees] = (m["ndcg"], m["coverage"])
            print(f"{sees:5s} {label:48s} NDCG@10 {m['ndcg']:.4f} coverage@10 {m['coverage']:.4f}", flush=True)
    print()
    print("| variant | " + " | ".join(f"{p}: NDCG@10 | {p}: coverage@10" for p in protocols) + " |")
    print("|---|" + "---:|---:|" * len(protocols))
    for label, by in rows.items():
        print(f"| {label} | " + " | ".join(f"{by[p][0]:.4f} | {by[p][1]:.4f}" for p in protocols) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
