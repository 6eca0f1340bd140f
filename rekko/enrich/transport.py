"""HTTP plumbing under the API client: a total deadline, a size cap and one origin per request.

``requests`` bounds each socket operation, not a request: a server dripping one
byte a second, or its headers a byte at a time, keeps a call open for ever. So
every request here runs under a :class:`Guard` whose deadline covers connect,
headers, every redirect hop and the body, like Go's ``http.Client.Timeout`` or
curl's ``--max-time``: a :class:`Watchdog` thread shuts the request's socket down
when the deadline passes (or when the run is stopping), which wakes the worker
blocked in ``recv`` at once. The socket is found through a connection class that
registers itself with the guard of the thread using it.

Bodies are streamed and refused past a byte cap (by ``Content-Length`` first,
then while reading, after decompression), so one answer cannot take the memory.

Redirects are followed here, not by ``requests``: only to the configured origin
(scheme, host, port; urllib3's notion of "same host"), and through the same
deadline and cap. A redirect anywhere else is refused before any request is
sent there, so no header of ours -- whatever its name -- can reach another host.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3 import poolmanager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

#: Statuses whose ``Location`` is followed (same origin only); all are re-asked with GET.
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
#: Error and redirect bodies are only read for a message: this much is plenty.
SNIPPET_BYTES = 64 * 1024
CHUNK_BYTES = 64 * 1024

DEADLINE = "deadline"
CANCELLED = "cancelled"

_current = threading.local()  # the Guard of the request this thread is making, if any


class Aborted(Exception):
    """The request's socket was cut: ``reason`` is :data:`DEADLINE` or :data:`CANCELLED`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BodyTooLarge(Exception):
    """An answer bigger than the cap; the message says how big (never what was in it)."""


class CrossOriginRedirect(Exception):
    """A redirect to another origin; ``target`` is that origin only (a path or query may hold tokens)."""

    def __init__(self, status: int, target: str) -> None:
        super().__init__(f"HTTP {status} redirect to {target}")
        self.status = status
        self.target = target


class TooManyRedirects(Exception):
    """More than :data:`MAX_REDIRECTS` same-origin hops."""


@dataclass(frozen=True)
class Answer:
    """A complete HTTP answer: the body is read (and bounded) before the socket is let go."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    truncated: bool = False

    def text(self) -> str:
        """The body as text for messages; undecodable bytes become U+FFFD rather than an error."""
        return self.body.decode("utf-8", errors="replace")


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port filled in, as browsers compare origins."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def origin_text(url: str) -> str:
    scheme, host, port = origin(url)
    return f"{scheme}://{host}:{port}" if port is not None else f"{scheme}://{host}"


class Guard:
    """One request's deadline and kill switch.

    The socket the request is using is attached by the connection classes below;
    :meth:`trip` records why the request must end and shuts that socket down (a
    socket attached later is shut at once), so a blocked ``recv`` returns now.
    """

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.reason: str | None = None
        self._sock: Any = None
        self._lock = threading.Lock()

    def attach(self, sock: Any) -> None:
        with self._lock:
            self._sock = sock
            tripped = self.reason is not None
        if tripped:
            _shutdown(sock)

    def detach(self) -> None:
        with self._lock:
            self._sock = None

    def trip(self, reason: str) -> None:
        with self._lock:
            if self.reason is None:
                self.reason = reason
            sock = self._sock
        if sock is not None:
            _shutdown(sock)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def check(self) -> None:
        """Raise :class:`Aborted` if tripped or past the deadline (the watchdog may not have woken yet)."""
        if self.reason is None and self.remaining() <= 0:
            self.trip(DEADLINE)
        if self.reason is not None:
            raise Aborted(self.reason)


def _shutdown(sock: Any) -> None:
    """Shut the socket's file descriptor down; the owning thread then sees EOF and closes it itself.

    ``socket.socket.shutdown`` on an SSL socket skips the TLS layer (which is not
    safe to touch from another thread) and acts on the descriptor underneath.
    """
    with contextlib.suppress(OSError, TypeError, ValueError):
        if isinstance(sock, socket.socket):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        else:  # pragma: no cover - a TLS-in-TLS transport: no descriptor of its own
            sock.close()


class Watchdog:
    """One daemon thread per client that trips every guard whose deadline has passed.

    A single thread (woken by a condition variable) rather than a timer per request:
    a run makes tens of thousands of requests. After :meth:`trip_all` every guard
    watched later is tripped at once, so no request starts once a run is stopping.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._guards: set[Guard] = set()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._tripped_all: str | None = None

    def watch(self, guard: Guard) -> None:
        with self._cond:
            if self._tripped_all is not None:
                guard.trip(self._tripped_all)
                return
            self._guards.add(guard)
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="rekko-enrich-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()

    def unwatch(self, guard: Guard) -> None:
        with self._cond:
            self._guards.discard(guard)

    def trip_all(self, reason: str) -> None:
        with self._cond:
            self._tripped_all = reason
            guards, self._guards = list(self._guards), set()
        for guard in guards:
            guard.trip(reason)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                for guard in [g for g in self._guards if g.deadline <= now]:
                    self._guards.discard(guard)
                    guard.trip(DEADLINE)
                nearest = min((g.deadline for g in self._guards), default=None)
                self._cond.wait(None if nearest is None else max(nearest - now, 0.0))


