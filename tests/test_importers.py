"""MovieLens importer: tiny hand-made CSVs with hand-computed answers, plus the real data when present."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rekko.columns import Columns as C
from rekko.exceptions import ConfigError, DataValidationError, InputFileError, MissingColumnsError
from rekko.importers.movielens import (
    DEFAULT_RUNTIME,
    import_movielens,
    rating_to_minutes,
    split_title_year,
    write_import,
)
from rekko.io import read_table
from rekko.pipeline.ratings import clean_ratings

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


@pytest.fixture()
def ml_dir(tmp_path: Path) -> Path:
    d = tmp_path / "ml"
    d.mkdir()
    # 1 = 2000-01-01 00:00:00 UTC is 946684800
    _write(
        d / "ratings.csv",
        """
        userId,movieId,rating,timestamp
        1,10,5.0,946684800
        1,20,2.5,946771200
        2,10,1.0,946684801
        2,30,4.0,978307200
        """,
    )
    _write(
        d / "movies.csv",
        """
        movieId,title,genres
        10,"Usual Suspects, The (1995)",Crime|Mystery|Thriller
        20,Heat (1995),Action|Crime
        30,Babylon 5,(no genres listed)
        """,
    )
    _write(
        d / "links.csv",
        """
        movieId,imdbId,tmdbId
        10,0114814,629
        20,0113277,949
        30,0105946,
        """,
    )
    return d


@pytest.fixture()
def tmdb_csv(tmp_path: Path) -> Path:
    """TMDB's layout: genres and countries as JSON lists of objects; Heat has 0 runtime and 0 votes (unknown)."""
    path = tmp_path / "tmdb.csv"
    pd.DataFrame(
        {
            "id": [629, 949],
            "title": ["The Usual Suspects", "Heat"],
            "overview": ["A boat has been destroyed.", None],
            "runtime": [106, 0],
            "vote_average": [7.9, 0],
            "vote_count": [3254, 0],
            "genres": ['[{"id": 80, "name": "Crime"}, {"id": 18, "name": "Drama"}]', "[]"],
            "production_countries": [
                '[{"iso_3166_1": "US", "name": "United States of America"}, {"iso_3166_1": "DE", "name": "Germany"}]',
                "[]",
            ],
            "release_date": ["1995-07-19", "1995-12-15"],
        }
    ).to_csv(path, index=False)
    return path


@pytest.fixture()
def imdb_csv(tmp_path: Path) -> Path:
    """IMDb's layout: the tt id inside the link, titles ending in a no-break space, Heat listed twice."""
    path = tmp_path / "imdb.csv"
    link = "http://www.imdb.com/title/tt{}/?ref_=fn_tt_tt_1"
    pd.DataFrame(
        {
            "movie_imdb_link": [link.format("0114814"), link.format("0113277"), link.format("0113277")],
            "movie_title": ["The Usual Suspects\u00a0", "Heat\u00a0", "Heat\u00a0"],
            "director_name": ["Bryan Singer", "Michael Mann", "Someone Else"],
            "actor_1_name": ["Kevin Spacey", "Al Pacino", None],
            "actor_2_name": [None, "Robert De Niro", None],
            "actor_3_name": ["Gabriel Byrne", "Val Kilmer", None],
            "duration": [105, 170, 99],
            "content_rating": ["R", "R", "PG"],
            "country": ["USA", "USA", "UK"],
            "imdb_score": [8.6, 8.3, 1.0],
        }
    ).to_csv(path, index=False)
    return path


def test_split_title_year_moves_article_and_parses_year() -> None:
    titles = pd.Series(
        [
            "Usual Suspects, The (1995)",
            "City of Lost Children, The (Cité des enfants perdus, La) (1995)",
            "Death Note: Desu nôto (2006–2007)",
            "Babylon 5",
            "Heat (1995) ",
        ]
    )
    title, year = split_title_year(titles)
    assert title.tolist() == [
        "The Usual Suspects",
        "The City of Lost Children (Cité des enfants perdus, La)",
        "Death Note: Desu nôto",
        "Babylon 5",
        "Heat",
    ]
    assert year.tolist() == [1995, 1995, 2006, pd.NA, 1995]


