"""A local stand-in for both movie APIs, for tests, benchmarks and offline trials.

A threaded HTTP server on 127.0.0.1 that answers Kinopoisk's and TMDB's search
endpoints from an in-memory catalogue, checks the key the way each provider does
(401 otherwise), and can be scripted per title to misbehave: 429 bursts with
``Retry-After``, 500s, answers slower than any timeout, garbage bodies, wrong
JSON shapes, redirects, a daily limit after N requests, and the hostile answers a
client must survive: bodies dripped a byte at a time, a stall after the headers,
huge or endless bodies. It counts every hit per title, which is how tests prove a
resumed run never asks twice, and records how many bytes each answer delivered
before the client hung up (:attr:`ApiEmulator.deliveries`).

    with ApiEmulator("kinopoisk", api_key="k", catalogue={"Брат": [movie(1, "Брат", 1997, 8.3)]}) as api:
        settings = EnrichSettings(api_key="k", base_url=api.url)
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

DAILY_LIMIT_BODY = {"statusCode": 403, "message": "Вы израсходовали ваш суточный лимит", "error": "Forbidden"}
PATHS = {"kinopoisk": "/v1.4/movie/search", "tmdb": "/3/search/movie"}
#: An "endless" body ends after this much anyway, so a client without a size cap cannot eat the test machine.
ENDLESS_SAFETY_BYTES = 256 * 2**20


@dataclass(frozen=True)
class Movie:
    """A provider-neutral catalogue entry, rendered in each provider's JSON shape."""

    id: int
    title: str
    year: int | None = None
    rating: float | None = None
    votes: int = 0
    description: str | None = None
    alt_title: str | None = None


def movie(
    id: int,
    title: str,
    year: int | None = None,
    rating: float | None = None,
    votes: int = 100,
    description: str | None = None,
    alt_title: str | None = None,
) -> Movie:
    return Movie(
        id, title, year, rating, votes, description if description is not None else f"About {title}.", alt_title
    )


@dataclass(frozen=True)
class Reply:
    """A scripted answer: a status, a body (bytes or JSON-able), headers, and a delay before answering.

    The hostile options: ``drip`` seconds between single bytes (of the body, and of
    the status line and headers too with ``drip_headers``); ``stall`` seconds of
    silence after the headers; ``filler`` bytes of padding instead of the body
    (declared in ``Content-Length``); ``endless``: a chunked body that never ends.
    """

    status: int = 200
    body: Any = None  # None: the normal search answer
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drip: float = 0.0
    drip_headers: bool = False
    stall: float = 0.0
    filler: int | None = None
    endless: bool = False

    @property
    def hostile(self) -> bool:
        return bool(self.drip or self.stall or self.endless or self.filler is not None)


@dataclass
class Delivery:
    """How much of one answer reached the socket: ``complete`` is false when the client hung up first."""

    title: str
    status: int
    sent: int = 0
    complete: bool = False
    ended: float | None = None  # monotonic time the server stopped writing (done or the client left)


TOO_MANY = Reply(429, {"message": "Too Many Requests"}, {"Retry-After": "0.05"})
SERVER_ERROR = Reply(500, b"<html>Internal Server Error</html>")
GARBAGE = Reply(200, b"\x00\xffnot json{{")
WRONG_SHAPE = Reply(200, {"items": "unexpected"})


