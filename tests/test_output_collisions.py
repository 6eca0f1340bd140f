"""Every command's outputs against its inputs and the artifact set (issue 18, item 2).

``rekko recommend --all-users --output data/interactions.parquet`` used to exit 0
and replace the raw watch log; ``--output data/interactions_upd.parquet`` an
artifact. Now every file rekko writes is checked by one rule
(:mod:`rekko.collisions`) before anything is read or written: exit 2 naming both
paths, and nothing on disk changes.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from rekko.cli import main
from rekko.exceptions import OutputPathError
from tests.conftest import run_cli, tiny_interactions, write_inputs


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The tiny inputs and their artifact set (seed layout), built once; tests must leave it as it is."""
    root = write_inputs(tmp_path_factory.mktemp("collide"))
    proc = run_cli(["-q", "pipeline", "--no-tune"], root)
    assert proc.returncode == 0, proc.stderr
    return root


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def rekko(args: list[str], cwd: Path, monkeypatch, capsys) -> tuple[int, str]:
    monkeypatch.chdir(cwd)
    code = main(args)
    return code, capsys.readouterr().err


BATCH_COLLISIONS = {
    "the raw watch log (manifest input)": ("data/interactions.parquet", "interactions input named in"),
    "the movies input": ("data/movies_metdata.parquet", "movies input named in"),
    "an artifact": ("data/interactions_upd.parquet", "interactions_upd artifact"),
    "another artifact": ("data/int_coef.parquet", "int_coef artifact"),
    "the pipeline's P4 output": ("data/movies_rd.parquet", "movies_rd artifact named in"),
    "the API cache": ("data/api_cache.parquet", "API cache"),
    "an artifact spelled with ..": ("matrix/../data/./interactions_upd.parquet", "interactions_upd artifact"),
    "a folder holding the artifacts": ("data", "folder replaced as a whole holding"),
    "a folder holding the manifest": ("matrix/", "folder replaced as a whole holding"),
}


@pytest.mark.parametrize("case", sorted(BATCH_COLLISIONS))
def test_batch_output_onto_an_input_or_artifact_exits_2_naming_both(built, case, monkeypatch, capsys):
    output, fragment = BATCH_COLLISIONS[case]
    before = snapshot(built)
    code, err = rekko(["recommend", "--all-users", "-n", "3", "--output", output], built, monkeypatch, capsys)
    assert code == 2, err
    assert fragment in err and f"--output {output}" in err
    assert snapshot(built) == before


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
@pytest.mark.parametrize("victim", ["data/interactions.parquet", "data/interactions_upd.parquet"])
def test_batch_output_linked_to_an_input_or_artifact_is_refused(built, link, victim, monkeypatch, capsys, tmp_path):
    alias = tmp_path / "alias.parquet"
    (os.symlink if link == "symlink" else os.link)(built / victim, alias)
    before = snapshot(built)
    code, err = rekko(["recommend", "--all-users", "-n", "3", "--output", str(alias)], built, monkeypatch, capsys)
    assert code == 2 and str(alias) in err and "would overwrite what it reads" in err, err
    assert snapshot(built) == before


def test_the_manifest_inputs_are_found_from_another_working_directory(built, monkeypatch, capsys, tmp_path):
    """The manifest names data/interactions.parquet relative to where the pipeline ran; found from elsewhere too."""
    artifacts = [f"--{name}={built / rel}" for name, rel in (
        ("interactions-upd", "data/interactions_upd.parquet"), ("movies-upd", "data/movies_md_upd.parquet"),
        ("int-coef", "data/int_coef.parquet"), ("sim-md", "matrix/cos_sim_md.pkl"),
        ("sim-desc", "matrix/cos_sim_desc.pkl"))]
    before = snapshot(built)
    code, err = rekko(["recommend", "--all-users", "-n", "3", *artifacts, "--output",
                       str(built / "data/interactions.parquet")], tmp_path, monkeypatch, capsys)
    assert code == 2 and "interactions input named in" in err, err
    assert snapshot(built) == before


