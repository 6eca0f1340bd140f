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
(scheme, host, port), and through the same deadline and cap. A redirect anywhere
else is refused before any request is sent there, so no header of ours --
whatever its name -- can reach another host.

Origins are compared as the request is sent, not as the standard library reads
a URL: each hop is prepared by the session and its origin taken from that
prepared URL with urllib3's own parser (:func:`request_origin`), and the request
sent is that prepared one. ``urllib.parse`` and urllib3 disagree on some URLs
(urllib3 ends the authority at a backslash, ``urlsplit`` does not, so
``http://localhost:1\\@127.0.0.1:2/`` is 127.0.0.1:2 to one and localhost:1 to
the other); a redirect whose target is ambiguous in any way -- a backslash, a
blank, a control or non-ASCII character, credentials (``user@``), a
percent-encoded host, an unparsable port, or parsers that disagree on the
origin -- is refused outright (:class:`AmbiguousRedirect`), even towards the
configured origin.
"""

from __future__ import annotations

import contextlib
import re
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
from urllib3.util import parse_url

from rekko.exceptions import shorten

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


class AmbiguousRedirect(CrossOriginRedirect):
    """A redirect whose target parsers may read as different hosts; refused wherever it seems to point.

    ``why`` says what made it ambiguous and, where they could be read, the origins
    each parser saw -- never the path, query or credentials.
    """

    def __init__(self, status: int, why: str) -> None:
        Exception.__init__(self, f"HTTP {status} redirect to an ambiguous address ({why})")
        self.status = status
        self.target = why
        self.why = why


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


_DEFAULT_PORTS = {"http": 80, "https": 443}
#: Anything but printable ASCII, and the backslash: a URL holding one is read differently by different parsers.
_UNSAFE_CHAR = re.compile(r"[^\x21-\x7e]|\\")


def request_origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) as urllib3 -- which opens the connection -- reads ``url``; default ports filled in.

    The host is lowercased and an IPv6 literal keeps its brackets. Raises
    ``ValueError`` (urllib3's ``LocationParseError``) for a URL urllib3 cannot parse.
    """
    parts = parse_url(url)
    scheme = (parts.scheme or "").lower()
    return scheme, (parts.host or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme)


def origin(url: str) -> tuple[str, str, int | None]:
    """The origin a request to ``url`` goes to (:func:`request_origin`)."""
    return request_origin(url)


def _text(o: tuple[str, str, int | None]) -> str:
    scheme, host, port = o
    return f"{scheme}://{host}:{port}" if port is not None else f"{scheme}://{host}"


def origin_text(url: str) -> str:
    """``scheme://host:port`` of ``url`` for messages: never credentials, path or query."""
    try:
        return _text(request_origin(url))
    except ValueError:
        return "an unparsable address"


def _stdlib_origin(url: str) -> tuple[str, str, int | None]:
    """The origin as ``urllib.parse`` reads ``url`` (the parser a careless check would use), for comparison."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:  # an IPv6 literal: urlsplit drops the brackets urllib3 keeps
        host = f"[{host}]"
    return scheme, host, parts.port or _DEFAULT_PORTS.get(scheme)


def _character(match: re.Match[str]) -> str:
    ch = match.group()
    if ch == "\\":
        return "a backslash"
    if ch == " ":
        return "a blank"
    if ord(ch) < 0x20 or ord(ch) == 0x7F:
        return f"a control character (U+{ord(ch):04X})"
    return f"a non-ASCII character (U+{ord(ch):04X})"


def ambiguity(url: str, *, raw: str | None = None) -> str | None:
    """Why ``url`` (absolute) could reach different hosts depending on who parses it; None if it is plain.

    Plain means: printable ASCII without a backslash (checked on ``raw``, the
    text as received, when given: joining a relative ``Location`` drops tabs),
    no credentials, no ``%`` in the authority, a port that is a number, and the
    same (scheme, host, port) whether read by ``urllib.parse``, by urllib3, or
    from the URL ``requests`` prepares from it. The reason names the origins
    each parser saw (host and port only, each cut to 200 characters).
    """
    views: dict[str, tuple[str, str, int | None] | None] = {}
    for name, read in (("the HTTP client", request_origin), ("urllib.parse", _stdlib_origin)):
        try:
            views[name] = read(url)
        except ValueError:
            views[name] = None
    seen = "; ".join(f"read as {shorten(_text(o))} by {name}" for name, o in views.items() if o is not None)

    def why(reason: str) -> str:
        return f"{reason}; {seen}" if seen else reason

    bad = _UNSAFE_CHAR.search(url if raw is None else raw) or _UNSAFE_CHAR.search(url)
    if bad is not None:
        return why(_character(bad))
    if None in views.values():
        return why("a host or port that cannot be parsed")
    try:
        netloc = urlsplit(url).netloc
        auth = parse_url(url).auth
        prepared = request_origin(requests.Request("GET", url).prepare().url or "")
    except (ValueError, requests.RequestException):
        return why("an address the HTTP client cannot prepare")
    if "@" in netloc or auth is not None:
        return why("credentials (user@) in the address")
    if "%" in netloc:
        return why("a percent-encoded host")
    if len(set(views.values()) | {prepared}) != 1:
        return why("parsers disagree on the host")
    return None


def redirect_target(current: str, location: str, status: int) -> str:
    """The absolute URL a ``Location`` asks for, or :class:`AmbiguousRedirect` if it is not plain (:func:`ambiguity`).

    Whether its origin is the configured one is the caller's check.
    """
    target = urljoin(current, location)
    reason = ambiguity(target, raw=location)
    if reason is not None:
        raise AmbiguousRedirect(status, reason)
    return target


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

    Each hop's request is prepared first and its origin read from the prepared
    URL (as urllib3 will connect); that prepared request is what is sent.

    Raises :class:`Aborted` (deadline passed or run stopping), :class:`BodyTooLarge`,
    :class:`CrossOriginRedirect` (:class:`AmbiguousRedirect` for a target that can be
    read two ways), :class:`TooManyRedirects`, or what ``requests`` raises.
    """
    home: tuple[str, str, int | None] | None = None
    for _ in range(MAX_REDIRECTS + 1):
        guard.check()
        per_op = max(min(timeout, guard.remaining()), 0.001)
        try:
            prepared = session.prepare_request(requests.Request("GET", url, params=params, headers=dict(headers)))
            hop = request_origin(prepared.url or "")
            if home is None:
                home = hop
            elif hop != home:  # belt and braces: redirect_target and the origin check below passed it
                raise CrossOriginRedirect(0, _text(hop))
            # the session's adapter, not Session.send: that also reads a redirect's Location with urllib.parse
            # (for a next request never made here) and raises on some targets before redirect_target sees them
            sent = session.merge_environment_settings(prepared.url, {}, True, None, None)
            resp = session.get_adapter(prepared.url or "").send(prepared, timeout=per_op, **sent)
            with resp:
                location = resp.headers.get("Location") if resp.status_code in REDIRECT_STATUSES else None
                if location is None:
                    ok = 200 <= resp.status_code < 300
                    body, cut = read_body(resp, guard, max_body if ok else SNIPPET_BYTES, truncate=not ok)
                    return Answer(resp.status_code, CaseInsensitiveDict(resp.headers), body, cut)
                target = redirect_target(prepared.url or url, location, resp.status_code)
                if request_origin(target) != home:
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
