"""Issue 18, item 3: a failed or killed publish never loses the old set or its manifest."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import rekko.io
from rekko.build import run_pipeline
from rekko.exceptions import OutputPathError
from rekko.io import StagedFiles, check_replaceable
from rekko.paths import PipelinePaths
from rekko.recommend import Recommender, load_artifacts
from tests.conftest import run_cli, write_inputs


def paths_in(root: Path) -> PipelinePaths:
    d = PipelinePaths()
    return PipelinePaths(**{f: root / getattr(d, f) for f in d.__dataclass_fields__})


def _set_bytes(paths: PipelinePaths) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in paths.outputs().values() if p.exists() and p != paths.lock}


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def _recommend_cli(root: Path) -> subprocess.CompletedProcess[str]:
    return run_cli(["recommend", "-u", "1", "-n", "3", "--format", "json", "--no-pred"], cwd=root, timeout=120)


def test_a_rename_refused_with_eperm_puts_the_old_set_back(tiny_dir, monkeypatch):
    paths = paths_in(tiny_dir)
    run_pipeline(paths)
    before = _set_bytes(paths)
    real_replace = os.replace

    def refuse_sim_desc(src, dst):
        if Path(dst).name == paths.sim_desc.name:
            raise PermissionError(errno.EPERM, "Operation not permitted", str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(rekko.io.os, "replace", refuse_sim_desc)
    with pytest.raises(PermissionError):
        run_pipeline(paths)
    monkeypatch.undo()
    assert _set_bytes(paths) == before  # every file, the manifest included, is the old one
    assert not _leftovers(tiny_dir)
    Recommender(load_artifacts(paths.artifacts())).recommend(1, 3)


def test_there_is_always_a_manifest_and_it_is_replaced_last(tiny_dir, monkeypatch):
    paths = paths_in(tiny_dir)
    run_pipeline(paths)
    old_manifest = paths.manifest.read_bytes()
    real_replace, seen = os.replace, []

    def watch(src, dst):
        seen.append((Path(dst).name, paths.manifest.exists(), paths.manifest.read_bytes() == old_manifest))
        real_replace(src, dst)

    monkeypatch.setattr(rekko.io.os, "replace", watch)
    run_pipeline(paths)
    monkeypatch.undo()
    assert seen[-1][0] == "manifest.json"
    assert all(exists and still_old for _, exists, still_old in seen)  # the old manifest until the last rename


_KILL_AT = r"""
import os, signal, sys
import rekko.io

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

if sys.argv[1] == "fsync":
    rekko.io._fsync_path = die
else:
    rekko.io.os.replace = die
from rekko.cli import main
sys.exit(main(["pipeline"]))
"""


@pytest.mark.parametrize("hook", ["fsync", "first-rename"])
def test_kill_9_during_the_final_flush_keeps_the_old_set_servable(tiny_dir, hook):
    assert run_cli(["pipeline"], cwd=tiny_dir).returncode == 0
    expected = _recommend_cli(tiny_dir)
    assert expected.returncode == 0, expected.stderr
    paths = paths_in(tiny_dir)
    before = _set_bytes(paths)
    killed = subprocess.run([sys.executable, "-c", _KILL_AT, hook], cwd=tiny_dir, capture_output=True, text=True,
                            timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert _set_bytes(paths) == before
    again = _recommend_cli(tiny_dir)
    assert again.returncode == 0, again.stderr
    assert again.stdout == expected.stdout
    rerun = run_cli(["pipeline"], cwd=tiny_dir)  # the next run cleans up what the killed one left
    assert rerun.returncode == 0, rerun.stderr
    assert not _leftovers(tiny_dir)


def test_a_file_another_uid_owns_in_a_sticky_folder_is_refused_before_anything(tmp_path, monkeypatch):
    folder = tmp_path / "shared"
    folder.mkdir()
    os.chmod(folder, 0o1777)
    target = folder / "movies_md_upd.parquet"
    target.write_bytes(b"old")
    me = os.geteuid()
    stranger = 4242 if me != 4242 else 4343
    if me == 0:
        os.chown(target, stranger, -1)
        os.chown(folder, stranger, -1)
        monkeypatch.setattr(rekko.io.os, "geteuid", lambda: 65534)
    else:
        pytest.skip("needs root to give a file to another uid")
    with pytest.raises(OutputPathError, match=r"belongs to uid 4242.*sticky"):
        check_replaceable([target])
    with StagedFiles() as staged:
        staged.stage(target).write_bytes(b"new")
        with pytest.raises(OutputPathError, match="sticky"):
            staged.publish()
    assert target.read_bytes() == b"old"
    assert [p.name for p in folder.iterdir()] == [target.name]
    # the owner of the folder, or the file's owner, may replace it
    monkeypatch.setattr(rekko.io.os, "geteuid", lambda: stranger)
    check_replaceable([target])


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_a_pipeline_run_as_another_uid_in_a_sticky_data_folder_exits_2_and_keeps_the_set():
    """The issue's case for real: data/ mode 1777 holds uid 4242's artifacts, the run is as nobody."""
    root = Path(tempfile.mkdtemp(prefix="rekko-sticky-"))
    try:
        os.chmod(root, 0o755)
        write_inputs(root)
        assert run_cli(["pipeline"], cwd=root).returncode == 0
        paths = paths_in(root)
        for folder in (root / "data", root / "matrix"):
            os.chmod(folder, 0o1777)
            for p in folder.iterdir():
                os.chown(p, 4242, 4242)
                os.chmod(p, 0o644)
            os.chown(folder, 4242, 4242)
        before = _set_bytes(paths)
        env = {**os.environ, "HOME": str(root), "NUMBA_CACHE_DIR": str(root / "numba")}
        run = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                              sys.executable, "-m", "rekko", "pipeline", "--lock-timeout", "5"],
                             cwd=root, env=env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 2, run.stderr
        assert "sticky" in run.stderr and "4242" in run.stderr
        assert _set_bytes(paths) == before
        assert not _leftovers(root)
        rec = _recommend_cli(root)
        assert rec.returncode == 0, rec.stderr
    finally:
        shutil.rmtree(root, ignore_errors=True)
