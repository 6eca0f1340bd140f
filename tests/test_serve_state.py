"""Reloading: new artifacts are picked up without a restart, never mixed, and bad ones never served."""

from __future__ import annotations

import hashlib
import threading
from types import SimpleNamespace

import pytest

pytest.importorskip("fastapi", reason="rekko[serve] is not installed")

from rekko.exceptions import ArtifactError  # noqa: E402
from rekko.recommend import Recommender, load_artifacts  # noqa: E402
from rekko.serve.app import create_app  # noqa: E402
from rekko.serve.state import ArtifactState  # noqa: E402
from tests.serve_support import build_artifacts, get, live_server, wait_for  # noqa: E402


# -- the state machine, with a hand-driven loader ---------------------------------------
class FakeDisk:
    """A fingerprint we set by hand and a loader that counts calls (and can fail or race)."""

    def __init__(self) -> None:
        self.fp = 1
        self.loads = 0
        self.fail: str | None = None
        self.change_while_loading = False

    def fingerprint(self) -> int:
        return self.fp

    def load(self) -> SimpleNamespace:
        self.loads += 1
        if self.fail:
            raise ArtifactError(self.fail)
        if self.change_while_loading:
            self.fp += 100
            self.change_while_loading = False
        from datetime import datetime, timezone

        return SimpleNamespace(version=f"gen{self.fp}", loaded_at=datetime.now(timezone.utc))


def test_state_loads_once_per_change_and_swaps_whole():
    disk = FakeDisk()
    state = ArtifactState(disk.load, disk.fingerprint, interval=None)
    first = state.snapshot
    assert (disk.loads, first.version, state.status) == (1, "gen1", "ok")
    assert state.check() is False and disk.loads == 1  # nothing changed: nothing read
    disk.fp = 2
    assert state.check() is True
    assert state.snapshot.version == "gen2" and state.reloads == 1 and disk.loads == 2
    assert first.version == "gen1"  # a request holding the old snapshot still sees all of it


def test_a_failed_reload_keeps_the_old_generation_and_is_reported_once():
    disk = FakeDisk()
    state = ArtifactState(disk.load, disk.fingerprint, interval=None)
    disk.fp, disk.fail = 2, "sha256 mismatch"
    assert state.check() is False
    assert state.snapshot.version == "gen1"
    assert state.status == "stale" and "sha256 mismatch" in state.reload_error and state.failed_reloads == 1
    assert state.check() is False and disk.loads == 2  # the same broken files are not re-read every poll
    disk.fp, disk.fail = 3, None
    assert state.check() is True
    assert state.snapshot.version == "gen3" and state.status == "ok" and state.reload_error is None


def test_files_changing_during_a_load_are_not_swapped_in():
    disk = FakeDisk()
    state = ArtifactState(disk.load, disk.fingerprint, interval=None)
    disk.fp, disk.change_while_loading = 2, True
    assert state.check() is False
    assert state.snapshot.version == "gen1" and state.status == "ok"
    assert state.check() is True  # looks again on the next poll
    assert state.snapshot.version == "gen102"


def test_no_artifacts_at_start_is_an_artifact_error(tmp_path):
    from rekko.paths import ArtifactPaths

    with pytest.raises(ArtifactError, match="Rerun the pipeline"):
        ArtifactState.from_paths(ArtifactPaths(sim_md=tmp_path / "matrix" / "cos_sim_md.pkl"))


# -- against the real pipeline and a real server ------------------------------------------
def _expected(paths, users, n=5) -> tuple[str, dict[int, list[str]]]:
    sha = hashlib.sha256(paths.manifest.read_bytes()).hexdigest()[:12]
    rec = Recommender(load_artifacts(paths))
    return sha, {u: rec.recommend(u, n).items["movie_id"].tolist() for u in users}


def test_a_new_pipeline_run_is_served_without_restart_and_never_mixed(tmp_path):
    root = tmp_path / "gen"
    paths = build_artifacts(root, seed=0)
    users = [1, 2, 3, 10, 11, 12, 10**9]  # showcase users, ordinary users and an unknown one
    expected = dict([_expected(paths, users)])
    app = create_app(paths, reload_interval=0.05)
    seen: list[tuple[str, int, list[str]]] = []
    failures: list[str] = []
    stop = threading.Event()

    with live_server(app) as url:

        def hammer() -> None:
            i = 0
            while not stop.is_set():
                user = users[i % len(users)]
                i += 1
                status, body, _ = get(f"{url}/recommendations/{user}?n=5")
                if status != 200:
                    failures.append(f"{status} {body}")
                    continue
                seen.append((body["artifacts"], user, [item["movie_id"] for item in body["items"]]))

        threads = [threading.Thread(target=hammer) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            for seed in (1, 2):
                build_artifacts(root, seed=seed)  # the pipeline rewrites every artifact in place
                sha, answers = _expected(paths, users)
                expected[sha] = answers
                assert wait_for(lambda sha=sha: get(f"{url}/health")[1]["artifacts"] == sha, timeout=30)
                status, body, _ = get(f"{url}/recommendations/1?n=5")
                assert body["artifacts"] == sha and [i["movie_id"] for i in body["items"]] == answers[1]
        finally:
            stop.set()
            for t in threads:
                t.join()
        health = get(f"{url}/health")[1]

    assert not failures
    assert health["status"] == "ok" and health["reloads"] == 2
    generations = {gen for gen, _, _ in seen}
    assert len(generations) >= 2, "the hammering saw only one generation"
    for gen, user, movies in seen:
        assert gen in expected, f"answer from an unknown generation {gen}"
        assert movies == expected[gen][user], f"user {user}: answer does not match generation {gen}"


def test_artifacts_that_fail_verification_are_reported_and_not_served(tmp_path):
    paths = build_artifacts(tmp_path / "gen", seed=0)
    good_sha, good = _expected(paths, [1, 2])
    state = ArtifactState.from_paths(paths, interval=None)
    with live_server(create_app(state=state)) as url:
        with paths.sim_desc.open("ab") as fh:  # a corrupted / half-copied file
            fh.write(b"garbage")
        assert state.check() is False
        status, health, _ = get(f"{url}/health")
        assert status == 200 and health["status"] == "stale" and health["artifacts"] == good_sha
        assert "cos_sim_desc.pkl" in health["reload_error"] and "Rerun the pipeline" in health["reload_error"]
        body = get(f"{url}/recommendations/2?n=5")[1]
        assert body["artifacts"] == good_sha and [i["movie_id"] for i in body["items"]] == good[2]

        paths.manifest.unlink()  # a pipeline run in progress removes the manifest first
        assert state.check() is False
        assert "manifest not found" in get(f"{url}/health")[1]["reload_error"]

        build_artifacts(tmp_path / "gen", seed=5)
        assert state.check() is True
        health = get(f"{url}/health")[1]
        assert health["status"] == "ok" and health["reload_error"] is None and health["artifacts"] != good_sha
        assert health["failed_reloads"] == 2 and health["reloads"] == 1
