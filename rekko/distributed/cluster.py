"""Connecting to a Dask cluster, or starting a local one sized to the machine.

A scheduler that accepts connections and never answers (or something else on
its port: an HTTP server, a half-dead host) used to hang a command for ever:
Dask's client bounds the TCP connect, not the handshake after it, nor any call
once connected. Here every remote scheduler is held to a deadline,
:data:`TIMEOUT_ENV` (``REKKO_DASK_TIMEOUT``, seconds, default
:data:`DEFAULT_TIMEOUT`):

* before Dask's client is made, this process reads the scheduler's greeting
  itself (a Dask scheduler speaks first) within the deadline, refusing a first
  message over :data:`MAX_GREETING_BYTES` (not a Dask scheduler), then asks it
  for its ``identity`` over a connection of Dask's own, also within the deadline;
* Dask's client is then made under the same deadline;
* while the command runs, a watchdog thread asks the scheduler for its identity
  every few seconds over a fresh connection; no answer for the deadline and the
  client is closed, which ends every call waiting on it (a last resort
  interrupts the main thread).

Each ends the command with exit 2 naming the address without credentials
(:func:`safe_address`). An address with credentials (``tcp://user:pw@host``:
Dask has no such thing) or an unknown scheme is exit 2 before any connection.
"""

from __future__ import annotations

import _thread
import asyncio
import contextlib
import logging
import math
import os
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rekko.exceptions import ConfigError, shorten

log = logging.getLogger("rekko.progress.dask")

#: Environment variable naming a running scheduler (``tcp://host:8786``), like ``--scheduler``.
SCHEDULER_ENV = "REKKO_DASK_SCHEDULER"
#: Environment variable: seconds a remote scheduler has to answer (connect, handshake, every liveness check).
TIMEOUT_ENV = "REKKO_DASK_TIMEOUT"
DEFAULT_TIMEOUT = 30.0
#: A Dask scheduler's greeting is a few hundred bytes; a first message claiming more is not a scheduler's.
MAX_GREETING_BYTES = 1 << 20
#: After the client is closed for a silent scheduler, how long the main thread may take to notice before it is
#: interrupted.
ABORT_GRACE_SECONDS = 10.0

_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)?(?P<userinfo>[^/@]*)@")


class SchedulerUnreachable(ConfigError):
    """A remote Dask scheduler did not answer in time, or is not a Dask scheduler: exit 2."""


def safe_address(address: str) -> str:
    """``address`` for messages: credentials (``user:pw@``) replaced by ``***``, cut to 200 characters."""
    return shorten(_USERINFO.sub(lambda m: f"{m.group('scheme') or ''}***@", str(address).strip(), count=1))


