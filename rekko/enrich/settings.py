"""Validated configuration of the enrichment step, built from env vars and CLI options.

The API key is wrapped in :class:`Secret` so that no repr, f-string, log line or
exception message built from the settings can ever show it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from rekko.exceptions import ConfigError

ENV_KEY = "REKKO_API_KEY"
ENV_PROVIDER = "REKKO_API_PROVIDER"
ENV_URL = "REKKO_API_URL"
ENV_RATE = "REKKO_API_RATE"
ENV_CONCURRENCY = "REKKO_API_CONCURRENCY"
ENV_TIMEOUT = "REKKO_API_TIMEOUT"

PROVIDERS = ("kinopoisk", "tmdb")
PROGRESS_MODES = ("auto", "bar", "log", "off")
REDACTED = "***"


class Secret:
    """A string that never shows itself: ``str``/``repr`` give ``***``; ``reveal()`` gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return f"Secret('{REDACTED}')"

    def __str__(self) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> Any:  # pickling would write the key to disk; refuse
        raise TypeError("Secret values are not picklable")


@dataclass(frozen=True)
class EnrichSettings:
    """Everything the enrichment client needs; validated on construction.

    ``rate_limit`` is requests per second across all workers (``None`` = off);
    ``timeout`` is the total time one request may take (connect, headers, body);
    ``retry_after_cap`` is the longest ``Retry-After`` waited for within a run;
    ``max_body_bytes`` is the largest answer read (a search answer is a few KB);
    ``not_found_max_age_days`` is how long a "not found" answer is trusted before
    the title is asked again; errors are always retried on the next run.
    """

    api_key: Secret
    provider: str = "kinopoisk"
    base_url: str | None = None  # None: the provider's public URL
    rate_limit: float | None = 5.0
    concurrency: int = 4
    timeout: float = 10.0
    max_retries: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    retry_after_cap: float = 120.0
    max_body_bytes: int = 5_000_000
    flush_every: int = 50
    not_found_max_age_days: float = 30.0
    progress: str = "auto"
    log_every_seconds: float = 10.0

    def __post_init__(self) -> None:
        if isinstance(self.api_key, str):  # accept a plain string, keep it wrapped
            object.__setattr__(self, "api_key", Secret(self.api_key))
        key = self.api_key.reveal()
        if not key:
            raise ConfigError(f"{ENV_KEY} is empty: set it to your API key to enrich movies from the API")
        _check_key(key)
        if self.provider not in PROVIDERS:
            raise ConfigError(f"unknown API provider {self.provider!r}; expected one of {', '.join(PROVIDERS)}")
        if self.base_url is not None and not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"API URL must start with http:// or https://, got {self.base_url!r}")
        if self.base_url is not None:
            from rekko.enrich.transport import ambiguity

            why = ambiguity(self.base_url)
            if why is not None:  # the key would go wherever the HTTP client reads it, not where it seems to point
                raise ConfigError(f"API URL is ambiguous ({why}): give a plain http(s)://host[:port]/path address")
        if self.rate_limit is not None and (not math.isfinite(self.rate_limit) or self.rate_limit < 0):
            raise ConfigError(f"rate limit must be a non-negative number of requests per second, got {self.rate_limit}")
        if self.rate_limit == 0:
            object.__setattr__(self, "rate_limit", None)
        _positive_int("concurrency", self.concurrency)
        _positive_int("flush size", self.flush_every)
        _positive_int("max body bytes", self.max_body_bytes)
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ConfigError(f"max retries must be an integer >= 0, got {self.max_retries!r}")
        for name in ("timeout", "backoff_max", "retry_after_cap"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"{name.replace('_', ' ')} must be a positive number of seconds, got {value!r}")
        if not (math.isfinite(self.backoff_base) and self.backoff_base >= 0):
            raise ConfigError(f"backoff base must be >= 0 seconds, got {self.backoff_base!r}")
        if not (math.isfinite(self.not_found_max_age_days) and self.not_found_max_age_days >= 0):
            raise ConfigError(f"not-found max age must be >= 0 days, got {self.not_found_max_age_days!r}")
        if not (math.isfinite(self.log_every_seconds) and self.log_every_seconds >= 0):
            raise ConfigError(f"progress log interval must be >= 0 seconds, got {self.log_every_seconds!r}")
        if self.progress not in PROGRESS_MODES:
            raise ConfigError(f"unknown progress mode {self.progress!r}; expected one of {', '.join(PROGRESS_MODES)}")

    def __repr__(self) -> str:
        parts = [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self)]
        return f"EnrichSettings({', '.join(parts)})"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> EnrichSettings:
        """Build settings from ``REKKO_API_*`` variables; non-None ``overrides`` (CLI options) win.

        A missing key is a :class:`ConfigError` (exit code 2) that says which variable to set.
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        if env.get(ENV_PROVIDER, "").strip():
            values["provider"] = env[ENV_PROVIDER].strip().lower()
        if env.get(ENV_URL, "").strip():
            values["base_url"] = env[ENV_URL].strip()
        for var, name, conv in (
            (ENV_RATE, "rate_limit", float),
            (ENV_CONCURRENCY, "concurrency", int),
            (ENV_TIMEOUT, "timeout", float),
        ):
            raw = env.get(var, "").strip()
            if raw:
                try:
                    values[name] = conv(raw)
                except ValueError:
                    raise ConfigError(f"{var} must be a number, got {raw!r}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        key = values.pop("api_key", None) or env.get(ENV_KEY, "").strip()
        if not key:
            raise ConfigError(
                f"{ENV_KEY} is not set: export {ENV_KEY}=<your key> to fetch ratings and descriptions from the API"
            )
        return cls(api_key=Secret(key) if isinstance(key, str) else key, **values)

    def with_(self, **changes: Any) -> EnrichSettings:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)


def _check_key(key: str) -> None:
    """Refuse, once and before any request, a key an HTTP header cannot carry -- without echoing it.

    A header value must be latin-1 (http.client) without CR/LF (requests, which
    would echo the value in its error); a non-ASCII key failed once per title, with
    a traceback each. API keys are ASCII tokens, so anything else is a typo or a
    paste accident: say where, not what.
    """
    for pos, ch in enumerate(key, 1):
        if ch.isspace() or not ch.isprintable():
            raise ConfigError(
                f"{ENV_KEY} contains whitespace or control characters (character {pos}); expected a bare token"
            )
        if not ch.isascii():
            raise ConfigError(
                f"{ENV_KEY} contains a non-ASCII character (character {pos}), which an HTTP "
                "header cannot carry; expected the ASCII token your provider issued (a paste or keyboard-layout slip?)"
            )


def _positive_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")


def redact(text: str, secret: Secret | None) -> str:
    """Replace every occurrence of the secret in ``text`` (belt and braces for third-party messages)."""
    if secret and secret.reveal() in text:
        return text.replace(secret.reveal(), REDACTED)
    return text


__all__ = ["EnrichSettings", "Secret", "redact", "PROVIDERS", "ENV_KEY", "ENV_PROVIDER", "ENV_URL"]
