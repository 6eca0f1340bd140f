"""`rekko demo`: builds artifacts only when missing or stale, then recommends for the sample user."""

import json

import pandas as pd

from rekko.cli import main


def run_demo(monkeypatch, capsys, cwd, *args):
    monkeypatch.chdir(cwd)
    code = main(["demo", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_demo_builds_once_and_rebuilds_when_stale(sample_dir, monkeypatch, capsys):
    code, out, err = run_demo(monkeypatch, capsys, sample_dir)
    assert code == 0 and "building artifacts" in err
    assert "Top 10 movies for user 1 (personal)" in out and "most recently:" in out

    code, out, err = run_demo(monkeypatch, capsys, sample_dir)
    assert code == 0 and "building artifacts" not in err  # fresh: reused

    # an input changed -> stale
    inter = pd.read_parquet(sample_dir / "data/interactions.parquet")
    inter.iloc[:-1].to_parquet(sample_dir / "data/interactions.parquet", index=False)
    code, _, err = run_demo(monkeypatch, capsys, sample_dir)
    assert code == 0 and "building artifacts" in err

    # artifacts written with other parameters (another rekko's defaults) -> stale
    manifest_path = sample_dir / "matrix/manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["parameters"]["blend"]["md"] = 0.999
    manifest_path.write_text(json.dumps(manifest))
    code, _, err = run_demo(monkeypatch, capsys, sample_dir)
    assert code == 0 and "building artifacts" in err


def test_demo_json_for_another_user(sample_dir, monkeypatch, capsys):
    code, out, _ = run_demo(monkeypatch, capsys, sample_dir, "--user-id", "2", "-n", "3", "--format", "json")
    rows = json.loads(out)
    assert code == 0 and len(rows) == 3 and len({r["movie_id"] for r in rows}) == 3


def test_demo_outside_a_rekko_directory_exit_2(tmp_path, monkeypatch, capsys):
    code, _, err = run_demo(monkeypatch, capsys, tmp_path)
    assert code == 2 and "sample input not found" in err
