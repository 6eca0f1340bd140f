"""Issue 18, item 11: an input too big for memory is refused before it is read (exit 2, with its size and the
limit) instead of growing until the OOM killer ends the process; ``--max-input-bytes`` sets the limit."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rekko.exceptions import InputFileError
from rekko.io import MAX_INPUT_ENV, available_memory, read_table
from tests.conftest import REPO, tiny_interactions

MEMORY_LIMIT = 2 * 2**30


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _pipeline(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop(MAX_INPUT_ENV, None)
    env.pop("REKKO_API_KEY", None)
    return subprocess.run([sys.executable, "-m", "rekko", "pipeline", *extra], cwd=root, capture_output=True,
                          text=True, timeout=120, preexec_fn=_limited, env=env)


def test_a_sparse_csv_larger_than_the_memory_limit_exits_2_at_once(tiny_dir):
    huge = tiny_dir / "data" / "huge.csv"
    with open(huge, "wb") as fh:  # sparse: 20 GB apparent, nothing on disk
        fh.write(tiny_interactions().to_csv(index=False).encode())
        fh.truncate(20 * 2**30)
    started = time.monotonic()
    run = _pipeline(tiny_dir, "--interactions", "data/huge.csv")
    assert run.returncode == 2, run.stderr[-2000:]
    assert "huge.csv" in run.stderr and "21,474,836,480 bytes" in run.stderr and "--max-input-bytes" in run.stderr
    assert time.monotonic() - started < 60


def test_max_input_bytes_sets_the_limit(tiny_dir):
    run = _pipeline(tiny_dir, "--max-input-bytes", "100")
    assert run.returncode == 2 and "more than the limit set by --max-input-bytes" in run.stderr, run.stderr
    assert _pipeline(tiny_dir, "--max-input-bytes", "1G").returncode == 0


def test_bad_max_input_bytes_is_an_argument_error(tiny_dir):
    run = _pipeline(tiny_dir, "--max-input-bytes", "lots")
    assert run.returncode == 2 and "500M or 40G" in run.stderr


def test_a_parquet_file_counts_uncompressed(tmp_path, monkeypatch):
    path = tmp_path / "zeros.parquet"
    import pandas as pd

    pd.DataFrame({"x": [0] * 1_000_000}).to_parquet(path)  # compresses to a few KB
    assert path.stat().st_size < 100_000
    monkeypatch.setenv(MAX_INPUT_ENV, "1000000")
    with pytest.raises(InputFileError, match="uncompressed, from its parquet footer"):
        read_table(path)
    monkeypatch.setenv(MAX_INPUT_ENV, "0")
    assert len(read_table(path)) == 1_000_000


def test_available_memory_sees_the_address_space_limit():
    code = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (2**31, 2**31)); "
            "from rekko.io import available_memory; print(available_memory())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert 0 < int(out.stdout) < 2**31, out.stderr
    assert available_memory() is None or available_memory() > 0
