"""Quality ideas on MovieLens-small, each measured on a validation split AND on the test split.

    .venv/bin/python benchmarks/bench_quality_ideas.py --data benchmarks/out/quality/data [--protocols dates,exact]
        [--only SUBSTRING] [--json benchmarks/out/quality/ideas.json]

Protocol as ``rekko evaluate --split per-user --test-size 10 -k 10 --model-sees S``. Three columns:

* ``val``: the split ``rekko tune`` carves from the outer train part (each user's last 10 train watches,
  same-time ties broken at random with seed 0), fitted on the rest;
* ``valx``: the test protocol applied to the outer train part (each user's last 10 train watches by exact
  time, the model seeing dates only with ``dates``), fitted on the rest;
* ``test``: the outer split, fitted on the whole train part.

Defaults are chosen on the validation columns only; the test column is reported for honesty. Each figure is
NDCG@10 / coverage@10. The results are in docs/quality.md.

Every variant is ranked by the shipped kernel (:func:`rekko.recommend.kernel.rank`); a variant changes the
co-watching matrix (a sparse top-k, non-negative), the blend, or the history's per-watch weights (the ratio the
kernel multiplies by its recency decay).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from rekko.columns import Columns as C
from rekko.config import BlendWeights, CollaborativeConfig, RekkoParams
from rekko.evaluation import models as M
from rekko.evaluation.run import EvalConfig, load_inputs
from rekko.evaluation.splitters import hide_time_of_day
from rekko.pipeline import collaborative as CF
from rekko.recommend import kernel
from rekko.recommend.recommender import history_from_frame

K = 10
DEFAULT = RekkoParams()


@dataclass
class Part:
    """One fitted train part and its held-out pairs, with the caches the variants share."""

    name: str
    fitted: M.Fitted
    test: pd.DataFrame
    users: np.ndarray = field(init=False)
    rows: np.ndarray = field(init=False)
    truth: list[np.ndarray] = field(init=False)
    cache: dict[object, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        art = self.fitted.artifacts
        pos = pd.Index(self.fitted.movie_ids)
        t = self.test.assign(idx=pos.get_indexer(self.test[C.MOVIE].astype(str)))
        self.users = np.unique(t[C.USER].to_numpy(dtype=np.int64))
        self.rows = art.user_rows(self.users)
        groups = t.groupby(C.USER)["idx"].apply(lambda s: np.asarray(s, dtype=np.int64))
        self.truth = [groups[u] for u in self.users]

    def memo(self, key: object, make: Callable[[], object]) -> object:
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]


def ndcg_coverage(part: Part, top: np.ndarray, lengths: np.ndarray) -> tuple[float, float]:
    disc = 1.0 / np.log2(np.arange(2, K + 2))
    total = 0.0
    for q, rel in enumerate(part.truth):
        got = top[q, : lengths[q]]
        hits = np.isin(got, rel)
        total += float(disc[: len(got)][hits].sum()) / float(disc[: min(len(rel), K)].sum())
    shown = top[top >= 0]
    return total / len(part.truth), len(np.unique(shown)) / len(part.fitted.movie_ids)


# --------------------------------------------------------------------------- history weights


def day_counts(inter: pd.DataFrame) -> np.ndarray:
    """Per row: how many of the user's watches share its recency rank (its day, with dates-only ``dense``)."""
    key = inter[C.USER].astype(np.int64).to_numpy() * 1_000_003 + inter[C.RECENCY_RANK].to_numpy(np.int64)
    return pd.Series(key).map(pd.Series(key).value_counts()).to_numpy(dtype=np.float64)


def history_with(part: Part, recency: str, ratio_fn: Callable[[pd.DataFrame], np.ndarray] | None):
    def make():
        inter = part.fitted.with_collaborative(replace(part.fitted.collaborative, recency=recency)).data.interactions
        frame = inter.copy()
        if ratio_fn is not None:
            frame[C.WATCH_RATIO] = ratio_fn(frame).astype(np.float32)
        return history_from_frame(frame, len(part.fitted.movie_ids))[1]

    return part.memo(("hist", recency, ratio_fn), make)


# --------------------------------------------------------------------------- similarities


