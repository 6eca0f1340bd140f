"""Every path that ranks gives the same lists, ties included: CLI one user, CLI batch, server, evaluate/tune.

The data is built to tie: a catalogue much larger than the watch log, few
content neighbours (``-k 2``), short histories, and a blend without the movie
score (every movie outside a user's neighbours scores 0), so most lists are
decided at a tied cut-off by the one tie rule (score descending, then
catalogue order).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rekko.artifacts import read_manifest, write_manifest
from rekko.columns import Columns as C
from rekko.config import PipelineConfig, RekkoParams
from rekko.evaluation import models as M
from rekko.evaluation.run import load_inputs
from rekko.paths import PipelinePaths
from rekko.pipeline.run import compute
from rekko.recommend import Recommender, load_artifacts
from rekko.testing import synth
from rekko.tuning.data import TrainPart
from tests.conftest import run_cli
from tests.serve_support import get, live_server

N = 7


@pytest.fixture(scope="module")
def tied(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tied")
    data = synth.generate(n_movies=200, n_users=40, n_interactions=120, seed=11)
    synth.write_inputs(data, root / "data")
    ratings = pd.read_excel(root / "data" / "Movies_r_d.xlsx", engine="openpyxl")
    ratings.iloc[len(ratings) // 4 :].to_excel(root / "data" / "Movies_r_d.xlsx", index=False)  # most unrated
    proc = run_cli(["pipeline", "-k", "2"], cwd=root)
    assert proc.returncode == 0, proc.stderr
    # no movie-score part (as `rekko tune` may choose): every movie outside a user's neighbours scores 0
    manifest = read_manifest(root / "matrix" / "manifest.json")
    manifest.parameters["blend"] = {"md": 0.5, "desc": 0.25, "cf": 1.0, "movie": 0.0, "recency_half_life": 2.0}
    write_manifest(manifest, root / "matrix" / "manifest.json")
    return root


@pytest.fixture(scope="module")
def users(tied) -> list[int]:
    ids = pd.read_parquet(tied / "data" / "interactions_upd.parquet")[C.USER].unique()
    return sorted(int(u) for u in ids) + [-5, 10**15]  # two users without history


def lists_from_frame(frame: pd.DataFrame) -> dict[int, list[str]]:
    frame = frame.sort_values([C.USER, C.RANK])
    return {int(u): g[C.MOVIE].astype(str).tolist() for u, g in frame.groupby(C.USER, sort=False)}


@pytest.fixture(scope="module")
def reference(tied, users) -> dict[int, list[str]]:
    """The in-process single-user answer of the fully loaded artifacts."""
    rec = Recommender(load_artifacts(_paths(tied)))
    return {u: rec.recommend(u, N).items[C.MOVIE].tolist() for u in users}


def _paths(root: Path):
    d = PipelinePaths()
    return PipelinePaths(**{f: root / getattr(d, f) for f in d.__dataclass_fields__}).artifacts()


def test_the_data_really_ties(tied, users):
    rec = Recommender(load_artifacts(_paths(tied)))
    tied_cuts = 0
    for u in users:
        r = rec.rank_rows(np.array([rec.artifacts.user_row(u)]), N + 1, parallel=False)
        scores = r.scores[0, : r.lengths[0]]
        tied_cuts += len(scores) == N + 1 and scores[N - 1] == scores[N]
    assert tied_cuts >= len(users) // 3, f"only {tied_cuts} of {len(users)} lists are cut inside a tie"


def test_batch_in_process_equals_single(tied, users, reference):
    rec = Recommender(load_artifacts(_paths(tied)))
    got = lists_from_frame(rec.recommend_all(N, user_ids=np.array(users), block_size=5))
    assert got == reference


def test_cli_one_user_equals_single(tied, users, reference):
    for u in users[:: max(1, len(users) // 6)] + users[-2:]:
        proc = run_cli(["recommend", "-u", str(u), "-n", str(N), "--format", "json", "--no-pred"], cwd=tied)
        assert proc.returncode == 0, proc.stderr
        assert [row[C.MOVIE] for row in json.loads(proc.stdout)] == reference[u], u


def test_partial_load_equals_full_load(tied, users, reference):
    for u in users:
        rec = Recommender(load_artifacts(_paths(tied), user_ids=[u]))
        assert rec.artifacts.sim_rows is not None  # only this user's rows were read
        assert rec.recommend(u, N).items[C.MOVIE].tolist() == reference[u], u


def test_cli_batch_equals_single(tied, users, reference):
    proc = run_cli(["recommend", "--all-users", "-n", str(N), "--output", "recs.parquet"], cwd=tied)
    assert proc.returncode == 0, proc.stderr
    got = lists_from_frame(pd.read_parquet(tied / "recs.parquet"))
    assert got == {u: reference[u] for u in got}
    assert set(got) == {u for u in users if u >= 0 and u < 10**15}


def test_server_equals_single(tied, users, reference):
    from rekko.serve.app import create_app

    with live_server(create_app(_paths(tied))) as base:
        for u in users:
            status, body, _ = get(f"{base}/recommendations/{u}?n={N}")
            assert status == 200, body
            assert [item["movie_id"] for item in body["items"]] == reference[u], u


def test_evaluate_and_tune_rank_like_the_artifacts(tied, users, reference):
    """``rekko evaluate``'s rekko model (and each tune candidate) on the same inputs: the same lists."""
    d = PipelinePaths()
    interactions, movies, ratings = load_inputs(tied / d.interactions, tied / d.movies, tied / d.ratings)
    manifest = json.loads((tied / "matrix" / "manifest.json").read_text())
    config = PipelineConfig.from_manifest(manifest["parameters"])
    fitted = M.Fitted(TrainPart.of(compute(interactions, movies, ratings, config)), config.collaborative)
    known = np.array([u for u in users if u in set(fitted.user_ids.tolist())])
    got = lists_from_frame(M.rekko(fitted, known, N, RekkoParams(config.blend, config.collaborative)))
    assert got == {u: reference[u] for u in known.tolist()}
