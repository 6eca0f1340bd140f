"""Issue 18, item 20: conflicting recommend options are refused (exit 2), not silently dropped."""

from __future__ import annotations

import pytest

from tests.conftest import run_cli


@pytest.mark.parametrize("args, needle", [
    (["-u", "1", "--all-users", "--output", "x.parquet"], "--all-users"),
    (["--user-id", "1", "--output", "x.csv"], "--output is for --all-users"),
])
def test_conflicting_options_exit_2_and_write_nothing(tiny_dir, args, needle):
    run = run_cli(["recommend", *args], cwd=tiny_dir)
    assert run.returncode == 2, run.stderr
    assert needle in run.stderr
    assert not (tiny_dir / "x.parquet").exists() and not (tiny_dir / "x.csv").exists()
    assert not (tiny_dir / "pred").exists()
