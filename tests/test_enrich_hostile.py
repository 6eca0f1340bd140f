"""The client against hostile or broken servers: redirects elsewhere, dripping or stalled answers,
huge bodies, long Retry-After. Every server is real, on 127.0.0.1; none of these may hang, eat
memory or hand the key to another host."""

from __future__ import annotations

import gzip
import logging
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from rekko.enrich.client import ERROR, FOUND, ApiClient, ApiStop, Cancelled, DailyLimitReached
from rekko.enrich.settings import EnrichSettings
from rekko.testing.emulator import ApiEmulator, Delivery, Reply, movie

KEY = "kp-SECRET-0123456789"
CATALOGUE = {"Heat": [movie(949, "Heat", 1995, 7.9, 6000)]}
PATHS = {"kinopoisk": "/v1.4/movie/search?query=Heat&page=1&limit=10", "tmdb": "/3/search/movie?query=Heat"}


def settings(api: ApiEmulator, **kw: Any) -> EnrichSettings:
    base = {
        "api_key": KEY,
        "provider": api.provider,
        "base_url": api.url,
        "rate_limit": None,
        "backoff_base": 0.005,
        "backoff_max": 0.05,
        "timeout": 1.0,
        "max_retries": 0,
    }
    return EnrichSettings(**{**base, **kw})


def within(seconds: float, fn: Callable[[], Any]) -> tuple[Any, float]:
    """Run ``fn`` in a thread; fail (instead of hanging the suite) if it is not done in ``seconds``."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            box["error"] = exc

    started = time.monotonic()
    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    elapsed = time.monotonic() - started
    assert not worker.is_alive(), f"still running after {seconds} s: the request is not bounded"
    if "error" in box:
        raise box["error"]
    return box["value"], elapsed


def wait_until_ended(api: ApiEmulator, title: str = "Heat", timeout: float = 10.0) -> Delivery:
    """The server's view of the (last) answer for ``title`` once it stopped writing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ended = [d for d in api.deliveries if d.title == title and d.ended is not None]
        if ended:
            return ended[-1]
        time.sleep(0.02)
    raise AssertionError("the server is still writing: the client never hung up")


@pytest.fixture(params=["kinopoisk", "tmdb"])
def api(request):
    with ApiEmulator(request.param, api_key=KEY, catalogue=CATALOGUE) as emulator:
        yield emulator


@pytest.fixture
def kp():
    with ApiEmulator("kinopoisk", api_key=KEY, catalogue=CATALOGUE) as emulator:
        yield emulator


# -- 1. redirects: the key never leaves the configured origin ------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 307, 308])
@pytest.mark.parametrize("form", ["absolute", "scheme-relative"])
def test_cross_origin_redirect_never_carries_the_key(api, status, form):
    with ApiEmulator(api.provider, api_key=KEY, catalogue=CATALOGUE) as other:  # would accept the key if sent
        other_host = other.url.removeprefix("http://")
        target = other.url + PATHS[api.provider]
        location = target if form == "absolute" else target.removeprefix("http:")
        api.script("Heat", Reply(status, b"", {"Location": location}))
        with ApiClient(settings(api)) as client:
            try:
                client.fetch("Heat")
                stopped: ApiStop | None = None
            except ApiStop as exc:
                stopped = exc
        leaked = [seen["headers"] for seen in other.requests if KEY in " ".join(seen["headers"].values())]
        assert not leaked, f"the key reached {other.url}: {leaked}"
        assert other.requests == []  # refused, not followed without the key (which would 401 misleadingly)
    assert stopped is not None, "a cross-origin redirect must stop the run"
    message = str(stopped)
    assert "redirect" in message and other_host in message and KEY not in message
    assert stopped.exit_code == 1 and client.stop.is_set()


def test_redirect_to_the_same_port_under_another_host_name_is_refused(kp):
    port = kp.url.rsplit(":", 1)[1]
    kp.script("Heat", Reply(302, b"", {"Location": f"http://localhost:{port}{PATHS['kinopoisk']}"}))
    with ApiClient(settings(kp)) as client, pytest.raises(ApiStop, match="redirect"):
        client.fetch("Heat")
    assert kp.total_hits == 1  # localhost is another origin than 127.0.0.1, even on the same socket


def test_redirect_location_with_a_token_is_not_quoted(kp):
    with ApiEmulator("kinopoisk", api_key=KEY) as other:
        kp.script("Heat", Reply(302, b"", {"Location": f"{other.url}/steal?token=LEAKY-{KEY}"}))
        with ApiClient(settings(kp)) as client, pytest.raises(ApiStop) as exc:
            client.fetch("Heat")
    assert "LEAKY" not in str(exc.value) and "/steal" not in str(exc.value)  # the origin only


