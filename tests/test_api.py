"""The public Python API (rekko.api, exported lazily by rekko): built from paths or frames, loaded, asked."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import rekko
from rekko.cli import main
from rekko.exceptions import ConfigError, DataValidationError, MissingColumnsError
from rekko.testing.synth import generate, write_inputs

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data"


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory):
    """A small synthetic data set as frames and as the seed's files."""
    data = generate(n_movies=80, n_users=60, n_interactions=900, seed=3)
    folder = tmp_path_factory.mktemp("inputs")
    return data, write_inputs(data, folder)


@pytest.fixture(scope="module")
def built(synth, tmp_path_factory: pytest.TempPathFactory):
    """The same data built twice: from the files and from the frames."""
    data, paths = synth
    root = tmp_path_factory.mktemp("built")
    from_paths = rekko.build_artifacts(paths["interactions"], paths["movies"], paths["ratings"], out=root / "paths")
    from_frames = rekko.build_artifacts(data.interactions, data.movies, data.ratings, out=root / "frames")
    return root, from_paths, from_frames


def test_import_rekko_imports_no_pandas_or_numpy() -> None:
    code = ("import sys, rekko; heavy = sorted(m for m in ('pandas', 'numpy', 'scipy', 'pyarrow') if m in sys.modules);"
            " assert not heavy, heavy; print(sorted(rekko.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.split() == ["['Recommender',", "'__version__',", "'build_artifacts',", "'evaluate']"]


def test_public_names_resolve_and_unknown_names_do_not() -> None:
    from rekko import Recommender, build_artifacts, evaluate

    assert Recommender.__module__ == "rekko.api" and callable(build_artifacts) and callable(evaluate)
    assert {"Recommender", "build_artifacts", "evaluate"} <= set(dir(rekko))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        rekko.nope  # noqa: B018


def test_paths_and_frames_build_the_same_artifacts(built) -> None:
    root, from_paths, from_frames = built
    a, b = from_paths.manifest, from_frames.manifest
    assert set(a.artifacts) == set(b.artifacts)
    for role, entry in a.artifacts.items():
        assert entry["sha256"] == b.artifacts[role]["sha256"], role
    assert a.parameters == b.parameters
    # the seed's layout under out: data/ and matrix/
    assert (root / "frames" / "matrix" / "manifest.json").is_file()
    assert (root / "frames" / "data" / "interactions_upd.parquet").is_file()
    inputs = json.loads((root / "frames" / "matrix" / "manifest.json").read_text())["inputs"]
    assert inputs["interactions"]["source"] == "DataFrame" and inputs["interactions"]["rows"] == 900
    assert Path(a.inputs["movies"]["path"]).name == "movies_metdata.parquet"


def test_a_bad_frame_raises_the_error_the_cli_reports(synth, tmp_path: Path, capsys) -> None:
    data, paths = synth
    bad = data.interactions.rename(columns={"user_id": "userid"})
    with pytest.raises(MissingColumnsError) as caught:
        rekko.build_artifacts(bad, data.movies, data.ratings, out=tmp_path / "api")
    assert not (tmp_path / "api" / "matrix" / "manifest.json").exists()
    bad.to_parquet(tmp_path / "bad.parquet")
    code = main(["pipeline", "--interactions", str(tmp_path / "bad.parquet"), "--movies", str(paths["movies"]),
                 "--ratings", str(paths["ratings"]), "--sim-md", str(tmp_path / "cli" / "cos_sim_md.pkl")])
    assert code == 2
    reason = str(caught.value).split(": ", 1)[1]  # the message after the input's name (a path in the CLI)
    assert reason.startswith("Missed columns ['user_id']")
    assert reason in capsys.readouterr().err


def test_bad_ratings_and_movies_frames_are_domain_errors(synth, tmp_path: Path) -> None:
    data, _ = synth
    with pytest.raises(DataValidationError):
        rekko.build_artifacts(data.interactions, data.movies.drop(columns=["title"]), data.ratings, out=tmp_path)
    with pytest.raises(ConfigError, match="path or a pandas DataFrame"):
        rekko.build_artifacts(data.interactions, data.movies, 42, out=tmp_path)
    with pytest.raises(ConfigError, match="reads its inputs from paths"):
        rekko.build_artifacts(data.interactions, data.movies, data.ratings, out=tmp_path, engine="dask")


def test_recommend_similar_and_recommend_all_answer_in_frames(built) -> None:
    _, rec, _ = built
    user = int(rec.users[0])
    top = rec.recommend(user, 5)
    assert list(top.columns[:5]) == ["user_id", "rank", "movie_id", "title", "score"]
    assert len(top) == 5 and (top["user_id"] == user).all() and not top["cold_start"].any()
    assert top["score"].is_monotonic_decreasing
    # the engine underneath answers the same
    assert top["movie_id"].tolist() == rec.ranker.recommend(user, 5).items["movie_id"].tolist()
    cold = rec.recommend(-1, 3)
    assert cold["cold_start"].all() and len(cold) == 3

    movie = top["movie_id"].iloc[0]
    near = rec.similar(movie, 4)
    assert list(near.columns) == ["rank", "movie_id", "title", "score"] and near["rank"].tolist() == [1, 2, 3, 4]
    assert movie not in set(near["movie_id"]) and near["score"].is_monotonic_decreasing
    # blend = sum of each kind times its weight (movie score left out)
    w = rec.ranker.weights
    pos = rec.ranker.movie_position(movie)
    expected = sum(getattr(w, k) * rec.ranker.artifacts.sims[k][pos].toarray().ravel() for k in rec.ranker.kinds_)
    got = expected[[rec.ranker.movie_position(m) for m in near["movie_id"]]]
    np.testing.assert_allclose(near["score"], got, rtol=1e-5)
    assert np.isclose(near["score"].iloc[0], expected.max(), rtol=1e-5)
    md = rec.similar(movie, 4, "md")
    assert md["movie_id"].tolist() == rec.ranker.similar(movie, 4, "md")["movie_id"].tolist()
    with pytest.raises(ConfigError, match="unknown movie_id"):
        rec.similar("no-such-movie", 3)

    everyone = rec.recommend_all(3)
    assert list(everyone.columns) == ["user_id", "movie_id", "score", "rank"]
    assert everyone["user_id"].nunique() == len(rec.users)
    mine = everyone[everyone["user_id"] == user]
    assert mine["movie_id"].tolist() == top["movie_id"].iloc[:3].tolist()
    assert rec.recommend_all(2, users=[user, -5])["user_id"].tolist() == [user, user, -5, -5]


def test_load_takes_the_out_folder_a_flat_folder_or_paths(built, tmp_path: Path) -> None:
    root, rec, _ = built
    user = int(rec.users[1])
    want = rec.recommend(user, 4)
    pd.testing.assert_frame_equal(rekko.Recommender.load(root / "paths").recommend(user, 4), want)
    flat = tmp_path / "flat"
    flat.mkdir()
    for f in [*(root / "paths" / "data").iterdir(), *(root / "paths" / "matrix").iterdir()]:
        shutil.copy2(f, flat / f.name)
    pd.testing.assert_frame_equal(rekko.Recommender.load(str(flat)).recommend(user, 4), want)
    from rekko.api import artifact_layout

    pd.testing.assert_frame_equal(rekko.Recommender.load(artifact_layout(root / "paths")).recommend(user, 4), want)
    assert "Recommender" in repr(rec) and len(rec.movies) == 80


def test_evaluate_is_reachable_from_frames(synth) -> None:
    data, _ = synth
    result = rekko.evaluate(data.interactions, data.movies, data.ratings, k=5, models=("most_popular",))
    assert list(result.table.index) == ["most_popular"] and result.config.k == 5
    assert result.to_dict()["protocol"]["k"] == 5


def _readme_python_api_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, "the README's Python API section has no python block"
    return blocks[0]


def test_the_readme_python_example_runs_as_written(tmp_path: Path) -> None:
    shutil.copytree(SAMPLE, tmp_path / "data", ignore=shutil.ignore_patterns("README.md"))
    (tmp_path / "example.py").write_text(_readme_python_api_block(), encoding="utf-8")
    out = subprocess.run([sys.executable, "example.py"], capture_output=True, text=True, cwd=tmp_path, timeout=600,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "build" / "matrix" / "manifest.json").is_file()
    assert "score" in out.stdout
