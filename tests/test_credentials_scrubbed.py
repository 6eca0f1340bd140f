"""Credentials never reach a message, a log line or an echoed command (issue 18, item 10).

``--interactions 's3://AKIAX:UrlSecret@bucket/logs/'`` had rekko mask its own
prefix but quote botocore's ``Invalid bucket name "AKIAX:UrlSecret@bucket"``;
``entrypoint.sh`` echoed ``REKKO_DASK_SCHEDULER`` with its password. (Scheduler
addresses with credentials: tests/test_dask_deadlines.py.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rekko.exceptions import InputError, register_secrets_in, scrub
from tests.conftest import write_inputs
from tests.test_entrypoint import run_entrypoint

SECRET = "UrlSecret"
KEY_ID = "AKIAX"


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REKKO_", "AWS_"))}
    # no credentials or metadata look-ups: the bucket name is refused before any network traffic
    env.update({"AWS_EC2_METADATA_DISABLED": "true", "AWS_ACCESS_KEY_ID": "testing-id",
                "AWS_SECRET_ACCESS_KEY": "testing-secret", **extra})
    return env


@pytest.mark.parametrize("verbose", [False, True])
def test_an_s3_url_with_credentials_is_never_quoted_back(tmp_path: Path, verbose: bool):
    pytest.importorskip("s3fs")
    write_inputs(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "rekko", *(["-v"] if verbose else []), "pipeline", "--no-tune",
         "--interactions", f"s3://{KEY_ID}:{SECRET}@bucket/logs/"],
        cwd=tmp_path, env=_clean_env(), capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr
    out = proc.stdout + proc.stderr
    assert SECRET not in out and f"{KEY_ID}:" not in out, out
    assert "***@bucket" in proc.stderr


def test_messages_and_log_lines_are_scrubbed_in_a_real_process(tmp_path: Path):
    """A library's log line and an exception text quoting the credentials without their URL."""
    code = (
        "import logging, sys\n"
        "from rekko import cli\n"
        "cli._register_secrets(sys.argv[1:])\n"
        "cli._setup_logging(verbose=True)\n"
        "logging.getLogger('botocore').warning('Invalid bucket name %r', 'AKIAX:UrlSecret@bucket')\n"
        "logging.getLogger('distributed').warning('connecting to %s', 'tcp://ops:Pa55word@10.0.0.5:8786')\n"
        "logging.getLogger('rekko.progress').info('reading http://u:Other1234@host/x')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, "--interactions", f"s3://{KEY_ID}:{SECRET}@bucket/"],
                          cwd=tmp_path, env=_clean_env(), capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    for leaked in (SECRET, f"{KEY_ID}:", "Pa55word", "Other1234"):
        assert leaked not in proc.stderr, proc.stderr
    assert proc.stderr.count("***") >= 3


def test_an_unexpected_error_is_scrubbed_too(tmp_path: Path, monkeypatch, capsys):
    """A bug's message (exit 1) quoting credentials given on the command line."""
    from rekko import cli

    def boom(args):
        raise RuntimeError(f"library said: bad bucket {KEY_ID}:{SECRET}@bucket")

    monkeypatch.setattr(cli, "cmd_demo", boom)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REKKO_SOMETHING", f"s3://{KEY_ID}:{SECRET}@bucket/")  # found in the environment
    code = cli.main(["demo"])
    err = capsys.readouterr().err
    assert code == 1 and "unexpected error" in err and SECRET not in err, err


def test_rekko_errors_scrub_registered_credentials():
    register_secrets_in("tcp://someone:An0therSecret@h:1")
    error = InputError('Invalid bucket name "someone:An0therSecret@bucket" and also An0therSecret alone')
    assert "An0therSecret" not in str(error) and "someone" not in str(error)
    assert scrub("see ftp://a:b@c/d and s3://x:y%40z@w/") == "see ftp://***@c/d and s3://***@w/"
    assert scrub("tcp://user:p@ss@host:1/x") == "tcp://***@host:1/x"  # a password holding @ is masked whole


@pytest.mark.parametrize(("variables", "args"), [
    ({"REKKO_ENGINE": "dask", "REKKO_DASK_SCHEDULER": "tcp://ops:Pa55word@scheduler:8786"},
     ["recommend", "--all-users", "--output", "data/recs/"]),
    ({"REKKO_MODE": "worker", "REKKO_DASK_SCHEDULER": "tcp://ops:Pa55word@scheduler:8786"}, []),
    ({"P1": "s3://ops:Pa55word@bucket/logs/"}, []),
    ({}, ["recommend", "--all-users", "--scheduler", "tcp://ops:Pa55word@scheduler:8786", "--output", "r/"]),
])
def test_the_entrypoint_never_echoes_credentials(tmp_path: Path, variables, args):
    proc = run_entrypoint(tmp_path, variables, *args, dry_run=True)
    assert proc.returncode == 0, proc.stderr
    assert "Pa55word" not in proc.stderr and "ops:" not in proc.stderr, proc.stderr
    assert "rekko-entrypoint:" in proc.stderr and "@" in proc.stderr  # the command is still shown


def test_argument_errors_do_not_quote_credentials(tmp_path: Path):
    proc = subprocess.run([sys.executable, "-m", "rekko", "recommend", "--engine", "tcp://ops:Pa55word@h:1"],
                          cwd=tmp_path, env=_clean_env(), capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
    assert "Pa55word" not in proc.stderr and "tcp://***@h:1" in proc.stderr
