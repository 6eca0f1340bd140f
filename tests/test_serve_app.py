"""The HTTP API against a real uvicorn server over artifacts from the real pipeline."""

from __future__ import annotations

import hashlib
import math
import re

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi", reason="rekko[serve] is not installed")

from rekko.columns import Columns as C  # noqa: E402
from rekko.recommend import Recommender, load_artifacts  # noqa: E402
from rekko.serve.app import create_app  # noqa: E402
from rekko.serve.schemas import RecommendationList  # noqa: E402
from tests.serve_support import build_artifacts, get, live_server  # noqa: E402


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    return build_artifacts(tmp_path_factory.mktemp("serve-app"))


@pytest.fixture(scope="module")
def recommender(paths):
    return Recommender(load_artifacts(paths))


@pytest.fixture(scope="module")
def url(paths):
    with live_server(create_app(paths, reload_interval=None)) as base:
        yield base


def _heaviest_user(rec: Recommender) -> int:
    a = rec.artifacts
    return int(a.user_ids[np.argmax(np.diff(a.history.indptr))])


def test_health_names_the_loaded_generation_and_its_counts(url, paths, recommender):
    status, body, _ = get(f"{url}/health")
    a = recommender.artifacts
    assert status == 200
    assert body["status"] == "ok" and body["reload_error"] is None
    sha = hashlib.sha256(paths.manifest.read_bytes()).hexdigest()
    assert body["manifest"]["sha256"] == sha and body["artifacts"] == sha[:12]
    assert body["counts"] == {
        "movies": len(a.movie_ids), "users": len(a.user_ids), "interactions": int(a.history.nnz),
        "similarity_nnz": {k: int(m.nnz) for k, m in a.sims.items()},
    }
    assert body["loaded_at"] <= body["checked_at"]


@pytest.mark.parametrize("n", [1, 7, 100])
def test_recommendations_match_the_cli_recommend(url, recommender, n):
    user = _heaviest_user(recommender)
    status, body, _ = get(f"{url}/recommendations/{user}?n={n}")
    expected = recommender.recommend(user, n).items
    assert status == 200
    assert RecommendationList.model_validate(body).model_dump(mode="json") == body  # exactly the documented shape
    assert body["user_id"] == user and body["cold_start"] is False and body["label"].startswith("personal")
    assert body["history_size"] == len(recommender.history_of(user)[0])
    items = body["items"]
    assert [i["rank"] for i in items] == list(range(1, len(expected) + 1))
    assert [i["movie_id"] for i in items] == expected[C.MOVIE].tolist()
    assert [i["title"] for i in items] == expected[C.TITLE].tolist()
    np.testing.assert_allclose([i["score"] for i in items], expected[C.SCORE], rtol=1e-6)
    assert [i["based_on"] for i in items] == [v if isinstance(v, str) else None for v in expected[C.BASED_ON]]
    assert [i["based_on_title"] for i in items] == [
        v if isinstance(v, str) else None for v in expected[C.BASED_ON_TITLE]]
    for col in (C.SIM_MD, C.SIM_DESC, C.MOVIE_SCORE):
        np.testing.assert_allclose([i["components"][col] for i in items], expected[col], rtol=1e-5, atol=1e-7)
    watched = set(recommender.artifacts.movie_ids[recommender.history_of(user)[0]])
    assert not watched & {i["movie_id"] for i in items}
    assert all(i["based_on"] in watched for i in items if i["based_on"] is not None)


def test_unknown_user_gets_a_labelled_cold_start_list(url, recommender):
    unknown = int(recommender.artifacts.user_ids.max()) + 1000
    status, body, _ = get(f"{url}/recommendations/{unknown}?n=5")
    a = recommender.artifacts
    best = a.movie_ids[np.lexsort((np.arange(len(a.movie_ids)), -a.movie_score))[:5]].tolist()
    assert status == 200
    assert body["cold_start"] is True and "cold start" in body["label"] and body["history_size"] == 0
    assert [i["movie_id"] for i in body["items"]] == best
    assert all(i["based_on"] is None and i["based_on_title"] is None for i in body["items"])


