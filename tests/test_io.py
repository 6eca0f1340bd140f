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


# -- zip bombs: an xlsx is a zip, checked before any parser inflates it ----------------------------
import zipfile  # noqa: E402

from rekko.exceptions import InputFileError  # noqa: E402
from rekko.io import check_xlsx_archive  # noqa: E402

SHEET_HEAD = (b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
              b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
              b'<row r="1"><c r="A1" t="inlineStr"><is><t>')
SHEET_TAIL = b"</t></is></c></row></sheetData></worksheet>"


def make_bomb_xlsx(path, cell_bytes: int = 20 << 20) -> None:
    """A real workbook whose first sheet is one header cell of ``cell_bytes`` 'A's: ~20 KB on disk.

    Built from an openpyxl workbook with the sheet swapped, so every parser accepts it as xlsx.
    """
    plain = path.with_name("plain.xlsx")
    pd.DataFrame({"name": ["x"], "rating": [1.0], "description": ["y"]}).to_excel(plain, index=False)
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            if item.filename == "xl/worksheets/sheet1.xml":
                dst.writestr(item.filename, SHEET_HEAD + b"A" * cell_bytes + SHEET_TAIL)
            else:
                dst.writestr(item, src.read(item))
    plain.unlink()


def test_xlsx_bomb_is_refused_by_its_compression_ratio(tmp_path):
    bomb = tmp_path / "bomb.xlsx"
    make_bomb_xlsx(bomb)
    assert bomb.stat().st_size < 100_000
    with pytest.raises(InputFileError) as err:
        read_table(bomb, what="ratings/descriptions")
    msg = str(err.value)
    assert msg.startswith(f"{bomb}: ") and "xl/worksheets/sheet1.xml" in msg and "zip bomb" in msg
    assert len(msg) < 600


def test_xlsx_declared_total_over_the_limit_is_refused(tmp_path):
    # ratios under 100 but more bytes in total than allowed (the limit lowered so the test stays small)
    book = tmp_path / "big.xlsx"
    pd.DataFrame({"name": [f"title {i}" for i in range(5000)], "rating": 7.0, "description": "d"}).to_excel(
        book, index=False)
    with pytest.raises(InputFileError, match=r"big\.xlsx: .*would inflate to .* bytes in total"):
        check_xlsx_archive(book, max_total=50_000)
    check_xlsx_archive(book)  # and the same file passes the real limits


def test_xlsx_member_that_lies_about_its_size_is_refused(tmp_path):
    """A central directory declaring fewer bytes than the member really inflates to."""
    liar = tmp_path / "liar.xlsx"
    payload = os.urandom(300_000)  # incompressible: the ratio check alone cannot see it
    with zipfile.ZipFile(liar, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("xl/worksheets/sheet1.xml", payload)
    data = bytearray(liar.read_bytes())
    central = data.rfind(b"PK\x01\x02")
    data[central + 24:central + 28] = (1000).to_bytes(4, "little")  # uncompressed size in the central directory
    liar.write_bytes(bytes(data))
    with pytest.raises(InputFileError, match=r"liar\.xlsx: .*more than the 1,000 bytes it declares"):
        check_xlsx_archive(liar)


def test_the_shipped_sample_xlsx_passes_the_archive_check():
    from tests.conftest import REPO

    sample = REPO / "data" / "Movies_r_d.xlsx"
    if not sample.exists():
        pytest.skip("embedded sample not generated")
    check_xlsx_archive(sample)


# -- staged writes, unwritable folders, stale temporary files ------------------------------------
from rekko.exceptions import OutputPathError  # noqa: E402
from rekko.io import StagedFiles, check_writable_folder, remove_stale_temp_files  # noqa: E402


def test_staged_files_replace_nothing_until_published(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "sub" / "b.txt"
    a.write_text("old a")
    with pytest.raises(RuntimeError):
        with StagedFiles() as staged:
            staged.stage(a).write_text("new a")
            staged.stage(b).write_text("new b")
            raise RuntimeError("crash before publishing")
    assert a.read_text() == "old a" and not b.exists()
    assert not list(tmp_path.rglob("*.tmp"))
    with StagedFiles() as staged:
        staged.stage(a).write_text("new a")
        staged.stage(b).write_text("new b")
        staged.publish()
    assert a.read_text() == "new a" and b.read_text() == "new b" and not list(tmp_path.rglob("*.tmp"))


def test_temp_names_carry_the_writer_pid(tmp_path):
    with StagedFiles() as staged:
        tmp = staged.stage(tmp_path / "x.parquet")
        assert tmp.name.startswith(f".x.parquet.{os.getpid()}.") and tmp.suffix == ".tmp"


def test_atomic_write_under_a_file_is_an_output_path_error(tmp_path):
    (tmp_path / "blocker").write_text("file")
    with pytest.raises(OutputPathError, match="blocker is not writable"):
        with atomic_open(tmp_path / "blocker" / "x.csv", "w") as fh:
            fh.write("never")


def test_writable_check_creates_nothing_unless_asked(tmp_path):
    check_writable_folder(tmp_path / "new" / "deeper", what="x", create=False)
    assert list(tmp_path.iterdir()) == []
    check_writable_folder(tmp_path / "new" / "deeper", what="x", create=True)
    assert (tmp_path / "new" / "deeper").is_dir() and list((tmp_path / "new" / "deeper").iterdir()) == []
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputPathError, match="is a file, not a folder"):
        check_writable_folder(tmp_path / "file" / "sub", what="x", create=False)


def test_stale_temp_removal_keeps_live_writers_and_other_names(tmp_path):
    target = tmp_path / "t.parquet"
    dead = tmp_path / f".t.parquet.{4_194_304 + 9}.aaaa.tmp"
    mine = tmp_path / f".t.parquet.{os.getpid()}.bbbb.tmp"  # this process: not writing it yet, so stale
    other = tmp_path / ".u.parquet.1.cccc.tmp"
    for p in (dead, mine, other):
        p.write_text("")
    assert sorted(remove_stale_temp_files([target])) == sorted([dead, mine])
    assert other.exists()
