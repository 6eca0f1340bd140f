"""Helpers shared by the tests/test_serve*.py files (plain functions; no conftest needed).

Artifacts come from the real pipeline on small generated data; servers are
real uvicorn servers on 127.0.0.1 with a free port.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rekko.testing import synth
from rekko.paths import ArtifactPaths, PipelinePaths
from rekko.build import run_pipeline

#: small but structured: clusters, users with tastes, a few unknown-movie-free rows
SMALL = {"n_movies": 240, "n_users": 150, "n_interactions": 3000}


def pipeline_paths(root: Path) -> PipelinePaths:
    d = PipelinePaths()
    return PipelinePaths(
        interactions=root / "in" / d.interactions.name, movies=root / "in" / d.movies.name,
        ratings=root / "in" / d.ratings.name, movies_rd=root / "data" / d.movies_rd.name,
        int_coef=root / "data" / d.int_coef.name, movies_upd=root / "data" / d.movies_upd.name,
        interactions_upd=root / "data" / d.interactions_upd.name, sim_md=root / "matrix" / d.sim_md.name,
        sim_desc=root / "matrix" / d.sim_desc.name,
    )


def build_artifacts(root: Path, seed: int = 0, **sizes: int) -> ArtifactPaths:
    """Generate inputs under ``root/in`` and run the real pipeline into ``root/data`` and ``root/matrix``."""
    paths = pipeline_paths(root)
    data = synth.generate(**{**SMALL, **sizes}, seed=seed)
    synth.write_inputs(data, paths.interactions.parent)
    run_pipeline(paths)
    return paths.artifacts()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def live_server(app: Any) -> Iterator[str]:
    """Run ``app`` under a real uvicorn server on 127.0.0.1 in a thread; yields the base URL."""
    import uvicorn

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


def get(url: str, timeout: float = 10) -> tuple[int, Any, dict[str, str]]:
    """GET ``url``; (status, parsed JSON or text, headers), error statuses included."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            status, body, headers = r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as exc:
        status, body, headers = exc.code, exc.read(), dict(exc.headers)
    text = body.decode("utf-8")
    if headers.get("content-type", headers.get("Content-Type", "")).startswith("application/json"):
        return status, json.loads(text), headers
    return status, text, headers


def wait_for(predicate, timeout: float = 20, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
