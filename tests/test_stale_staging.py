"""Issue 18, item 16: a batch killed with SIGKILL leaves ``.<name>.staging-*/`` beside its output; the next run
removes it, but only staging folders provably not in use (their run's ``flock`` is free)."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from rekko.recommend.batch_output import STAGE_LOCK, DatasetStage, remove_stale_stages, write_part
from tests.conftest import REPO, run_cli

MEMORY_LIMIT = 2 * 2**30

#: A batch that stages one part and then waits (to be killed, or to be seen running).
CHILD = """
import sys, time
from pathlib import Path
import pandas as pd
from rekko.recommend.batch_output import DatasetStage, write_part
stage = DatasetStage(Path(sys.argv[1])).__enter__()
write_part([pd.DataFrame({"user_id": [1], "movie_id": ["m1"], "score": [1.0], "rank": [1]})], stage.part_path(0))
print(stage.path, flush=True)
time.sleep(120)
"""


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _start_batch(target: Path) -> tuple[subprocess.Popen[str], Path]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(target)], stdout=subprocess.PIPE, text=True,
                             env=env, preexec_fn=_limited)
    line = child.stdout.readline().strip()
    assert line, "the child batch did not start"
    return child, Path(line)


def _stages(target: Path) -> list[Path]:
    return sorted(target.parent.glob(f".{target.name}.staging-*"))


def _publish(target: Path) -> None:
    frame = pd.DataFrame({"user_id": [2], "movie_id": ["m2"], "score": [0.5], "rank": [1]})
    with DatasetStage(target) as stage:
        stage.publish([write_part([frame], stage.part_path(0))], {})


def test_a_sigkilled_batchs_staging_folder_is_removed_by_the_next_run(tmp_path):
    target = tmp_path / "recs"
    child, staged = _start_batch(target)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert staged.is_dir() and (staged / "part-00000.parquet").exists()
    _publish(target)
    assert not staged.exists()
    assert _stages(target) == []
    assert pd.read_parquet(target)["user_id"].tolist() == [2]
    assert not (target / STAGE_LOCK).exists()


def test_a_running_batchs_staging_folder_is_kept(tmp_path):
    target = tmp_path / "recs"
    child, staged = _start_batch(target)
    try:
        _publish(target)
        assert remove_stale_stages(target) == []
        assert _stages(target) == [staged] and (staged / "part-00000.parquet").exists()
    finally:
        child.kill()
        child.wait(timeout=30)
    assert remove_stale_stages(target) == [staged]


def test_a_staging_folder_without_a_lock_file_is_kept(tmp_path):
    target = tmp_path / "recs"
    legacy = tmp_path / ".recs.staging-0123456789ab"
    legacy.mkdir()
    (legacy / "part-00000.parquet").write_bytes(b"partial")
    _publish(target)
    assert legacy.is_dir()


def test_only_this_outputs_staging_folders_are_touched(tmp_path):
    child, staged = _start_batch(tmp_path / "other")
    child.kill()
    child.wait(timeout=30)
    _publish(tmp_path / "recs")
    assert staged.is_dir()


def test_the_cli_batch_removes_a_killed_runs_staging_folder(tiny_dir):
    assert run_cli(["pipeline"], cwd=tiny_dir).returncode == 0
    target = tiny_dir / "recs"
    child, staged = _start_batch(target)
    child.kill()
    child.wait(timeout=30)
    started = time.monotonic()
    run = run_cli(["recommend", "--all-users", "-n", "2", "--output", "recs/"], cwd=tiny_dir)
    assert run.returncode == 0, run.stderr
    assert time.monotonic() - started < 120
    assert not staged.exists() and _stages(target) == []
    assert "removed 1 staging folder" in run.stderr