@contextlib.contextmanager
def guarded(guard: Guard, watchdog: Watchdog) -> Iterator[Guard]:
    """Run a request under ``guard``: watched, and known to the connections this thread uses."""
    watchdog.watch(guard)
    _current.guard = guard
    try:
        yield guard
    finally:
        _current.guard = None
        watchdog.unwatch(guard)
        guard.detach()


def _attach_current(sock: Any) -> None:
    guard = getattr(_current, "guard", None)
    if guard is not None and sock is not None:
        guard.attach(sock)


class _GuardedConnectionMixin:
    """Tells the current guard which socket to cut: a new one as soon as it exists, a reused one before the answer."""

    def _new_conn(self) -> Any:
        sock = super()._new_conn()  # type: ignore[misc]
        _attach_current(sock)
        return sock

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        _attach_current(getattr(self, "sock", None))
        return super().getresponse(*args, **kwargs)  # type: ignore[misc]


class _GuardedHTTPConnection(_GuardedConnectionMixin, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_GuardedConnectionMixin, HTTPSConnection):
    pass


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


_GUARDED_POOLS = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}


class GuardedAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` whose connections report their sockets to the current :class:`Guard`.

    Through a SOCKS proxy (other pool classes) the socket is not known: the
    deadline is then checked between body chunks only.
    """

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _GUARDED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if manager.pool_classes_by_scheme is poolmanager.pool_classes_by_scheme:  # an HTTP(S) proxy, not SOCKS
            manager.pool_classes_by_scheme = _GUARDED_POOLS
        return manager


def read_body(resp: requests.Response, guard: Guard, limit: int, *, truncate: bool = False) -> tuple[bytes, bool]:
    """The body, at most ``limit`` bytes after decompression; returns (bytes, truncated).

    Over the limit: :class:`BodyTooLarge`, or with ``truncate`` the first
    ``limit`` bytes (the rest is not read; closing the response drops the connection).
    """
    declared = _content_length(resp)
    if declared is not None and declared > limit and not truncate:
        raise BodyTooLarge(f"answer of {declared:,} bytes (Content-Length) is over the {limit:,}-byte cap")
    buf = bytearray()
    for chunk in resp.iter_content(CHUNK_BYTES):
        guard.check()
        buf += chunk
        if len(buf) > limit:
            if truncate:
                return bytes(buf[:limit]), True
            raise BodyTooLarge(f"answer over the {limit:,}-byte cap (stopped reading at {len(buf):,} bytes)")
    return bytes(buf), False


def _content_length(resp: requests.Response) -> int | None:
    try:
        value = int(resp.headers.get("Content-Length", ""))
    except ValueError:
        return None
    return value if value >= 0 else None


def get(
    session: requests.Session,
    url: str,
    *,
    params: Mapping[str, Any] | None,
    headers: Mapping[str, str],
    guard: Guard,
    timeout: float,
    max_body: int,
) -> Answer:
    """GET ``url`` under ``guard``, following same-origin redirects; the whole answer, bounded.

    Raises :class:`Aborted` (deadline passed or run stopping), :class:`BodyTooLarge`,
    :class:`CrossOriginRedirect`, :class:`TooManyRedirects`, or what ``requests`` raises.
    """
    home = origin(url)
    for _ in range(MAX_REDIRECTS + 1):
        guard.check()
        per_op = max(min(timeout, guard.remaining()), 0.001)
        try:
            resp = session.get(url, params=params, headers=headers, timeout=per_op, stream=True, allow_redirects=False)
            with resp:
                location = resp.headers.get("Location") if resp.status_code in REDIRECT_STATUSES else None
                if location is None:
                    ok = 200 <= resp.status_code < 300
                    body, cut = read_body(resp, guard, max_body if ok else SNIPPET_BYTES, truncate=not ok)
                    return Answer(resp.status_code, CaseInsensitiveDict(resp.headers), body, cut)
                target = urljoin(resp.url, location)
                if origin(target) != home:
                    raise CrossOriginRedirect(resp.status_code, origin_text(target))
                read_body(resp, guard, SNIPPET_BYTES, truncate=True)  # drained: the connection can be reused
        except (BodyTooLarge, CrossOriginRedirect):
            raise
        except Exception as exc:
            if guard.reason is not None:  # whatever the cut socket raised, the cause is the guard
                raise Aborted(guard.reason) from exc
            raise
        url, params = target, None
    raise TooManyRedirects(f"more than {MAX_REDIRECTS} redirects")
