"""Issue 18, item 5: xlsx shared-string amplification. Cells that all reference one long shared string are a
small file that parses into gigabytes (5,000 cells x one 100 KB string: a 147 KB file, 2.25 GB of memory).
The text the cells would hold is counted from the zip, streaming, before any parser runs: exit 2 naming the file."""

from __future__ import annotations

import os
import random
import resource
import string
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from rekko.exceptions import InputFileError
from rekko.io import check_xlsx_archive, read_table
from tests.conftest import REPO, tiny_ratings, write_inputs

MEMORY_LIMIT = 2 * 2**30
MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
PKG = "http://schemas.openxmlformats.org/package/2006/relationships"


def _column(i: int) -> str:
    return "ABC"[i]


def write_shared_xlsx(path: Path, strings: list[str], rows: list[list[int]], *,
                      sst_name: str = "sharedStrings.xml") -> Path:
    """A minimal workbook whose cells are all shared-string references (``rows`` hold string indexes)."""
    sst = "".join(f"<si><t>{s}</t></si>" for s in strings)
    sheet_rows = "".join(
        f'<row r="{r + 1}">' + "".join(f'<c r="{_column(c)}{r + 1}" t="s"><v>{v}</v></c>' for c, v in enumerate(row))
        + "</row>" for r, row in enumerate(rows))
    files = {
        "[Content_Types].xml": (
            '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
            'content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
            'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.'
            'spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
            f'<Override PartName="/xl/{sst_name}" ContentType="application/vnd.openxmlformats-officedocument.'
            'spreadsheetml.sharedStrings+xml"/></Types>'),
        "_rels/.rels": (f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{PKG}"><Relationship Id="rId1" '
                        f'Type="{REL}/officeDocument" Target="xl/workbook.xml"/></Relationships>'),
        "xl/workbook.xml": (f'<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="{MAIN}" xmlns:r="{REL}"><sheets>'
                            '<sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>'),
        "xl/_rels/workbook.xml.rels": (
            f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{PKG}">'
            f'<Relationship Id="rId1" Type="{REL}/worksheet" Target="worksheets/sheet1.xml"/>'
            f'<Relationship Id="rId2" Type="{REL}/sharedStrings" Target="{sst_name}"/></Relationships>'),
        f"xl/{sst_name}": (f'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="{MAIN}" count="{len(strings)}" '
                           f'uniqueCount="{len(strings)}">{sst}</sst>'),
        "xl/worksheets/sheet1.xml": (f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{MAIN}"><sheetData>'
                                     f"{sheet_rows}</sheetData></worksheet>"),
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in files.items():
            z.writestr(name, text)
    return path


def bomb(path: Path, cells: int = 5_000, size: int = 100_000, **kwargs: str) -> Path:
    """The issue's file: a header row, then ``cells`` rows whose description is one ``size``-character string
    (random letters: it compresses like text, so the zip's ratio checks pass it)."""
    text = "".join(random.Random(0).choices(string.ascii_letters + "ЖБДЛ ", k=size))
    strings = ["name", "rating", "description", "x", "1", text]
    return write_shared_xlsx(path, strings, [[0, 1, 2]] + [[3, 4, 5]] * cells, **kwargs)


def test_a_small_shared_string_workbook_reads_as_before(tmp_path):
    book = write_shared_xlsx(tmp_path / "ok.xlsx", ["name", "rating", "description", "Брат", "8.3", "Данила"],
                             [[0, 1, 2], [3, 4, 5], [3, 4, 5]])
    df = read_table(book, what="ratings")
    assert df.to_dict("list") == {"name": ["Брат", "Брат"], "rating": [8.3, 8.3], "description": ["Данила"] * 2}


def test_the_issues_bomb_is_refused_before_parsing_naming_the_file(tmp_path):
    book = bomb(tmp_path / "bomb.xlsx")
    assert book.stat().st_size < 200_000
    started = time.monotonic()
    # the zip checks alone, in this process: without the count they pass and nothing inflates the cells here
    with pytest.raises(InputFileError, match=r"bomb\.xlsx: refusing to read ratings as xlsx: its cells would hold "
                                             r"more than 100,000,000 characters"):
        check_xlsx_archive(book, what="ratings")
    assert time.monotonic() - started < 20


def test_the_limit_counts_cells_times_referenced_lengths(tmp_path):
    book = bomb(tmp_path / "b.xlsx", cells=100, size=1_000)  # 100,000 characters of descriptions (plus a few)
    check_xlsx_archive(book, max_text=101_000)
    with pytest.raises(InputFileError, match="would hold more than 99,000 characters"):
        check_xlsx_archive(book, max_text=99_000)


def test_a_shared_strings_part_under_another_name_is_found_through_the_relationships(tmp_path):
    book = bomb(tmp_path / "renamed.xlsx", cells=100, size=1_000, sst_name="strings-elsewhere.xml")
    with pytest.raises(InputFileError, match="would hold more than"):
        check_xlsx_archive(book, max_text=50_000)


def test_real_workbooks_pass(tmp_path):
    path = write_inputs(tmp_path) / "data" / "Movies_r_d.xlsx"  # openpyxl's writer, the seed's format
    check_xlsx_archive(path, max_text=10_000)
    assert len(read_table(path)) == len(tiny_ratings())
    sample = REPO / "data" / "Movies_r_d.xlsx"
    if sample.exists():
        check_xlsx_archive(sample)


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def test_the_pipeline_exits_2_on_the_bomb_in_bounded_memory(tmp_path):
    root = write_inputs(tmp_path)
    bomb(root / "data" / "Movies_r_d.xlsx")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("REKKO_API_KEY", None)
    run = subprocess.run([sys.executable, "-m", "rekko", "pipeline"], cwd=root, capture_output=True, text=True,
                         timeout=120, preexec_fn=_limited, env=env)
    assert run.returncode == 2, run.stderr[-2000:]
    assert "Movies_r_d.xlsx" in run.stderr and "shared strings" in run.stderr
    assert pd.io.common.file_exists(str(root / "data" / "Movies_r_d.xlsx"))
