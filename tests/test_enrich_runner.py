"""enrich_titles end to end against the local emulator: counts, resume, stops, secrecy."""

from __future__ import annotations

import logging
import os
import time

import pandas as pd
import pytest

from rekko.columns import Columns as C
from rekko.enrich import (
    ApiKeyRejected,
    EnrichSettings,
    EnrichSummary,
    enrich_titles,
    read_cache_as_ratings,
)
from rekko.enrich.cache import CacheBusyError, cache_lock, load_cache
from rekko.testing.emulator import GARBAGE, SERVER_ERROR, TOO_MANY, WRONG_SHAPE, ApiEmulator, Reply, movie

KEY = "kp-SECRET-0123456789"
CATALOGUE = {
    "Брат": [movie(2, "Брат 2", 2000, 8.0, 400_000), movie(1, "Брат", 1997, 8.3, 600_000)],
    "Сталкер": [movie(4, "Сталкер", 1979, 8.1, 300_000, alt_title="Stalker")],
    "Солярис": [movie(5, "Солярис", 1972, 8.0, 100_000), movie(6, "Солярис", 2002, 6.2, 50_000)],
    "Без рейтинга": [movie(7, "Без рейтинга", 2020, None, 0)],
}


def settings(api: ApiEmulator, **kw) -> EnrichSettings:
    base = {
        "api_key": KEY,
        "provider": api.provider,
        "base_url": api.url,
        "rate_limit": None,
        "concurrency": 3,
        "backoff_base": 0.005,
        "backoff_max": 0.05,
        "timeout": 2.0,
        "flush_every": 2,
        "progress": "log",
    }
    return EnrichSettings(**{**base, **kw})


@pytest.fixture
def kp():
    with ApiEmulator("kinopoisk", api_key=KEY, catalogue=CATALOGUE) as api:
        yield api


def test_enrich_fills_the_cache_and_counts(kp, tmp_path):
    kp.script("Сталкер", TOO_MANY, SERVER_ERROR)
    kp.script("Garbage", GARBAGE)
    kp.script("Shape", WRONG_SHAPE)
    titles = pd.DataFrame(
        {
            "title": ["Брат", "Сталкер", "Солярис", "Без рейтинга", "Nothing", "Garbage", "Shape", "брат"],
            "release_year": [None, None, 2002, None, None, None, None, None],
        }
    )
    cache_path = tmp_path / "api_cache.parquet"
    summary = enrich_titles(titles, cache_path, settings(kp))
    assert (summary.titles, summary.cached, summary.found, summary.not_found, summary.errors, summary.remaining) == (
        7,
        0,
        4,
        1,
        2,
        0,
    )
    assert summary.stopped is None and summary.retries == 2 and summary.requests == 9
    cache = load_cache(cache_path).set_index(C.TITLE)
    assert cache.loc["Брат", C.PROVIDER_ID] == "1"
    assert cache.loc["Солярис", C.RATING] == 6.2 and cache.loc["Солярис", C.RELEASE_YEAR] == 2002
    assert pd.isna(cache.loc["Без рейтинга", C.RATING])
    assert cache.loc["Garbage", C.STATUS] == "error" and "malformed JSON" in cache.loc["Garbage", C.ERROR]
    assert cache.loc["Shape", C.STATUS] == "error" and "unexpected JSON shape" in cache.loc["Shape", C.ERROR]
    ratings = read_cache_as_ratings(cache_path)
    assert sorted(ratings[C.TITLE]) == ["Без рейтинга", "Брат", "Солярис", "Сталкер"]


def test_second_run_asks_only_errors_again(kp, tmp_path):
    kp.script("Garbage", GARBAGE)
    titles = pd.DataFrame({"title": ["Брат", "Nothing", "Garbage"]})
    cache_path = tmp_path / "c.parquet"
    first = enrich_titles(titles, cache_path, settings(kp))
    assert (first.found, first.not_found, first.errors) == (1, 1, 1)
    second = enrich_titles(titles, cache_path, settings(kp))
    assert (second.cached, second.not_found, second.errors, second.requests) == (2, 1, 0, 1)
    assert dict(kp.hits) == {"Брат": 1, "Nothing": 1, "Garbage": 2}
    third = enrich_titles(titles, cache_path, settings(kp, not_found_max_age_days=0))
    assert third.requests == 2 and kp.hits["Nothing"] == 2 and kp.hits["Garbage"] == 3


