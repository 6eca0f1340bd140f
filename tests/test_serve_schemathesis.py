"""Property-based fuzzing of the HTTP API from its own OpenAPI spec (schemathesis): no 500, ever.

Runs the schemathesis CLI against a real uvicorn server with every check on
(server errors, status codes and response bodies conforming to the spec,
negative data rejected), a fixed seed and a bounded number of examples, so it
stays well under a minute.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

pytest.importorskip("fastapi", reason="rekko[serve] is not installed")
pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install schemathesis)")

from rekko.serve.app import create_app  # noqa: E402
from tests.serve_support import build_artifacts, live_server  # noqa: E402


def test_fuzzing_the_openapi_spec_finds_no_server_error(tmp_path):
    paths = build_artifacts(tmp_path / "gen")
    with live_server(create_app(paths, reload_interval=None)) as url:
        result = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "run", f"{url}/openapi.json", "--checks", "all",
             "--max-examples", "100", "--seed", "1", "--workers", "1", "--no-color",
             "--report-dir", str(tmp_path / "reports")],
            capture_output=True, text=True, timeout=120, cwd=tmp_path,
        )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    generated = re.search(r"(\d+) generated", output)
    assert generated and int(generated.group(1)) >= 100, output[-2000:]
