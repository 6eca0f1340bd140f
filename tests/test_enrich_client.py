"""The HTTP client against a real local server emulating both providers."""

from __future__ import annotations

import itertools
import socket
import threading
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from rekko.enrich.client import (
    ERROR,
    FOUND,
    NOT_FOUND,
    ApiAccessDenied,
    ApiClient,
    ApiKeyRejected,
    Cancelled,
    DailyLimitReached,
    RateLimiter,
    parse_retry_after,
)
from rekko.testing.emulator import GARBAGE, SERVER_ERROR, WRONG_SHAPE, ApiEmulator, Reply, movie
from rekko.enrich.settings import EnrichSettings
from rekko.exceptions import EnrichmentError, InputError

KEY = "kp-SECRET-0123456789"
CATALOGUE = {
    "Брат": [
        movie(2, "Брат 2", 2000, 8.0, 400_000),
        movie(1, "Брат", 1997, 8.3, 600_000),
        movie(3, "Брат", 2010, 5.1, 10),
    ],
    "Heat": [movie(949, "Heat", 1995, 7.9, 6000), movie(950, "Heat", 1986, 5.0, 100)],
}


def settings(api: ApiEmulator, **kw) -> EnrichSettings:
    base = {
        "api_key": KEY,
        "provider": api.provider,
        "base_url": api.url,
        "rate_limit": None,
        "backoff_base": 0.005,
        "backoff_max": 0.05,
        "timeout": 2.0,
    }
    return EnrichSettings(**{**base, **kw})


@pytest.fixture
def kp():
    with ApiEmulator("kinopoisk", api_key=KEY, catalogue=CATALOGUE) as api:
        yield api


@pytest.fixture
def tmdb():
    with ApiEmulator("tmdb", api_key=KEY, catalogue=CATALOGUE) as api:
        yield api


def test_kinopoisk_found_picks_the_exact_title(kp):
    with ApiClient(settings(kp)) as client:
        res = client.fetch("Брат")
    assert res.status == FOUND and res.n_candidates == 3
    assert (res.candidate.provider_id, res.candidate.rating, res.candidate.year) == ("1", 8.3, 1997)
    headers = {k.lower(): v for k, v in kp.requests[0]["headers"].items()}
    assert headers["x-api-key"] == KEY


def test_kinopoisk_year_disambiguates_namesakes(kp):
    with ApiClient(settings(kp)) as client:
        assert client.fetch("Брат", 2010).candidate.provider_id == "3"


def test_tmdb_found_with_year_sent(tmdb):
    with ApiClient(settings(tmdb)) as client:
        res = client.fetch("Heat", 1986)
    assert res.status == FOUND and res.candidate.provider_id == "950" and res.candidate.rating == 5.0
    assert tmdb.requests[0]["query"] == {"query": ["Heat"], "year": ["1986"]}
    assert tmdb.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"


def test_tmdb_year_off_by_one_asks_again_without_the_year(tmdb):
    with ApiClient(settings(tmdb)) as client:
        res = client.fetch("Heat", 1996)  # the emulator filters by exact year, as TMDB does
        missing = client.fetch("Nothing", 1996)
    assert res.status == FOUND and res.candidate.provider_id == "949" and res.attempts == 2
    assert [r["query"].get("year") for r in tmdb.requests] == [["1996"], None, ["1996"], None]
    assert missing.status == NOT_FOUND


def test_not_found_when_no_candidate_or_no_title_match(kp):
    kp.catalogue["Брат 3"] = [movie(9, "Брат 2", 2000, 8.0)]
    with ApiClient(settings(kp)) as client:
        empty, namesake = client.fetch("Nothing at all"), client.fetch("Брат 3")
    assert (empty.status, empty.n_candidates) == (NOT_FOUND, 0)
    assert (namesake.status, namesake.n_candidates) == (NOT_FOUND, 1)
    assert "no exact title match" in namesake.error