def test_legacy_is_migrated_once_and_not_asked_again(kp, tmp_path):
    legacy = tmp_path / "Movies_r_d.xlsx"
    pd.DataFrame({"name": ["Брат", "Old"], "rating": ["dict_values([8.3])", "-1"], "description": ["x", ""]}).to_excel(
        legacy, index=False, engine="openpyxl"
    )
    titles = pd.DataFrame({"title": ["Брат", "Сталкер", "Old"]})
    month_ago = time.time() - 31 * 86400  # "Old" had no data and is older than the max age: asked again
    os.utime(legacy, (month_ago, month_ago))
    summary = enrich_titles(titles, tmp_path / "api_cache.parquet", settings(kp), legacy_path=legacy)
    assert summary.migrated == 2 and summary.cached == 1
    assert dict(kp.hits) == {"Сталкер": 1, "Old": 1}
    again = enrich_titles(titles, tmp_path / "api_cache.parquet", settings(kp), legacy_path=legacy)
    assert (again.migrated, again.cached, kp.total_hits) == (0, 3, 2)
    ratings = read_cache_as_ratings(tmp_path / "api_cache.parquet")
    assert sorted(ratings[C.TITLE]) == ["Брат", "Сталкер"]


def test_daily_limit_stops_gracefully_and_keeps_everything(kp, tmp_path):
    kp.daily_limit_after = 3
    titles = pd.DataFrame({"title": [f"T{i}" for i in range(20)]})
    summary = enrich_titles(titles, tmp_path / "c.parquet", settings(kp, concurrency=1))
    assert summary.stopped == "daily_limit"
    assert summary.not_found == 3 and summary.remaining == 17
    assert len(load_cache(tmp_path / "c.parquet")) == 3
    kp.daily_limit_after = None  # the next day
    again = enrich_titles(titles, tmp_path / "c.parquet", settings(kp))
    assert (again.cached, again.not_found, again.remaining) == (3, 17, 0)
    assert max(kp.hits.values()) <= 2 and sum(kp.hits[f"T{i}"] for i in range(3)) == 3


def test_401_stops_at_once_and_keeps_what_was_fetched(kp, tmp_path):
    titles = pd.DataFrame({"title": ["Брат", "Сталкер", "Солярис"] + [f"T{i}" for i in range(30)]})
    kp.script("Сталкер", Reply(401, {"message": "token revoked"}))
    with pytest.raises(ApiKeyRejected, match="API key rejected") as exc:
        enrich_titles(titles, tmp_path / "c.parquet", settings(kp, concurrency=1))
    assert "nothing lost" in str(exc.value)
    assert load_cache(tmp_path / "c.parquet")[C.TITLE].tolist() == ["Брат"]
    assert kp.total_hits == 2  # nothing asked after the 401


def test_tmdb_end_to_end(tmp_path):
    catalogue = {"Heat": [movie(949, "Heat", 1995, 7.9, 6000), movie(950, "Heat", 1986, 5.0, 100)]}
    with ApiEmulator("tmdb", api_key=KEY, catalogue=catalogue) as api:
        titles = pd.DataFrame({"title": ["Heat", "Heat", "Nope"], "release_year": [1986, 1995, None]})
        summary = enrich_titles(titles, tmp_path / "c.parquet", settings(api))
    assert (summary.found, summary.not_found) == (2, 1)
    cache = load_cache(tmp_path / "c.parquet")
    assert dict(zip(cache[C.RELEASE_YEAR].dropna(), cache[C.PROVIDER_ID].dropna(), strict=True)) == {
        1986: "950",
        1995: "949",
    }
    assert (cache[C.PROVIDER] == "tmdb").all()


def test_limit_asks_at_most_n(kp, tmp_path):
    titles = pd.DataFrame({"title": [f"T{i}" for i in range(10)]})
    summary = enrich_titles(titles, tmp_path / "c.parquet", settings(kp), limit=4)
    assert (summary.not_found, summary.remaining, kp.total_hits) == (4, 6, 4)


