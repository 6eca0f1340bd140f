"""Issue 18, items 9 and 12: every artifact set recommend accepts, serve serves; details follow the schema."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi", reason="rekko[serve] is not installed")

from rekko.build import run_pipeline  # noqa: E402
from rekko.importers.movielens import import_movielens, write_import  # noqa: E402
from rekko.paths import PipelinePaths  # noqa: E402
from rekko.recommend import Recommender, load_artifacts  # noqa: E402
from rekko.serve.app import create_app  # noqa: E402
from rekko.serve.shared import export_bundle, open_bundle  # noqa: E402
from rekko.serve.state import load_snapshot  # noqa: E402
from tests.conftest import write_inputs  # noqa: E402
from tests.serve_support import get, live_server  # noqa: E402


def _paths(root: Path, inputs: dict[str, Path]) -> PipelinePaths:
    d = PipelinePaths()
    out = {f: root / getattr(d, f) for f in d.__dataclass_fields__}
    return PipelinePaths(**{**out, **inputs})


def _movielens(root: Path) -> dict[str, Path]:
    ml = root / "ml"
    ml.mkdir(parents=True)
    for name, text in {
        "ratings.csv": """
            userId,movieId,rating,timestamp
            1,10,5.0,946684800
            1,20,2.5,946771200
            2,10,1.0,946684801
            2,30,4.0,978307200
            3,20,4.5,978307300
            """,
        "movies.csv": """
            movieId,title,genres
            10,"Usual Suspects, The (1995)",Crime|Mystery|Thriller
            20,Heat (1995),Action|Crime
            30,Babylon 5,(no genres listed)
            """,
        "links.csv": """
            movieId,imdbId,tmdbId
            10,0114814,629
            20,0113277,949
            30,0105946,
            """,
    }.items():
        (ml / name).write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return write_import(import_movielens(ml), root / "in")


def _with_integer_age_rating(root: Path) -> dict[str, Path]:
    """The seed's format with an integer age_rating column, as a MovieLens conversion produced it."""
    files = _movielens(root)
    movies = pd.read_parquet(files["movies"])
    movies["age_rating"] = np.arange(len(movies), dtype=np.int64) * 6 + 6
    movies["release_year"] = movies.get("release_year", pd.Series([1995.0] * len(movies))).astype("float64")
    movies.to_parquet(files["movies"], index=False)
    return files


def _seed_without_descriptions(root: Path) -> dict[str, Path]:
    write_inputs(root)
    ratings = root / "data" / "Movies_r_d.xlsx"
    df = pd.read_excel(ratings)
    df["description"] = ""
    df.to_excel(ratings, index=False)
    d = PipelinePaths()
    return {"interactions": root / d.interactions, "movies": root / d.movies, "ratings": ratings}


@pytest.mark.parametrize("make_inputs", [_movielens, _with_integer_age_rating, _seed_without_descriptions],
                         ids=["movielens-import", "integer-age-rating", "no-descriptions"])
def test_serve_serves_every_set_recommend_accepts(tmp_path, make_inputs):
    files = make_inputs(tmp_path)
    paths = _paths(tmp_path, {k: Path(v) for k, v in files.items() if k in ("interactions", "movies", "ratings")})
    run_pipeline(paths)
    artifacts = paths.artifacts()
    recommender = Recommender(load_artifacts(artifacts))  # recommend accepts it ...
    user = int(recommender.artifacts.user_ids[0])
    expected = recommender.recommend(user, 3).items.movie_id.tolist()
    direct = load_snapshot(artifacts)  # ... so one server process serves it ...
    bundle_root = tmp_path / "bundles"
    bundle_root.mkdir()
    mapped = open_bundle(bundle_root / export_bundle(direct, bundle_root))  # ... and so do its workers
    assert mapped.recommender.recommend(user, 3).items.movie_id.tolist() == expected
    with live_server(create_app(artifacts, reload_interval=None)) as url:
        status, body, _ = get(f"{url}/recommendations/{user}?n=3")
        assert status == 200, body
        assert [i["movie_id"] for i in body["items"]] == expected
        for movie in map(str, recommender.artifacts.movie_ids):
            status, body, _ = get(f"{url}/movies/{movie}")
            assert status == 200, body
            assert body["movie_id"] == movie
            assert body.get("age_rating") is None or isinstance(body["age_rating"], str)
    for i in range(len(recommender.artifacts.movie_ids)):
        assert mapped.catalog.details(i) == direct.catalog.details(i)
