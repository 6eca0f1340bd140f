"""The pipeline with the movie API: a keyed run fetches what the cache lacks; later runs use the cache alone."""

import pandas as pd

from rekko.testing.emulator import ApiEmulator, movie
from tests.conftest import run_cli

KEY = "sekret-key-123"


def test_keyed_pipeline_fetches_missing_titles_then_cache_alone_suffices(tiny_dir):
    catalogue = {"Сёстры": [movie(7, "Сёстры", 2001, 7.7, description="Две сестры и брат")]}
    with ApiEmulator("kinopoisk", api_key=KEY, catalogue=catalogue) as api:
        env = {"REKKO_API_KEY": KEY, "REKKO_API_URL": api.url, "REKKO_API_RATE": "0"}
        proc = run_cli(["pipeline"], tiny_dir, env=env)
        assert proc.returncode == 0, proc.stderr
        assert api.hits["Сёстры"] == 1  # titles the legacy xlsx already answers are not asked again
        assert KEY not in proc.stdout + proc.stderr
    movies = pd.read_parquet(tiny_dir / "data/movies_md_upd.parquet").set_index("movie_id")
    assert movies.loc["m6", "rating"] == 7.7 and movies.loc["m6", "description"] == "Две сестры и брат"
    assert movies.loc["m1", "rating"] == 8.5  # from the legacy xlsx
    assert KEY.encode() not in (tiny_dir / "data/api_cache.parquet").read_bytes()

    # no key: the cache alone feeds the same ratings
    proc = run_cli(["pipeline"], tiny_dir)
    assert proc.returncode == 0, proc.stderr
    again = pd.read_parquet(tiny_dir / "data/movies_md_upd.parquet").set_index("movie_id")
    assert again.loc["m6", "rating"] == 7.7
