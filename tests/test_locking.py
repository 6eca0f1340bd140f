"""One writer per artifact set, with real processes: a lock holder, two pipelines, kills.

The holder in most tests is a plain ``fcntl.flock`` in another Python process,
written the way the pipeline writes ``matrix/.rekko.lock`` (pid on the first
line): the lock is the kernel's, so any process holding it must keep rekko out.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from rekko.artifacts import read_manifest
from rekko.io import sha256_file
from tests.conftest import run_cli, tiny_interactions

HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o666)
fcntl.flock(fd, fcntl.LOCK_EX)
os.ftruncate(fd, 0)
os.write(fd, f"{os.getpid()}\\nholder-host\\n2024-01-01T00:00:00+00:00\\n".encode())
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""

# A real `rekko pipeline` that sleeps after staging, while it holds the lock, or is killed mid-staging.
SLOW_PIPELINE = """
import os, signal, sys, time
import rekko.io as io
publish, stage = io.StagedFiles.publish, io.StagedFiles.stage
def held(self):
    time.sleep(float(os.environ.get("SLEEP_IN_PUBLISH", "0")))
    release = os.environ.get("HOLD_UNTIL_FILE")
    end = time.monotonic() + 90
    while release and not os.path.exists(release) and time.monotonic() < end:
        time.sleep(0.05)  # hold the lock until the test has seen the other run wait for it
    publish(self)
def killed_mid_write(self, target):
    if len(self._pending) == int(os.environ.get("DIE_AFTER_STAGING", "-1")):
        os.kill(os.getpid(), signal.SIGKILL)
    return stage(self, target)
