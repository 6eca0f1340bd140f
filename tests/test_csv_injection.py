"""Issue 18, item 7: no csv rekko writes holds a cell a spreadsheet would run as a formula."""

from __future__ import annotations

import csv
import io

import pandas as pd

from rekko.io import neutralise_formulas, read_table, restore_formulas, write_table
from tests.conftest import run_cli

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
EVIL_TITLES = {"m2": "=cmd|' /C calc'!A0", "m5": "@SUM(1+1)", "m3": "+1+2", "m6": "-2+3"}
EVIL_ID = '=HYPERLINK("http://evil.example/","x")'


def _cells(text: str) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(text, newline="")) for cell in row]


def _assert_inert(text: str) -> None:
    bad = [cell for cell in _cells(text) if cell.startswith(TRIGGERS) and not _is_number(cell)]
    assert not bad, bad


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _hostile_inputs(root):
    data = root / "data"
    movies = pd.read_parquet(data / "movies_metdata.parquet")
    movies["title"] = [EVIL_TITLES.get(m, t) for m, t in zip(movies.movie_id, movies.title)]
    movies["movie_id"] = movies["movie_id"].replace({"m5": EVIL_ID})
    movies.to_parquet(data / "movies_metdata.parquet", index=False)
    inter = pd.read_parquet(data / "interactions.parquet")
    inter["movie_id"] = inter["movie_id"].replace({"m5": EVIL_ID})
    inter.to_parquet(data / "interactions.parquet", index=False)


def test_recommend_csvs_neutralise_formulas_and_parquet_stays_exact(tiny_dir):
    _hostile_inputs(tiny_dir)
    assert run_cli(["pipeline"], cwd=tiny_dir).returncode == 0
    one = run_cli(["recommend", "-u", "1", "-n", "5", "--format", "csv"], cwd=tiny_dir)
    assert one.returncode == 0, one.stderr
    _assert_inert(one.stdout)
    assert "'=cmd|' /C calc'!A0" in one.stdout
    pred = (tiny_dir / "pred" / "pred(1).csv").read_text(encoding="utf-8")
    _assert_inert(pred)
    assert "'=cmd" in pred
    for out in ("recs.csv", "recs.parquet"):
        batch = run_cli(["recommend", "--all-users", "-n", "5", "--output", out], cwd=tiny_dir)
        assert batch.returncode == 0, batch.stderr
    text = (tiny_dir / "recs.csv").read_text(encoding="utf-8")
    _assert_inert(text)
    assert "'" + EVIL_ID.replace('"', '""') in text
    exact = pd.read_parquet(tiny_dir / "recs.parquet")
    assert EVIL_ID in set(exact.movie_id)  # parquet keeps the value as it is
    assert (exact["score"] >= 0).all()


def test_table_csvs_neutralise_text_cells_only_and_read_back_exactly(tmp_path):
    df = pd.DataFrame({"name": ["=1+1", "@x", "\tTab", "\rCR", "+7", "-3 days", "plain", None],
                       "delta": [-1, -2, 3, 4, 5, 6, 7, 8], "score": [-0.5] * 8})
    path = tmp_path / "t.csv"
    write_table(df, path)
    text = path.read_text(encoding="utf-8")
    _assert_inert(text)
    assert "-1," in text and "-0.5" in text  # negative numbers are numbers, not formulas
    back = read_table(path)
    # (a bare CR inside a cell is a line break to csv readers: that row is not compared)
    assert back["name"].tolist()[:3] == df["name"].tolist()[:3]
    assert back["name"].tolist()[-4:-1] == df["name"].tolist()[-4:-1]
    assert restore_formulas(neutralise_formulas(df)).equals(df)