def test_rating_to_minutes_is_runtime_times_rating_over_five() -> None:
    np.testing.assert_allclose(
        rating_to_minutes(np.array([5.0, 2.5, 0.5]), np.array([100.0, 120.0, 90.0])), [100, 60, 9]
    )


def test_movielens_only(ml_dir: Path) -> None:
    r = import_movielens(ml_dir)
    m = r.movies.set_index(C.MOVIE)
    assert m.index.tolist() == ["10", "20", "30"]
    assert m.loc["10", C.TITLE] == "The Usual Suspects"
    assert m.loc["10", C.GENRES] == ["Crime", "Mystery", "Thriller"]
    assert m.loc["30", C.GENRES] == []
    assert m.loc["30", C.RELEASE_YEAR] is pd.NA
    assert (m[C.DURATION] == DEFAULT_RUNTIME).all()
    assert (m[C.ENTITY_TYPE] == "movie").all()
    assert r.ratings.empty  # nothing knows a rating or a description
    i = r.interactions
    assert i[C.MOVIE].tolist() == ["10", "20", "10", "30"]
    np.testing.assert_allclose(i[C.WATCHED_MINUTES], [100.0, 50.0, 20.0, 80.0])
    assert i[[C.YEAR, C.MONTH, C.DAY]].to_numpy().tolist() == [[2000, 1, 1], [2000, 1, 2], [2000, 1, 1], [2001, 1, 1]]
    assert i[C.DATETIME].iloc[2] == pd.Timestamp("2000-01-01 00:00:01")
    assert r.stats["runtime_default"] == 3


def test_enriched_with_tmdb_and_imdb(ml_dir: Path, tmdb_csv: Path, imdb_csv: Path) -> None:
    r = import_movielens(ml_dir, tmdb=tmdb_csv, imdb=imdb_csv)
    m = r.movies.set_index(C.MOVIE)
    # MovieLens genres first, then TMDB's new ones, each once
    assert m.loc["10", C.GENRES] == ["Crime", "Mystery", "Thriller", "Drama"]
    assert m.loc["10", C.DIRECTOR] == ["Bryan Singer"]
    assert m.loc["10", C.ACTORS] == ["Kevin Spacey", "Gabriel Byrne"]  # the empty actor_2 is skipped
    assert m.loc["10", C.COUNTRY] == ["United States of America", "Germany"]  # TMDB wins over IMDb
    assert m.loc["20", C.COUNTRY] == ["USA"]  # TMDB has none: IMDb's
    assert m.loc["20", C.DIRECTOR] == ["Michael Mann"]  # the duplicate IMDb row is ignored
    assert m.loc["10", C.AGE_RATING] == "R"
    # runtime: TMDB 106; TMDB's 0 means unknown -> IMDb 170; no link -> default
    assert m[C.DURATION].tolist() == [106.0, 170.0, DEFAULT_RUNTIME]
    np.testing.assert_allclose(r.interactions[C.WATCHED_MINUTES], [106.0, 85.0, 21.2, 80.0])
    # cache: TMDB's vote_average and overview; Heat's 0-vote average is unknown -> IMDb's score
    cache = r.ratings.set_index(C.TITLE)
    assert cache.index.tolist() == ["The Usual Suspects", "Heat"]
    assert cache.loc["The Usual Suspects", C.RATING] == 7.9
    assert cache.loc["The Usual Suspects", C.DESCRIPTION] == "A boat has been destroyed."
    assert cache.loc["Heat", C.RATING] == 8.3
    assert pd.isna(cache.loc["Heat", C.DESCRIPTION])
    assert r.stats["tmdb_matched"] == 2 and r.stats["imdb_matched"] == 2


def test_write_import_round_trips_through_rekko_readers(ml_dir: Path, tmdb_csv: Path, tmp_path: Path) -> None:
    r = import_movielens(ml_dir, tmdb=tmdb_csv)
    paths = write_import(r, tmp_path / "out")
    assert paths["ratings"].name == "Movies_r_d.xlsx"
    movies = read_table(paths["movies"])
    assert list(movies.loc[0, C.GENRES]) == ["Crime", "Mystery", "Thriller", "Drama"]
    interactions = read_table(paths["interactions"])
    assert interactions[C.MOVIE].map(type).eq(str).all()
    cache = clean_ratings(read_table(paths["ratings"]))
    assert cache[C.RATING].tolist() == [7.9]
    assert cache[C.RELEASE_YEAR].tolist() == [1995]


