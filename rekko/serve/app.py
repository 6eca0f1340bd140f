"""The FastAPI application: JSON endpoints over one :class:`~rekko.serve.state.Snapshot` per request.

Handlers are ``async def`` on purpose: each does a bounded amount of numpy work
(n <= 100, one sparse row product) in well under a few milliseconds, so
running it on the event loop is cheaper than a thread-pool hop, and it keeps
the recommender single-threaded within a worker. Every handler reads
``state.snapshot`` exactly once.

Two layers keep the service private and standing (both JSON on every refusal):

* :class:`AccessPolicy`: an optional bearer token (``REKKO_SERVE_TOKEN``) and
  the Host names the server answers to, as ASGI middleware around the app;
* :class:`ConnectionLimits` and :class:`GuardedHttpProtocol`: below the app, in
  uvicorn's HTTP protocol, a cap on open connections per worker and a deadline
  for a request head, so slow or idle sockets cannot use up file descriptors.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hmac
import json
import logging
import os
import re
import time
import weakref
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi_offline import FastAPIOffline
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

try:  # uvicorn's fast parser (uvicorn[standard] brings httptools); h11 where it is missing
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _ParserProtocol
except ImportError:  # pragma: no cover - httptools is part of the serve extra
    from uvicorn.protocols.http.h11_impl import H11Protocol as _ParserProtocol  # type: ignore[assignment]

from rekko import __version__
from rekko.columns import Columns as C
from rekko.exceptions import ArtifactError, ConfigError, quote, shorten
from rekko.paths import ArtifactPaths
from rekko.serve.page import PAGE_HTML

from rekko.serve.schemas import (
    Error,
    Health,
    Movie,
    RecommendationList,
    SimilarList,
    SimilarMovie,
    SimKind,
)
from rekko.serve.state import ArtifactState, Snapshot, SnapshotSource

log = logging.getLogger(__name__)

MAX_N = 100
_LABEL_PERSONAL = "personal: scored by similarity to the movies the user watched"
_LABEL_COLD = "cold start: no watch history, best-rated popular movies"

N = Annotated[int, Query(ge=1, le=MAX_N, description=f"number of movies, 1..{MAX_N}")]
UserId = Annotated[int, Path(ge=-(2**63), le=2**63 - 1, description="user id (integer)")]
MovieId = Annotated[str, Path(description="movie id as in the movies metadata")]
_NOT_FOUND = {404: {"model": Error, "description": "unknown movie"}}


def create_app(paths: ArtifactPaths | None = None, *, state: SnapshotSource | None = None,
               reload_interval: float | None = 2.0, access: AccessPolicy | None = None) -> FastAPI:
    """Build the app over ``paths`` (loaded and verified now) or over a ready ``state``.

    Raises :class:`~rekko.exceptions.ArtifactError` when the artifacts are
    missing or do not verify, so a server never starts without them.
    ``reload_interval`` (seconds) is how often the watcher looks for a new
    pipeline run; None turns reloading off. ``access`` adds the bearer token
    and Host checks (None: open, as a library caller on loopback wants it).
    """
    access = access or AccessPolicy()
    if state is None:
        state = ArtifactState.from_paths(paths or ArtifactPaths(), interval=reload_interval)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state.start()
        try:
            yield
        finally:
            state.stop()

    # Swagger UI and ReDoc from files shipped in the package, not a CDN: the docs work offline
    app = FastAPIOffline(
        title="rekko",
        version=__version__,
        description="Movie recommendations from watch history, metadata and descriptions. "
                    "Every answer names the artifact generation (`artifacts`) it came from.",
        lifespan=lifespan,
    )
    app.state.artifacts = state

    @app.exception_handler(ConfigError)
    async def _config_error(_: Request, exc: ConfigError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(ArtifactError)
    async def _artifact_error(_: Request, exc: ArtifactError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": capped_errors(exc.errors())}, status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, status_code=500)

    page_html = page_with_token_prompt() if access.token else PAGE_HTML

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return page_html

    @app.get("/health", response_model=Health, summary="artifact generation, counts and reload status")
    async def health() -> Health:
        snap = state.snapshot
        m = snap.manifest
        return Health(
            status=state.status,
            artifacts=snap.version,
            manifest={"sha256": snap.manifest_sha256, "schema_version": m.schema_version,
                      "rekko_version": m.rekko_version, "created_at": m.created_at},
            counts=snap.counts(),
            loaded_at=snap.loaded_at,
            checked_at=state.checked_at,
            reloads=state.reloads,
            failed_reloads=state.failed_reloads,
            reload_error=state.reload_error,
        )

    @app.get("/recommendations/{user_id}", response_model=RecommendationList,
             summary="top-n unwatched movies for a user (cold-start list for an unknown user)")
    async def recommendations(user_id: UserId, n: N = 10) -> Response:
        return _json(recommendation_list(state.snapshot, user_id, n))

    @app.get("/movies/{movie_id}", response_model=Movie, responses=_NOT_FOUND, summary="one movie's details")
    async def movie(movie_id: MovieId) -> Movie:
        snap = state.snapshot
        details = snap.catalog.details(_position(snap, movie_id))
        return Movie(**details, similarity_kinds=list(snap.recommender.artifacts.sims), artifacts=snap.version)

    @app.get("/movies/{movie_id}/similar", response_model=SimilarList, responses=_NOT_FOUND,
             summary="nearest movies by metadata (md), description (desc) or co-watching (cf)")
    async def similar(movie_id: MovieId, n: N = 10, kind: SimKind = "md") -> SimilarList:
        snap = state.snapshot
        pos = _position(snap, movie_id)
        sims = snap.recommender.artifacts.sims
        if kind not in sims:
            raise HTTPException(404, f"no '{kind}' similarity in the loaded artifacts; available: {sorted(sims)}")
        found = snap.recommender.similar(movie_id, n, kind)
        items = [SimilarMovie(rank=i, movie_id=m, title=t, score=s) for i, (m, t, s) in enumerate(
            zip(found[C.MOVIE].tolist(), found[C.TITLE].tolist(), found[C.SCORE].tolist(), strict=True), start=1)]
        title = str(snap.recommender.artifacts.titles[pos])
        return SimilarList(movie_id=movie_id, title=title, kind=kind, artifacts=snap.version, items=items)

    # added last = outermost: the Host check answers before the token check, so a rebound DNS
    # name never learns whether a token is set
    if access.token:
        app.add_middleware(BearerAuth, token=access.token)
    if access.allowed_hosts:
        app.add_middleware(JsonTrustedHost, allowed_hosts=access.allowed_hosts)
    return app


def _capped(value: Any) -> Any:
    """``value`` with every string cut at 200 characters (:func:`rekko.exceptions.shorten`), lists and dicts walked."""
    if isinstance(value, str):
        return shorten(value)
    if isinstance(value, dict):
        return {shorten(str(k)): _capped(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_capped(v) for v in value]
    return value


def capped_errors(errors: Any) -> Any:
    """FastAPI's 422 ``detail`` (``type``, ``loc``, ``msg``, ``input``, ``ctx``) with echoed values cut at 200 characters.

    FastAPI echoes the whole offending value: a 15,000-digit user id came back as a 15 KB answer.
    """
    return _capped(jsonable_encoder(errors))


def _position(snap: Snapshot, movie_id: str) -> int:
    pos = snap.recommender.movie_position(movie_id)
    if pos < 0:
        raise HTTPException(404, f"unknown movie_id {quote(movie_id)}")
    return pos


def recommendation_list(snap: Snapshot, user_id: int, n: int) -> dict[str, Any]:
    """The CLI's recommend answer (movie_id, title, score, based_on, components) as a JSON-ready dict.

    Shaped exactly like :class:`RecommendationList`; plain dicts because this is
    the hot path (the schema is still enforced by the tests and schemathesis).
    """
    r = snap.recommender.rank(user_id, n)
    a = snap.recommender.artifacts
    ids, titles = a.movie_ids, a.titles
    parts = list(r.components)
    comps = zip(*(r.components[p].tolist() for p in parts), strict=True)
    items = [
        {"rank": i, "movie_id": str(ids[m]), "title": str(titles[m]), "score": score,
         "based_on": str(ids[b]) if b >= 0 else None, "based_on_title": str(titles[b]) if b >= 0 else None,
         "components": dict(zip(parts, values, strict=True))}
        for i, (m, score, b, values) in enumerate(
            zip(r.movies.tolist(), r.scores.tolist(), r.based_on.tolist(), comps, strict=True), start=1)
    ]
    return {
        "user_id": user_id,
        "cold_start": r.cold_start,
        "label": _LABEL_COLD if r.cold_start else _LABEL_PERSONAL,
        "history_size": r.history_size,
        "artifacts": snap.version,
        "items": items,
    }


def _json(body: dict[str, Any]) -> Response:
    """Serialize once, without FastAPI's re-validation of the response model (documented via response_model)."""
    return Response(json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode(),
                    media_type="application/json")