@pytest.mark.parametrize(
    "path",
    [
        "/recommendations/1?n=0",
        "/recommendations/1?n=101",
        "/recommendations/1?n=-3",
        "/recommendations/1?n=ten",
        "/recommendations/1?n=2.5",
        "/recommendations/abc",
        "/recommendations/1.5",
        "/recommendations/99999999999999999999",
        "/movies/x/similar?n=0",
        "/movies/x/similar?kind=colour",
    ],
)
def test_bad_parameters_are_422_json(url, path):
    status, body, headers = get(url + path)
    assert status == 422
    assert headers["content-type"] == "application/json"
    assert body["detail"]


def test_unknown_movie_is_404_json(url):
    for path in ("/movies/no-such-movie", "/movies/no-such-movie/similar"):
        status, body, _ = get(url + path)
        assert status == 404
        assert body == {"detail": "unknown movie_id 'no-such-movie'"}


def test_movie_details_come_from_the_movies_artifact(url, paths, recommender):
    movies = pd.read_parquet(paths.movies_upd)
    row = movies.iloc[3]
    status, body, _ = get(f"{url}/movies/{row[C.MOVIE]}")
    assert status == 200
    assert body["movie_id"] == row[C.MOVIE] and body["title"] == row[C.TITLE]
    assert body["genres"] == list(row[C.GENRES])
    assert body["n_users"] == int(row[C.N_USERS])
    assert math.isclose(body["movie_score"], float(row[C.MOVIE_SCORE]))
    assert body["similarity_kinds"] == ["md", "desc", "cf"]


@pytest.mark.parametrize("kind", ["md", "desc"])
def test_similar_movies_match_the_recommender(url, recommender, kind):
    movie = str(recommender.artifacts.movie_ids[5])
    status, body, _ = get(f"{url}/movies/{movie}/similar?n=8&kind={kind}")
    expected = recommender.similar(movie, 8, kind)
    assert status == 200 and body["kind"] == kind and body["movie_id"] == movie
    assert [i["movie_id"] for i in body["items"]] == expected[C.MOVIE].tolist()
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)
    np.testing.assert_allclose(scores, expected[C.SCORE], rtol=1e-6)


def test_collaborative_similarity_is_served(url, recommender):
    movie = str(recommender.artifacts.movie_ids[0])
    status, body, _ = get(f"{url}/movies/{movie}/similar?kind=cf&n=3")
    assert status == 200
    expected = recommender.similar(movie, 3, "cf")
    assert [m["movie_id"] for m in body["items"]] == list(expected.movie_id)


def test_an_unknown_similarity_kind_is_422(url, recommender):
    movie = str(recommender.artifacts.movie_ids[0])
    status, _, _ = get(f"{url}/movies/{movie}/similar?kind=zz")
    assert status == 422


def test_docs_openapi_and_page(url):
    status, spec, _ = get(f"{url}/openapi.json")
    assert status == 200
    assert {"/recommendations/{user_id}", "/movies/{movie_id}", "/movies/{movie_id}/similar", "/health"} <= set(
        spec["paths"])
    status, docs, _ = get(f"{url}/docs")
    assert status == 200 and "swagger" in docs.lower()
    # the docs page loads its script from the server itself, not a CDN, so it renders offline
    assert "cdn.jsdelivr" not in docs and "unpkg" not in docs
    script = re.search(r'src="([^"]*swagger-ui-bundle\.js)"', docs).group(1)
    status, _, headers = get(f"{url}{script}")
    assert status == 200 and "javascript" in headers["content-type"]
    status, page, headers = get(f"{url}/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert 'id="user"' in page and "because you watched" in page


def test_an_unknown_route_is_404_json(url):
    status, body, _ = get(f"{url}/nothing-here")
    assert status == 404 and body == {"detail": "Not Found"}