@pytest.mark.parametrize(
    ("file", "text", "error", "needle"),
    [
        ("ratings.csv", "userId,movieId,rating,timestamp\n1,10,6.0,1\n", DataValidationError, "6.0"),
        ("ratings.csv", "userId,movieId,rating,timestamp\n1,10,good,1\n", DataValidationError, "good"),
        ("ratings.csv", "userId,movieId,stars,timestamp\n1,10,4,1\n", MissingColumnsError, "rating"),
        ("movies.csv", "movieId,title,genres\n10,A (1999),Drama\n10,B (2000),Drama\n", DataValidationError, "movieId"),
    ],
)
def test_bad_movielens_input(ml_dir: Path, file: str, text: str, error: type, needle: str) -> None:
    (ml_dir / file).write_text(text)
    with pytest.raises(error, match=needle) as exc:
        import_movielens(ml_dir)
    assert file in str(exc.value)


def test_missing_file_and_bad_runtime(ml_dir: Path) -> None:
    (ml_dir / "links.csv").unlink()
    with pytest.raises(InputFileError, match="links.csv"):
        import_movielens(ml_dir)
    with pytest.raises(ConfigError, match="runtime"):
        import_movielens(ml_dir, default_runtime=0)


def test_cli_subcommand(ml_dir: Path, tmp_path: Path) -> None:
    """The registered subcommand runs through argparse exactly as rekko's CLI calls it."""
    import argparse

    from rekko.importers.cli import register

    parser = argparse.ArgumentParser(prog="rekko")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["import", "movielens", str(ml_dir), "--out", str(tmp_path / "o"), "--ratings-format", "parquet"]
    )
    assert args.handler(args) == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "interactions.parquet",
        "movies_metdata.parquet",
        "ratings.parquet",
    ]


def test_cli_dates_only_writes_the_seeds_date_columns(ml_dir: Path, tmp_path: Path) -> None:
    """``rekko import movielens --dates-only`` in a subprocess: year/month/day, no exact time; ingest reads midnights."""
    import os
    import subprocess
    import sys

    from rekko.pipeline.ingest import load_interactions

    repo = Path(__file__).resolve().parents[1]
    run = subprocess.run(
        [sys.executable, "-m", "rekko", "import", "movielens", str(ml_dir), "--out", str(tmp_path / "o"),
         "--ratings-format", "parquet", "--dates-only"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(repo)}, cwd=tmp_path, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    raw = read_table(tmp_path / "o" / "interactions.parquet")
    assert C.DATETIME not in raw.columns and {C.YEAR, C.MONTH, C.DAY} <= set(raw.columns)
    when = load_interactions(tmp_path / "o" / "interactions.parquet")[C.DATETIME]
    assert (when == when.dt.normalize()).all()


@pytest.mark.shared_data
def test_real_movielens_small(tmp_path: Path) -> None:
    ml = SHARED / "movielens-small"
    if not ml.exists():
        pytest.skip(f"real data not available at {ml}")
    r = import_movielens(
        ml, tmdb=SHARED / "tmdb-5000" / "tmdb_5000_movies.csv", imdb=SHARED / "imdb-5000" / "movie_metadata.csv"
    )
    assert len(r.interactions) == 100_836 and r.interactions[C.USER].nunique() == 610
    assert len(r.movies) == 9_742 and r.movies[C.MOVIE].is_unique
    assert r.stats["tmdb_matched"] > 3_000 and r.stats["imdb_matched"] > 3_000
    # rating -> minutes keeps the watch ratio equal to rating / 5 in (0, 1]
    ratio = r.interactions[C.WATCHED_MINUTES] / r.interactions[C.MOVIE].map(r.movies.set_index(C.MOVIE)[C.DURATION])
    assert ratio.between(0.1 - 1e-9, 1.0 + 1e-9).all()
    assert r.ratings[C.DESCRIPTION].notna().sum() > 3_000
