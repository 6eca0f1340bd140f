"""Issue 18, item 15: two artifact sets that share the P4..P7 files in data/ but have their own P8 folders used to
take different locks (one per manifest folder): two concurrent pipelines both exited 0 and the first set was
broken. A pipeline now holds the lock of every folder it writes into, so the second one waits for the first."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from rekko.paths import LOCK_NAME, PipelinePaths
from tests.conftest import REPO
from tests.test_locking import SLOW_PIPELINE

OTHER_SET = ["--sim-md", "matrix2/cos_sim_md.pkl", "--sim-desc", "matrix2/cos_sim_desc.pkl"]


def _wait_for(lock: Path, pid: int, deadline: float = 90) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if lock.exists() and lock.read_text().split("\n", 1)[0] == str(pid):
            return
        time.sleep(0.05)
    raise AssertionError(f"the first pipeline never took {lock}")


def test_a_set_sharing_data_files_with_a_running_pipeline_waits_for_it(tiny_dir: Path) -> None:
    release = tiny_dir / "release-a"
    env = {**os.environ, "HOLD_UNTIL_FILE": str(release), "PYTHONPATH": str(REPO)}
    env.pop("REKKO_API_KEY", None)
    a = subprocess.Popen([sys.executable, "-c", SLOW_PIPELINE, "pipeline"], cwd=tiny_dir, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(tiny_dir / "matrix" / LOCK_NAME, a.pid)
        b = subprocess.run([sys.executable, "-m", "rekko", "pipeline", *OTHER_SET, "--lock-timeout", "1"],
                           cwd=tiny_dir, env=env, capture_output=True, text=True, timeout=120)
    finally:
        release.touch()
        a_out, a_err = a.communicate(timeout=120)
    assert a.returncode == 0, a_err
    assert b.returncode == 2, b.stderr
    assert f"locked by pid {a.pid}" in b.stderr and "data" in b.stderr
    assert not (tiny_dir / "matrix2" / "manifest.json").exists()


def test_write_locks_cover_every_output_folder_once_in_one_order(tmp_path: Path) -> None:
    paths = PipelinePaths.from_strings([None] * 7 + [str(tmp_path / "m/cos_sim_md.pkl"), None])
    locks = paths.write_locks()
    assert sorted(map(str, locks)) == sorted({str(p.parent / LOCK_NAME) for p in paths.outputs().values()})
    assert paths.lock in locks
    assert [os.path.realpath(p.parent) for p in locks] == sorted(os.path.realpath(p.parent) for p in locks)