def test_429_burst_honours_retry_after_then_succeeds(kp):
    burst = Reply(429, {"message": "slow down"}, {"Retry-After": "0.2"})
    kp.script("Heat", burst, burst, burst)
    with ApiClient(settings(kp)) as client:
        res = client.fetch("Heat")
    assert res.status == FOUND and res.attempts == 4 and client.n_retries == 3
    times = [r["t"] for r in kp.requests]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 0.2  # waited at least what the server asked, not the 5 ms backoff


def test_429_pauses_every_worker(kp):
    kp.script("Heat", Reply(429, {}, {"Retry-After": "0.3"}))
    with ApiClient(settings(kp)) as client:
        first = threading.Thread(target=client.fetch, args=("Heat",))
        first.start()
        deadline = time.monotonic() + 10
        while client.n_retries < 1 and time.monotonic() < deadline:  # the 429 is in and the pause is set
            time.sleep(0.005)
        assert kp.total_hits == 1 and client.n_retries == 1
        client.fetch("Брат")  # another title, another thread's view: must wait for the pause too
        first.join()
    brat = next(r["t"] for r in kp.requests if r["title"] == "Брат")
    assert brat - kp.requests[0]["t"] >= 0.3


def test_5xx_retried_with_backoff_then_succeeds(kp):
    kp.script("Heat", SERVER_ERROR, Reply(503, b"busy"), Reply(502, b""))
    with ApiClient(settings(kp)) as client:
        res = client.fetch("Heat")
    assert res.status == FOUND and res.attempts == 4
    assert kp.statuses[500] == 1 and kp.statuses[503] == 1 and kp.statuses[502] == 1


def test_persistent_5xx_becomes_an_error_after_max_retries(kp):
    kp.script("Heat", *[SERVER_ERROR] * 10)
    with ApiClient(settings(kp, max_retries=3)) as client:
        res = client.fetch("Heat")
    assert res.status == ERROR and res.attempts == 4 and kp.hits["Heat"] == 4
    assert res.error == "HTTP 500 after 4 attempts"


def test_answer_slower_than_timeout_is_retried_then_an_error(kp):
    kp.script("Heat", Reply(200, None, delay=0.6), Reply(200, None, delay=0.6))
    with ApiClient(settings(kp, timeout=0.15, max_retries=1)) as client:
        res = client.fetch("Heat")
    assert res.status == ERROR and res.error.startswith("timeout") and res.attempts == 2


def test_slow_answer_then_fast_answer_succeeds(kp):
    kp.script("Heat", Reply(200, None, delay=0.6))
    with ApiClient(settings(kp, timeout=0.15)) as client:
        res = client.fetch("Heat")
    assert res.status == FOUND and res.attempts == 2


@pytest.mark.parametrize(
    "reply, expected",
    [
        (GARBAGE, "malformed JSON body"),
        (WRONG_SHAPE, "unexpected JSON shape"),
        (Reply(200, {"docs": {"id": 1}}), "unexpected JSON shape"),
        (Reply(200, [1, 2, 3]), "unexpected JSON shape"),
        (Reply(200, b""), "malformed JSON body"),
        (Reply(404, {"message": "no such route"}), "HTTP 404"),
        (Reply(400, {"message": "bad query"}), "HTTP 400"),
    ],
)
def test_bad_answers_are_errors_not_crashes(kp, reply, expected):
    kp.script("Heat", reply)
    with ApiClient(settings(kp)) as client:
        res = client.fetch("Heat")
    assert res.status == ERROR and expected in res.error and res.attempts == 1


def test_connection_refused_is_an_error_after_retries():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = EnrichSettings(
        api_key=KEY, base_url=f"http://127.0.0.1:{port}", backoff_base=0.001, max_retries=2, rate_limit=None
    )
    with ApiClient(cfg) as client:
        res = client.fetch("Heat")
    assert res.status == ERROR and res.error == "connection error (ConnectionError) after 3 attempts"


