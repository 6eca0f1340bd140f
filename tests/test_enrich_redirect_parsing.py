"""Redirect targets the standard URL parser and the HTTP client read differently (issue 18, item 1).

``urllib.parse.urlsplit`` ends a URL's authority at ``/ ? #``; urllib3 (which
``requests`` uses to connect) also ends it at a backslash. A ``Location`` of
``http://localhost:P\\@127.0.0.1:H/ok`` therefore looked same-origin to a check
built on ``urlsplit`` while the request went to ``localhost:P`` with the key.
Every server here is real, on 127.0.0.1: ``other`` would accept the key, and
must see no request at all.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from rekko.enrich import transport
from rekko.enrich.client import ApiClient, ApiStop
from rekko.enrich.settings import EnrichSettings
from rekko.testing.emulator import ApiEmulator, Reply, movie

KEY = "kp-SECRET-0123456789"
CATALOGUE = {"Heat": [movie(949, "Heat", 1995, 7.9, 6000)]}
PATHS = {"kinopoisk": "/v1.4/movie/search?query=Heat&page=1&limit=10", "tmdb": "/3/search/movie?query=Heat"}


def settings(api: ApiEmulator) -> EnrichSettings:
    return EnrichSettings(api_key=KEY, provider=api.provider, base_url=api.url, rate_limit=None,
                          backoff_base=0.005, backoff_max=0.05, timeout=2.0, max_retries=0)


@pytest.fixture(params=["kinopoisk", "tmdb"])
def pair(request):
    """The configured API and another server on 127.0.0.1 that would take the key."""
    with ApiEmulator(request.param, api_key=KEY, catalogue=CATALOGUE) as api, \
            ApiEmulator(request.param, api_key=KEY, catalogue=CATALOGUE) as other:
        yield api, other


def _port(url: str) -> str:
    return url.rsplit(":", 1)[1]


#: Location forms aimed at ``other`` ({O}: its port) that a same-origin check might take for ``api`` ({H}: its port).
AMBIGUOUS = {
    "backslash before @ (the issue's form)": "http://localhost:{O}\\@127.0.0.1:{H}/ok",
    "backslash before @, numeric host": "http://127.0.0.1:{O}\\@127.0.0.1:{H}/ok",
    "backslash then path": "http://localhost:{O}\\/127.0.0.1:{H}/ok",
    "userinfo naming the API": "http://127.0.0.1:{H}@localhost:{O}/ok",
    "userinfo with a semicolon": "http://127.0.0.1:{H};@localhost:{O}/ok",
    "tab inside the authority": "http://127.0.0.1:{H}\t@localhost:{O}/ok",
    "leading blank": " http://localhost:{O}/ok",
    "scheme-relative with backslashes": "\\\\localhost:{O}/ok",
    "scheme without slashes, backslashes": "http:\\\\localhost:{O}/ok",
    "percent-encoded host": "http://%6cocalhost:{O}/ok",
    "trailing dot": "http://localhost.:{O}/ok",
    "IPv6 loopback": "http://[::ffff:127.0.0.1]:{O}/ok",
    "full-width digits (IDNA)": "http://１２７.0.0.1:{O}/ok",
    "ideographic full stops (IDNA)": "http://127。0。0。1:{O}/ok",
    "port with a plus sign": "http://127.0.0.1:+{O}/ok",
    "port that is not a number": "http://127.0.0.1:{O}x/ok",
}


@pytest.mark.parametrize("form", list(AMBIGUOUS))
def test_an_ambiguous_or_foreign_redirect_never_reaches_another_origin(pair, form):
    api, other = pair
    location = AMBIGUOUS[form].format(H=_port(api.url), O=_port(other.url))
    # the emulator writes headers as latin-1: this puts a non-ASCII Location on the wire as UTF-8 bytes
    api.script("Heat", Reply(302, b"", {"Location": location.encode("utf-8").decode("latin-1")}))
    with ApiClient(settings(api)) as client, pytest.raises(ApiStop, match="redirect") as stopped:
        client.fetch("Heat")
    assert other.requests == [], f"{form}: the redirect reached {other.url}"
    assert api.total_hits == 1  # not followed anywhere, not even back to the API
    assert KEY not in str(stopped.value) and "/ok" not in str(stopped.value)  # origin only, never the path
    assert stopped.value.exit_code == 1 and client.stop.is_set()


@pytest.mark.parametrize("location", [
    "/ok\\@localhost",  # a backslash in a path on the API's own origin: still ambiguous, refused
    "http://127.0.0.1:{H}/ok\\evil",
    "http://u:p@127.0.0.1:{H}/ok",  # credentials in a redirect: refused even to the same host
])
def test_an_ambiguous_redirect_to_the_same_origin_is_refused_too(pair, location):
    api, other = pair
    api.script("Heat", Reply(307, b"", {"Location": location.format(H=_port(api.url))}))
    with ApiClient(settings(api)) as client, pytest.raises(ApiStop, match="ambiguous"):
        client.fetch("Heat")
    assert api.total_hits == 1 and other.requests == []


def test_the_backslash_message_names_what_each_parser_read(pair):
    api, other = pair
    location = f"http://localhost:{_port(other.url)}\\@127.0.0.1:{_port(api.url)}/ok?token={KEY}"
    api.script("Heat", Reply(302, b"", {"Location": location}))
    with ApiClient(settings(api)) as client, pytest.raises(ApiStop) as stopped:
        client.fetch("Heat")
    message = str(stopped.value)
    assert "backslash" in message and f"localhost:{_port(other.url)}" in message
    assert KEY not in message and "token" not in message


@pytest.mark.parametrize("location", [
    "{PATH}",  # relative
    "http://127.0.0.1:{H}{PATH}",
    "HTTP://127.0.0.1:{H}{PATH}",  # scheme case
])
def test_a_plain_same_origin_redirect_is_still_followed(pair, location):
    api, other = pair
    api.script("Heat", Reply(302, b"", {"Location": location.format(H=_port(api.url), PATH=PATHS[api.provider])}))
    with ApiClient(settings(api)) as client:
        res = client.fetch("Heat")
    assert res.status == "found" and api.total_hits == 2 and other.requests == []


@pytest.mark.parametrize(("a", "b", "same"), [
    ("http://example.org/x", "http://example.org:80/y", True),  # default port spelled out
    ("https://example.org/x", "https://example.org:443/y", True),
    ("http://example.org/x", "https://example.org/x", False),  # scheme
    ("https://example.org/x", "https://example.org:8443/x", False),
    ("http://example.org/x", "http://EXAMPLE.org/x", True),  # host case
    ("http://example.org/x", "http://example.org./x", False),  # trailing dot: another name, refused
    ("http://[::1]:8000/x", "http://[::1]:8000/y", True),
    ("http://[::1]:8000/x", "http://127.0.0.1:8000/y", False),
])
def test_origins_compare_as_the_http_client_connects(a, b, same):
    assert (transport.request_origin(a) == transport.request_origin(b)) is same


def test_rekko_enrich_exits_non_zero_and_keeps_the_key_on_a_backslash_redirect(tmp_path: Path):
    pd.DataFrame({"movie_id": ["m0"], "title": ["Heat"]}).to_parquet(tmp_path / "movies.parquet")
    with ApiEmulator("kinopoisk", api_key=KEY, catalogue=CATALOGUE) as api, \
            ApiEmulator("tmdb", api_key=KEY, catalogue=CATALOGUE) as other:
        api.script("Heat", Reply(302, b"", {"Location": f"http://localhost:{_port(other.url)}\\@127.0.0.1:"
                                                        f"{_port(api.url)}/ok"}))
        env = {"PATH": "/usr/bin:/bin", "REKKO_API_KEY": KEY, **{k: v for k, v in __import__("os").environ.items()
                                                                 if k in ("PYTHONPATH", "HOME")}}
        proc = subprocess.run(
            [sys.executable, "-m", "rekko", "enrich", "--movies", str(tmp_path / "movies.parquet"),
             "--ratings", str(tmp_path / "Movies_r_d.xlsx"), "--api-url", api.url, "--provider", "kinopoisk",
             "--rate", "0", "--progress", "log", "--retries", "0"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert other.requests == [], "the API key reached the other server"
    assert proc.returncode == 1, proc.stderr
    assert "redirect" in proc.stderr and KEY not in proc.stdout + proc.stderr


@pytest.mark.parametrize("url", [
    "http://localhost:18182\\@127.0.0.1:18183/api",
    "http://user:UrlSecret@127.0.0.1:18183/api",
    "http://127.0.0.1:18183\t/api",
    "http://%6cocalhost:18183/api",
])
def test_an_ambiguous_configured_api_url_is_a_usage_error(url):
    from rekko.exceptions import ConfigError

    with pytest.raises(ConfigError, match="ambiguous") as refused:
        EnrichSettings(api_key=KEY, base_url=url)
    assert refused.value.exit_code == 2 and "UrlSecret" not in str(refused.value)
