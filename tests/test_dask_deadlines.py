"""Every connection to a Dask scheduler has a deadline (issue 18, item 4), and its address is shown without
credentials (item 10).

A port that accepts and never answers used to keep ``rekko recommend --all-users
--engine dask`` running past 300 s; an HTTP server on it, past 100 s. Every
server here is real, on 127.0.0.1; the deadline is set to 3 s
(``REKKO_DASK_TIMEOUT``) and each run must end with exit 2 well inside a bound.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from rekko.distributed.cluster import (  # noqa: E402
    SchedulerUnreachable,
    connect,
    dask_timeout,
    safe_address,
)
from rekko.exceptions import ConfigError  # noqa: E402
from tests.conftest import write_inputs  # noqa: E402

DEADLINE = "3"
#: A run against a silent peer must be over by then: the deadline, Python's start-up and slack for a busy machine.
BOUND_SECONDS = 45


class _Server:
    """A TCP server on 127.0.0.1 whose connections get ``answer(sock)``, each in a thread; held open until closed."""

    def __init__(self, answer) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.accepted = 0
        self._answer = answer
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self._held.append(conn)
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        for conn in self._held:
            conn.close()


def _silent(conn: socket.socket) -> None:
    """Accept and say nothing, ever (reading what comes so the peer's writes never block)."""
    try:
        while conn.recv(65536):
            pass
    except OSError:
        pass


def _huge_greeting(conn: socket.socket) -> None:
    """A first message claiming 2**62 bytes: what Dask's reader would try to allocate."""
    try:
        conn.sendall(struct.pack("<Q", 1 << 62))
        _silent(conn)
    except OSError:
        pass


@pytest.fixture
def mute() -> Iterator[_Server]:
    server = _Server(_silent)
    yield server
    server.close()


@pytest.fixture
def http_server() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"hello")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"tcp://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def work(tmp_path: Path) -> Path:
    write_inputs(tmp_path)
    return tmp_path


def rekko(args: list[str], cwd: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("REKKO_")}
    full.update({"REKKO_DASK_TIMEOUT": DEADLINE, **env})
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "rekko", *args], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=BOUND_SECONDS + 30, check=False)
    return proc, time.monotonic() - started


BATCH = ["recommend", "--all-users", "-n", "3", "--engine", "dask", "--output", "recs/"]


def test_a_mute_scheduler_ends_the_batch_with_exit_2_naming_it(work, mute):
    proc, took = rekko([*BATCH, "--scheduler", mute.address], work)
    assert proc.returncode == 2, proc.stderr
    assert took < BOUND_SECONDS
    assert mute.address in proc.stderr and "no answer within 3 s" in proc.stderr and "REKKO_DASK_TIMEOUT" in proc.stderr
    assert mute.accepted >= 1 and not (work / "recs").exists()


def test_an_http_server_on_the_scheduler_port_ends_with_exit_2(work, http_server):
    proc, took = rekko([*BATCH, "--scheduler", http_server], work)
    assert proc.returncode == 2, proc.stderr
    assert took < BOUND_SECONDS and http_server in proc.stderr
    assert "unexpected error" not in proc.stderr


def test_a_greeting_claiming_exabytes_is_not_a_scheduler(work):
    server = _Server(_huge_greeting)
    try:
        proc, took = rekko([*BATCH, "--scheduler", server.address], work)
    finally:
        server.close()
    assert proc.returncode == 2, proc.stderr
    assert "does not speak Dask's protocol" in proc.stderr and "MemoryError" not in proc.stderr
    assert took < BOUND_SECONDS


def test_the_scheduler_from_the_environment_has_the_same_deadline(work, mute):
    proc, took = rekko(["recommend", "--all-users", "-n", "3", "--output", "recs/"], work,
                       REKKO_ENGINE="dask", REKKO_DASK_SCHEDULER=mute.address)
    assert proc.returncode == 2 and mute.address in proc.stderr, proc.stderr
    assert took < BOUND_SECONDS


