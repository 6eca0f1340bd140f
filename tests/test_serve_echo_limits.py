"""Issue 18, item 18: an answer never echoes a huge request value whole; like every message, values are cut
at 200 characters (``GET /movies/<15,000 characters>`` answered a 15,032-byte 404)."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="rekko[serve] is not installed")

from rekko.serve.app import create_app  # noqa: E402
from tests.serve_support import build_artifacts, get, live_server  # noqa: E402

LONG = "x" * 15_000
#: 200 characters of the value, the cut's note, the message around it, the JSON envelope
MAX_BODY = 600


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    paths = build_artifacts(tmp_path_factory.mktemp("serve-echo"))
    with live_server(create_app(paths, reload_interval=None)) as base:
        yield base


@pytest.mark.parametrize("path", [f"/movies/{LONG}", f"/movies/{LONG}/similar"], ids=["movie", "similar"])
def test_an_unknown_15000_character_movie_id_is_a_short_404(url, path):
    status, body, headers = get(url + path)
    assert status == 404
    detail = body["detail"]
    assert detail.startswith("unknown movie_id 'xxx") and "(15,000 characters)" in detail
    assert int(headers.get("content-length", headers.get("Content-Length"))) < MAX_BODY


def test_a_short_unknown_movie_id_is_still_named_whole(url):
    status, body, _ = get(url + "/movies/no-such-movie")
    assert status == 404 and body["detail"] == "unknown movie_id 'no-such-movie'"


@pytest.mark.parametrize("path", [f"/recommendations/{'9' * 15_000}", f"/recommendations/1?n={LONG}",
                                  f"/movies/m/similar?kind={LONG}"], ids=["user-id", "n", "kind"])
def test_a_15000_character_parameter_is_a_short_422(url, path):
    status, body, headers = get(url + path)
    assert status == 422, body
    assert int(headers.get("content-length", headers.get("Content-Length"))) < 2_000, body
