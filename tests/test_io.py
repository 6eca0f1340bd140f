import os
import stat

import pandas as pd
import pytest

from rekko.io import atomic_open, read_table, write_table


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_open(target, "w") as fh:
            fh.write("new")
            raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["a.txt"]


@pytest.mark.parametrize("mask", [0o022, 0o002])
def test_written_files_follow_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        write_table(pd.DataFrame({"a": [1]}), tmp_path / "t.parquet")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "t.parquet").stat().st_mode) == 0o666 & ~mask


@pytest.mark.parametrize("ext", [".parquet", ".csv", ".xlsx"])
def test_round_trip_every_format(tmp_path, ext):
    df = pd.DataFrame({"title": ["Ёлки", "Брат"], "rating": [7.5, 8.3]})
    write_table(df, tmp_path / f"t{ext}")
    back = read_table(tmp_path / f"t{ext}")
    assert list(back["title"]) == ["Ёлки", "Брат"] and list(back["rating"]) == [7.5, 8.3]
