"""Issue 18, item 8: nothing rekko prints to a terminal carries control characters a terminal would obey."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

import pandas as pd

from rekko.exceptions import printable
from tests.conftest import run_cli

HOSTILE = {"m2": "\x1b]0;owned\x07Title", "m5": "\x1b[2JClear", "m3": "Nul\x00Byte\u202eevil"}
RAW = ("\x1b", "\x07", "\x00", "\u202e", "\x9b")


def _hostile(root) -> None:
    path = root / "data" / "movies_metdata.parquet"
    movies = pd.read_parquet(path)
    movies["title"] = [HOSTILE.get(m, t) for m, t in zip(movies.movie_id, movies.title)]
    movies.to_parquet(path, index=False)


def test_the_recommend_table_shows_control_characters_escaped(tiny_dir):
    _hostile(tiny_dir)
    assert run_cli(["pipeline"], cwd=tiny_dir).returncode == 0
    out = run_cli(["recommend", "-u", "1", "-n", "5", "--no-pred"], cwd=tiny_dir)
    assert out.returncode == 0, out.stderr
    assert not any(c in out.stdout + out.stderr for c in RAW)
    assert "\\x1b]0;owned\\x07Title" in out.stdout and "\\x1b[2JClear" in out.stdout
    # a pipe still gets the exact bytes in a machine format
    exact = run_cli(["recommend", "-u", "1", "-n", "5", "--no-pred", "--format", "csv"], cwd=tiny_dir)
    assert "\x1b]0;owned\x07Title" in exact.stdout


def test_csv_and_json_to_a_terminal_are_escaped(tiny_dir):
    _hostile(tiny_dir)
    assert run_cli(["pipeline"], cwd=tiny_dir).returncode == 0
    for fmt in ("csv", "json"):
        master, slave = pty.openpty()
        try:
            proc = subprocess.run([sys.executable, "-m", "rekko", "recommend", "-u", "1", "-n", "5", "--no-pred",
                                   "--format", fmt], cwd=tiny_dir, stdout=slave, stderr=subprocess.PIPE,
                                  timeout=120, env=os.environ.copy())
            os.close(slave)
            chunks = []
            while True:
                try:
                    block = os.read(master, 65536)
                except OSError:
                    break
                if not block:
                    break
                chunks.append(block)
        finally:
            os.close(master)
        assert proc.returncode == 0, proc.stderr
        shown = b"".join(chunks).decode("utf-8")
        assert "owned" in shown and not any(c in shown for c in RAW), (fmt, shown)


def test_error_messages_escape_what_they_quote(tiny_dir):
    evil = "\x1b[2J\x1b]0;pwned\x07"
    out = run_cli(["recommend", "-u", "1", "--sim-md", str(tiny_dir / evil / "cos_sim_md.pkl")], cwd=tiny_dir)
    assert out.returncode == 2
    assert not any(c in out.stderr for c in RAW), out.stderr
    assert printable(evil) in out.stderr


def test_printable_keeps_text_and_line_breaks():
    assert printable("Ёлки\nБрат 2\t!") == "Ёлки\nБрат 2\\x09!"