io.StagedFiles.publish, io.StagedFiles.stage = held, killed_mid_write
from rekko.cli import main
sys.exit(main(sys.argv[1:]))
"""


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".rekko.lock"}


@pytest.fixture
def built(tiny_dir: Path) -> Path:
    proc = run_cli(["pipeline"], tiny_dir)
    assert proc.returncode == 0, proc.stderr
    return tiny_dir


@pytest.fixture
def holder(built: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding matrix/.rekko.lock for up to a minute."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(built / "matrix/.rekko.lock"), "60"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    yield proc
    proc.kill()
    proc.wait()


def test_second_writer_gives_up_after_the_timeout_naming_the_holder(built: Path, holder) -> None:
    before = snapshot(built)
    t0 = time.monotonic()
    proc = run_cli(["pipeline", "--lock-timeout", "1"], built)
    assert proc.returncode == 2, proc.stderr
    assert f"pid {holder.pid} on 'holder-host'" in proc.stderr and "matrix/.rekko.lock" in proc.stderr
    assert "--lock-timeout" in proc.stderr and time.monotonic() - t0 < 60
    assert snapshot(built) == before  # nothing removed, nothing written
    assert run_cli(["recommend", "-u", "1", "--no-pred"], built).returncode == 0


def test_lock_timeout_zero_fails_at_once(built: Path, holder) -> None:
    proc = run_cli(["pipeline", "--lock-timeout", "0"], built)
    assert proc.returncode == 2 and f"pid {holder.pid}" in proc.stderr


def test_a_killed_holder_does_not_block(built: Path, holder) -> None:
    """The kernel drops a flock when its process dies: the stale pid left in the file blocks nobody."""
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert str(holder.pid) in (built / "matrix/.rekko.lock").read_text()
    proc = run_cli(["pipeline", "--lock-timeout", "0"], built)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "soon"])
def test_bad_lock_timeout_is_an_argument_error(tiny_dir: Path, value: str) -> None:
    proc = run_cli(["pipeline", "--lock-timeout", value], tiny_dir)
    assert proc.returncode == 2 and "seconds >= 0" in proc.stderr


def _wait_for_lock_holder(lock: Path, pid: int, deadline: float = 60) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if lock.exists() and lock.read_text().split("\n", 1)[0] == str(pid):
            return
        time.sleep(0.05)
    raise AssertionError("the first pipeline never took the lock")


def test_two_pipelines_leave_one_consistent_set(tiny_dir: Path) -> None:
    """A is slowed down while it holds the lock; B, started then with other inputs, waits and writes after it."""
    other = tiny_interactions()
    other = other[other.user_id != 2]
    other.to_parquet(tiny_dir / "data/other.parquet", index=False)
    release = tiny_dir / "release-a"
    env = {**os.environ, "HOLD_UNTIL_FILE": str(release)}
    env.pop("REKKO_API_KEY", None)
    a = subprocess.Popen([sys.executable, "-c", SLOW_PIPELINE, "pipeline"], cwd=tiny_dir, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    b = None
    try:
        _wait_for_lock_holder(tiny_dir / "matrix/.rekko.lock", a.pid)
        b = subprocess.Popen([sys.executable, "-m", "rekko", "pipeline", "--interactions", "data/other.parquet"],
                             cwd=tiny_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        waiting = ""
        while "is locked by pid" not in waiting:  # B found the lock held, however slow the machine is
            line = b.stderr.readline()
            if not line:
                break
            waiting += line
        release.touch()
        b_out, b_rest = b.communicate(timeout=120)
        a_out, a_err = a.communicate(timeout=120)
    finally:
        release.touch()
        a.kill()
        if b is not None:
            b.kill()
    assert a.returncode == 0, a_err
    assert b.returncode == 0, waiting + b_rest
    assert f"is locked by pid {a.pid}" in waiting and "waiting up to 60 s" in waiting
    manifest = read_manifest(tiny_dir / "matrix/manifest.json")
    assert manifest.inputs["interactions"]["path"] == "data/other.parquet"  # B wrote last, whole
    for role, entry in manifest.artifacts.items():
        assert sha256_file(tiny_dir / entry["path"]) == entry["sha256"], role
    assert 2 not in set(pd.read_parquet(tiny_dir / "data/interactions_upd.parquet").user_id)
    assert run_cli(["recommend", "-u", "1", "--no-pred"], tiny_dir).returncode == 0


def test_temp_files_of_a_killed_run_are_removed_by_the_next_run(built: Path) -> None:
    env = {**os.environ, "DIE_AFTER_STAGING": "5"}
    env.pop("REKKO_API_KEY", None)
    killed = subprocess.run([sys.executable, "-c", SLOW_PIPELINE, "pipeline"], cwd=built, env=env,
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL
    left = sorted(built.rglob("*.tmp"))
    assert len(left) == 5, left  # four tables and cos_sim_md.pkl, staged but never renamed
    assert run_cli(["recommend", "-u", "1", "--no-pred"], built).returncode == 0  # the old set is intact
    proc = run_cli(["pipeline"], built)
    assert proc.returncode == 0, proc.stderr
    assert "removed 5 temporary files left by an interrupted run" in proc.stderr
    assert not list(built.rglob("*.tmp"))


def test_only_temp_files_whose_writer_is_gone_are_removed(built: Path) -> None:
    dead_pid = 4_194_304 + 7  # above Linux's largest pid_max: no such process
    dead = built / "matrix" / f".cos_sim_md.pkl.{dead_pid}.abc123.tmp"
    legacy = built / "data" / ".movies_rd.parquet.k2j4h5g6.tmp"  # an older rekko's name, without a pid
    alive = built / "data" / f".int_coef.parquet.{os.getpid()}.abc123.tmp"  # this test process is alive
    unrelated = built / "data" / f".api_cache.parquet.{dead_pid}.abc123.tmp"  # not a pipeline output
    for path in (dead, legacy, alive, unrelated):
        path.write_bytes(b"partial")
    proc = run_cli(["pipeline"], built)
    assert proc.returncode == 0, proc.stderr
    assert not dead.exists() and not legacy.exists()
    assert alive.exists() and unrelated.exists()
    assert "removed 2 temporary files" in proc.stderr
