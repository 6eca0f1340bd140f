"""A dependable HTTP client for the movie APIs.

Every request has a timeout; connection errors, timeouts, 5xx and 429 are retried
with exponential backoff and jitter, honouring ``Retry-After``; a client-side rate
limiter spaces requests across all worker threads. Two answers stop the whole run
at once: 401 (the key is wrong -- retrying cannot help) and the provider's daily
limit (402, or 403 "Вы израсходовали ваш суточный лимит"). Anything else that goes
wrong with one title becomes an ``error`` result for that title, never a crash.

The key lives only in request headers; messages built here never contain it.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from rekko.enrich.providers import Candidate, Provider, ResponseShapeError, best_match, get_provider
from rekko.enrich.settings import EnrichSettings, redact
from rekko.exceptions import EnrichmentError

log = logging.getLogger(__name__)

FOUND = "found"
NOT_FOUND = "not_found"
ERROR = "error"
#: A server asking us to wait longer than this is not waited for within one run.
RETRY_AFTER_CAP = 600.0
_BODY_SNIPPET = 200


class ApiStop(EnrichmentError):
    """An answer that makes every further request pointless: stop the run, keep what was fetched."""

    reason = "stopped"


class ApiKeyRejected(ApiStop):
    reason = "api_key_rejected"


class ApiAccessDenied(ApiStop):
    reason = "access_denied"


class DailyLimitReached(ApiStop):
    reason = "daily_limit"


@dataclass(frozen=True)
class FetchResult:
    """The outcome for one title. ``status`` is found / not_found / error."""

    status: str
    candidate: Candidate | None = None
    error: str | None = None
    n_candidates: int = 0
    attempts: int = 1


class Cancelled(Exception):
    """The run is stopping; this title was not (fully) asked and stays to do."""


class RateLimiter:
    """Spaces request starts ``1/rate`` seconds apart across threads; also a shared pause (429).

    A slot is reserved under the lock and waited for outside it, so waiting never
    blocks other threads from reserving theirs.
    """

    def __init__(self, rate: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self._clock = clock
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self, stop: threading.Event) -> None:
        """Wait for this request's slot; :class:`Cancelled` if the run stops meanwhile."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        wait = slot - now
        if wait > 0 and stop.wait(wait):
            raise Cancelled
        if stop.is_set():
            raise Cancelled

    def pause_until(self, when: float) -> None:
        """No request may start before ``when`` (a 429 slows every worker, not just one)."""
        with self._lock:
            self._next = max(self._next, when)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)


