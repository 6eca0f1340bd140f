"""Unwritable output folders: exit 2 naming the folder, before anything is removed, the old set still usable.

chmod does not stop root, and these tests often run as root: there the CLI runs
as an unprivileged uid through ``setpriv`` (util-linux), on a work folder that
uid owns. Where neither works the permission tests skip and say why; the
"folder is a file" case needs no privileges and always runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_cli, write_inputs

NOBODY = 65534


def as_unprivileged(cmd: list[str]) -> list[str] | None:
    """``cmd`` run as a uid that permission bits apply to: ourselves, or nobody when we are root."""
    if os.geteuid() != 0:
        return cmd
    if shutil.which("setpriv") is None:
        return None
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--", *cmd]


def rekko_as_unprivileged(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    cmd = as_unprivileged([sys.executable, "-m", "rekko", *args])
    assert cmd is not None
    env = {k: v for k, v in os.environ.items() if k != "REKKO_API_KEY"}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=180)


@pytest.fixture
def work() -> Iterator[Path]:
    """A built artifact set in a folder the unprivileged uid owns (not tmp_path: its parents are private)."""
    probe = as_unprivileged([sys.executable, "-c", "import rekko.cli"])
    if probe is None:
        pytest.skip("running as root without setpriv: chmod cannot stop root, so there is nothing to test")
    if subprocess.run(probe, capture_output=True, timeout=60).returncode != 0:
        pytest.skip("the unprivileged uid cannot run this Python/rekko install")
    root = Path(tempfile.mkdtemp(prefix="rekko-outputs-"))
    try:
        root.chmod(0o755)
        write_inputs(root)
        proc = run_cli(["pipeline"], root)
        assert proc.returncode == 0, proc.stderr
        if os.geteuid() == 0:
            for path in (root, *root.rglob("*")):
                os.chown(path, NOBODY, NOBODY, follow_symlinks=False)
        yield root
    finally:
        for path in (root, *root.rglob("*")):
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)
        shutil.rmtree(root)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("folder", ["data", "matrix"])
def test_read_only_output_folder_exits_2_and_the_old_set_stays_usable(work: Path, folder: str) -> None:
    before = snapshot(work)
    (work / folder).chmod(0o555)
    proc = rekko_as_unprivileged(["pipeline"], work)
    assert proc.returncode == 2, proc.stderr
    assert f"folder {folder} is not writable" in proc.stderr and "previous artifacts are unchanged" in proc.stderr
    assert "unexpected error" not in proc.stderr
    assert snapshot(work) == before
    rec = rekko_as_unprivileged(["recommend", "-u", "1", "-n", "2", "--no-pred"], work)
    assert rec.returncode == 0, rec.stderr
    assert "Top 2 movies for user 1" in rec.stdout


def test_read_only_pred_folder_exits_2_naming_it(work: Path) -> None:
    (work / "pred").mkdir()
    (work / "pred").chmod(0o555)
    proc = rekko_as_unprivileged(["recommend", "-u", "1", "-n", "2"], work)
    assert proc.returncode == 2, proc.stderr
    assert "folder pred is not writable" in proc.stderr and "unexpected error" not in proc.stderr


def test_read_only_matrix_with_an_output_elsewhere_still_refused(work: Path) -> None:
    """data/ writable, matrix/ read-only: the check covers every folder before the first one is written."""
    before = snapshot(work)
    (work / "matrix").chmod(0o555)
    proc = rekko_as_unprivileged(["pipeline", "--movies-rd", "data/new_rd.parquet"], work)
    assert proc.returncode == 2, proc.stderr
    assert snapshot(work) == before


def test_output_folder_that_is_a_file_exits_2_and_keeps_the_old_set(tmp_path: Path) -> None:
    """Needs no privileges: a path under a regular file cannot be written by anybody, root included."""
    root = write_inputs(tmp_path)
    assert run_cli(["pipeline"], root).returncode == 0
    (root / "blocker").write_text("a file, not a folder")
    before = snapshot(root)
    proc = run_cli(["pipeline", "--movies-rd", "blocker/movies_rd.parquet"], root)
    assert proc.returncode == 2, proc.stderr
    assert "blocker is a file, not a folder" in proc.stderr
    assert snapshot(root) == before
    assert run_cli(["recommend", "-u", "1", "--no-pred"], root).returncode == 0
