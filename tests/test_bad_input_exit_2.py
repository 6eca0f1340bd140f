"""Issue 18, item 13 (remaining cases): bad input that used to end as exit 1 "unexpected error" is a domain
error (exit 2) naming the file, column or field: a 5,000,000-digit user id in a csv, a manifest whose layout
names a dtype that is not a plain number (``|O``, ``nonsense``), an input a Dask worker cannot read."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from rekko.exceptions import InputFileError
from rekko.ids import parse_user_id
from tests.conftest import REPO, run_cli, tiny_interactions

MEMORY_LIMIT = 3 * 2**30


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _rekko(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "rekko", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, preexec_fn=_limited, env=env)


def test_a_five_million_digit_user_id_in_a_csv_exits_2_naming_file_and_column(tiny_dir):
    lines = tiny_interactions().to_csv(index=False).splitlines()
    lines[2] = "9" * 5_000_000 + lines[2][1:]
    (tiny_dir / "data" / "big.csv").write_text("\n".join(lines) + "\n")
    run = _rekko(["pipeline", "--interactions", "data/big.csv"], tiny_dir)
    assert run.returncode == 2, run.stderr[-2000:]
    assert "big.csv" in run.stderr and "user id out of range" in run.stderr and "'user_id'" in run.stderr
    assert "unexpected error" not in run.stderr
    assert len(run.stderr) < 10_000


@pytest.mark.parametrize("make", [lambda: "9" * 5_000_000, lambda: "-" + "1" * 20, lambda: "+" + "0" * 30 + "5",
                                  lambda: 10**5000], ids=["5M-digit-text", "20-digit-text", "padded-five", "huge-int"])
def test_parse_user_id_answers_huge_numbers_with_a_short_message(make):
    value = make()
    expected = 5 if isinstance(value, str) and value.startswith("+") else None
    answer = parse_user_id(value)
    if expected is not None:
        assert answer == expected
    else:
        assert isinstance(answer, str) and "out of range" in answer and len(answer) < 400


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from tests.conftest import write_inputs

    root = write_inputs(tmp_path_factory.mktemp("built"))
    assert run_cli(["pipeline"], cwd=root).returncode == 0
    return root


@pytest.mark.parametrize("dtype", ["|O", "nonsense", "<U4", "V8", 7])
def test_a_manifest_layout_with_a_non_numeric_dtype_exits_2(built, tmp_path, dtype):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(built, root)
    manifest = root / "matrix" / "manifest.json"
    raw = json.loads(manifest.read_text())
    role = next(r for r, e in raw["artifacts"].items() if "layout" in e)
    raw["artifacts"][role]["layout"]["data"]["dtype"] = dtype
    manifest.write_text(json.dumps(raw))
    run = _rekko(["recommend", "-u", "1", "--no-pred"], root)
    assert run.returncode == 2, run.stderr[-2000:]
    assert f"artifacts.{role}.layout" in run.stderr and "Rerun the pipeline" in run.stderr
    assert "unexpected error" not in run.stderr


def test_an_input_in_a_folder_the_reader_may_not_enter_is_bad_input_naming_the_part(tmp_path, monkeypatch):
    """A worker running as another uid: ``stat`` of the part fails with EACCES (simulated; the tests run as root)."""
    import pathlib

    import pandas as pd

    from rekko.distributed.pipeline import read_indexed_part
    from rekko.io import read_table
    from rekko.pipeline.sources import Part

    part = tmp_path / "private" / "part-0.parquet"
    part.parent.mkdir()
    tiny_interactions().to_parquet(part, index=False)
    real_stat = pathlib.Path.stat

    def stat(self, *args, **kwargs):
        if str(self).startswith(str(part.parent)):
            raise PermissionError(13, "Permission denied", str(self))
        return real_stat(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "stat", stat)
    with pytest.raises(InputFileError, match=r"part-0.parquet: cannot read the interactions file as uid \d+: "
                                             "Permission denied"):
        read_table(part, what="interactions")
    with pytest.raises(InputFileError, match="part-0.parquet"):
        read_indexed_part(Part(str(part)), pd.Index(["m1"]))


def test_a_worker_oserror_becomes_an_input_file_error(monkeypatch):
    import pandas as pd

    import rekko.distributed.pipeline as dp
    from rekko.pipeline.sources import Part

    def refuse(part):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(dp, "load_part", refuse)
    with pytest.raises(InputFileError, match="part-0.parquet: a Dask worker .* cannot read"):
        dp.read_indexed_part(Part("/x/part-0.parquet"), pd.Index(["m1"]))