def test_same_origin_redirect_is_followed_with_the_key(api):
    api.script("Heat", Reply(301, b"", {"Location": PATHS[api.provider]}))  # relative: same origin
    with ApiClient(settings(api)) as client:
        res = client.fetch("Heat")
    assert res.status == FOUND and res.candidate.provider_id == "949"
    assert api.total_hits == 2 and api.statuses[301] == 1 and api.statuses[200] == 1


def test_redirect_loop_on_one_origin_is_an_error_for_the_title(kp):
    kp.script("Heat", *[Reply(302, b"", {"Location": PATHS["kinopoisk"]})] * 10)
    with ApiClient(settings(kp)) as client:
        res = client.fetch("Heat")
    assert res.status == ERROR and "redirects" in res.error and kp.total_hits == 6


# -- 2. a total deadline per request -------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        Reply(200, drip=0.2),  # the normal answer, one byte every 0.2 s: ~2 minutes
        Reply(200, drip=0.1, drip_headers=True),  # even the headers, a byte at a time
        Reply(200, endless=True, drip=0.2),  # a chunked body that never ends, slowly
        Reply(200, stall=30),  # headers, then silence
    ],
    ids=["drip-body", "drip-headers", "drip-endless", "stall-after-headers"],
)
def test_every_request_has_a_total_deadline(kp, reply):
    kp.script("Heat", reply)
    with ApiClient(settings(kp, timeout=1.0)) as client:
        res, elapsed = within(8, lambda: client.fetch("Heat"))
    assert res.status == ERROR and res.error.startswith("timeout") and res.attempts == 1
    assert 0.9 <= elapsed < 3.0
    if not reply.stall:  # (a stalled server only notices once it writes again)
        assert not wait_until_ended(kp).complete  # the client hung up; the server noticed


def test_a_request_past_its_deadline_is_retried_like_a_timeout(kp):
    kp.script("Heat", Reply(200, drip=0.2))
    with ApiClient(settings(kp, timeout=1.0, max_retries=2)) as client:
        res, elapsed = within(8, lambda: client.fetch("Heat"))
    assert res.status == FOUND and res.attempts == 2 and client.n_retries == 1 and elapsed < 3.0


def test_abort_in_flight_cancels_a_dripping_request_at_once(kp):
    kp.script("Heat", Reply(200, drip=1.0))
    with ApiClient(settings(kp, timeout=60)) as client:
        threading.Timer(0.5, client.abort_in_flight).start()
        with pytest.raises(Cancelled):
            within(5, lambda: client.fetch("Heat"))
        with pytest.raises(Cancelled):  # and nothing starts afterwards
            client.fetch("Heat")
    assert kp.total_hits == 1


# -- 4. the size of one answer is capped ---------------------------------------------------------------


def test_a_declared_huge_body_is_refused_without_reading_it(kp):
    kp.script("Heat", Reply(200, filler=400_000_000))  # 400 MB announced in Content-Length
    with ApiClient(settings(kp, timeout=30)) as client:
        res, _ = within(10, lambda: client.fetch("Heat"))
    assert res.status == ERROR and "400,000,000 bytes" in res.error and "cap" in res.error and res.attempts == 1
    delivery = wait_until_ended(kp)
    assert not delivery.complete and delivery.sent < 64_000_000  # socket buffers at most, not 400 MB


def test_an_endless_chunked_body_is_cut_at_the_cap(kp):
    kp.script("Heat", Reply(200, endless=True))  # no Content-Length; 64 KB chunks as fast as loopback goes
    with ApiClient(settings(kp, timeout=30)) as client:
        res, _ = within(10, lambda: client.fetch("Heat"))
    assert res.status == ERROR and "5,000,000-byte cap" in res.error and res.attempts == 1
    delivery = wait_until_ended(kp)
    assert not delivery.complete and delivery.sent < 64_000_000


def test_the_cap_counts_decompressed_bytes(kp):
    bomb = gzip.compress(b" " * 20_000_000)  # 20 KB on the wire, 20 MB inflated
    kp.script("Heat", Reply(200, bomb, {"Content-Encoding": "gzip"}))
    with ApiClient(settings(kp)) as client:
        res = client.fetch("Heat")
    assert res.status == ERROR and "cap" in res.error


def test_the_cap_is_a_setting(kp):
    kp.script("Heat", Reply(200, filler=2_000))
    with ApiClient(settings(kp, max_body_bytes=1_000)) as client:
        assert "1,000-byte cap" in client.fetch("Heat").error
        assert client.fetch("Heat").status == FOUND  # a normal answer (~600 bytes) passes


