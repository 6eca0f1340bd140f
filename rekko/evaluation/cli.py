"""``rekko evaluate`` and ``rekko tune``."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from rekko.cli_args import add_path_options
from rekko.evaluation.splitters import MODEL_SEES
from rekko.evaluation.run import (
    MODELS,
    SPLITS,
    EvalConfig,
    describe_models,
    format_table,
    load_inputs,
    params_from_file,
)
from rekko.paths import PipelinePaths

log = logging.getLogger(__name__)


def _add_common(parser: argparse.ArgumentParser) -> None:
    add_path_options(parser, PipelinePaths, only=("interactions", "movies", "ratings"))
    parser.add_argument(
        "--split",
        choices=SPLITS,
        default="per-user",
        help="per-user: each user's last N watches are the test; global: the last D days (default: per-user)",
    )
    parser.add_argument("--test-size", type=int, default=10, metavar="N", help="per-user split: N (default: 10)")
    parser.add_argument("--days", type=float, default=30.0, metavar="D", help="global split: D days (default: 30)")
    parser.add_argument("-k", type=int, default=10, help="recommendations per user measured, the @k (default: 10)")
    parser.add_argument(
        "--model-sees",
        choices=MODEL_SEES,
        default="exact",
        help="exact: the model sees the watch times the split used; dates: split on the exact time, give the model "
        "(pipeline and tuning) year/month/day only, like the seed's files (default: exact)",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``evaluate`` and ``tune`` to rekko's CLI."""
    ev = subparsers.add_parser(
        "evaluate",
        help="measure recommendation quality on a time split (rekko vs baselines)",
        description=(
            "Split the interactions by time, run the pipeline on the train part, recommend k movies to every test "
            "user with each model and report HitRate, Precision, Recall, NDCG, MAP, MRR, catalog coverage, novelty "
            "and genre diversity @k.\n\nModels:\n" + describe_models(list(MODELS))
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(ev)
    ev.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {','.join(MODELS)}")
    ev.add_argument(
        "--params", type=Path,
        help="rekko's parameters: a `rekko tune` JSON or a manifest (default: what `rekko pipeline` ships, i.e. "
             "tuned on the train part as the pipeline tunes on its input)"
    )
    ev.add_argument("--no-tune", action="store_true",
                    help="without --params: rekko with the built-in parameters (`rekko pipeline --no-tune`)")
    ev.add_argument("--tune-budget", type=float, default=None, metavar="SECONDS",
                    help="without --params: the pipeline's tuning budget (default: as `rekko pipeline`)")
    ev.add_argument(
        "--json", type=Path, default=Path("evaluation/metrics.json"), help="JSON output (default: %(default)s)"
    )
    ev.add_argument(
        "--report",
        type=Path,
        default=Path("evaluation/report.html"),
        help="self-contained HTML report (default: %(default)s)",
    )
    ev.set_defaults(handler=run_evaluate)

    tu = subparsers.add_parser(
        "tune",
        help="fit rekko's blend weights, recency and co-watching k on a validation split of the train part",
        description=(
            "Hold out the test part exactly as `rekko evaluate` does, carve a validation split from the rest the same "
            "way, and search the recency, the blend weights and the co-watching similarity (k, BM25/cosine/RP3beta) "
            "for the best NDCG@k on the validation split, by successive halving over validation users. The test part is never looked at. The parameters go to a "
            "JSON file and are applied to the artifact set of --manifest: the co-watching similarity and the recency "
            "ranks are rebuilt when they differ, so `rekko recommend`, the batch and `rekko serve` use the tuned "
            "model with no further step."
        ),
    )
    _add_common(tu)
    tu.add_argument(
        "--out", type=Path, default=Path("evaluation/tuned.json"), help="tuned parameters JSON (default: %(default)s)"
    )
    tu.add_argument(
        "--manifest",
        type=Path,
        default=PipelinePaths().manifest,
        help="manifest whose parameters to update, if it exists (default: %(default)s)",
    )
    tu.add_argument("--no-manifest", action="store_true", help="do not touch the manifest")
    tu.add_argument(
        "--max-users",
        type=int,
        default=1000,
        help="validation users scored per candidate, a fixed random sample above this (default: 1000)",
    )
    tu.set_defaults(handler=run_tune)


def _config(args: argparse.Namespace, models: tuple[str, ...] = tuple(MODELS)) -> EvalConfig:
    tuning = {"tune": not args.no_tune, "tune_budget": args.tune_budget} if hasattr(args, "no_tune") else {}
    return EvalConfig(split=args.split, test_size=args.test_size, days=args.days, k=args.k, models=models,
                      model_sees=args.model_sees, **tuning)


def run_evaluate(args: argparse.Namespace) -> int:
    from rekko.evaluation.report import write_html, write_json
    from rekko.evaluation.run import run_evaluation

    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    config = _config(args, models)
    params = params_from_file(args.params) if args.params else None
    result = run_evaluation(*load_inputs(args.interactions, args.movies, args.ratings), config, params)
    print(result.split.description + f"; {result.split.stats['test_users']} test users, k = {config.k}")
    if "tuned" in result.counts:
        from rekko.tuning.auto import describe

        print("rekko as the pipeline ships it for the train part: " + describe(result.counts["tuned"]))
    print(format_table(result.table, config.k))
    write_json(result, args.json)
    write_html(result, args.report)
    print(f"wrote {args.json} and {args.report} ({result.seconds['total']:.1f} s)")
    return 0


def run_tune(args: argparse.Namespace) -> int:
    from rekko.evaluation.tuning import tune
    from rekko.io import atomic_open
    from rekko.tuning.apply import apply_tuned
    from rekko.tuning.search import TuneConfig

    config = _config(args)
    interactions, movies, ratings = load_inputs(args.interactions, args.movies, args.ratings)
    outer = config.outer_split(interactions)  # with --model-sees dates the tuner sees (and splits on) dates only
    result = tune(
        outer.train, movies, ratings, config.splitter(tie_seed=0),  # same-day ties split at random, not file order
        config=TuneConfig(k=config.k, max_users=args.max_users)
    )
    summary = {
        **result.to_dict(),
        "protocol": {"split": config.split, "test_size": config.test_size, "days": config.days, "k": config.k,
                     "model_sees": config.model_sees},
    }
    with atomic_open(args.out, "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=2)
        fh.write("\n")
    print(json.dumps(result.params.to_dict(), indent=2))
    print(
        f"validation NDCG@{config.k}: {result.start_ndcg:.4f} (start) -> {result.validation_ndcg:.4f} (tuned), "
        f"{len(result.trace)} candidates in {result.seconds:.1f} s; wrote {args.out}"
    )
    if not args.no_manifest:
        if args.manifest.exists():
            note = apply_tuned(args.manifest, result.params, result.to_dict(timing=False))
            print(f"{args.manifest}: {note}")
        else:
            print(
                f"no manifest at {args.manifest}: run `rekko pipeline`, then `rekko tune` again to store the parameters"
            )
    return 0