def dask_timeout(value: str | float | None = None) -> float:
    """The deadline in seconds: ``value``, else ``$REKKO_DASK_TIMEOUT``, else :data:`DEFAULT_TIMEOUT`."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip() if value is None else value
    if raw in ("", None):
        return DEFAULT_TIMEOUT
    try:
        seconds = float(raw)
    except (TypeError, ValueError):
        seconds = math.nan
    if not (0 < seconds < math.inf):
        raise ConfigError(f"{TIMEOUT_ENV} must be a number of seconds > 0, got {shorten(str(raw))!r}")
    return seconds


def check_address(address: str) -> str:
    """A scheduler address Dask can use, or :class:`ConfigError` (credentials, unknown scheme, no port)."""
    from distributed.comm import registry
    from distributed.comm.addressing import parse_address

    text = str(address).strip()
    shown = safe_address(text)
    if _USERINFO.match(text):
        raise ConfigError(f"Dask scheduler address {shown} holds credentials (user:password@): Dask takes none and "
                          "rekko does not send them; secure a scheduler with TLS client certificates instead")
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in text):
        raise ConfigError(f"Dask scheduler address {shown} holds blanks or control characters")
    try:
        scheme, _ = parse_address(text)
        registry.get_backend(scheme)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"Dask scheduler address {shown} is not one Dask can use ({shorten(str(exc))}); "
                          "expected tcp://host:port or tls://host:port") from None
    return text


def require_dask() -> None:
    """Raise a :class:`ConfigError` (exit 2) naming the extra to install when Dask is missing."""
    try:
        import dask.dataframe  # noqa: F401
        import distributed  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"--engine dask needs Dask: pip install 'rekko[dask]' ({exc})") from None


def _in_thread(fn: Callable[[], Any], seconds: float, name: str) -> Any:
    """``fn()`` in a daemon thread; :class:`TimeoutError` if it has not returned in ``seconds``.

    A call stuck on a silent peer stays behind in its daemon thread, which does
    not keep the process from exiting.
    """
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {seconds:g} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _read_greeting(address: str, seconds: float) -> None:
    """Read a TCP scheduler's first message ourselves, bounded in time and size (Dask bounds neither).

    A Dask scheduler writes its handshake as soon as it accepts; a mute server
    sends nothing, and an HTTP server waits for a request. Non-TCP addresses
    (TLS, in-process) are left to :func:`_identity`.
    """
    from distributed.comm.addressing import parse_address, parse_host_port

    scheme, loc = parse_address(address)
    if scheme != "tcp":
        return
    host, port = parse_host_port(loc)
    deadline = time.monotonic() + seconds
    pause = 0.05
    while True:  # a refused connection is retried until the deadline, as Dask does: the scheduler may be starting
        try:
            sock = socket.create_connection((host, port), timeout=max(deadline - time.monotonic(), 0.001))
            break
        except OSError:
            if time.monotonic() + pause >= deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
    with sock:

        def read(n: int) -> bytes:
            buf = bytearray()
            while len(buf) < n:
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                chunk = sock.recv(min(n - len(buf), 1 << 16))
                if not chunk:
                    raise ConnectionError("the connection was closed before a Dask greeting")
                buf += chunk
            return bytes(buf)

        (size,) = struct.unpack("<Q", read(8))
        if size > MAX_GREETING_BYTES:
            raise ValueError(f"its first message claims {size:,} bytes; a Dask scheduler's is under "
                             f"{MAX_GREETING_BYTES:,}")
        read(size)


async def _identity_async(address: str, seconds: float) -> dict[str, Any]:
    from distributed.comm import connect as dask_connect
    from distributed.security import Security

    comm = await dask_connect(address, timeout=seconds, **Security().get_connection_args("client"))
    try:
        await comm.write({"op": "identity", "n_workers": 0, "reply": True})
        answer = await comm.read()
    finally:
        comm.abort()
    if not isinstance(answer, dict) or answer.get("type") != "Scheduler":
        raise ValueError("it answered, but not as a Dask scheduler")
    return answer


def _identity(address: str, seconds: float) -> dict[str, Any]:
    """Ask the scheduler who it is over a fresh connection (Dask's handshake, then ``identity``), within ``seconds``.

    Runs on an event loop of its own in a daemon thread, so neither a busy
    client loop nor a caller's running loop is in the way.
    """
    def run() -> dict[str, Any]:
        return asyncio.run(asyncio.wait_for(_identity_async(address, seconds), seconds))

    return _in_thread(run, seconds + 2.0, "rekko-dask-identity")


def _unreachable(address: str, seconds: float, exc: BaseException) -> SchedulerUnreachable:
    shown = safe_address(address)
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError, socket.timeout)):
        why = f"no answer within {seconds:g} s"
    elif isinstance(exc, (ValueError, MemoryError, struct.error)):
        why = f"it does not speak Dask's protocol ({shorten(str(exc) or type(exc).__name__)})"
    else:
        why = f"{type(exc).__name__}: {shorten(str(exc))}"
    text = why.replace(str(address), shown)
    return SchedulerUnreachable(f"cannot use the Dask scheduler at {shown}: {text}. Check the address and that "
                                f"a Dask scheduler runs there ({TIMEOUT_ENV} sets the deadline, now {seconds:g} s)")


def probe(address: str, seconds: float | None = None) -> dict[str, Any]:
    """The scheduler's identity, or :class:`SchedulerUnreachable` within about ``seconds`` (exit 2)."""
    seconds = dask_timeout(seconds)
    address = check_address(address)
    try:
        _read_greeting(address, seconds)
        return _identity(address, seconds)
    except Exception as exc:  # noqa: BLE001 - whatever a wrong or silent peer makes Dask raise is the same answer
        raise _unreachable(address, seconds, exc) from None


class Watchdog:
    """Asks the scheduler for its identity every few seconds; silent for ``seconds``: close the client.

    Closing the client ends every call waiting on it (results, ``client.run``);
    if the main thread is still inside the ``connect`` block
    :data:`ABORT_GRACE_SECONDS` later, it is interrupted.
    """

    def __init__(self, client: Any, address: str, seconds: float, *, interrupt_main: bool) -> None:
        self.client = client
        self.address = address
        self.seconds = seconds
        self.interval = min(5.0, max(seconds / 3, 0.2))
        self.tripped: SchedulerUnreachable | None = None
        self.exited = threading.Event()
        self._stop = threading.Event()
        self._interrupt_main = interrupt_main
        self._thread = threading.Thread(target=self._run, name="rekko-dask-watchdog", daemon=True)

    def start(self) -> Watchdog:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.exited.set()

    def _run(self) -> None:
        last_answer = time.monotonic()
        while not self._stop.wait(self.interval):
            left = last_answer + self.seconds - time.monotonic()
            try:
                _identity(self.address, max(left, 0.5))
            except Exception as exc:  # noqa: BLE001
                if self._stop.is_set():
                    return
                if time.monotonic() - last_answer < self.seconds:
                    continue  # a refused or slow check: try again until the deadline has passed
                self._trip(exc)
                return
            else:
                last_answer = time.monotonic()

    def _trip(self, exc: BaseException) -> None:
        self.tripped = SchedulerUnreachable(
            f"the Dask scheduler at {safe_address(self.address)} stopped answering (no answer for "
            f"{self.seconds:g} s; last: {type(exc).__name__}); the run was stopped. {TIMEOUT_ENV} sets the deadline")
        log.warning("dask: %s", self.tripped)
        with contextlib.suppress(Exception):
            _in_thread(lambda: self.client.close(timeout=2), 5.0, "rekko-dask-close")
        if self._interrupt_main and not self.exited.wait(ABORT_GRACE_SECONDS):
            _thread.interrupt_main()


@contextmanager
def connect(scheduler: str | None = None, *, n_workers: int | None = None,
            memory_limit: str | int | None = None, threads_per_worker: int = 1,
            timeout: float | None = None) -> Iterator[Any]:
    """A ``distributed.Client``: to ``scheduler`` (or ``$REKKO_DASK_SCHEDULER``), else a new ``LocalCluster``.

    A local cluster gets one single-threaded worker process per core (the
    stages are numpy/pandas code that holds the GIL) and binds to 127.0.0.1
    only, its dashboard included: nothing is opened to the network unless
    the operator runs a scheduler themselves. The dashboard address is
    reported on the progress log. The cluster is closed on exit; a remote
    cluster is only disconnected from.

    A remote scheduler has ``timeout`` seconds (default ``$REKKO_DASK_TIMEOUT``,
    else 30) to answer, at connection and for as long as the block runs: see
    the module docstring. Past it: :class:`SchedulerUnreachable` (exit 2).
    """
    require_dask()
    from distributed import Client, LocalCluster

    # distributed sets its loggers to INFO on import; the CLI shows its lifecycle chatter only with -v
    logging.getLogger("distributed").setLevel(max(logging.WARNING, logging.getLogger().getEffectiveLevel()))

    address = scheduler or os.environ.get(SCHEDULER_ENV) or None
    if address:
        seconds = dask_timeout(timeout)
        address = check_address(address)
        shown = safe_address(address)
        probe(address, seconds)
        try:
            client = _in_thread(lambda: Client(address, timeout=f"{seconds}s"),
                                seconds + 5.0, "rekko-dask-client")
        except Exception as exc:  # noqa: BLE001 - OSError, TimeoutError, or whatever a broken peer causes
            raise _unreachable(address, seconds, exc) from None
        log.info("dask: connected to %s (dashboard: %s)", shown, client.dashboard_link)
        watchdog = Watchdog(client, address, seconds,
                            interrupt_main=threading.current_thread() is threading.main_thread()).start()
        try:
            yield client
        except BaseException:
            watchdog.stop()
            if watchdog.tripped is not None:
                raise watchdog.tripped from None
            raise
        finally:
            watchdog.stop()
            with contextlib.suppress(Exception):
                _in_thread(lambda: client.close(timeout=2), 5.0, "rekko-dask-close")
        if watchdog.tripped is not None:
            raise watchdog.tripped
        return
    workers = n_workers or max(1, min(os.cpu_count() or 1, 8))
    cluster = LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker, processes=True,
                           host="127.0.0.1", dashboard_address="127.0.0.1:0",
                           memory_limit=memory_limit if memory_limit is not None else "auto")
    client = Client(cluster)
    log.info("dask: local cluster of %d workers (dashboard: %s)", workers, client.dashboard_link)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def tree_reduce(client: Any, futures: list[Any], add: Any) -> Any:
    """``add`` over ``futures`` in a fan-in-2 tree on the cluster; the total on the client.

    Every level's futures stay referenced until the total is in: a future
    released while the scheduler still needs it for the next level fails the
    run with "lost dependencies".
    """
    level = list(futures)
    held = [level]
    while len(level) > 1:
        nxt = [client.submit(add, level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
        held.append(level)
    return level[0].result()