def test_the_pipeline_on_a_mute_scheduler_ends_with_exit_2(work, mute):
    proc, took = rekko(["pipeline", "--no-tune", "--engine", "dask", "--scheduler", mute.address], work)
    assert proc.returncode == 2, proc.stderr
    assert took < BOUND_SECONDS and mute.address in proc.stderr
    assert not (work / "matrix" / "manifest.json").exists()


@pytest.mark.parametrize("variable", [False, True])
def test_a_scheduler_address_with_credentials_is_refused_and_never_printed(work, variable):
    address = "tcp://user:S3cretPass@127.0.0.1:1"
    args = [*BATCH] if variable else [*BATCH, "--scheduler", address]
    env = {"REKKO_DASK_SCHEDULER": address} if variable else {}
    proc, _ = rekko(["-v", *args], work, **env)
    assert proc.returncode == 2, proc.stderr
    assert "S3cretPass" not in proc.stdout + proc.stderr and "user:S3" not in proc.stderr
    assert "tcp://***@127.0.0.1:1" in proc.stderr


@pytest.mark.parametrize("address", ["garbage://x", "tcp://127.0.0.1:1/x y"])
def test_an_address_dask_cannot_use_is_exit_2(work, address):
    proc, took = rekko([*BATCH, "--scheduler", address], work)
    assert proc.returncode == 2 and "unexpected error" not in proc.stderr, proc.stderr
    assert took < BOUND_SECONDS


def test_a_scheduler_that_goes_silent_mid_run_stops_the_run(tmp_path):
    """A real scheduler, stopped (SIGSTOP) while a result is awaited: the watchdog ends the wait with exit 2."""
    info = tmp_path / "scheduler.json"
    sched = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                              "--port", "0", "--no-dashboard", "--scheduler-file", str(info)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not info.exists() or not info.read_text().strip():
            assert time.monotonic() < deadline and sched.poll() is None, "the scheduler did not start"
            time.sleep(0.1)
        address = json.loads(info.read_text())["address"]
        with pytest.raises(SchedulerUnreachable, match="stopped answering") as stopped:  # noqa: PT012
            with connect(address, timeout=3) as client:
                time.sleep(4)  # the watchdog's checks of a live scheduler pass
                future = client.submit(time.sleep, 600, pure=False)  # no worker: it would wait for ever
                os.kill(sched.pid, signal.SIGSTOP)
                started = time.monotonic()
                future.result()
        assert time.monotonic() - started < 20
        assert address in str(stopped.value) and stopped.value.exit_code == 2
    finally:
        os.kill(sched.pid, signal.SIGCONT)
        sched.terminate()
        sched.wait(30)


def test_timeout_setting_and_address_scrubbing(monkeypatch):
    monkeypatch.delenv("REKKO_DASK_TIMEOUT", raising=False)
    assert dask_timeout() == 30.0
    monkeypatch.setenv("REKKO_DASK_TIMEOUT", "2.5")
    assert dask_timeout() == 2.5
    for bad in ("0", "-1", "nan", "inf", "soon"):
        monkeypatch.setenv("REKKO_DASK_TIMEOUT", bad)
        with pytest.raises(ConfigError, match="REKKO_DASK_TIMEOUT"):
            dask_timeout()
    assert safe_address("tcp://user:pw@10.0.0.5:8786") == "tcp://***@10.0.0.5:8786"
    assert safe_address("user:pw@10.0.0.5:8786") == "***@10.0.0.5:8786"
    assert safe_address("tls://10.0.0.5:8786") == "tls://10.0.0.5:8786"


def test_the_no_worker_message_names_the_address(monkeypatch):
    """Issue 18, item 17: it printed a literal `dask worker {address}`."""
    from rekko.distributed import batch

    class NoWorkers:
        def scheduler_info(self):
            return {"workers": {}}

        def wait_for_workers(self, n, timeout):
            raise TimeoutError

    monkeypatch.setattr(batch, "WORKER_WAIT_SECONDS", 0.01)
    with pytest.raises(ConfigError) as refused:
        batch._wait_for_workers(NoWorkers(), "tcp://10.0.0.5:8786")
    assert "`dask worker tcp://10.0.0.5:8786`" in str(refused.value) and "{address}" not in str(refused.value)
