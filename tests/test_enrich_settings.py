"""Settings from env vars and options, validated, with the key never shown."""

from __future__ import annotations

import pickle

import pytest

from rekko.enrich.settings import EnrichSettings, Secret, redact
from rekko.exceptions import ConfigError, InputError

KEY = "kp-SECRET-0123456789"


def test_defaults_from_env():
    s = EnrichSettings.from_env({"REKKO_API_KEY": KEY})
    assert s.api_key.reveal() == KEY
    assert (s.provider, s.base_url, s.rate_limit, s.flush_every) == ("kinopoisk", None, 5.0, 50)


def test_env_and_overrides():
    env = {
        "REKKO_API_KEY": KEY,
        "REKKO_API_PROVIDER": " TMDB ",
        "REKKO_API_URL": "http://127.0.0.1:1",
        "REKKO_API_RATE": "0",
        "REKKO_API_CONCURRENCY": "3",
    }
    s = EnrichSettings.from_env(env, concurrency=8, timeout=None)
    assert (s.provider, s.base_url, s.rate_limit, s.concurrency, s.timeout) == (
        "tmdb",
        "http://127.0.0.1:1",
        None,
        8,
        10.0,
    )


def test_missing_key_is_an_input_error_naming_the_variable():
    with pytest.raises(ConfigError, match="REKKO_API_KEY is not set") as exc:
        EnrichSettings.from_env({"REKKO_API_KEY": "  "})
    assert isinstance(exc.value, InputError) and exc.value.exit_code == 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"provider": "imdb"}, "unknown API provider"),
        ({"base_url": "ftp://x"}, "http://"),
        ({"rate_limit": -1.0}, "rate limit"),
        ({"concurrency": 0}, "concurrency"),
        ({"timeout": 0}, "timeout"),
        ({"flush_every": 0}, "flush size"),
        ({"max_retries": -1}, "max retries"),
        ({"not_found_max_age_days": -1.0}, "max age"),
        ({"progress": "fancy"}, "progress"),
        ({"log_every_seconds": -1.0}, "log interval"),
        ({"retry_after_cap": 0}, "retry after cap"),
        ({"retry_after_cap": float("inf")}, "retry after cap"),
        ({"max_body_bytes": 0}, "max body bytes"),
    ],
)
def test_invalid_values_say_what_was_expected(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        EnrichSettings(api_key=KEY, **kwargs)


def test_bad_numbers_in_env():
    with pytest.raises(ConfigError, match="REKKO_API_RATE must be a number, got 'fast'"):
        EnrichSettings.from_env({"REKKO_API_KEY": KEY, "REKKO_API_RATE": "fast"})


def test_key_with_whitespace_is_refused_without_echoing_it():
    with pytest.raises(ConfigError) as exc:
        EnrichSettings(api_key="abc\ndef")
    assert "abc" not in str(exc.value)


def test_key_never_in_repr_str_or_pickle():
    s = EnrichSettings(api_key=KEY)
    assert KEY not in repr(s) and KEY not in str(s) and KEY not in f"{s.api_key}" and KEY not in repr(s.api_key)
    assert "***" in repr(s)
    with pytest.raises(TypeError):
        pickle.dumps(s)


def test_secret_equality_and_redact():
    assert Secret("a") == Secret("a") and Secret("a") != Secret("b")
    assert redact(f"boom {KEY} boom", Secret(KEY)) == "boom *** boom"
    assert redact("nothing", Secret(KEY)) == "nothing"


def test_caps_default_to_120_s_and_5_mb():
    s = EnrichSettings.from_env({"REKKO_API_KEY": KEY})
    assert (s.retry_after_cap, s.max_body_bytes) == (120.0, 5_000_000)
    assert EnrichSettings.from_env({"REKKO_API_KEY": KEY}, retry_after_cap=30.0).retry_after_cap == 30.0


@pytest.mark.parametrize("key", ["ключ-0123456789", "clé-0123456789", "kp-\u00ad-soft-hyphen", "k\u200bey"])
def test_a_key_a_header_cannot_carry_is_refused_without_echoing_it(key):
    with pytest.raises(ConfigError, match="REKKO_API_KEY contains") as exc:
        EnrichSettings(api_key=key)
    assert exc.value.exit_code == 2
    assert key not in str(exc.value) and "0123456789" not in str(exc.value) and "ключ" not in str(exc.value)