def test_a_plain_batch_output_still_works(built, monkeypatch, capsys, tmp_path):
    code, err = rekko(["recommend", "--all-users", "-n", "3", "--output", str(tmp_path / "recs.parquet")], built,
                      monkeypatch, capsys)
    assert code == 0, err


def test_the_dask_engine_refuses_before_connecting(built, monkeypatch, capsys):
    pytest.importorskip("distributed")
    before = snapshot(built)
    # nothing listens on port 1: a collision found first is exit 2 at once, not a connection error
    code, err = rekko(["recommend", "--all-users", "--engine", "dask", "--scheduler", "tcp://127.0.0.1:1",
                       "--output", "data/interactions.parquet"], built, monkeypatch, capsys)
    assert code == 2 and "interactions input named in" in err, err
    assert snapshot(built) == before


@pytest.mark.parametrize("output", ["data/interactions.parquet", "data/interactions_upd.parquet", "matrix"])
def test_the_dask_batch_itself_checks_its_output(built, output, monkeypatch):
    """``recommend_all`` as a library call refuses before it touches the client (None here)."""
    from rekko.distributed.batch import recommend_all
    from rekko.paths import ArtifactPaths

    monkeypatch.chdir(built)
    with pytest.raises(OutputPathError, match="would (overwrite what it reads|delete it)"):
        recommend_all(None, ArtifactPaths(), 3, output)


def test_the_local_batch_itself_checks_its_output(built, monkeypatch):
    from rekko.paths import ArtifactPaths
    from rekko.recommend.batch import recommend_all_local

    monkeypatch.chdir(built)
    with pytest.raises(OutputPathError, match="interactions input"):
        recommend_all_local(ArtifactPaths(), 3, "data/interactions.parquet")


def test_the_per_user_pred_csv_never_overwrites_an_input(built, monkeypatch, capsys, tmp_path):
    pred = tmp_path / "pred"
    pred.mkdir()
    os.symlink(built / "data/interactions.parquet", pred / "pred(1).csv")
    before = snapshot(built)
    code, err = rekko(["recommend", "-u", "1", "-n", "2", "--pred-dir", str(pred)], built, monkeypatch, capsys)
    assert code == 2 and "pred(<user>).csv" in err and "interactions input" in err, err
    assert snapshot(built) == before


# -- a partitioned input: its folder and its glob ---------------------------------------------------------


@pytest.fixture(scope="module")
def parted(tmp_path_factory) -> Path:
    """Interactions in parts/part-0.parquet and parts/part-1.parquet; one set built from the folder, one from a glob."""
    root = write_inputs(tmp_path_factory.mktemp("parted"))
    parts = root / "parts"
    parts.mkdir()
    frame = tiny_interactions()
    frame.iloc[:4].to_parquet(parts / "part-0.parquet", index=False)
    frame.iloc[4:].to_parquet(parts / "part-1.parquet", index=False)
    for name, spec in (("folder", "parts"), ("glob", "parts/part-*.parquet")):
        proc = run_cli(["-q", "pipeline", "--no-tune", "--interactions", spec,
                        "--sim-md", f"{name}/cos_sim_md.pkl", "--sim-desc", f"{name}/cos_sim_desc.pkl",
                        "--movies-rd", f"{name}/movies_rd.parquet", "--int-coef", f"{name}/int_coef.parquet",
                        "--movies-upd", f"{name}/movies_md_upd.parquet",
                        "--interactions-upd", f"{name}/interactions_upd.parquet"], root)
        assert proc.returncode == 0, proc.stderr
    return root


def _set(name: str) -> list[str]:
    return ["--sim-md", f"{name}/cos_sim_md.pkl", "--sim-desc", f"{name}/cos_sim_desc.pkl",
            "--int-coef", f"{name}/int_coef.parquet", "--movies-upd", f"{name}/movies_md_upd.parquet",
            "--interactions-upd", f"{name}/interactions_upd.parquet"]


