"""The interactions input as parts: a folder, a glob, a file:// URL, an s3:// prefix (local engine)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import run_cli, tiny_interactions, write_inputs
from rekko.exceptions import DataValidationError, InputFileError, MissingColumnsError
from rekko.paths import PipelinePaths
from rekko.build import run_pipeline
from rekko.pipeline.sources import Part, fingerprints, redact, resolve_parts
from tests.s3_support import SECRET, environ, s3_server, upload_parts


def split_parts(df: pd.DataFrame) -> list[pd.DataFrame]:
    """Two parts with users spread over both (user 1's sessions sit in different parts)."""
    return [df.iloc[[0, 3, 5]].reset_index(drop=True), df.iloc[[1, 2, 4, 6]].reset_index(drop=True)]


def outputs(root: Path, interactions: Path | str, data: Path | None = None) -> PipelinePaths:
    """Inputs from ``data`` (default ``root/data``), outputs under ``root/out``."""
    d = data or root / "data"
    return PipelinePaths(interactions, d / "movies_metdata.parquet", d / "Movies_r_d.xlsx", root / "out/movies_rd.parquet",
                         root / "out/int_coef.parquet", root / "out/movies_md_upd.parquet",
                         root / "out/interactions_upd.parquet", root / "out/matrix/cos_sim_md.pkl",
                         root / "out/matrix/cos_sim_desc.pkl")


@pytest.fixture
def parts_dir(tmp_path: Path) -> Path:
    write_inputs(tmp_path)
    folder = tmp_path / "data" / "parts"
    (folder / "day=2").mkdir(parents=True)
    a, b = split_parts(tiny_interactions())
    a.to_parquet(folder / "part-00000.parquet", index=False)
    b.to_parquet(folder / "day=2" / "part-00001.parquet", index=False)  # nested, as Hive/Spark layouts are
    (folder / "_SUCCESS").write_text("")
    (folder / ".part-00000.parquet.crc").write_text("x")
    return tmp_path


def test_resolve_folder_glob_and_file_url(parts_dir: Path) -> None:
    folder = parts_dir / "data" / "parts"
    names = [Path(p.location).relative_to(folder).as_posix() for p in resolve_parts(folder)]
    assert names == ["day=2/part-00001.parquet", "part-00000.parquet"]  # sorted paths; _SUCCESS, hidden skipped
    assert [Path(p.location).name for p in resolve_parts(str(folder / "part-*.parquet"))] == ["part-00000.parquet"]
    assert [Path(p.location).relative_to(folder).as_posix() for p in resolve_parts(f"file://{folder}/")] == names
    assert all(not p.remote for p in resolve_parts(f"file://{folder}/"))
    single = parts_dir / "data" / "interactions.parquet"
    assert resolve_parts(single) == [Part(str(single))]
    (parts_dir / "empty").mkdir()
    with pytest.raises(InputFileError, match="no parquet parts"):
        resolve_parts(parts_dir / "empty")
    with pytest.raises(InputFileError, match="matches no file"):
        resolve_parts(str(parts_dir / "nothing-*.parquet"))


def test_local_engine_reads_a_folder_like_the_one_file(parts_dir: Path) -> None:
    one, _ = run_pipeline(outputs(parts_dir / "one", parts_dir / "data" / "interactions.parquet", parts_dir / "data"))
    paths = outputs(parts_dir, parts_dir / "data" / "parts")
    many, manifest = run_pipeline(paths)
    assert many.counts["interaction_rows"] == 7 and many.counts["interactions_unknown_movie_dropped"] == 1
    pd.testing.assert_frame_equal(many.interactions, one.interactions)
    pd.testing.assert_frame_equal(many.users, one.users)
    entry = manifest.inputs["interactions"]
    assert [Path(p["path"]).name for p in entry["parts"]] == ["part-00001.parquet", "part-00000.parquet"]
    assert all(len(p["sha256"]) == 64 for p in entry["parts"]) and len(entry["sha256"]) == 64
    assert manifest.engine == "local"


def test_local_engine_glob(parts_dir: Path) -> None:
    result, _ = run_pipeline(outputs(parts_dir, str(parts_dir / "data" / "parts" / "**" / "*.parquet")))
    assert result.counts["interaction_rows"] == 7


def test_bad_part_names_the_part_column_and_row_cli(parts_dir: Path) -> None:
    folder = parts_dir / "data" / "parts"
    bad = tiny_interactions().iloc[:2].astype({"watch_duration_minutes": str})
    bad.loc[1, "watch_duration_minutes"] = "ninety"
    bad.to_parquet(folder / "part-00002.parquet", index=False)
    result = run_cli(["pipeline", "--interactions", "data/parts", "--movies-rd", "out/movies_rd.parquet",
                      "--int-coef", "out/int_coef.parquet", "--movies-upd", "out/movies_md_upd.parquet",
                      "--interactions-upd", "out/interactions_upd.parquet", "--sim-md", "out/m/cos_sim_md.pkl",
                      "--sim-desc", "out/m/cos_sim_desc.pkl"], cwd=parts_dir)
    assert result.returncode == 2, result.stderr
    assert "part-00002.parquet" in result.stderr and "watch_duration_minutes" in result.stderr
    assert "example row" in result.stderr and "ninety" in result.stderr
    assert not (parts_dir / "out").exists() or not any((parts_dir / "out").rglob("*.*"))


def test_missing_column_in_one_part(parts_dir: Path) -> None:
    tiny_interactions().drop(columns=["user_id"]).to_parquet(parts_dir / "data/parts/part-00003.parquet", index=False)
    with pytest.raises(MissingColumnsError, match=r"part-00003\.parquet.*user_id"):
        run_pipeline(outputs(parts_dir, parts_dir / "data" / "parts"))
    assert not (parts_dir / "out" / "matrix" / "manifest.json").exists()


def test_output_inside_the_parts_folder_is_refused(parts_dir: Path) -> None:
    from rekko.exceptions import OutputPathError

    paths = outputs(parts_dir, parts_dir / "data" / "parts")
    paths = paths.__class__(**{**paths.__dict__, "interactions_upd": parts_dir / "data/parts/interactions_upd.parquet"})
    with pytest.raises(OutputPathError, match="inside the"):
        run_pipeline(paths)


def test_validation_errors_survive_pickling() -> None:
    """A worker's error reaches the client pickled: it must keep its text and fields."""
    err = MissingColumnsError(["user_id"], path="s3://b/p/part-1.parquet", available=["a"])
    back = pickle.loads(pickle.dumps(err))
    assert str(back) == str(err) and back.missing == ["user_id"] and back.path == err.path
    err = DataValidationError("expected numbers", path="p.parquet", column="c", example={"c": "x" * 500})
    assert str(pickle.loads(pickle.dumps(err))) == str(err)


def test_redact_scrubs_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    text = redact(f"s3://user:{SECRET}@bucket/x failed with key {SECRET}")
    assert SECRET not in text and "s3://***@bucket/x" in text


def test_s3_prefix_local_engine(tmp_path: Path) -> None:
    write_inputs(tmp_path)
    with s3_server() as env, environ(env):
        url = upload_parts(env, "logs", "watch/2021", split_parts(tiny_interactions()))
        paths = outputs(tmp_path, url)
        result, manifest = run_pipeline(paths)
        assert result.counts["interaction_rows"] == 7
        entry = manifest.inputs["interactions"]
        assert [p["path"].rsplit("/", 1)[1] for p in entry["parts"]] == ["part-00000.parquet", "part-00001.parquet"]
        assert all(len(p["etag"]) == 32 and p["bytes"] > 0 and "sha256" not in p for p in entry["parts"])
        assert SECRET not in json.dumps(manifest.inputs)
        one, _ = run_pipeline(outputs(tmp_path / "one", tmp_path / "data/interactions.parquet", tmp_path / "data"))
        pd.testing.assert_frame_equal(result.interactions, one.interactions)
        with pytest.raises(InputFileError) as missing:
            resolve_parts("s3://no-such-bucket/x/")
        assert SECRET not in str(missing.value)


def test_fingerprints_of_one_file_stay_as_before(tmp_path: Path) -> None:
    write_inputs(tmp_path)
    f = tmp_path / "data" / "interactions.parquet"
    entry = fingerprints(f, resolve_parts(f))
    assert set(entry) == {"path", "sha256"}


def test_local_engine_imports_no_dask(parts_dir: Path) -> None:
    """``--engine local`` (the default) stays Dask-free, on one file and on parts."""
    import subprocess
    import sys

    code = ("import sys; from pathlib import Path; from rekko.cli import main; "
            "rc = main(['-q', 'pipeline', '--interactions', sys.argv[1], '--movies-rd', 'o/a.parquet', "
            "'--int-coef', 'o/b.parquet', '--movies-upd', 'o/c.parquet', '--interactions-upd', 'o/d.parquet', "
            "'--sim-md', 'o/m/e.pkl', '--sim-desc', 'o/m/f.pkl']); "
            "print(rc, sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed', 's3fs')))")
    for source in ("data/interactions.parquet", "data/parts"):
        out = subprocess.run([sys.executable, "-c", code, source], cwd=parts_dir, capture_output=True, text=True,
                             timeout=120)
        assert out.stdout.strip().splitlines()[-1] == "0 []", out.stdout + out.stderr
