"""``rekko evaluate`` end to end on a tiny two-taste data set: every model, every output, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rekko.columns import Columns as C
from rekko.evaluation import report
from rekko.metrics import ACCURACY_METRICS, BEYOND_ACCURACY_METRICS
from rekko.evaluation.run import MODELS, EvalConfig, load_inputs, run_evaluation
from rekko.exceptions import ConfigError

REPO = Path(__file__).resolve().parents[1]


def tiny_inputs(directory: Path) -> tuple[Path, Path, Path]:
    """12 movies in two genre/director clusters; 16 users, each watching 6 movies of one cluster over 6 days."""
    rng = np.random.default_rng(7)
    movies = pd.DataFrame(
        {
            C.MOVIE: [f"m{i}" for i in range(12)],
            C.TITLE: [f"{'Drama' if i < 6 else 'Comedy'} story {i}" for i in range(12)],
            C.ENTITY_TYPE: "movie",
            C.GENRES: [["Drama"] if i < 6 else ["Comedy"] for i in range(12)],
            C.DIRECTOR: [["Anna Berg"] if i < 6 else ["Carl Dahl"] for i in range(12)],
            C.ACTORS: [[] for _ in range(12)],
            C.COUNTRY: [["SE"] for _ in range(12)],
            C.DURATION: 100.0,
        }
    )
    rows = []
    for user in range(16):
        cluster = np.arange(6) if user % 2 == 0 else np.arange(6, 12)
        for day, movie in enumerate(rng.permutation(cluster)):
            rows.append((user, f"m{movie}", float(rng.integers(40, 101)), 2021, 3, day + 1))
    interactions = pd.DataFrame(rows, columns=[C.USER, C.MOVIE, C.WATCHED_MINUTES, C.YEAR, C.MONTH, C.DAY])
    ratings = pd.DataFrame(
        {
            C.TITLE: movies[C.TITLE],
            C.RATING: np.linspace(5, 8, 12),
            C.DESCRIPTION: ["a quiet family tale"] * 6 + ["a loud road trip"] * 6,
        }
    )
    paths = directory / "interactions.parquet", directory / "movies_metdata.parquet", directory / "ratings.parquet"
    interactions.to_parquet(paths[0])
    movies.to_parquet(paths[1])
    ratings.to_parquet(paths[2])
    return paths


@pytest.fixture()
def inputs(tmp_path: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    return load_inputs(*tiny_inputs(tmp_path))


def test_every_model_every_metric(inputs) -> None:
    result = run_evaluation(*inputs, EvalConfig(test_size=2, k=3))
    assert list(result.table.index) == list(MODELS)
    assert list(result.table.columns) == list(ACCURACY_METRICS + BEYOND_ACCURACY_METRICS)
    assert result.split.stats["test_users"] == 16 and result.split.stats["test_pairs"] == 32
    acc = result.table[list(ACCURACY_METRICS)]
    assert ((acc >= 0) & (acc <= 1)).all().all()
    # the tastes are perfectly separable: a user's own cluster has exactly 2 unwatched movies, the 2 test ones;
    # rekko ranks them first, and the third pick must come from the other genre
    assert result.table.loc["rekko", "recall"] == 1.0
    assert result.table.loc["rekko", "diversity"] == pytest.approx(2 / 3)  # cosines 1, 0, 0
    assert result.table.loc["rekko", "ndcg"] >= result.table.loc["most_popular", "ndcg"]


def test_global_split_and_bad_config(inputs) -> None:
    result = run_evaluation(*inputs, EvalConfig(split="global", days=1.5, k=2, models=("most_popular", "rekko")))
    assert list(result.table.index) == ["most_popular", "rekko"]
    assert result.split.stats["test_users"] == 16  # everybody's day-6 watch
    with pytest.raises(ConfigError, match="unknown models"):
        EvalConfig(models=("rekko", "svd"))
    with pytest.raises(ConfigError, match="split"):
        EvalConfig(split="random")


def test_json_and_html_outputs(inputs, tmp_path: Path) -> None:
    result = run_evaluation(*inputs, EvalConfig(test_size=1, k=2))
    report.write_json(result, tmp_path / "out" / "m.json")
    report.write_html(result, tmp_path / "out" / "r.html")
    data = json.loads((tmp_path / "out" / "m.json").read_text())
    assert set(data["metrics"]) == set(MODELS)
    assert data["metrics"]["rekko"]["ndcg"] == pytest.approx(result.table.loc["rekko", "ndcg"], abs=1e-6)
    assert data["parameters"] == json.loads(json.dumps(result.params.to_dict()))
    page = (tmp_path / "out" / "r.html").read_text()
    assert page.count("<svg") == len(result.table.columns)  # one chart per metric
    assert "<script" not in page and "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    for model in MODELS:
        assert model in page


@pytest.mark.slow
def test_cli_evaluate_and_tune(tmp_path: Path) -> None:
    """The two subcommands through the real console entry point, in a subprocess."""
    files = tiny_inputs(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    common = [
        "--interactions",
        str(files[0]),
        "--movies",
        str(files[1]),
        "--ratings",
        str(files[2]),
        "--test-size",
        "1",
        "-k",
        "2",
    ]
    tuned = tmp_path / "tuned.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "rekko",
            "tune",
            *common,
            "--out",
            str(tuned),
            "--manifest",
            str(tmp_path / "none.json"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "no manifest" in run.stdout
    assert json.loads(tuned.read_text())["parameters"]["collaborative"]["weighting"] in ("bm25", "cosine", "rp3beta", "ease")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "rekko",
            "evaluate",
            *common,
            "--params",
            str(tuned),
            "--json",
            str(tmp_path / "m.json"),
            "--report",
            str(tmp_path / "r.html"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "ndcg@2" in run.stdout and "rekko" in run.stdout
    assert (tmp_path / "r.html").exists()
    bad = subprocess.run(
        [sys.executable, "-m", "rekko", "evaluate", *common, "--models", "rekko,svd"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert bad.returncode == 2 and "svd" in bad.stderr
    dates = subprocess.run(
        [sys.executable, "-m", "rekko", "evaluate", *common, "--model-sees", "dates", "--models", "most_popular,rekko",
         "--json", str(tmp_path / "d.json"), "--report", str(tmp_path / "d.html")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )
    assert dates.returncode == 0, dates.stderr
    assert "the model sees dates only" in dates.stdout
    assert json.loads((tmp_path / "d.json").read_text())["protocol"]["model_sees"] == "dates"
    bad = subprocess.run(
        [sys.executable, "-m", "rekko", "evaluate", *common, "--model-sees", "hours"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )
    assert bad.returncode == 2 and "--model-sees" in bad.stderr


@pytest.mark.slow
def test_cli_bad_collaborative_params_exit_2_naming_the_field(tmp_path: Path) -> None:
    """A --params file with a bad recency mode or RP3beta setting is refused before any work, exit 2."""
    files = tiny_inputs(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    common = ["--interactions", str(files[0]), "--movies", str(files[1]), "--ratings", str(files[2]),
              "--test-size", "1", "-k", "2", "--json", str(tmp_path / "m.json"), "--report", str(tmp_path / "r.html")]
    for field, value in (("recency", "latest"), ("rp3_beta", -1), ("weighting", "slim"), ("ease_lambda", 0),
                         ("ease_max_movies", "all")):
        params = tmp_path / f"{field}.json"
        params.write_text(json.dumps({"parameters": {"collaborative": {field: value}}}))
        run = subprocess.run([sys.executable, "-m", "rekko", "evaluate", *common, "--params", str(params)],
                             capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
        assert run.returncode == 2, run.stderr
        assert f"collaborative.{field}" in run.stderr
    for weighting in ("rp3beta", "ease"):
        good = tmp_path / "good.json"
        good.write_text(json.dumps({"parameters": {"collaborative": {"weighting": weighting, "recency": "dense"},
                                                   "blend": {"ratio_power": 2.0}}}))
        run = subprocess.run([sys.executable, "-m", "rekko", "evaluate", *common, "--models", "rekko",
                              "--params", str(good)], capture_output=True, text=True, env=env, cwd=tmp_path,
                             timeout=120)
        assert run.returncode == 0, run.stderr
        written = json.loads((tmp_path / "m.json").read_text())["parameters"]
        assert written["collaborative"]["weighting"] == weighting and written["blend"]["ratio_power"] == 2.0