@pytest.mark.parametrize(("built_from", "output", "fragment"), [
    ("folder", "parts/recs.parquet", "is inside the interactions input"),
    ("folder", "parts/deeper/recs/", "is inside the interactions input"),
    ("folder", "parts/part-1.parquet", "is inside the interactions input"),
    ("glob", "parts/part-9.parquet", "matches the interactions input"),
    ("glob", "parts/part-1.parquet", "parts/part-1.parquet, matched by the interactions input"),
])
def test_batch_output_into_a_partitioned_input_is_refused(parted, built_from, output, fragment, monkeypatch, capsys):
    before = snapshot(parted)
    code, err = rekko(["recommend", "--all-users", "-n", "2", *_set(built_from), "--output", output], parted,
                      monkeypatch, capsys)
    assert code == 2 and fragment in err, err
    assert snapshot(parted) == before


def test_a_pipeline_output_matching_its_own_input_glob_is_refused(parted, monkeypatch, capsys):
    """Issue 18, item 6: the second run would read its own output as a part."""
    before = snapshot(parted)
    code, err = rekko(["pipeline", "--no-tune", "--interactions", "parts/part-*.parquet",
                       "--interactions-upd", "parts/part-9.parquet"], parted, monkeypatch, capsys)
    assert code == 2 and "matches the --interactions (P1) input" in err, err
    assert snapshot(parted) == before


# -- evaluate, tune, import, enrich -------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "fragment"), [
    (["evaluate", "--json", "data/interactions.parquet"], "--json data/interactions.parquet is the --interactions"),
    (["evaluate", "--report", "data/interactions_upd.parquet"], "interactions_upd artifact"),
    (["evaluate", "--json", "out.json", "--report", "out.json"], "are the same file"),
    (["tune", "--out", "matrix/manifest.json"], "artifact manifest"),
    (["tune", "--out", "data/Movies_r_d.xlsx"], "--ratings input"),
])
def test_evaluate_and_tune_outputs_are_checked_before_any_work(built, args, fragment, monkeypatch, capsys):
    before = snapshot(built)
    code, err = rekko(args, built, monkeypatch, capsys)
    assert code == 2 and fragment in err, err
    assert snapshot(built) == before


def test_an_import_never_writes_over_the_movielens_files(tmp_path, monkeypatch, capsys):
    ml = tmp_path / "ml"
    ml.mkdir()
    for name, text in (("ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n"),
                       ("movies.csv", "movieId,title,genres\n1,Toy Story (1995),Animation\n"),
                       ("links.csv", "movieId,imdbId,tmdbId\n1,114709,862\n")):
        (ml / name).write_text(text)
    before = snapshot(ml)
    code, err = rekko(["import", "movielens", str(ml), "--out", str(ml), "--ratings-format", "csv"], tmp_path,
                      monkeypatch, capsys)
    assert code == 2 and "MovieLens ratings.csv" in err, err
    assert snapshot(ml) == before


@pytest.mark.parametrize(("cache", "fragment"), [
    ("data/movies_metdata.parquet", "--movies input"),
    ("data/interactions_upd.parquet", "interactions_upd artifact"),
])
def test_the_enrich_cache_never_goes_onto_an_input_or_artifact(built, cache, fragment, monkeypatch, capsys):
    monkeypatch.setenv("REKKO_API_KEY", "test-key-0123456789")
    before = snapshot(built)
    code, err = rekko(["enrich", "--cache", cache, "--api-url", "http://127.0.0.1:1"], built, monkeypatch, capsys)
    assert code == 2 and fragment in err, err
    assert snapshot(built) == before


def test_the_shared_rule_directly(tmp_path):
    from rekko.collisions import check_outputs

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.parquet").write_bytes(b"x")
    with pytest.raises(OutputPathError, match="is inside"):
        check_outputs({"--out": tmp_path / "in" / "b.parquet"}, {"the input": str(tmp_path / "in")})
    with pytest.raises(OutputPathError, match="holding"):
        check_outputs({"--out": tmp_path}, {"the input": str(tmp_path / "in" / "a.parquet")}, folders=["--out"])
    with pytest.raises(OutputPathError, match="matches"):
        check_outputs({"--out": tmp_path / "in" / "sub" / "c.parquet"}, {"the input": str(tmp_path / "in/**/*.parquet")})
    check_outputs({"--out": tmp_path / "other.parquet"}, {"the input": str(tmp_path / "in/*.parquet")})
    shutil.rmtree(tmp_path / "in")
