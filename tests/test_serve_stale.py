"""Folders left by killed servers: removed at the next start, and only when their server is really gone."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

pytest.importorskip("fastapi", reason="rekko[serve] is not installed")
pytest.importorskip("uvicorn", reason="rekko[serve] is not installed")

from rekko.serve.shared import FOLDER_PREFIX, PIDFILE, Owner, remove_stale_folders  # noqa: E402
from tests.serve_process import group_alive, serve_env, start, stop  # noqa: E402
from tests.serve_support import build_artifacts, free_port, get, wait_for  # noqa: E402

HOST = socket.gethostname()


def folder(parent, name: str, owner: Owner | None = None):
    path = parent / name
    path.mkdir()
    (path / "bundle").mkdir()  # something to delete
    if owner is not None:
        owner.write(path, "127.0.0.1:80")
    return path


def dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return int(proc.stdout)


def test_the_pid_file_names_this_process_first():
    me = Owner.this_process()
    assert me.pid == os.getpid() and me.host == HOST and me.alive()


def test_only_folders_whose_server_is_gone_are_removed(tmp_path):
    me = Owner.this_process()
    zombie = subprocess.Popen(["sleep", "60"])
    zombie.kill()
    time.sleep(0.3)  # killed, not yet reaped: a zombie still answers kill(pid, 0)
    try:
        gone = {
            "dead": folder(tmp_path, f"{FOLDER_PREFIX}dead", Owner(dead_pid(), "-", HOST)),
            "recycled": folder(tmp_path, f"{FOLDER_PREFIX}recycled", Owner(me.pid, "1", HOST)),  # same pid, other start
            "zombie": folder(tmp_path, f"{FOLDER_PREFIX}zombie", Owner(zombie.pid, "-", HOST)),
        }
        kept = {
            "live": folder(tmp_path, f"{FOLDER_PREFIX}live", me),
            "other host": folder(tmp_path, f"{FOLDER_PREFIX}remote", Owner(dead_pid(), "-", "another-machine")),
            "no pid file": folder(tmp_path, f"{FOLDER_PREFIX}old"),  # an older rekko, or a server starting now
            "not ours": folder(tmp_path, "something-else", Owner(dead_pid(), "-", HOST)),
        }
        half = folder(tmp_path, f"{FOLDER_PREFIX}half")
        (half / PIDFILE).write_text("12")  # unreadable: left alone
        kept["half-written"] = half
        target = folder(tmp_path, "target", Owner(dead_pid(), "-", HOST))
        (tmp_path / f"{FOLDER_PREFIX}link").symlink_to(target, target_is_directory=True)
        (tmp_path / f"{FOLDER_PREFIX}file").write_text("x")

        removed = remove_stale_folders(tmp_path)
    finally:
        zombie.wait()
    assert sorted(removed) == sorted(gone.values())
    assert not any(p.exists() for p in gone.values())
    assert all(p.is_dir() for p in kept.values())
    assert (target / "bundle").is_dir() and (tmp_path / f"{FOLDER_PREFIX}file").exists()
    assert remove_stale_folders(tmp_path / "missing") == []


def test_a_sigkilled_server_leaves_its_folder_and_the_next_start_removes_it(tmp_path):
    """SIGKILL the parent of ``--workers 2``: its workers follow, and the next start removes its folder."""
    paths = build_artifacts(tmp_path / "gen")
    scratch = tmp_path / "tmp"  # where the serving bundles go (tempfile honours TMPDIR)
    scratch.mkdir()
    env = serve_env(TMPDIR=str(scratch))
    port = free_port()
    args = ("--host", "127.0.0.1", "--log-level", "warning")

    first = start(paths, *args, "--workers", "2", cwd=tmp_path, env=env, port=port)
    [left] = list(scratch.iterdir())
    assert left.name.startswith(FOLDER_PREFIX) and Owner.read(left).pid == first.proc.pid
    os.kill(first.proc.pid, signal.SIGKILL)
    first.proc.wait(timeout=10)
    assert left.is_dir()  # no finally ran
    # the orphaned workers notice and shut down: they would hold the port and the folder
    assert wait_for(lambda: not group_alive(first.proc.pid), timeout=20, interval=0.2), group_alive(first.proc.pid)

    second = start(paths, *args, cwd=tmp_path, env=env, port=port)  # the same port: free again
    third = None
    try:
        assert not left.exists()
        [mine] = list(scratch.iterdir())
        assert Owner.read(mine).pid == second.proc.pid
        lines = (mine / PIDFILE).read_text().splitlines()
        assert lines[0] == str(second.proc.pid) and lines[2] == HOST and lines[4] == f"127.0.0.1:{port}"

        third = start(paths, *args, cwd=tmp_path, env=env)  # a live server's folder is never touched
        assert mine.is_dir() and len(list(scratch.iterdir())) == 2
        assert get(f"{second.url}/recommendations/1?n=2")[0] == 200
        assert stop(third) == 0
        assert [p.name for p in scratch.iterdir()] == [mine.name]
    finally:
        for served in (third, second):
            if served is not None and served.proc.poll() is None:
                stop(served)
    assert not list(scratch.iterdir())
    assert "Traceback" not in second.log()