class ApiEmulator:
    """Serve one provider's search endpoint on 127.0.0.1 (an ephemeral port)."""

    def __init__(
        self,
        provider: str = "kinopoisk",
        *,
        api_key: str = "test-key",
        catalogue: Mapping[str, Iterable[Movie]] | None = None,
        echo_unknown: bool = False,
        latency: float = 0.0,
        daily_limit_after: int | None = None,
        description_chars: int = 0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if provider not in PATHS:
            raise ValueError(f"unknown provider {provider!r}")
        self.provider = provider
        self.api_key = api_key
        self.catalogue = {k: list(v) for k, v in (catalogue or {}).items()}
        self.echo_unknown = echo_unknown  # unknown titles answer with one exact match (benchmarks)
        self.latency = latency
        self.description_chars = description_chars  # pad echoed descriptions to a realistic length
        self.daily_limit_after = daily_limit_after
        self.tls = tls  # a server-side context: serve https (the real APIs' scheme)
        self.hits: Counter[str] = Counter()  # successful-or-not requests per query title
        self.statuses: Counter[int] = Counter()
        self.requests: list[dict[str, Any]] = []  # path, query, headers, arrival time of every request
        self.deliveries: list[Delivery] = []  # one per answer, in the order answers started
        self._scripts: dict[str, deque[Reply]] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- scripting -------------------------------------------------------------------------------------
    def script(self, title: str, *replies: Reply) -> None:
        """The next requests for ``title`` get these replies, in order; then normal answers."""
        with self._lock:
            self._scripts.setdefault(title, deque()).extend(replies)

    @property
    def total_hits(self) -> int:
        with self._lock:
            return sum(self.hits.values())

    # -- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> ApiEmulator:
        handler = type("Handler", (_Handler,), {"api": self})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        server.request_queue_size = 128
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the emulator first"
        host, port = self._server.server_address[:2]
        return f"{'https' if self.tls is not None else 'http'}://{host}:{port}"

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> ApiEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- answering -------------------------------------------------------------------------------------
    def answer(self, path: str, query: Mapping[str, list[str]], headers: Mapping[str, str]) -> Reply:
        title = (query.get("query") or [""])[0]
        year_param = (query.get("year") or [None])[0]
        with self._lock:
            self.hits[title] += 1
            self.requests.append(
                {"path": path, "query": dict(query), "headers": dict(headers), "t": time.monotonic(), "title": title}
            )
            n_total = sum(self.hits.values())
            script = self._scripts.get(title)
            scripted = script.popleft() if script else None
        if path != PATHS[self.provider]:
            return Reply(404, {"message": f"no route {path}"})
        if not self._authorised(headers):
            return Reply(401, {"statusCode": 401, "message": "Переданный токен некорректен"})
        if self.daily_limit_after is not None and n_total > self.daily_limit_after:
            return Reply(403, DAILY_LIMIT_BODY)
        if scripted is not None and scripted.body is not None:
            return scripted
        movies = self.catalogue.get(title)
        if movies is None:
            movies = (
                [Movie(abs(hash(title)) % 10**7, title, None, 7.0, 1000, self._description(title))]
                if (self.echo_unknown)
                else []
            )
        if self.provider == "tmdb" and year_param:
            movies = [m for m in movies if m.year == int(year_param)]
        body = self._render(movies)
        return replace(scripted, body=body) if scripted is not None else Reply(200, body)

    def _description(self, title: str) -> str:
        text = f"About {title}."
        filler = " Герой возвращается домой и узнаёт, что город изменился."
        while len(text) < self.description_chars:
            text += filler
        return text[: max(self.description_chars, len(f"About {title}."))]

    def _authorised(self, headers: Mapping[str, str]) -> bool:
        lower = {k.lower(): v for k, v in headers.items()}
        if self.provider == "kinopoisk":
            return lower.get("x-api-key") == self.api_key
        return lower.get("authorization") == f"Bearer {self.api_key}"

    def _render(self, movies: list[Movie]) -> dict[str, Any]:
        if self.provider == "kinopoisk":
            docs = [
                {
                    "id": m.id,
                    "name": m.title,
                    "alternativeName": m.alt_title,
                    "enName": None,
                    "year": m.year,
                    "description": m.description,
                    "shortDescription": None,
                    "rating": {"kp": m.rating or 0, "imdb": 0, "filmCritics": 0, "russianFilmCritics": 0},
                    "votes": {"kp": m.votes, "imdb": 0},
                    "movieLength": 100,
                    "genres": [{"name": "драма"}],
                    "countries": [{"name": "Россия"}],
                }
                for m in movies
            ]
            return {"docs": docs, "total": len(docs), "limit": 10, "page": 1, "pages": 1}
        results = [
            {
                "id": m.id,
                "title": m.title,
                "original_title": m.alt_title or m.title,
                "overview": m.description or "",
                "vote_average": m.rating or 0.0,
                "vote_count": m.votes if m.rating else 0,
                "release_date": f"{m.year}-05-01" if m.year else "",
            }
            for m in movies
        ]
        return {"page": 1, "results": results, "total_pages": 1, "total_results": len(results)}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real APIs do
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall
    api: ApiEmulator

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        parts = urlsplit(self.path)
        reply = self.api.answer(parts.path, parse_qs(parts.query), dict(self.headers.items()))
        delay = reply.delay + self.api.latency
        if delay:
            time.sleep(delay)
        body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body, ensure_ascii=False).encode()
        delivery = Delivery(title=(parse_qs(parts.query).get("query") or [""])[0], status=reply.status)
        with self.api._lock:
            self.api.statuses[reply.status] += 1
            self.api.deliveries.append(delivery)
        try:
            if reply.hostile:
                self._send_hostile(reply, body, delivery)
            else:
                self._send(reply, body, delivery)
            delivery.complete = True
        except OSError:  # the client timed out (or gave up) and left: EPIPE, ECONNRESET, or a TLS EOF
            self.close_connection = True
        finally:
            delivery.ended = time.monotonic()

    def _head(self, reply: Reply, length: int | None) -> bytes:
        lines = [f"HTTP/1.1 {reply.status} {self.responses.get(reply.status, ('',))[0]}"]
        lines.append("Content-Type: application/json; charset=utf-8")
        lines.append(f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked")
        lines += [f"{k}: {v}" for k, v in reply.headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _send(self, reply: Reply, body: bytes, delivery: Delivery) -> None:
        self.wfile.write(self._head(reply, len(body)))
        self.wfile.write(body)
        delivery.sent += len(body)

    def _send_hostile(self, reply: Reply, body: bytes, delivery: Delivery) -> None:
        """Answer like a slow, stalled or flooding server; stops when the client hangs up."""
        self.close_connection = True  # whatever the client saw, this connection is not reused
        length = None if reply.endless else reply.filler if reply.filler is not None else len(body)
        self._write(self._head(reply, length), reply.drip if reply.drip_headers else 0.0, None)
        if reply.stall:
            time.sleep(reply.stall)
        if reply.endless:
            chunk = b" " * (1 if reply.drip else 65536)
            framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
            while delivery.sent < ENDLESS_SAFETY_BYTES:
                self._write(framed, reply.drip, None)
                delivery.sent += len(chunk)
            self._write(b"0\r\n\r\n", 0.0, None)
        elif reply.filler is not None:  # JSON whitespace: harmless, but too much of it; never held in memory
            piece = b" " * (1 if reply.drip else 65536)
            while delivery.sent < reply.filler:
                self._write(piece[: reply.filler - delivery.sent], reply.drip, delivery)
        else:
            self._write(body, reply.drip, delivery)

    def _write(self, data: bytes, drip: float, delivery: Delivery | None) -> None:
        step = 1 if drip else 65536
        for i in range(0, len(data), step):
            piece = data[i : i + step]
            self.wfile.write(piece)
            self.wfile.flush()
            if delivery is not None:
                delivery.sent += len(piece)
            if drip:
                time.sleep(drip)

    def log_message(self, format: str, *args: Any) -> None:  # silence per-request stderr lines
        pass


def main(argv: list[str] | None = None) -> None:
    """Serve the emulator until killed; prints its URL first (for benchmarks and manual trials)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m rekko.testing.emulator", description=__doc__.splitlines()[0])
    parser.add_argument("--provider", choices=sorted(PATHS), default="kinopoisk")
    parser.add_argument("--key", default="test-key", help="the API key the emulator accepts")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before every answer")
    parser.add_argument("--empty", action="store_true", help="answer every title with no results")
    parser.add_argument("--description-chars", type=int, default=0, help="length of echoed descriptions")
    args = parser.parse_args(argv)
    api = ApiEmulator(
        args.provider,
        api_key=args.key,
        echo_unknown=not args.empty,
        latency=args.latency,
        description_chars=args.description_chars,
    ).start()
    print(api.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        api.close()


if __name__ == "__main__":
    main()