def test_error_bodies_are_read_only_for_a_snippet(kp):
    kp.script("Heat", Reply(404, filler=50_000_000))
    with ApiClient(settings(kp, timeout=30)) as client:
        res, _ = within(10, lambda: client.fetch("Heat"))
    assert res.status == ERROR and res.error.startswith("HTTP 404")
    assert not wait_until_ended(kp).complete


# -- 3. Retry-After beyond the cap is not slept through; long waits are WARNINGs ------------------------


def test_429_asking_for_more_than_the_cap_stops_the_run_as_the_quota(kp):
    kp.script("Heat", Reply(429, {"message": "quota"}, {"Retry-After": "3600"}))
    stop = threading.Event()
    with ApiClient(settings(kp, max_retries=3), stop=stop) as client:
        threading.Timer(3.0, stop.set).start()  # the old client slept up to 600 s here
        with pytest.raises(DailyLimitReached) as exc:
            within(5, lambda: client.fetch("Heat"))
    assert "3600 s" in str(exc.value) and "120 s cap" in str(exc.value)
    assert stop.is_set() and kp.total_hits == 1


def test_5xx_asking_for_more_than_the_cap_is_an_error_for_the_title(kp, caplog):
    kp.script("Heat", Reply(503, b"maintenance", {"Retry-After": "7200"}))
    with ApiClient(settings(kp, max_retries=3)) as client:
        res, elapsed = within(5, lambda: client.fetch("Heat"))
        assert not client.stop.is_set()  # other titles go on
    assert res.status == ERROR and "Retry-After 7200 s" in res.error and res.attempts == 1 and elapsed < 2
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("7200" in r.getMessage() and "cap" in r.getMessage() for r in warned)


def test_retry_after_cap_is_a_setting(kp):
    kp.script("Heat", Reply(503, b"", {"Retry-After": "11"}))
    with ApiClient(settings(kp, max_retries=1, retry_after_cap=10)) as client:
        res, _ = within(5, lambda: client.fetch("Heat"))
    assert res.status == ERROR and "over the 10 s cap" in res.error


@pytest.mark.parametrize(
    "kw, reply, source",
    [
        ({}, Reply(429, {}, {"Retry-After": "6"}), "Retry-After"),
        ({"backoff_base": 12.0, "backoff_max": 60.0}, Reply(500, b"oops"), "backoff"),
    ],
)
def test_a_wait_over_five_seconds_is_logged_as_a_warning(kp, caplog, kw, reply, source):
    caplog.set_level(logging.WARNING)
    kp.script("Heat", reply)
    stop = threading.Event()
    with ApiClient(settings(kp, max_retries=1, **kw), stop=stop) as client:
        threading.Timer(0.5, stop.set).start()
        with pytest.raises(Cancelled):
            within(5, lambda: client.fetch("Heat"))
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("waiting" in m and "'Heat'" in m and source in m for m in warned), warned


def test_short_waits_stay_quiet(kp, caplog):
    caplog.set_level(logging.INFO)
    kp.script("Heat", Reply(429, {}, {"Retry-After": "0.1"}))
    with ApiClient(settings(kp, max_retries=1)) as client:
        assert client.fetch("Heat").status == FOUND
    assert not [r for r in caplog.records if r.levelno >= logging.INFO]


# -- the same over TLS, the real APIs' scheme ----------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (needs the openssl command)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("tls")
    cert, key = str(d / "cert.pem"), str(d / "key.pem")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_deadline_cap_and_abort_cut_tls_connections_too(tls_files, monkeypatch):
    """The watchdog shuts down the descriptor under an SSL socket; the worker must wake all the same."""
    cert, key = tls_files
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert)  # read once by the client: verification stays on
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    with ApiEmulator("kinopoisk", api_key=KEY, catalogue=CATALOGUE, tls=ctx) as api:
        assert api.url.startswith("https://")
        with ApiClient(settings(api)) as client:
            assert client.fetch("Heat").status == FOUND
            api.script("Heat", Reply(200, drip=0.1, drip_headers=True), Reply(200, filler=50_000_000))
            res, elapsed = within(8, lambda: client.fetch("Heat"))
            assert res.error.startswith("timeout") and elapsed < 3.0
            assert "cap" in client.fetch("Heat").error
            api.script("Heat", Reply(200, drip=1.0))
            threading.Timer(0.5, client.abort_in_flight).start()
            with pytest.raises(Cancelled):
                within(5, lambda: client.fetch("Heat"))
