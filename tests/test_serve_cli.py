"""``rekko serve`` as a user runs it: a real process, a real port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="rekko[serve] is not installed")
pytest.importorskip("uvicorn", reason="rekko[serve] is not installed")

from tests.serve_support import build_artifacts, free_port, get, wait_for  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _artifact_args(paths) -> list[str]:
    return ["--interactions-upd", str(paths.interactions_upd), "--movies-upd", str(paths.movies_upd),
            "--int-coef", str(paths.int_coef), "--sim-md", str(paths.sim_md), "--sim-desc", str(paths.sim_desc)]


def _rekko(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "rekko", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    return build_artifacts(tmp_path_factory.mktemp("serve-cli"))


def test_help_lists_the_options(tmp_path):
    result = _rekko("serve", "--help", cwd=tmp_path)
    assert result.returncode == 0
    for option in ("--host", "--port", "--workers", "--reload-interval", "--sim-md"):
        assert option in result.stdout


def test_missing_artifacts_exit_2_with_the_rerun_hint(tmp_path):
    port = free_port()
    result = _rekko("serve", "--host", "127.0.0.1", "--port", str(port), cwd=tmp_path)  # seed defaults: nothing there
    assert result.returncode == 2
    assert "matrix/manifest.json" in result.stderr and "Rerun the pipeline" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args", [["--port", "http"], ["--port", "70000"], ["--workers", "0"]])
def test_bad_options_exit_2(tmp_path, args):
    result = _rekko("serve", *args, cwd=tmp_path)
    assert result.returncode == 2 and "error" in result.stderr


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_answers_on_the_port_and_stops_cleanly(tmp_path, paths, workers):
    port = free_port()
    scratch = tmp_path / "tmp"  # where the serving bundle goes (tempfile honours TMPDIR)
    scratch.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(scratch)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rekko", "serve", "--host", "127.0.0.1", "--port", str(port), "--workers",
         str(workers), "--log-level", "warning", *_artifact_args(paths)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return get(f"{url}/health", timeout=2)[0] == 200
            except OSError:
                return proc.poll() is not None

        assert wait_for(up, timeout=60, interval=0.2)
        assert proc.poll() is None, proc.stderr.read()
        status, body, _ = get(f"{url}/recommendations/1?n=3")
        assert status == 200 and len(body["items"]) == 3
        assert get(f"{url}/health")[1]["counts"]["movies"] > 0
        assert [p.name[:12] for p in scratch.iterdir()] == ["rekko-serve-"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
    assert proc.returncode == 0, err  # a graceful stop
    assert "Traceback" not in err
    assert not list(scratch.iterdir()), "the serving bundle was left behind"


def test_two_workers_pick_up_a_new_pipeline_run(tmp_path):
    paths = build_artifacts(tmp_path / "gen", seed=0)
    port = free_port()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(scratch)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rekko", "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
         "--reload-interval", "0.2", "--log-level", "warning", *_artifact_args(paths)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def version() -> str | None:
        try:
            return get(f"{url}/health", timeout=2)[1]["artifacts"]
        except OSError:
            return None

    try:
        assert wait_for(lambda: version() is not None or proc.poll() is not None, timeout=60, interval=0.2)
        first = version()
        assert first is not None, proc.stderr.read()
        build_artifacts(tmp_path / "gen", seed=1)
        # every answer, whichever worker gives it, comes from the new generation
        assert wait_for(lambda: all(version() not in (first, None) for _ in range(10)), timeout=60, interval=0.2)
        assert get(f"{url}/recommendations/1?n=2")[1]["artifacts"] != first
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            _, err = proc.communicate()
    assert "Traceback" not in err
    assert proc.returncode == 0, err
    assert not list(scratch.iterdir()), "the serving bundles were left behind"


def test_without_the_serve_extra_the_command_says_what_to_install(tmp_path):
    code = "import sys; sys.modules['fastapi'] = None; from rekko.cli import main; sys.exit(main(['serve']))"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert "pip install 'rekko[serve]'" in result.stderr