def test_401_stops_at_once_without_the_key_in_the_message(kp):
    cfg = settings(kp, api_key="wrong-key-XYZ")
    with ApiClient(cfg) as client, pytest.raises(ApiKeyRejected, match="API key rejected") as exc:
        client.fetch("Heat")
    assert kp.total_hits == 1  # no retries on 401
    assert "wrong-key-XYZ" not in str(exc.value) and isinstance(exc.value, EnrichmentError)


def test_a_rejected_key_is_bad_input_exit_2_and_other_stops_exit_1():
    for stop in (ApiKeyRejected("x"), ApiAccessDenied("x")):
        assert isinstance(stop, InputError) and stop.exit_code == 2  # the user must fix REKKO_API_KEY
    assert DailyLimitReached("x").exit_code == 1 and not isinstance(DailyLimitReached("x"), InputError)


def test_403_daily_limit_stops(kp):
    kp.daily_limit_after = 1
    with ApiClient(settings(kp)) as client:
        assert client.fetch("Heat").status == FOUND
        with pytest.raises(DailyLimitReached, match="суточный лимит"):
            client.fetch("Брат")
        with pytest.raises(Cancelled):
            client.fetch("Сталкер")  # stopped: not even asked
    assert kp.total_hits == 2


def test_402_is_a_daily_limit_and_other_403_is_access_denied(kp):
    kp.script("Heat", Reply(402, {"message": "Payment Required"}))
    kp.script("Брат", Reply(403, {"message": "Forbidden"}))
    with ApiClient(settings(kp)) as client, pytest.raises(DailyLimitReached):
        client.fetch("Heat")
    assert client.stop.is_set()  # a stop answer stops every worker
    with ApiClient(settings(kp)) as client, pytest.raises(ApiAccessDenied, match="HTTP 403"):
        client.fetch("Брат")


def test_stop_event_cancels_waiting_retries(kp):
    kp.script("Heat", Reply(429, {}, {"Retry-After": "30"}))
    stop = threading.Event()
    with ApiClient(settings(kp, backoff_max=60), stop=stop) as client:
        threading.Timer(0.1, stop.set).start()
        with pytest.raises(Cancelled):
            client.fetch("Heat")  # would wait 30 s without the stop
    assert kp.total_hits == 1


def test_rate_limiter_spaces_slots_across_threads():
    now = [100.0]
    limiter = RateLimiter(4.0, clock=lambda: now[0])
    waits = []
    stop = threading.Event()

    class Recorder(threading.Event):
        def wait(self, timeout=None):
            waits.append(round(timeout, 6))
            return False

    for _ in range(4):
        limiter.acquire(Recorder())
    assert waits == [0.25, 0.5, 0.75]  # the first slot is free, then 1/rate apart
    limiter.pause_until(110.0)
    waits.clear()
    limiter.acquire(Recorder())
    assert waits == [10.0]
    off = RateLimiter(None, clock=lambda: now[0])
    off.acquire(stop)  # no wait, no error
    assert off.interval == 0.0


def test_parse_retry_after():
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(format_datetime(now + timedelta(seconds=7), usegmt=True), now=now) == 7.0
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after("99999") == 99999.0  # uncapped: the client compares it with retry_after_cap
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    assert parse_retry_after("nan") is None and parse_retry_after("inf") is None


def test_backoff_grows_with_jitter_and_is_capped():
    cfg = EnrichSettings(api_key=KEY, backoff_base=1.0, backoff_max=5.0)
    client = ApiClient(cfg)
    for attempt, (lo, hi) in enumerate([(0.5, 1), (1, 2), (2, 4), (2.5, 5), (2.5, 5)]):
        delays = {client.backoff(attempt) for _ in range(50)}
        assert all(lo <= d <= hi for d in delays) and len(delays) > 1
