"""Slow, idle and malformed clients against the connection guard: bounded, answered in JSON, never starving others.

Most tests run uvicorn with :class:`~rekko.serve.app.ConnectionLimits` over a
tiny ASGI app in a thread (fast, exact timings); one drives a real
``rekko serve`` with a few hundred slow sockets. All traffic is to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="rekko[serve] is not installed")
uvicorn = pytest.importorskip("uvicorn", reason="rekko[serve] is not installed")

from rekko.cli import build_parser  # noqa: E402
from rekko.serve import app as app_module  # noqa: E402
from rekko.serve import cli as serve_cli  # noqa: E402
from rekko.serve.app import ConnectionLimits, GuardedHttpProtocol, fit_open_files  # noqa: E402
from tests.serve_process import group_alive, serve_env, serving, stop  # noqa: E402
from tests.serve_support import build_artifacts, wait_for  # noqa: E402

PARTIAL = b"GET /recommendations/1 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


async def tiny_app(scope, receive, send) -> None:
    """``/slow?S`` answers after S seconds, anything else at once."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/slow":
        await asyncio.sleep(float(scope["query_string"] or 0))
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"11")]})
    await send({"type": "http.response.body", "body": b'{"ok":true}'})


@contextlib.contextmanager
def guarded(limits: ConnectionLimits, app=tiny_app) -> Iterator[tuple[int, threading.Thread]]:
    """uvicorn with ``limits`` on 127.0.0.1 in a thread; yields (port, thread), ``thread.stop()`` stops it."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", **limits.uvicorn_options())
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    thread.stop = lambda: setattr(server, "should_exit", True)  # type: ignore[attr-defined]
    try:
        yield sock.getsockname()[1], thread
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


def connect(port: int, data: bytes = b"") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    if data:
        s.sendall(data)
    return s


def read_all(s: socket.socket, timeout: float = 10) -> bytes:
    """Everything until the server closes (or ``timeout``)."""
    s.settimeout(timeout)
    chunks = []
    with contextlib.suppress(socket.timeout, ConnectionResetError):
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def parse(raw: bytes) -> tuple[int, dict[str, str], object]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, json.loads(body) if body else None


def closed_by_server(s: socket.socket, timeout: float) -> bool:
    s.settimeout(timeout)
    try:
        return s.recv(65536) == b""
    except socket.timeout:
        return False
    except ConnectionResetError:
        return True


def get_json(port: int, path: str = "/", timeout: float = 5) -> tuple[int, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return r.status, json.loads(r.read())


# -- protocol errors, in JSON --------------------------------------------------------------------
@pytest.mark.parametrize("garbage", [b"NOT AN HTTP REQUEST\r\n\r\n", b"GET / HTTP/1.1\r\nHost x\r\n\r\n",
                                     b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"])  # the last: TLS to plain HTTP
def test_a_malformed_request_gets_a_json_400_and_the_connection_closed(garbage):
    with guarded(ConnectionLimits()) as (port, _), connect(port, garbage) as s:
        status, headers, body = parse(read_all(s))
    assert status == 400
    assert headers["content-type"] == "application/json" and headers["connection"] == "close"
    assert body["detail"].startswith("malformed HTTP request")


def test_an_oversized_url_gets_a_json_414_and_oversized_headers_a_431():
    limits = ConnectionLimits(max_head_bytes=4096)
    with guarded(limits) as (port, _):
        with connect(port, b"GET /" + b"a" * 5000) as s:  # the request line never even ends
            status, _, body = parse(read_all(s))
        assert status == 414 and body == {"detail": "request line longer than 4096 bytes"}
        headers = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(60))
        with connect(port, b"GET / HTTP/1.1\r\nHost: a\r\n" + headers + b"\r\n") as s:
            status, _, body = parse(read_all(s))
        assert status == 431 and body == {"detail": "request head larger than 4096 bytes"}
        with connect(port, b"GET /?" + b"q" * 3000 + b" HTTP/1.1\r\nHost: a\r\n\r\n") as s:
            assert parse(read_all(s, timeout=2))[0] == 200  # within the limit: answered


def test_a_websocket_upgrade_is_answered_as_plain_http_and_stays_under_the_guard():
    upgrade = (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
               b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    with guarded(ConnectionLimits(header_timeout=0.5)) as (port, _), connect(port, upgrade) as s:
        s.settimeout(5)
        assert s.recv(65536).startswith(b"HTTP/1.1 200")  # not 101: no WebSocket endpoint, none offered
        s.sendall(PARTIAL)
        assert parse(read_all(s))[0] == 408  # still the guard's connection


# -- timeouts --------------------------------------------------------------------------------------
def test_a_request_head_that_does_not_arrive_in_time_gets_408():
    with guarded(ConnectionLimits(header_timeout=0.5)) as (port, _):
        started = time.monotonic()
        with connect(port, PARTIAL) as slow, connect(port) as silent:
            for s in (slow, silent):
                status, headers, body = parse(read_all(s))
                assert status == 408 and headers["content-type"] == "application/json"
                assert body == {"detail": "request head not received within 0.5 s"}
        assert time.monotonic() - started < 3


def test_a_kept_alive_connection_cannot_dribble_its_next_request():
    """uvicorn's own keep-alive timer stops at the next request's first byte; the head deadline takes over."""
    with guarded(ConnectionLimits(header_timeout=0.5, keep_alive=30)) as (port, _):
        with connect(port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n") as s:
            s.settimeout(5)
            assert s.recv(65536).startswith(b"HTTP/1.1 200")
            s.sendall(PARTIAL)
            started = time.monotonic()
            assert parse(read_all(s))[0] == 408
            assert time.monotonic() - started < 3


def test_an_idle_kept_alive_connection_is_closed_after_timeout_keep_alive():
    with guarded(ConnectionLimits(keep_alive=1, header_timeout=30)) as (port, _):
        with connect(port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n") as s:
            s.settimeout(5)
            assert s.recv(65536).startswith(b"HTTP/1.1 200")
            started = time.monotonic()
            assert closed_by_server(s, timeout=5)
            assert 0.5 < time.monotonic() - started < 4


def test_shutdown_waits_at_most_timeout_graceful_shutdown_for_requests_in_flight():
    with guarded(ConnectionLimits(graceful_shutdown=1)) as (port, thread):
        s = connect(port, b"GET /slow?60 HTTP/1.1\r\nHost: a\r\n\r\n")
        time.sleep(0.3)
        started = time.monotonic()
        thread.stop()
        thread.join(timeout=20)
        elapsed = time.monotonic() - started
        s.close()
    assert 0.5 < elapsed < 4  # the request got its second, then was cancelled


# -- the connection cap ----------------------------------------------------------------------------
def test_at_the_cap_a_newcomer_replaces_the_longest_waiting_connection(monkeypatch, caplog):
    monkeypatch.setattr(app_module, "_last_full_report", float("-inf"))
    with guarded(ConnectionLimits(max_connections=4, header_timeout=60)) as (port, _):
        slow = [connect(port, PARTIAL) for _ in range(4)]
        time.sleep(0.2)
        try:
            assert get_json(port, "/") == (200, {"ok": True})
            assert closed_by_server(slow[0], timeout=2)  # the oldest slow socket made room
            slow.append(connect(port, PARTIAL))  # full again
            time.sleep(0.2)
            assert get_json(port, "/") == (200, {"ok": True})
            assert closed_by_server(slow[1], timeout=2)
            assert not any(closed_by_server(s, timeout=0.2) for s in slow[2:])  # one for one, no more
        finally:
            for s in slow:
                s.close()
    reports = [r for r in caplog.records if "--limit-concurrency" in r.getMessage()]
    assert len(reports) == 1  # the operator hears of it, once a minute at most


def test_at_the_cap_with_every_connection_busy_a_newcomer_gets_a_json_503():
    with guarded(ConnectionLimits(max_connections=2)) as (port, _):
        busy = [connect(port, b"GET /slow?3 HTTP/1.1\r\nHost: a\r\n\r\n") for _ in range(2)]
        time.sleep(0.3)
        try:
            with connect(port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n") as s:
                status, _, body = parse(read_all(s, timeout=2))
            assert status == 503 and "connection limit" in body["detail"]
            assert all(parse(read_all(b, timeout=10))[0] == 200 for b in busy)  # the busy ones finish
        finally:
            for b in busy:
                b.close()


def test_the_cap_fits_in_the_open_file_limit(monkeypatch, caplog):
    calls = []
    monkeypatch.setattr(resource, "getrlimit", lambda _: (256, 256))
    monkeypatch.setattr(resource, "setrlimit", lambda *a: calls.append(a) or (_ for _ in ()).throw(ValueError()))
    fitted = fit_open_files(ConnectionLimits(max_connections=1000))
    assert fitted.max_connections == 256 - app_module.FD_RESERVE
    assert "ulimit -n" in caplog.text

    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 1 << 20))
    monkeypatch.setattr(resource, "setrlimit", lambda *a: calls.append(a))
    assert fit_open_files(ConnectionLimits(max_connections=1000)).max_connections == 1000
    assert calls[-1] == (resource.RLIMIT_NOFILE, (1000 + app_module.FD_RESERVE, 1 << 20))  # raised, as nginx does


def test_limits_reach_uvicorn_and_its_own_503_stays_a_backstop():
    limits = ConnectionLimits(max_connections=7, header_timeout=3, keep_alive=2, max_head_bytes=999,
                              graceful_shutdown=4)
    options = limits.uvicorn_options()
    assert options["http"].func is GuardedHttpProtocol and options["http"].keywords == {"limits": limits}
    assert (options["limit_concurrency"], options["timeout_keep_alive"], options["timeout_graceful_shutdown"],
            options["h11_max_incomplete_event_size"], options["ws"]) == (8, 2, 4, 999, "none")
    import pickle

    assert pickle.loads(pickle.dumps(options["http"])).keywords == {"limits": limits}  # travels to workers


# -- the command line ----------------------------------------------------------------------------
def test_cli_options_and_defaults():
    args = build_parser().parse_args(["serve"])
    defaults = asdict(ConnectionLimits())
    assert serve_cli._limit_defaults() == {k: defaults[k] for k in serve_cli._limit_defaults()}
    assert (args.limit_concurrency, args.timeout_header, args.timeout_keep_alive,
            args.timeout_graceful_shutdown) == (1000, 10.0, 5, 5)
    args = build_parser().parse_args(["serve", "--limit-concurrency", "50", "--timeout-header", "2.5",
                                      "--timeout-keep-alive", "3", "--timeout-graceful-shutdown", "0"])
    assert (args.limit_concurrency, args.timeout_header, args.timeout_keep_alive,
            args.timeout_graceful_shutdown) == (50, 2.5, 3, 0)


@pytest.mark.parametrize("args", [["--limit-concurrency", "0"], ["--limit-concurrency", "many"],
                                  ["--timeout-header", "0"], ["--timeout-header", "nan"],
                                  ["--timeout-header", "inf"],
                                  ["--timeout-keep-alive", "0"], ["--timeout-graceful-shutdown", "-1"]])
def test_bad_limits_exit_2(args, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["serve", *args])
    assert exc.value.code == 2 and args[0] in capsys.readouterr().err


# -- the real thing --------------------------------------------------------------------------------
N_SLOW = 300
OPEN_FILES = 256  # the server's own limit: 300 slow sockets would use it all up without a cap


def _low_open_file_limit() -> None:  # runs in the server process before exec
    resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES, OPEN_FILES))


def test_hundreds_of_slow_sockets_do_not_lock_out_a_normal_client(tmp_path):
    """The incident, scaled down: the server may hold 256 files; 300 clients send half a request line and wait.

    With the defaults (no limit options given), every normal request is still
    answered within a second, and everything stops in bounded time.
    """
    paths = build_artifacts(tmp_path / "gen")
    env = serve_env(TMPDIR=str(tmp_path))
    slow: list[socket.socket] = []
    with serving(paths, "--log-level", "warning", cwd=tmp_path, env=env, preexec_fn=_low_open_file_limit) as served:
        try:
            for _ in range(N_SLOW):
                slow.append(connect(served.port, PARTIAL))
            time.sleep(0.5)
            for user in range(1, 6):
                started = time.monotonic()
                with urllib.request.urlopen(f"{served.url}/recommendations/{user}?n=3", timeout=5) as r:
                    assert r.status == 200 and len(json.loads(r.read())["items"]) == 3
                assert time.monotonic() - started < 1.0
            with connect(served.port, b"BAD REQUEST LINE\r\n\r\n") as s:  # protocol errors: JSON, from the real server
                status, _, body = parse(read_all(s, timeout=5))
            assert status == 400 and "malformed" in body["detail"]
            open_files = len(list((Path("/proc") / str(served.proc.pid) / "fd").iterdir()))
            assert open_files < OPEN_FILES
        finally:
            for s in slow:
                s.close()
        started = time.monotonic()
        assert stop(served, timeout=20) == 0
        assert time.monotonic() - started < 15
    # multiprocessing's resource tracker (from the artifact-loading child) leaves right after its parent
    assert wait_for(lambda: not group_alive(served.proc.pid), timeout=10), group_alive(served.proc.pid)
    assert "connections per worker, not 1000" in served.log()  # the cap was fitted to the 256 files
    assert "Traceback" not in served.log()
