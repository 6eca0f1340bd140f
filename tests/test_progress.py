"""Progress of long work: shown by the CLI by default, silenced by -q, never printed by the library alone."""

import logging
import re
import subprocess
import sys

from rekko import progress
from tests.conftest import REPO, run_cli

STAGES = ("ingest", "ratings", "features", "content similarity", "co-watching similarity", "write artifacts")


def test_pipeline_reports_each_stage_start_and_end_by_default(tiny_dir):
    proc = run_cli(["pipeline"], tiny_dir)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    for name in STAGES:
        start = lines.index(next(line for line in lines if line.startswith(f"rekko: {name} ...")))
        end = lines.index(next(line for line in lines if line.startswith(f"rekko: {name} done: ")))
        assert start < end, name
        assert re.search(r"\d+\.\d s$", lines[end]), lines[end]  # elapsed seconds last
    features = next(line for line in lines if line.startswith("rekko: features done: "))
    assert re.match(r"rekko: features done: [\d,]+ rows, [\d,]+ users, 1 dropped \(movie not in metadata\)", features), features
    assert "pipeline:" in proc.stdout  # the summary stays on stdout, the progress on stderr


def test_quiet_silences_progress_but_not_the_summary(tiny_dir):
    proc = run_cli(["-q", "pipeline"], tiny_dir)
    assert proc.returncode == 0, proc.stderr
    assert not [line for line in proc.stderr.splitlines() if " ..." in line or " done: " in line]
    assert "dropped 1 of" in proc.stderr  # warnings still show (the tiny data has one unknown movie)
    assert "pipeline:" in proc.stdout


def test_the_library_alone_prints_nothing(tiny_dir):
    code = "from rekko.build import run_pipeline; run_pipeline()"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tiny_dir, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert " done: " not in proc.stderr and "ingest ..." not in proc.stderr


def test_stage_reports_rows_facts_and_nothing_more_when_it_raises(caplog):
    with caplog.at_level(logging.INFO, logger="rekko.progress"):
        with progress.stage("demo", of=progress.count(12000, "rows")) as report:
            report.rows = 11520
            report.facts["users"] = 400
        try:
            with progress.stage("broken"):
                raise ValueError("x")
        except ValueError:
            pass
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "demo ... (12,000 rows)"
    assert re.fullmatch(r"demo done: 11,520 rows, 400 users, \d+\.\d s", messages[1])
    assert messages[2:] == ["broken ..."]


def test_track_without_terminal_writes_periodic_lines_and_nothing_when_quiet(caplog):
    with caplog.at_level(logging.INFO, logger="rekko.progress"):
        assert list(progress.track(range(5), total=5, desc="blocks", every=0.0)) == [0, 1, 2, 3, 4]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 5 and lines[-1].startswith("blocks: 5/5 steps")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rekko.progress"):
        assert list(progress.track(range(3), total=3, desc="blocks", every=0.0)) == [0, 1, 2]
    assert caplog.records == []