def json_error(status: int, detail: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The body every refusal has, whichever layer refuses: ``{"detail": "..."}``."""
    return JSONResponse({"detail": detail}, status_code=status, headers=dict(headers or {}))


# -- who may ask: a bearer token and the Host names ------------------------------------------
ENV_TOKEN = "REKKO_SERVE_TOKEN"
#: answered without a token: the liveness probe, and the page shell (static HTML and script, no
#: data; a browser cannot add a header to the navigation that loads it, so its script asks for
#: the token and sends it with each data request)
PUBLIC_PATHS = frozenset({"/health", "/"})
_TOKEN = re.compile(r"[\x21-\x7e]+")  # what a client can send after "Bearer " (visible ASCII)
SHORT_TOKEN = 16


@dataclass(frozen=True)
class AccessPolicy:
    """Who may ask: an optional bearer token and the Host header values the server answers.

    ``token`` is kept out of ``repr`` so no log line or traceback can show it.
    """

    token: str | None = field(default=None, repr=False)
    allowed_hosts: tuple[str, ...] = ()


def read_token(environ: Mapping[str, str] = os.environ) -> str | None:
    """The bearer token from ``REKKO_SERVE_TOKEN`` (surrounding whitespace dropped); None when unset.

    Set but empty, or holding what a client cannot send in a header, is a
    :class:`ConfigError` (exit 2): a typo must not start an open server. No
    message ever contains the token.
    """
    raw = environ.get(ENV_TOKEN)
    if raw is None:
        return None
    token = raw.strip()
    if not token:
        raise ConfigError(f"{ENV_TOKEN} is set but empty: set it to a secret, or unset it to serve without a token")
    if not _TOKEN.fullmatch(token):
        raise ConfigError(f"{ENV_TOKEN} must be visible ASCII without spaces: clients send it as "
                          "'Authorization: Bearer <token>'")
    if len(token) < SHORT_TOKEN:
        log.warning("%s is only %d characters long; use 32 or more random ones, e.g. "
                    "python -c 'import secrets; print(secrets.token_urlsafe(32))'", ENV_TOKEN, len(token))
    return token


class BearerAuth:
    """ASGI middleware: every path but :data:`PUBLIC_PATHS` needs ``Authorization: Bearer <token>``.

    Pure ASGI rather than a FastAPI dependency so nothing mounted later (docs,
    static files, unknown paths) can forget it. The comparison is
    :func:`hmac.compare_digest` (time independent of where the values differ);
    the token is never logged, and a refusal never echoes what was sent.
    """

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode("ascii")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        sent = _bearer(scope)
        if sent is not None and hmac.compare_digest(sent, self._token):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        if sent is None:
            detail = f"this server needs 'Authorization: Bearer <token>' (the {ENV_TOKEN} it was started with)"
            challenge = 'Bearer realm="rekko"'
        else:
            detail, challenge = "invalid bearer token", 'Bearer realm="rekko", error="invalid_token"'
        response = json_error(401, detail, {"WWW-Authenticate": challenge, "Cache-Control": "no-store"})
        await response(scope, receive, send)


def _bearer(scope: Scope) -> bytes | None:
    """The credentials of the first ``Authorization: Bearer ...`` header, None without one."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, credentials = value.partition(b" ")
            return credentials.strip() if scheme.lower() == b"bearer" else None
    return None


class JsonTrustedHost:
    """Starlette's :class:`TrustedHostMiddleware` decides; its refusal is answered in JSON like every other error.

    The check runs first (outermost), so a request under a foreign Host name
    (DNS rebinding, a mistyped proxy) learns nothing else about the server.
    """

    _ADMITTED = "rekko.host_admitted"

    def __init__(self, app: ASGIApp, allowed_hosts: tuple[str, ...]) -> None:
        self.app = app
        self._check = TrustedHostMiddleware(self._admit, allowed_hosts=list(allowed_hosts), www_redirect=False)

    async def _admit(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[self._ADMITTED] = True
        await self.app(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._check(scope, receive, send)
            return

        async def only_if_admitted(message: Message) -> None:  # drops Starlette's plain-text refusal
            if scope.get(self._ADMITTED):
                await send(message)

        await self._check(scope, receive, only_if_admitted)
        if not scope.get(self._ADMITTED):
            await json_error(400, "Host header missing or not allowed on this server")(scope, receive, send)


_TOKEN_PROMPT = """<style>#token-form[hidden] { display: none; }</style>
<form id="token-form" hidden>
  <label>This server needs an access token <input id="token" type="password" autocomplete="off"></label>
  <button type="submit">Use token</button>
</form>
<script>
"use strict";
// The server was started with REKKO_SERVE_TOKEN: keep the token for this tab only (sessionStorage)
// and add it to the page's own requests to this server; never to other origins, never to the URL.
(() => {
  const KEY = "rekko-token";
  const form = document.getElementById("token-form");
  const input = document.getElementById("token");
  const show = visible => { form.hidden = !visible; };
  show(!sessionStorage.getItem(KEY));
  form.addEventListener("submit", event => {
    event.preventDefault();
    const value = input.value.trim();
    if (!value) return;
    sessionStorage.setItem(KEY, value);
    input.value = "";
    show(false);
    const ask = document.getElementById("ask");
    const user = document.getElementById("user");
    if (ask && user && user.value) ask.requestSubmit();
  });
  const plainFetch = window.fetch.bind(window);
  window.fetch = async (resource, init = {}) => {
    const token = sessionStorage.getItem(KEY);
    const ours = typeof resource === "string" && resource.startsWith("/") && !resource.startsWith("//");
    if (!token || !ours) return plainFetch(resource, init);
    const headers = new Headers(init.headers || {});
    headers.set("Authorization", "Bearer " + token);
    const response = await plainFetch(resource, {...init, headers});
    if (response.status === 401) {
      sessionStorage.removeItem(KEY);
      show(true);
    }
    return response;
  };
})();
</script>
"""


def page_with_token_prompt() -> str:
    """The page with a token field and a ``fetch`` that sends ``Authorization: Bearer`` (token servers only)."""
    anchor = "<body>\n"
    if anchor not in PAGE_HTML:  # pragma: no cover - guarded by tests/test_serve_security.py
        raise RuntimeError("rekko.serve.page.PAGE_HTML has no <body> line to put the token prompt after")
    return PAGE_HTML.replace(anchor, anchor + _TOKEN_PROMPT, 1)


# -- below the app: connections, timeouts and protocol errors ----------------------------------
#: file descriptors kept free for everything but client sockets: listening socket, stdio, logs,
#: the event loop, the reload child's pipes (about 40 are open in an idle worker)
FD_RESERVE = 64


@dataclass(frozen=True)
class ConnectionLimits:
    """What one worker process lets clients hold; the defaults follow nginx and uvicorn.

    ``max_connections`` (nginx ``worker_connections``, 512-1024 in stock
    configs): open client connections per worker; beyond it see
    :class:`GuardedHttpProtocol`. ``header_timeout`` (nginx
    ``client_header_timeout``, 60 s; shorter here because every answer takes
    milliseconds): seconds from a connection's first byte, or a kept-alive
    connection's next one, until its request head is complete.
    ``keep_alive`` (uvicorn ``timeout_keep_alive``, 5 s): an idle connection
    between requests. ``max_head_bytes`` (h11's 16 KiB; nginx allows 8 KiB a
    line): a request head's size. ``graceful_shutdown`` (uvicorn
    ``timeout_graceful_shutdown``): seconds requests in flight get on SIGTERM,
    inside Docker's 10 s stop grace.
    """

    max_connections: int = 1000
    header_timeout: float = 10.0
    keep_alive: int = 5
    max_head_bytes: int = 16 * 1024
    graceful_shutdown: int = 5

    def uvicorn_options(self) -> dict[str, Any]:
        """Keyword arguments for :func:`uvicorn.run` / :class:`uvicorn.Config`.

        The limits travel to every worker inside the protocol factory (a
        picklable partial). uvicorn's ``limit_concurrency`` answers 503 once
        that many connections are open; it is set one above the cap, so it
        only fires when connections pile up faster than the guard closes them.
        WebSockets are off: the API has no WebSocket endpoint, and an upgraded
        connection would leave the guard (and its bounds) behind.
        """
        return {
            "http": functools.partial(GuardedHttpProtocol, limits=self),
            "ws": "none",
            "limit_concurrency": self.max_connections + 1,
            "timeout_keep_alive": self.keep_alive,
            "timeout_graceful_shutdown": self.graceful_shutdown,
            "h11_max_incomplete_event_size": self.max_head_bytes,
        }


def fit_open_files(limits: ConnectionLimits) -> ConnectionLimits:
    """Make room for ``limits.max_connections`` sockets in this process's open-file limit.

    Raises the soft limit up to the hard one where needed (nginx's
    ``worker_rlimit_nofile``; workers inherit it); where even the hard limit
    is too small, lowers the cap to fit and says so. A server that runs out of
    descriptors refuses everyone, so the cap must never exceed what is left.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return limits
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = limits.max_connections + FD_RESERVE
    if soft == resource.RLIM_INFINITY or soft >= want:
        return limits
    raised = want if hard == resource.RLIM_INFINITY else min(want, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        soft = raised
    except (ValueError, OSError):
        pass
    if soft >= want:
        return limits
    cap = max(1, soft - FD_RESERVE)
    log.warning("open-file limit %d leaves room for %d connections per worker, not %d (raise it with ulimit -n)",
                soft, cap, limits.max_connections)
    return dataclasses.replace(limits, max_connections=cap)


_FULL_REPORT_EVERY = 60.0  # seconds: a flood must not flood the log too
_last_full_report = float("-inf")


def _report_full(cap: int) -> None:
    """Tell the operator the cap is reached, at most once a minute per process."""
    global _last_full_report
    now = time.monotonic()
    if now - _last_full_report >= _FULL_REPORT_EVERY:
        _last_full_report = now
        log.warning("%d connections open, the --limit-concurrency of this worker: replacing the longest-waiting "
                    "ones (many slow clients, or too low a limit)", cap)


#: per uvicorn server (one per worker process): connections not in a request, longest waiting first
_WAITING: weakref.WeakKeyDictionary[Any, dict[GuardedHttpProtocol, None]] = weakref.WeakKeyDictionary()


class GuardedHttpProtocol(_ParserProtocol):
    """uvicorn's HTTP/1.1 protocol plus the bounds it lacks, so slow clients cannot starve the rest.

    * **Connection cap.** Past ``max_connections`` a new connection replaces
      the one that has waited longest without a complete request, as nginx
      reuses its idle connections when it runs out (``ngx_drain_connections``);
      here a partial head counts as waiting too, since that is what a
      slow-socket flood sends. The flood thus only displaces itself: a normal
      client sends its head at once and is never the longest waiting. Only
      when every connection is busy in the app is the newcomer answered 503.
    * **Request-head deadline** (nginx ``client_header_timeout``). uvicorn's
      only timer is keep-alive, armed *after* a response, so a client that
      connected and sent half a request line held its socket forever: 408.
    * **Request-head size** (h11's limit; httptools has none): 414 while the
      request line is still open, else 431.
    * Protocol errors (a bad request line) answered in JSON, like the app's.

    Every refusal closes the connection.
    """

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None, *, limits: ConnectionLimits) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self._waiting = _WAITING.setdefault(server_state, {})
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._line_open = True

    # -- asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            _report_full(self.limits.max_connections)
            if not self._evict_longest_waiting():
                self._refuse(503, "the server is at its connection limit; retry shortly")
                return
        self._wait_for_head()
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        before = self.cycle
        reading_head = before is None or before.response_complete
        if reading_head and not self._head_fits(data):
            return
        super().data_received(data)
        if self.cycle is not before:  # a whole request head arrived: it is the app's now
            self._stop_waiting()
        elif reading_head and not self.transport.is_closing():
            self._arm_head_timer()  # (a kept-alive connection's next request starts its deadline here)

    # -- uvicorn hooks -------------------------------------------------------------------------
    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.cycle is not None and self.cycle.response_complete and not self.transport.is_closing():
            self._wait_for_head()  # idle until the next request; uvicorn's keep-alive timer runs now

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, f"malformed HTTP request ({msg.rstrip('.').lower()})")

    # -- the bounds ----------------------------------------------------------------------------
    def _head_fits(self, data: bytes) -> bool:
        self._head_bytes += len(data)
        if self._line_open and b"\n" in data:
            self._line_open = False
        if self._head_bytes <= self.limits.max_head_bytes:
            return True
        if self._line_open:
            self._refuse(414, f"request line longer than {self.limits.max_head_bytes} bytes")
        else:
            self._refuse(431, f"request head larger than {self.limits.max_head_bytes} bytes")
        return False

    def _wait_for_head(self) -> None:
        self._waiting.pop(self, None)
        self._waiting[self] = None  # last = most recent
        self._head_bytes, self._line_open = 0, True

    def _stop_waiting(self) -> None:
        self._waiting.pop(self, None)
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.cycle is None or self.cycle.response_complete:
            self._refuse(408, f"request head not received within {self.limits.header_timeout:g} s")

    def _evict_longest_waiting(self) -> bool:
        victim = next((p for p in self._waiting if p is not self), None)
        if victim is None:
            return False
        victim._stop_waiting()
        victim.transport.close()  # silently, as for an idle keep-alive connection: clients retry those
        # counted out now, not when the event loop gets round to connection_lost: the newcomer's
        # request may be parsed first, and uvicorn's limit_concurrency counts this set
        victim.connections.discard(victim)
        return True

    def _refuse(self, status: int, detail: str) -> None:
        """Answer ``{"detail": ...}`` with ``status`` and close: written raw, below the app."""
        self._stop_waiting()
        if self.transport.is_closing():
            return
        body = json.dumps({"detail": detail}).encode()
        head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode()]
        head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
        head += [b"content-type: application/json\r\n", b"content-length: %d\r\n" % len(body),
                 b"connection: close\r\n\r\n"]
        self.transport.write(b"".join(head) + body)
        self.transport.close()
