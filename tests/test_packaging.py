"""Installs that fit the job (issue 20, item 5): license metadata, one version, demo without the test tools."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import rekko
from rekko.cli import main

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the locks need 3.11+, the package allows 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_license_is_an_spdx_string_with_its_file() -> None:
    project = PYPROJECT["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    assert not any(c.startswith("License ::") for c in project.get("classifiers", []))  # PEP 639 forbids both
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License") and "Copyright (c) the rekko authors" in text
    # setuptools reads PEP 639's fields from 77 on
    (setuptools,) = [r for r in PYPROJECT["build-system"]["requires"] if r.startswith("setuptools")]
    assert re.fullmatch(r"setuptools>=(\d+).*", setuptools) and int(re.findall(r"\d+", setuptools)[0]) >= 77
    # the image builds the package, so the license file goes in with pyproject.toml
    assert re.search(r"^COPY pyproject.toml README.md LICENSE \./$", (ROOT / "Dockerfile").read_text(), re.M)


def test_the_version_has_one_source(capsys: pytest.CaptureFixture[str]) -> None:
    assert "version" not in PYPROJECT["project"] and "version" in PYPROJECT["project"]["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "rekko.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", rekko.__version__)
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"rekko {rekko.__version__}"


def test_joblib_is_kept_on_purpose() -> None:
    """Not imported by rekko today; the product owner asked to keep it declared."""
    assert any(d.startswith("joblib") for d in PYPROJECT["project"]["dependencies"])


def _make_dry_run(target: str, tmp_path: Path) -> str:
    out = subprocess.run(["make", "-n", "--no-print-directory", target, f"VENV={tmp_path / 'venv'}"], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    return out.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_demo_installs_the_runtime_lock_and_make_test_adds_the_dev_lock(tmp_path: Path) -> None:
    demo = _make_dry_run("demo", tmp_path)
    assert "--require-hashes -r requirements/lock.txt" in demo
    assert "dev-lock.txt" not in demo and "[dev" not in demo
    assert demo.strip().endswith("rekko demo")
    test = _make_dry_run("test", tmp_path)
    assert "--require-hashes -r requirements/lock.txt" in test
    assert "--require-hashes -r requirements/dev-lock.txt" in test
    assert "-m pytest" in test
    # the runtime lock has none of the test tools
    runtime = (ROOT / "requirements" / "lock.txt").read_text(encoding="utf-8")
    for tool in ("pytest", "selenium", "schemathesis", "moto", "hadolint", "shellcheck", "hypothesis"):
        assert not re.search(rf"^{tool}[-_a-z]*==", runtime, re.M), tool
