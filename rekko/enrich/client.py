"""A dependable HTTP client for the movie APIs.

Every request has a total deadline (connect, headers, redirects and body: see
:mod:`rekko.enrich.transport`) and a cap on the size of its answer; connection
errors, timeouts, 5xx and 429 are retried with exponential backoff and jitter,
honouring ``Retry-After`` up to a cap; a client-side rate limiter spaces requests
across all worker threads. Some answers stop the whole run at once: 401 or 403
(the key is wrong or may not do this -- retrying cannot help), the provider's
daily limit (402, 403 "Вы израсходовали ваш суточный лимит", or 429 asking to wait
longer than the cap), and a redirect to another origin (refused so the key never
leaves the configured host). Anything else that goes wrong with one title becomes
an ``error`` result for that title, never a crash.

The key lives only in request headers; messages built here never contain it.
"""

from __future__ import annotations

import email.utils
import json
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

from rekko.enrich import transport
from rekko.enrich.providers import ApiRequest, Candidate, Provider, ResponseShapeError, best_match, get_provider
from rekko.enrich.settings import ENV_KEY, ENV_URL, EnrichSettings, redact
from rekko.enrich.transport import (
    CANCELLED,
    Aborted,
    AmbiguousRedirect,
    Answer,
    BodyTooLarge,
    CrossOriginRedirect,
    Guard,
    GuardedAdapter,
    TooManyRedirects,
    Watchdog,
    guarded,
)
from rekko.exceptions import EnrichmentError, InputError

log = logging.getLogger(__name__)

FOUND = "found"
NOT_FOUND = "not_found"
ERROR = "error"
#: A wait longer than this (a Retry-After or a backoff) is logged at WARNING: the run looks stuck otherwise.
LONG_WAIT_SECONDS = 5.0
_BODY_SNIPPET = 200


class ApiStop(EnrichmentError):
    """An answer that makes every further request pointless: stop the run, keep what was fetched."""

    reason = "stopped"


class ApiKeyRejected(ApiStop, InputError):
    """HTTP 401: the key is wrong; the user must fix ``REKKO_API_KEY`` (exit code 2)."""

    reason = "api_key_rejected"
    exit_code = 2


class ApiAccessDenied(ApiStop, InputError):
    """HTTP 403 that is not the daily limit: the key may not do this (exit code 2)."""

    reason = "access_denied"
    exit_code = 2


class DailyLimitReached(ApiStop):
    reason = "daily_limit"


class ApiRedirectRefused(ApiStop):
    """The API redirected to another origin, or to an address parsers read differently (a backslash,
    credentials, ...); not followed, so the key stays with the configured one."""

    reason = "redirect_refused"


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
    return max(seconds, 0.0)  # not capped here: the client decides what a wait too long means