def cf_matrix(part: Part, config: CollaborativeConfig) -> sp.csr_matrix:
    return part.memo(("cf", config), lambda: sp.csr_matrix(part.fitted.with_collaborative(config).sim_cf,
                                                              dtype=np.float32))


def x_matrix(part: Part) -> sp.csr_matrix:
    return part.memo("x", lambda: CF.watch_matrix(part.fitted.data.interactions, len(part.fitted.movie_ids)))


def row_max_scale(m: sp.csr_matrix) -> sp.csr_matrix:
    m = sp.csr_matrix(m, dtype=np.float64)
    rmax = np.zeros(m.shape[0])
    ne = np.diff(m.indptr) > 0
    rmax[ne] = np.maximum.reduceat(m.data, m.indptr[:-1][ne])
    out = sp.diags(np.divide(1.0, rmax, out=np.zeros_like(rmax), where=rmax > 0)) @ m
    return sp.csr_matrix(out, dtype=np.float32)


def top_k_rows(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    from rekko.pipeline.similarity import keep_top_k

    return sp.csr_matrix(keep_top_k(sp.csr_matrix(m, dtype=np.float64), k, drop_diagonal=True), dtype=np.float32)


def pop_penalised(part: Part, base: sp.csr_matrix, beta: float, rescale: str) -> sp.csr_matrix:
    """``S[i, j] / pop_j ** beta`` on the kept entries, then rows rescaled (``max``: row max 1; ``global``: same
    mean entry as before; ``none``)."""
    pop = np.diff(x_matrix(part).tocsc().indptr).astype(np.float64)
    pen = np.divide(1.0, pop**beta, out=np.zeros_like(pop), where=pop > 0)
    out = sp.csr_matrix(base, dtype=np.float64) @ sp.diags(pen)
    out = sp.csr_matrix(out)
    if rescale == "max":
        return row_max_scale(out)
    if rescale == "global":
        out = out * (base.data.mean() / out.data.mean())
    return sp.csr_matrix(out, dtype=np.float32)


def cosine_variant(part: Part, *, k: int = 100, k1: float = 1.2, b: float = 0.75, shrink: float = 0.0,
                   asym: float = 0.5, beta: float = 0.0, binary: bool = False) -> sp.csr_matrix:
    """BM25-weighted co-watching with shrinkage, asymmetry and a popularity penalty applied before the top-k cut."""

    def gram():
        x = x_matrix(part)
        if binary:
            x = x.copy()
            x.data[:] = 1.0
        w = CF.bm25_weight(x, k1, b) if k1 > 0 else x
        items = sp.csr_matrix(w.T, dtype=np.float64)
        dots = (items @ items.T).tocsr()
        dots.setdiag(0)
        dots.eliminate_zeros()
        sq = np.asarray(items.multiply(items).sum(axis=1)).ravel()
        return dots.tocoo(), sq

    def make():
        x = x_matrix(part)
        key = ("gram", k1, b, binary)
        for stale in [c for c in part.cache if isinstance(c, tuple) and c[0] == "gram" and c != key]:
            del part.cache[stale]  # one full gram per part at a time (each is ~1 GB on MovieLens)
        coo, sq = part.memo(key, gram)
        denom = sq[coo.row] ** asym * sq[coo.col] ** (1 - asym) + shrink
        vals = coo.data / denom
        if beta:
            pop = np.diff(x.tocsc().indptr).astype(np.float64)
            vals = vals / np.maximum(pop[coo.col], 1.0) ** beta
        s = sp.csr_matrix((vals, (coo.row, coo.col)), shape=(len(sq), len(sq)))
        s = top_k_rows(s, k)
        return row_max_scale(s) if beta else s

    return part.memo(("cos", k, k1, b, shrink, asym, beta, binary), make)


def ease(part: Part, lam: float, *, k: int = 100, min_users: int = 1, binary: bool = True,
         scale: str = "max") -> sp.csr_matrix:
    """EASE (Steck 2019) on movies with >= min_users viewers, positive entries, top-k per row, rows scaled."""

    def make():
        x = x_matrix(part)
        if binary:
            x = x.copy()
            x.data[:] = 1.0
        pop = np.diff(x.tocsc().indptr)
        keep = np.flatnonzero(pop >= min_users)
        xs = x[:, keep].astype(np.float64)
        t = time.perf_counter()
        g = (xs.T @ xs).toarray()
        g[np.diag_indices_from(g)] += lam
        p = np.linalg.inv(g)
        bmat = -p / np.diag(p)[None, :]
        np.fill_diagonal(bmat, 0.0)
        bmat[bmat < 0] = 0.0
        small = sp.csr_matrix(bmat)
        small = top_k_rows(small, k)
        secs = time.perf_counter() - t
        coo = small.tocoo()
        n = x.shape[1]
        out = sp.csr_matrix((coo.data, (keep[coo.row], keep[coo.col])), shape=(n, n), dtype=np.float64)
        print(f"    [{part.name}] EASE lambda {lam} on {len(keep)} movies: {secs:.1f} s", flush=True)
        if scale == "max":
            return row_max_scale(out)
        return sp.csr_matrix(out, dtype=np.float32)

    return part.memo(("ease", lam, k, min_users, binary, scale), make)


# --------------------------------------------------------------------------- variants


@dataclass(frozen=True)
class Variant:
    label: str
    blend: BlendWeights = DEFAULT.blend
    recency: str = "auto"
    cf: Callable[[Part], sp.csr_matrix] | None = None  # None: the default BM25 top-100
    ratio: Callable[[pd.DataFrame], np.ndarray] | None = None


def run_variant(part: Part, v: Variant) -> tuple[float, float]:
    art = part.fitted.artifacts
    sims = dict(art.sims)
    sims["cf"] = v.cf(part) if v.cf is not None else cf_matrix(part, DEFAULT.collaborative)
    scorer = part.memo(("scorer", id(v.cf), v.blend), lambda: kernel.combine(sims, art.movie_score, v.blend))
    hist = history_with(part, v.recency, v.ratio)
    block = kernel.rank(scorer, hist, part.rows, K, parallel=True)
    return ndcg_coverage(part, block.movies, block.lengths)


def blend(**kw: float | None) -> BlendWeights:
    return replace(DEFAULT.blend, **kw)


CF_ONLY = blend(md=0.0, desc=0.0, cf=1.0, movie=0.0)


def per_day(power: float) -> Callable[[pd.DataFrame], np.ndarray]:
    def f(frame: pd.DataFrame) -> np.ndarray:
        return frame[C.WATCH_RATIO].to_numpy(np.float64) / day_counts(frame) ** power

    f.__name__ = f"per_day_{power}"
    return f


def ratio_power(gamma: float) -> Callable[[pd.DataFrame], np.ndarray]:
    def f(frame: pd.DataFrame) -> np.ndarray:
        return frame[C.WATCH_RATIO].to_numpy(np.float64) ** gamma

    return f


_RD: dict[tuple[float, float], Callable[[pd.DataFrame], np.ndarray]] = {}


def ratio_and_day(gamma: float, power: float) -> Callable[[pd.DataFrame], np.ndarray]:
    def f(frame: pd.DataFrame) -> np.ndarray:
        return frame[C.WATCH_RATIO].to_numpy(np.float64) ** gamma / day_counts(frame) ** power

    return _RD.setdefault((gamma, power), f)


def variants() -> list[Variant]:
    v: list[Variant] = [Variant("default")]
    for hl in (1.0, 2.0, 5.0):
        v.append(Variant(f"half-life {hl:g}", blend=blend(recency_half_life=hl)))
    v.append(Variant("no recency", blend=blend(recency_half_life=None)))
    for p in (0.25, 0.5, 0.75, 1.0):
        v.append(Variant(f"per-day weight 1/n^{p}", ratio=per_day(p)))
        for hl in (1.0, 2.0):
            v.append(Variant(f"per-day weight 1/n^{p}, hl {hl:g}", ratio=per_day(p), blend=blend(recency_half_life=hl)))
    for g in (0.0, 2.0, 3.0):
        v.append(Variant(f"ratio^{g:g}", ratio=ratio_power(g)))
    for g in (2.0, 3.0, 4.0):
        for p in (0.25, 0.5):
            for hl in (2.0, 3.0):
                v.append(Variant(f"combo ratio^{g:g} per-day 1/n^{p} hl {hl:g}",
                                 ratio=ratio_and_day(g, p), blend=blend(recency_half_life=hl)))
    v.append(Variant("combo ratio^4", ratio=ratio_power(4.0)))
    for k1, b in ((0.6, 0.75), (2.0, 0.75), (1.2, 0.5), (1.2, 1.0), (1.2, 0.25)):
        v.append(Variant(f"BM25 k1 {k1} b {b}", cf=lambda p, k1=k1, b=b: cosine_variant(p, k1=k1, b=b)))
    for s in (5.0, 20.0):
        v.append(Variant(f"shrink {s:g}", cf=lambda p, s=s: cosine_variant(p, shrink=s)))
    for a in (0.3, 0.7):
        v.append(Variant(f"asymmetric cosine {a}", cf=lambda p, a=a: cosine_variant(p, asym=a)))
    for beta in (0.1, 0.2, 0.3, 0.5):
        v.append(Variant(f"pop penalty beta {beta} (before top-k, row max)",
                         cf=lambda p, beta=beta: cosine_variant(p, beta=beta)))
    for beta in (0.1, 0.2, 0.3):
        v.append(Variant(f"pop penalty beta {beta} (after top-k, global)",
                         cf=lambda p, beta=beta: pop_penalised(p, cf_matrix(p, DEFAULT.collaborative), beta,
                                                               "global")))
    for lam in (50.0, 200.0, 500.0):
        v.append(Variant(f"EASE lambda {lam:g}, k 100, movies >= 3 viewers",
                         cf=lambda p, lam=lam: ease(p, lam, min_users=3)))
    v.append(Variant("EASE lambda 200 only (cf only)", blend=CF_ONLY, cf=lambda p: ease(p, 200.0, min_users=3)))
    v.append(Variant("BM25 only (cf only)", blend=CF_ONLY))
    shipped_ease = replace(DEFAULT.collaborative, weighting="ease")
    v.append(Variant("shipped EASE (weighting ease, lambda 500, 5,000 movies)",
                     cf=lambda p: cf_matrix(p, shipped_ease)))
    v.append(Variant("shipped EASE + ratio^3", cf=lambda p: cf_matrix(p, shipped_ease), ratio=ratio_power(3.0)))
    v.append(Variant("shipped EASE + ratio^3 + per-day 1/n^0.5", cf=lambda p: cf_matrix(p, shipped_ease),
                     ratio=ratio_and_day(3.0, 0.5)))
    return v


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--protocols", default="dates")
    parser.add_argument("--only", default="", help="run variants whose label contains this (comma-separated)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    d = args.data
    interactions, movies, ratings = load_inputs(d / "interactions.parquet", d / "movies_metdata.parquet",
                                                d / "Movies_r_d.xlsx")
    wanted = [s for s in args.only.split(",") if s]
    chosen = [v for v in variants() if not wanted or v.label == "default" or any(s in v.label for s in wanted)]
    results: dict[str, dict[str, dict[str, list[float]]]] = {}
    print(f"load average at start: {os.getloadavg()}", flush=True)
    for sees in [p for p in args.protocols.split(",") if p]:
        cfg = EvalConfig(model_sees=sees)
        outer = cfg.outer_split(interactions)
        inner = cfg.splitter(tie_seed=0)(outer.train)
        # the test protocol applied to the outer train part: its last 10 by exact time, the model seeing `sees`
        exact_train = cfg.splitter()(interactions).train
        inner_x = cfg.splitter()(exact_train)
        if sees == "dates":
            inner_x = hide_time_of_day(inner_x)
        parts = [Part("val", M.fit(inner.train, movies, ratings), inner.test),
                 Part("valx", M.fit(inner_x.train, movies, ratings), inner_x.test),
                 Part("test", M.fit(outer.train, movies, ratings), outer.test)]
        for v in chosen:
            out = {}
            for part in parts:
                out[part.name] = list(run_variant(part, v))
            results.setdefault(v.label, {})[sees] = out
            print(f"{sees:5s} {v.label:52s} " + "   ".join(
                f"{name} {nd:.4f} / {cov:.4f}" for name, (nd, cov) in out.items()), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(f"load average at end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
