"""Several workers over one memory-mapped bundle: same answers, no copies, same reload guarantees."""

from __future__ import annotations

import json
import mmap

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="rekko[serve] is not installed")

from rekko.columns import Columns as C  # noqa: E402
from rekko.serve.app import create_app, recommendation_list  # noqa: E402
from rekko.serve.shared import CURRENT, BundlePublisher, BundleState, export_bundle, open_bundle  # noqa: E402
from rekko.serve.state import load_snapshot  # noqa: E402
from tests.serve_support import build_artifacts, get, live_server  # noqa: E402


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    return build_artifacts(tmp_path_factory.mktemp("serve-shared"), seed=2)


@pytest.fixture(scope="module")
def direct(paths):
    return load_snapshot(paths)


@pytest.fixture(scope="module")
def mapped(direct, tmp_path_factory):
    root = tmp_path_factory.mktemp("bundle")
    return open_bundle(root / export_bundle(direct, root))


def test_a_mapped_bundle_answers_exactly_like_the_loaded_artifacts(direct, mapped):
    users = np.concatenate([direct.recommender.artifacts.user_ids, [-7]]).tolist()
    for user in users:
        assert recommendation_list(mapped, user, 12) == recommendation_list(direct, user, 12), user
        expected = direct.recommender.recommend(user, 12).items
        got = mapped.recommender.recommend(user, 12).items  # the core's own path works on mapped arrays too
        assert got[C.MOVIE].tolist() == expected[C.MOVIE].tolist()
    for i in range(0, len(direct.recommender.artifacts.movie_ids), 17):
        movie = str(direct.recommender.artifacts.movie_ids[i])
        for kind in ("md", "desc"):
            got, expected = (r.similar(movie, 9, kind) for r in (mapped.recommender, direct.recommender))
            assert got.to_dict("list") == expected.to_dict("list")
        assert mapped.catalog.details(i) == direct.catalog.details(i)
    assert (mapped.version, mapped.loaded_at, mapped.counts()) == (direct.version, direct.loaded_at, direct.counts())


def test_bundle_arrays_are_read_only_maps_not_copies(mapped):
    rec = mapped.recommender
    matrices = [rec.scorer_.combined, *rec.artifacts.sims.values()]
    h = rec.artifacts.history
    arrays = [rec.scorer_.movie_part, rec.scorer_.cold_order, rec.artifacts.movie_ids, rec.artifacts.user_ids,
              mapped.catalog.blob, h.indptr, h.movie, h.ratio, h.recency]
    arrays += [part for m in matrices for part in (m.data, m.indices, m.indptr)]
    for arr in arrays:
        assert _is_mapped(arr)
        assert not arr.flags.writeable


def _is_mapped(arr) -> bool:
    while arr is not None:
        if isinstance(arr, (np.memmap, mmap.mmap)):
            return True
        arr = getattr(arr, "base", None)
    return False


def test_publisher_and_workers_follow_new_generations_and_report_bad_ones(tmp_path):
    root_in = tmp_path / "gen"
    paths = build_artifacts(root_in, seed=0)
    shared = tmp_path / "shared"
    shared.mkdir()
    publisher = BundlePublisher(paths, shared, interval=None)
    worker = BundleState(shared, interval=None)
    first = worker.snapshot.version
    with live_server(create_app(state=worker)) as url:
        assert get(f"{url}/health")[1]["artifacts"] == first

        with paths.sim_md.open("ab") as fh:  # corrupted: the parent refuses it, workers keep serving
            fh.write(b"\0")
        assert publisher.check() is False
        assert worker.check() is False
        status, health, _ = get(f"{url}/health")
        assert health["status"] == "stale" and health["artifacts"] == first
        assert "cos_sim_md.pkl" in health["reload_error"] and health["failed_reloads"] == 1
        assert get(f"{url}/recommendations/1?n=3")[1]["artifacts"] == first

        build_artifacts(root_in, seed=1)
        assert publisher.check() is True
        assert worker.check() is True
        health = get(f"{url}/health")[1]
        assert health["status"] == "ok" and health["artifacts"] != first and health["reloads"] == 1
        expected = load_snapshot(paths)
        assert get(f"{url}/recommendations/1?n=4")[1] == recommendation_list(expected, 1, 4)

        build_artifacts(root_in, seed=2)
        assert publisher.check() is True and worker.check() is True
    bundles = sorted(p.name for p in shared.iterdir() if p.is_dir())
    current = json.loads((shared / CURRENT).read_text())["bundle"]
    assert current in bundles and len(bundles) == 2  # the current one and the one before it; older ones removed
    publisher.stop()