class ApiClient:
    """Fetches one title at a time; safe to call from many threads at once.

    Each thread gets its own :class:`requests.Session` (connection reuse without
    sharing a session's mutable state between threads).
    """

    def __init__(
        self,
        settings: EnrichSettings,
        *,
        provider: Provider | None = None,
        stop: threading.Event | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.provider = provider or get_provider(settings.provider)
        self.stop = stop or threading.Event()
        self.limiter = RateLimiter(settings.rate_limit)
        self._rng = rng or random.Random()
        self._local = threading.local()
        self._env = _environment(settings.base_url or self.provider.default_url)
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()
        self.n_requests = 0
        self.n_retries = 0

    # -- sessions --------------------------------------------------------------------------------------
    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            # resolve proxies and CA bundle from the environment once, not on every request
            session.trust_env = False
            session.proxies = self._env["proxies"]
            session.verify = self._env["verify"]
            adapter = HTTPAdapter(pool_connections=1, pool_maxsize=1, max_retries=0)  # retries are ours
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def close(self) -> None:
        with self._lock:
            for s in self._sessions:
                s.close()
            self._sessions.clear()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one title -------------------------------------------------------------------------------------
    def backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter: uniform in [d/2, d], d = base * 2**attempt capped."""
        d = min(self.settings.backoff_max, self.settings.backoff_base * (2**attempt))
        return d * (0.5 + 0.5 * self._rng.random())

    def fetch(self, title: str, year: int | None = None) -> FetchResult:
        """Ask the API about one title and pick the best match.

        Raises :class:`ApiStop` (401, daily limit, access denied; it also sets the
        shared stop event so no other worker starts a request) and
        :class:`Cancelled` (the run is stopping); everything else is a result.
        """
        result = self._fetch(title, year, year)
        if result.status == NOT_FOUND and year is not None and self.provider.filters_by_year:
            # the metadata's year is often a year off the provider's: ask once more without the
            # filter, still ranking candidates by closeness to the year
            again = self._fetch(title, None, year)
            result = replace(again, attempts=result.attempts + again.attempts)
        return result

    def _fetch(self, title: str, query_year: int | None, year: int | None) -> FetchResult:
        req = self.provider.build_request(self.settings.base_url, title, query_year, self.settings.api_key)
        key = self.settings.api_key
        last_problem = "no attempt"
        attempts = 0
        for attempt in range(self.settings.max_retries + 1):
            self.limiter.acquire(self.stop)
            attempts += 1
            with self._lock:
                self.n_requests += 1
            delay: float | None = None
            try:
                resp = self._session().get(
                    req.url, params=req.params, headers=req.headers, timeout=self.settings.timeout
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                kind = "timeout" if isinstance(exc, requests.Timeout) else "connection error"
                last_problem = f"{kind} ({type(exc).__name__})"
            except requests.RequestException as exc:
                return FetchResult(
                    ERROR, error=redact(f"request failed: {type(exc).__name__}: {exc}", key), attempts=attempts
                )
            else:
                with resp:
                    status = resp.status_code
                    if status == 401:
                        self.stop.set()  # no other worker may start a request after this
                        raise ApiKeyRejected(
                            f"API key rejected by {self.provider.name} (HTTP 401): check REKKO_API_KEY"
                        )
                    if status in (402, 403):
                        self.stop.set()
                        body = redact(_snippet(resp), key)
                        if self.provider.is_daily_limit(status, body):
                            raise DailyLimitReached(
                                f"{self.provider.name} daily request limit reached (HTTP {status}): {body}"
                            )
                        raise ApiAccessDenied(f"{self.provider.name} refused access (HTTP {status}): {body}")
                    if status == 429 or status >= 500:
                        last_problem = f"HTTP {status}"
                        delay = parse_retry_after(resp.headers.get("Retry-After"))
                        if delay is not None:
                            delay *= 1.0 + 0.1 * self._rng.random()  # spread the herd a little
                            if status == 429:
                                self.limiter.pause_until(time.monotonic() + delay)
                    elif not 200 <= status < 300:
                        return FetchResult(
                            ERROR, error=redact(f"HTTP {status}: {_snippet(resp)}", key), attempts=attempts
                        )
                    else:
                        return self._parse(resp, title, year, attempts)
            if attempt == self.settings.max_retries:
                break
            if delay is None:
                delay = self.backoff(attempt)
            with self._lock:
                self.n_retries += 1
            log.debug("retrying %r in %.3fs after %s", title, delay, last_problem)
            if self.stop.wait(delay):
                raise Cancelled
        return FetchResult(ERROR, error=f"{last_problem} after {attempts} attempts", attempts=attempts)

    def _parse(self, resp: requests.Response, title: str, year: int | None, attempts: int) -> FetchResult:
        try:
            payload = resp.json()
        except ValueError:
            return FetchResult(
                ERROR,
                error=redact(f"malformed JSON body: {_snippet(resp)!r}", self.settings.api_key),
                attempts=attempts,
            )
        try:
            candidates = self.provider.parse(payload)
        except ResponseShapeError as exc:
            return FetchResult(ERROR, error=f"unexpected JSON shape: {exc}", attempts=attempts)
        match = best_match(candidates, title, year)
        if match is None:
            return FetchResult(
                NOT_FOUND,
                n_candidates=len(candidates),
                attempts=attempts,
                error=f"no exact title match among {len(candidates)} candidates" if candidates else None,
            )
        return FetchResult(FOUND, candidate=match, n_candidates=len(candidates), attempts=attempts)


def _snippet(resp: requests.Response) -> str:
    try:
        text = resp.text
    except Exception:  # noqa: BLE001 - undecodable bytes are still worth a short message
        text = repr(resp.content[:_BODY_SNIPPET])
    text = " ".join(text.split())
    return text[:_BODY_SNIPPET] + ("..." if len(text) > _BODY_SNIPPET else "")


def _environment(url: str) -> dict[str, Any]:
    """What ``requests`` would read from the environment for ``url`` (proxies, CA bundle), read once."""
    env_session = requests.Session()
    settings = env_session.merge_environment_settings(url, {}, None, None, None)
    env_session.close()
    return {"proxies": settings["proxies"], "verify": settings["verify"]}
