"""Issue 18, items 14 and 13: a manifest that is a FIFO, an endless device, a folder or absurdly nested JSON
is refused quickly (exit 2) in bounded memory."""

from __future__ import annotations

import os
import resource
import subprocess
import sys

import pytest

from tests.conftest import run_cli

MEMORY_LIMIT = 3 * 2**30


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _recommend(root) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rekko", "recommend", "-u", "1", "--no-pred"], cwd=root,
                          capture_output=True, text=True, timeout=60, preexec_fn=_limited, env=os.environ.copy())


@pytest.fixture
def built(tiny_dir):
    assert run_cli(["pipeline"], cwd=tiny_dir).returncode == 0
    return tiny_dir


def _replace_manifest(root, make) -> None:
    manifest = root / "matrix" / "manifest.json"
    manifest.unlink()
    make(manifest)


@pytest.mark.parametrize("make, needle", [
    (os.mkfifo, "named pipe"),
    (lambda p: os.symlink("/dev/zero", p), "character device"),
    (os.mkdir, "folder"),
    (lambda p: p.write_text("[" * 200_000 + "]" * 200_000), "nests too deeply"),
], ids=["fifo", "dev-zero", "folder", "deep-json"])
def test_a_manifest_that_is_not_a_manifest_file_exits_2(built, make, needle):
    _replace_manifest(built, make)
    run = _recommend(built)
    assert run.returncode == 2, run.stderr
    assert needle in run.stderr
    assert "Traceback" not in run.stderr


def test_an_oversized_manifest_is_refused_before_it_is_read(built, monkeypatch):
    import rekko.artifacts
    from rekko.exceptions import ArtifactError

    manifest = built / "matrix" / "manifest.json"
    monkeypatch.setattr(rekko.artifacts, "MAX_MANIFEST_BYTES", manifest.stat().st_size - 1)
    with pytest.raises(ArtifactError, match="more than"):
        rekko.artifacts.read_manifest(manifest)