def test_nothing_to_ask_makes_no_request(kp, tmp_path):
    summary = enrich_titles(pd.DataFrame({"title": ["", None]}), tmp_path / "c.parquet", settings(kp))
    assert summary == EnrichSummary(
        titles=0, cached=0, found=0, not_found=0, errors=0, remaining=0, seconds=summary.seconds
    )
    assert kp.total_hits == 0 and not (tmp_path / "c.parquet").exists()


def test_summary_text():
    s = EnrichSummary(
        titles=10,
        cached=2,
        found=5,
        not_found=1,
        errors=1,
        remaining=1,
        stopped="daily_limit",
        requests=9,
        retries=2,
        seconds=1.25,
    )
    assert str(s) == (
        "found 5, not found 1, errors 1, remaining 1 (of 10 titles; 2 already cached; 9 requests, 2 retries, 1.2 s)"
        "; stopped early: daily limit"
    )
    assert s.asked == 7


@pytest.mark.parametrize("progress", ["log", "bar"])
def test_key_never_in_logs_output_cache_or_errors(kp, tmp_path, caplog, capsys, progress):
    """Every path that writes text: logs (down to urllib3 debug), stdout/stderr, the cache file, exceptions."""
    caplog.set_level(logging.DEBUG)
    kp.script("Garbage", Reply(200, f"echo {KEY}".encode()))  # a server echoing the key back
    kp.script("Err", Reply(400, {"message": f"bad key {KEY}"}))
    kp.script("Retry", TOO_MANY, SERVER_ERROR)
    titles = pd.DataFrame({"title": ["Брат", "Garbage", "Err", "Retry", "Nothing"]})
    cfg = settings(kp, progress=progress, log_every_seconds=0)
    summary = enrich_titles(titles, tmp_path / "c.parquet", cfg)
    assert summary.errors == 2
    kp.daily_limit_after = 0
    enrich_titles(pd.DataFrame({"title": ["Другое"]}), tmp_path / "c.parquet", cfg)
    wrong = "wrong-" + KEY
    with pytest.raises(ApiKeyRejected) as exc:
        enrich_titles(pd.DataFrame({"title": ["Ещё"]}), tmp_path / "c.parquet", cfg.with_(api_key=wrong))
    out = capsys.readouterr()
    texts = [
        caplog.text,
        out.out,
        out.err,
        str(exc.value),
        repr(exc.value),
        repr(cfg),
        (tmp_path / "c.parquet").read_bytes().decode("latin-1"),
    ]
    assert caplog.text  # the logs were captured at all
    for text in texts:
        assert KEY not in text
    cache = load_cache(tmp_path / "c.parquet")
    assert cache.astype(str).apply(lambda col: col.str.contains(KEY, regex=False)).to_numpy().sum() == 0
    assert "***" in cache.set_index(C.TITLE).loc["Err", C.ERROR]


def test_a_second_run_on_the_same_cache_is_refused(kp, tmp_path):
    cache_path = tmp_path / "c.parquet"
    with cache_lock(cache_path), pytest.raises(CacheBusyError, match="another enrichment run"):
        enrich_titles(pd.DataFrame({"title": ["Брат"]}), cache_path, settings(kp))
    assert kp.total_hits == 0
    assert enrich_titles(pd.DataFrame({"title": ["Брат"]}), cache_path, settings(kp)).found == 1  # released


def test_an_unexpected_failure_is_logged_once_with_a_traceback_and_without_the_key(kp, tmp_path, caplog, monkeypatch):
    from rekko.enrich.client import ApiClient

    def broken(self, title, year=None):
        raise ValueError(f"header value {KEY!r} is not valid")  # third-party messages may quote a header

    monkeypatch.setattr(ApiClient, "fetch", broken)
    titles = pd.DataFrame({"title": [f"T{i}" for i in range(5)]})
    summary = enrich_titles(titles, tmp_path / "c.parquet", settings(kp))
    assert summary.errors == 5
    assert caplog.text.count("Traceback") == 1 and caplog.text.count("unexpected failure") == 5
    assert KEY not in caplog.text and "***" in caplog.text
    cache = load_cache(tmp_path / "c.parquet")
    assert cache[C.ERROR].str.startswith("internal error: ValueError").all()
    assert not cache[C.ERROR].str.contains(KEY, regex=False).any()
