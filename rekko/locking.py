"""One writer per artifact set: an exclusive ``flock`` on ``.rekko.lock`` beside the manifest.

Two pipelines writing into the same folders used to interleave, and the
manifest of one could certify the other's files. The pipeline now holds this
lock for its whole write phase. Like PostgreSQL's ``postmaster.pid``, the lock
file names its holder (pid, host, start time) so a waiting run can say who is
in the way; unlike a pid file, the lock itself is the kernel's ``flock``, which
is released when the holder exits or is killed: a lock left by a dead process
never blocks anybody, and nothing has to guess whether a recorded pid is still
alive (it may well be alive in another container's pid namespace).

A second run waits a bounded time (``--lock-timeout``, 60 s by default), as
``flock -w`` and apt's ``DPkg::Lock::Timeout`` do: the write phase is short
(seconds at seed scale) and the computing before it is long, so a run that
arrives while another writes would lose everything it computed by failing at
once. When the wait runs out it exits 2 naming the holder, because a writer
that holds the lock for minutes is stuck and a person should look.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from rekko.exceptions import OutputLockedError, OutputPathError, quote

log = logging.getLogger(__name__)

#: Seconds a pipeline waits for another one to finish writing the same artifact set.
DEFAULT_LOCK_TIMEOUT = 60.0
_POLL_SECONDS = 0.1


def describe_holder(path: Path) -> str:
    """Who the lock file says holds it: ``pid 123 on host, since <time>`` (or as much as it says)."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace")[:500].splitlines()
    except OSError:
        lines = []
    pid, host, since = (lines + ["", "", ""])[:3]
    if not pid.strip().isdigit():
        return "a process that has not written its pid yet"
    return f"pid {pid.strip()}" + (f" on {quote(host.strip())}" if host.strip() else "") + (
        f", writing since {since.strip()}" if since.strip() else "")


def _record_holder(fd: int) -> None:
    """Write our pid, host and start time into the lock file (what waiting runs quote)."""
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    text = f"{os.getpid()}\n{socket.gethostname()}\n{started}\n".encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, text, 0)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _acquire(fd: int, path: Path, timeout: float, what: str) -> None:
    """Take the lock, polling until ``timeout`` seconds have passed; then fail naming the holder."""
    if _try_lock(fd):
        return
    deadline = time.monotonic() + max(timeout, 0.0)
    if timeout > 0:
        log.warning("%s is locked by %s: waiting up to %g s for it to finish writing %s",
                    path, describe_holder(path), timeout, what)
    while time.monotonic() < deadline:
        time.sleep(min(_POLL_SECONDS, max(deadline - time.monotonic(), 0.0)))
        if _try_lock(fd):
            return
    raise OutputLockedError(
        f"{path}: another rekko run ({describe_holder(path)}) is writing {what}; gave up after {timeout:g} s. "
        "Let it finish (or stop it) and run again, or wait longer with --lock-timeout SECONDS")


def writer_active(path: str | os.PathLike[str]) -> bool:
    """True while some process holds the exclusive lock ``path`` (a pipeline writing the set); never waits."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return False
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike[str], *, timeout: float = DEFAULT_LOCK_TIMEOUT,
                   what: str = "these artifacts") -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the ``with`` block.

    The file is never removed: removing a lock file another process is
    waiting on would let two processes lock two different files. On exit
    its content is cleared, so it names a holder only while one exists.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise OutputPathError(f"cannot create the lock file {path}: {exc.strerror or type(exc).__name__}") from exc
    try:
        _acquire(fd, path, timeout, what)
        try:
            _record_holder(fd)
            yield
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
