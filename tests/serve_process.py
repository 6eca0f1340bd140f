"""``rekko serve`` as a real subprocess for the tests/test_serve_*.py files (plain helpers, no fixtures).

Output goes to files, not pipes, so a chatty server (``--log-level debug``)
can never block on a full pipe; every server is stopped (SIGTERM to its
process group, SIGKILL after a bound) however the test ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from rekko.paths import ArtifactPaths
from tests.serve_support import free_port, get

REPO = Path(__file__).resolve().parents[1]


def artifact_args(paths: ArtifactPaths) -> list[str]:
    return ["--interactions-upd", str(paths.interactions_upd), "--movies-upd", str(paths.movies_upd),
            "--int-coef", str(paths.int_coef), "--sim-md", str(paths.sim_md), "--sim-desc", str(paths.sim_desc)]


def serve_env(**extra: str) -> dict[str, str]:
    """This environment without any REKKO_SERVE_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REKKO_SERVE_")}
    return {**env, "PYTHONPATH": str(REPO), **extra}


@dataclass
class Served:
    proc: subprocess.Popen
    url: str
    port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def start(paths: ArtifactPaths, *args: str, cwd: Path, env: Mapping[str, str] | None = None, port: int | None = None,
          preexec_fn: Callable[[], None] | None = None, timeout: float = 60) -> Served:
    """Start ``rekko serve`` and wait until ``/health`` answers (any status) or the process exits."""
    port = port or free_port()
    log_path = cwd / f"serve-{port}-{time.monotonic_ns()}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rekko", "serve", "--port", str(port), *args, *artifact_args(paths)],
            cwd=cwd, env=dict(env or serve_env()), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=preexec_fn)
    served = Served(proc, f"http://127.0.0.1:{port}", port, log_path)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            get(f"{served.url}/health", timeout=2)
            return served
        except OSError:
            time.sleep(0.2)
    stop(served)
    raise AssertionError(f"rekko serve did not come up (exit {proc.returncode}):\n{served.log()[-3000:]}")


def stop(served: Served, timeout: float = 30) -> int:
    """SIGTERM the server's process group; SIGKILL it if it is not gone within ``timeout``. Its exit code."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(served.proc.pid, signal.SIGTERM)
    try:
        return served.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(served.proc.pid, signal.SIGKILL)
        served.proc.wait(timeout=timeout)
        raise AssertionError(f"rekko serve did not stop within {timeout} s of SIGTERM") from None


@contextlib.contextmanager
def serving(paths: ArtifactPaths, *args: str, cwd: Path, **kwargs) -> Iterator[Served]:
    served = start(paths, *args, cwd=cwd, **kwargs)
    try:
        yield served
    finally:
        if served.proc.poll() is None:
            stop(served)


def group_alive(pgid: int) -> list[int]:
    """Pids of the live (not zombie) processes in group ``pgid``: a server and its workers (Linux /proc)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive
