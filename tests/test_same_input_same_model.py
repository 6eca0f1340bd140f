"""Same input, same model: at any load, and `rekko tune` applies what it chooses.

Real subprocess runs of the CLI on generated inputs large enough for the pipeline to tune on.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from rekko.build import run_pipeline
from rekko.config import AutoTuneConfig, BlendWeights, CollaborativeConfig, PipelineConfig, RekkoParams
from rekko.paths import PipelinePaths
from rekko.recommend import Recommender, load_artifacts
from rekko.testing.synth import generate, write_inputs
from rekko.tuning.apply import apply_tuned
from tests.conftest import run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Inputs with 560 users of >= 5 movies: over the 500 the pipeline's own tuning needs."""
    root = tmp_path_factory.mktemp("inputs")
    write_inputs(generate(150, 560, 9_000, seed=11), root / "data")
    return root


def fresh(inputs: Path, where: Path) -> Path:
    shutil.copytree(inputs / "data", where / "data")
    return where


def digests(root: Path) -> dict[str, str]:
    manifest = json.loads((root / "matrix/manifest.json").read_text())
    files = {role: Path(entry["path"]) for role, entry in manifest["artifacts"].items()}
    return {role: hashlib.sha256((root / path if not path.is_absolute() else path).read_bytes()).hexdigest()
            for role, path in files.items()}


def test_default_pipeline_is_byte_identical_with_every_core_busy(inputs: Path, tmp_path: Path) -> None:
    quiet, busy = fresh(inputs, tmp_path / "quiet"), fresh(inputs, tmp_path / "busy")
    run = run_cli(["pipeline"], quiet, timeout=300)
    assert run.returncode == 0, run.stderr
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        loaded = run_cli(["pipeline"], busy, timeout=600)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert loaded.returncode == 0, loaded.stderr
    a = json.loads((quiet / "matrix/manifest.json").read_text())
    b = json.loads((busy / "matrix/manifest.json").read_text())
    assert a["parameters"]["tuned"]["status"] == "tuned"  # the runs compared did tune
    assert a["parameters"] == b["parameters"]
    assert digests(quiet) == digests(busy)
    assert {e["sha256"] for e in a["artifacts"].values()} == {e["sha256"] for e in b["artifacts"].values()}


FORCED = RekkoParams(blend=BlendWeights(md=0.2, desc=0.05, cf=0.7, movie=0.05, recency_half_life=5.0),
                     collaborative=CollaborativeConfig(weighting="rp3beta", k=50, rp3_alpha=0.8, rp3_beta=0.3,
                                                       recency="days"))


def paths_in(root: Path) -> PipelinePaths:
    d = PipelinePaths()
    return PipelinePaths(**{f: root / getattr(d, f) for f in d.__dataclass_fields__})


def test_applied_parameters_equal_a_pipeline_built_with_them(inputs: Path, tmp_path: Path) -> None:
    """A set built with the defaults, then given other co-watching and recency settings by apply_tuned,
    is the set a pipeline builds with those settings: same artifacts, same recommendations row for row."""
    a, b = fresh(inputs, tmp_path / "a"), fresh(inputs, tmp_path / "b")
    cwd = os.getcwd()
    try:
        os.chdir(a)  # manifests record the paths they were given: relative ones, as the CLI runs
        run_pipeline(paths_in(Path(".")), PipelineConfig(autotune=AutoTuneConfig(enabled=False)))
        note = apply_tuned(Path("matrix/manifest.json"), FORCED, {"validation_ndcg": 0.3})
        os.chdir(b)
        summary = {"source": "rekko tune", "validation_ndcg": 0.3}
        run_pipeline(paths_in(Path(".")), PipelineConfig(autotune=AutoTuneConfig(enabled=False),
                                                         tuned=summary).with_params(FORCED))
    finally:
        os.chdir(cwd)
    assert "co-watching similarity" in note and "recency ranks" in note
    pa, pb = (json.loads((r / "matrix/manifest.json").read_text())["parameters"] for r in (a, b))
    assert pa == pb
    assert digests(a) == digests(b)
    ra = Recommender(load_artifacts(paths_in(a).artifacts())).recommend_all(10)
    rb = Recommender(load_artifacts(paths_in(b).artifacts())).recommend_all(10)
    pd.testing.assert_frame_equal(ra, rb)


def test_cli_tune_then_recommend_equals_pipeline_with_the_tuned_parameters(inputs: Path, tmp_path: Path) -> None:
    """`rekko tune` then batch recommend == `rekko pipeline` keeping tune's parameters then batch recommend."""
    a = fresh(inputs, tmp_path / "a")
    for args in (["pipeline", "--no-tune"], ["tune", "--model-sees", "dates"],
                 ["recommend", "--all-users", "-n", "10", "--output", "tuned.csv"]):
        run = run_cli(args, a, timeout=600)
        assert run.returncode == 0, (args, run.stderr)
    tuned = json.loads((a / "matrix/manifest.json").read_text())["parameters"]
    assert tuned["tuned"]["source"] == "rekko tune"
    assert tuned["collaborative"] == tuned["tuned"]["parameters"]["collaborative"]
    b = fresh(inputs, tmp_path / "b")
    (b / "matrix").mkdir()
    shutil.copy(a / "matrix/manifest.json", b / "matrix/manifest.json")  # the pipeline keeps tune's parameters
    for args in (["pipeline"], ["recommend", "--all-users", "-n", "10", "--output", "rebuilt.csv"]):
        run = run_cli(args, b, timeout=600)
        assert run.returncode == 0, (args, run.stderr)
    assert json.loads((b / "matrix/manifest.json").read_text())["parameters"] == tuned
    pd.testing.assert_frame_equal(pd.read_csv(a / "tuned.csv"), pd.read_csv(b / "rebuilt.csv"))