@dataclass(frozen=True)
class _Retry:
    """An attempt worth repeating: what went wrong, and the server's ``Retry-After`` if it gave one."""

    problem: str
    retry_after: float | None = None


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
        self._watchdog = Watchdog()
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
            adapter = GuardedAdapter(pool_connections=1, pool_maxsize=1, max_retries=0)  # retries are ours
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def abort_in_flight(self) -> None:
        """Stop now: cut every request in flight and refuse new ones (they end as :class:`Cancelled`).

        For a run that must end within seconds (a second Ctrl-C, or SIGTERM after
        its grace period) rather than wait for answers dripping in.
        """
        self.stop.set()
        self._watchdog.trip_all(CANCELLED)

    def close(self) -> None:
        self._watchdog.close()
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

        Raises :class:`ApiStop` (401/403, daily limit, cross-origin redirect; it
        also sets the shared stop event so no other worker starts a request) and
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
        last_problem = "no attempt"
        attempts = 0
        for attempt in range(self.settings.max_retries + 1):
            self.limiter.acquire(self.stop)
            attempts += 1
            with self._lock:
                self.n_requests += 1
            outcome = self._attempt(req, title, year, attempts)
            if isinstance(outcome, FetchResult):
                return outcome
            last_problem = outcome.problem
            if attempt == self.settings.max_retries:
                break
            with self._lock:
                self.n_retries += 1
            self._wait(title, last_problem, outcome.retry_after, attempt)
        return FetchResult(ERROR, error=f"{last_problem} after {attempts} attempts", attempts=attempts)

    def _wait(self, title: str, problem: str, retry_after: float | None, attempt: int) -> None:
        """Sleep before the next attempt (or :class:`Cancelled`); a long wait is a WARNING, or the run looks hung."""
        delay = retry_after if retry_after is not None else self.backoff(attempt)
        source = "the server's Retry-After" if retry_after is not None else "backoff"
        level = logging.WARNING if delay > LONG_WAIT_SECONDS else logging.DEBUG
        log.log(
            level,
            "waiting %.1f s before asking %s about %r again (%s; %s)",
            delay,
            self.provider.name,
            title,
            problem,
            source,
        )
        if self.stop.wait(delay):
            raise Cancelled

    def _attempt(self, req: ApiRequest, title: str, year: int | None, attempts: int) -> FetchResult | _Retry:
        """One HTTP exchange: a result, a reason to retry, or :class:`ApiStop` / :class:`Cancelled`."""
        guard = Guard(time.monotonic() + self.settings.timeout)
        try:
            with guarded(guard, self._watchdog):
                answer = transport.get(
                    self._session(),
                    req.url,
                    params=req.params,
                    headers=req.headers,
                    guard=guard,
                    timeout=self.settings.timeout,
                    max_body=self.settings.max_body_bytes,
                )
        except Aborted as exc:
            if exc.reason == CANCELLED:
                raise Cancelled from None
            return _Retry(f"timeout (no complete answer within {self.settings.timeout:g} s)")
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            kind = "timeout" if isinstance(exc, requests.Timeout) else "connection error"
            return _Retry(f"{kind} ({type(exc).__name__})")
        except BodyTooLarge as exc:
            return FetchResult(ERROR, error=f"refused: {exc}", attempts=attempts)
        except TooManyRedirects as exc:
            return FetchResult(ERROR, error=str(exc), attempts=attempts)
        except CrossOriginRedirect as exc:
            self.stop.set()
            where = "" if isinstance(exc, AmbiguousRedirect) else " (another origin)"
            raise ApiRedirectRefused(
                f"{self.provider.name} answered {exc}{where}; not followed so that the API key stays "
                f"with {transport.origin_text(req.url)}. If the API has moved, set {ENV_URL} or --api-url "
                "to its new address"
            ) from None
        except requests.RequestException as exc:
            error = redact(f"request failed: {type(exc).__name__}: {exc}", self.settings.api_key)
            return FetchResult(ERROR, error=error, attempts=attempts)
        return self._judge(answer, title, year, attempts)

    def _judge(self, answer: Answer, title: str, year: int | None, attempts: int) -> FetchResult | _Retry:
        """What a complete answer means for this title (or for the whole run)."""
        status = answer.status
        if status == 401:
            self.stop.set()  # no other worker may start a request after this
            raise ApiKeyRejected(f"API key rejected by {self.provider.name} (HTTP 401): check {ENV_KEY}")
        if status in (402, 403):
            self.stop.set()
            body = redact(_snippet(answer.text()), self.settings.api_key)
            if self.provider.is_daily_limit(status, body):
                raise DailyLimitReached(f"{self.provider.name} daily request limit reached (HTTP {status}): {body}")
            raise ApiAccessDenied(
                f"{self.provider.name} refused access with this API key (HTTP {status}): {body}; "
                f"check {ENV_KEY} and what the key is allowed to do"
            )
        if status == 429 or status >= 500:
            return self._retry_later(answer, title, attempts)
        if not 200 <= status < 300:
            error = redact(f"HTTP {status}: {_snippet(answer.text())}", self.settings.api_key)
            return FetchResult(ERROR, error=error, attempts=attempts)
        return self._parse(answer.body, title, year, attempts)

    def _retry_later(self, answer: Answer, title: str, attempts: int) -> FetchResult | _Retry:
        """429/5xx: retry, after ``Retry-After`` when given -- unless it asks for more than the cap.

        Sleeping an hour inside a run looks like a hang and holds the cache lock;
        past the cap a 429 is the quota used up (stop, like the daily limit) and a
        5xx is an error for this title, asked again next run.
        """
        status, cap = answer.status, self.settings.retry_after_cap
        wait = parse_retry_after(answer.headers.get("Retry-After"))
        if wait is None:
            return _Retry(f"HTTP {status}")
        if wait > cap:
            if status == 429:
                self.stop.set()
                raise DailyLimitReached(
                    f"{self.provider.name} asks to wait {wait:.0f} s before the next request (HTTP 429 Retry-After), "
                    f"more than the {cap:g} s cap (--retry-after-cap): taken as the request quota used up"
                )
            log.warning(
                "%s answered HTTP %d for %r asking to retry in %.0f s, more than the %g s cap (--retry-after-cap): "
                "not waiting; the title is kept as an error and asked again next run",
                self.provider.name,
                status,
                title,
                wait,
                cap,
            )
            error = f"HTTP {status} with Retry-After {wait:.0f} s, over the {cap:g} s cap: not waited for"
            return FetchResult(ERROR, error=error, attempts=attempts)
        wait *= 1.0 + 0.1 * self._rng.random()  # spread the herd a little
        if status == 429:
            self.limiter.pause_until(time.monotonic() + wait)
        return _Retry(f"HTTP {status}", wait)

    def _parse(self, body: bytes, title: str, year: int | None, attempts: int) -> FetchResult:
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than the parser goes
            text = redact(_snippet(body.decode("utf-8", errors="replace")), self.settings.api_key)
            return FetchResult(ERROR, error=f"malformed JSON body: {text!r}", attempts=attempts)
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


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text[:_BODY_SNIPPET] + ("..." if len(text) > _BODY_SNIPPET else "")


def _environment(url: str) -> dict[str, Any]:
    """What ``requests`` would read from the environment for ``url`` (proxies, CA bundle), read once."""
    env_session = requests.Session()
    settings = env_session.merge_environment_settings(url, {}, None, None, None)
    env_session.close()
    return {"proxies": settings["proxies"], "verify": settings["verify"]}
