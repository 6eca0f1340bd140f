"""The tuner's search, before and after successive halving: time, candidates, validation and test NDCG@10.

    .venv/bin/python benchmarks/bench_tune_search.py [--data benchmarks/out/quality/data] [--model-sees dates]

Runs, in one process on the same fitted validation split of MovieLens-small (imported by
``rekko.evaluation.movielens_benchmark``), the current search (``rekko.evaluation.tuning.tune``) and the
exhaustive one it replaced (read from git at ``--before``, commit 3462ee9 by default), each timed with the load
average before it. The test NDCG is of the chosen parameters refitted on the whole train part, as
``rekko evaluate --params`` measures it.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def old_module(commit: str):
    source = subprocess.run(["git", "show", f"{commit}:rekko/evaluation/tuning.py"], cwd=HERE.parent, check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "tuning_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("tuning_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["tuning_before"] = module
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=HERE / "out" / "quality" / "data")
    parser.add_argument("--model-sees", default="dates", choices=("dates", "exact"))
    parser.add_argument("--before", default="3462ee9")
    args = parser.parse_args(argv)
    if not (args.data / "interactions.parquet").exists():
        print(f"skipped: no imported MovieLens at {args.data} (run rekko.evaluation.movielens_benchmark first)")
        return 0
    import numpy as np

    from rekko.columns import Columns as C
    from rekko import metrics
    from rekko.evaluation import models as M
    from rekko.evaluation import tuning
    from rekko.evaluation.run import EvalConfig, load_inputs

    d = args.data
    interactions, movies, ratings = load_inputs(d / "interactions.parquet", d / "movies_metdata.parquet",
                                                d / "Movies_r_d.xlsx")
    cfg = EvalConfig(model_sees=args.model_sees)
    outer = cfg.outer_split(interactions)
    inner = cfg.splitter(tie_seed=0)(outer.train)
    base = M.fit(inner.train, movies, ratings)
    full = M.fit(outer.train, movies, ratings)
    users = np.unique(outer.test[C.USER])
    print("| search | wall s | candidates | users ranked | validation NDCG@10 | test NDCG@10 | load average before |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, module in (("successive halving (now)", tuning), ("exhaustive stages (before)", old_module(args.before))):
        load = os.getloadavg()
        t = time.perf_counter()
        r = module.tune(outer.train, movies, ratings, cfg.splitter(tie_seed=0), config=module.TuneConfig(k=10),
                        fitted=base)
        wall = time.perf_counter() - t
        test = metrics.ndcg(M.rekko(full, users, 10, r.params), outer.test, 10)
        ranked = getattr(r, "user_evaluations", None) or len(r.trace) * len(np.unique(inner.test[C.USER]))
        print(f"| {name} | {wall:.1f} | {len(r.trace)} | {ranked} | {r.start_ndcg:.4f} -> {r.validation_ndcg:.4f} "
              f"| {test:.4f} | {', '.join(f'{x:.1f}' for x in load)} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
