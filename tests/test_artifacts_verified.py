"""Recommend parses exactly the bytes it verified; one user reads one user's data; the manifest's schema.

Built once on the embedded-style synthetic sample through the real CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import rekko.recommend.recommender as recommender_module
from rekko.artifacts import CHUNK_SIZE, ChunkTable, read_manifest
from rekko.columns import Columns as C
from rekko.exceptions import ArtifactError
from rekko.paths import PipelinePaths
from rekko.recommend import Recommender, load_artifacts
from tests.conftest import run_cli
from tests.serve_support import build_artifacts


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("verified")
    build_artifacts(root, seed=5)
    return root


def paths_at(root: Path):
    d = PipelinePaths()
    return PipelinePaths(**{f: root / getattr(d, f) for f in d.__dataclass_fields__}).artifacts()


def heavy_user(root: Path) -> int:
    rows = load_artifacts(paths_at(root))
    return int(rows.user_ids[np.argmax(np.diff(rows.history.indptr))])


def test_one_user_reads_a_small_share_of_the_artifacts(tmp_path, monkeypatch):
    root = tmp_path / "catalogue"
    build_artifacts(root, seed=2, n_movies=6000, n_users=400, n_interactions=4000)
    paths = paths_at(root)
    manifest = read_manifest(paths.manifest)
    total = sum(e["bytes"] for e in manifest.artifacts.values())
    opened = []
    real_open = ChunkTable.open

    def spy(self, path, role):
        vf = real_open(self, path, role)
        opened.append(vf)
        return vf

    monkeypatch.setattr(ChunkTable, "open", spy)
    full = Recommender(load_artifacts(paths))
    lengths = np.diff(full.artifacts.history.indptr)
    user = int(full.artifacts.user_ids[np.argsort(lengths)[len(lengths) // 2]])  # a median user
    rec = Recommender(load_artifacts(paths, user_ids=[user]))
    read = sum(vf.bytes_read for vf in opened)
    assert {vf.role for vf in opened} == {"movies_upd", "interactions_upd", "sim_md", "sim_desc", "sim_cf"}
    # a few chunks per watched movie, plus the movie columns: far from the whole set
    assert read < total / 5, (read, total)
    assert rec.recommend(user, 10).items.equals(full.recommend(user, 10).items)


def test_a_tampered_chunk_the_user_reads_is_refused(built, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(built, root)
    paths = paths_at(root)
    user = heavy_user(root)
    rec = Recommender(load_artifacts(paths, user_ids=[user]))
    layout = read_manifest(paths.manifest).artifacts["sim_cf"]["layout"]
    watched = int(rec.artifacts.history.movie[0])
    # flip one byte inside the first watched movie's similarity row (its indices array)
    indptr = np.frombuffer(paths.sim_cf.read_bytes()[layout["indptr"]["offset"]:][: 8 * (watched + 2)], dtype="<i8")
    at = layout["indices"]["offset"] + 4 * int(indptr[watched])
    blob = bytearray(paths.sim_cf.read_bytes())
    blob[at] ^= 0xFF
    paths.sim_cf.write_bytes(bytes(blob))
    with pytest.raises(ArtifactError, match="does not match the manifest"):
        load_artifacts(paths, user_ids=[user])
    proc = run_cli(["recommend", "-u", str(user), "--no-pred"], cwd=root)
    assert proc.returncode == 2 and "cos_sim_cf.pkl" in proc.stderr and "does not match" in proc.stderr


def test_full_load_parses_the_bytes_it_hashed_even_if_the_file_is_swapped(built, tmp_path, monkeypatch):
    """A file replaced right after it was hashed: what was hashed is what gets parsed (no second read)."""
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(built, root)
    other = tmp_path / "other"
    build_artifacts(other, seed=9)  # another run: another movies_md_upd
    paths = paths_at(root)
    real = recommender_module.read_verified

    def hashed_then_swapped(path, manifest, role):
        data = real(path, manifest, role)
        if role == "movies_upd":
            shutil.copy(paths_at(other).movies_upd, path)  # the rename between check and use
        return data

    monkeypatch.setattr(recommender_module, "read_verified", hashed_then_swapped)
    art = load_artifacts(paths)
    monkeypatch.undo()
    expected = load_artifacts(paths_at(built))
    assert art.titles.tolist() == expected.titles.tolist()


def test_chunk_table_and_layout_are_in_the_manifest(built):
    manifest = json.loads((built / "matrix" / "manifest.json").read_text())
    table = (built / "matrix" / "manifest.chunks").read_bytes()
    assert manifest["chunk_table"]["bytes"] == len(table)
    for role, entry in manifest["artifacts"].items():
        assert entry["chunks"]["size"] == CHUNK_SIZE
        assert entry["chunks"]["count"] == -(-entry["bytes"] // CHUNK_SIZE), role
    assert set(manifest["artifacts"]["sim_md"]["layout"]) == {"data", "indices", "indptr"}


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda m: m.update(artifacts=None), "artifacts"),
        (lambda m: m["artifacts"]["sim_md"].update(sha256=42), "artifacts.sim_md.sha256"),
        (lambda m: m["artifacts"]["movies_upd"].update(bytes="many"), "artifacts.movies_upd.bytes"),
        (lambda m: m["parameters"]["blend"].update(md="heavy"), "blend.md"),
        (lambda m: m["parameters"]["blend"].update(typo=1.0), "typo"),
        (lambda m: m["parameters"]["collaborative"].update(k=2.5), "collaborative.k"),
        (lambda m: m.update(chunk_table=[]), "chunk_table"),
    ],
)
def test_a_malformed_manifest_exits_2_naming_the_field(built, tmp_path, edit, field):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(built, root)
    path = root / "matrix" / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))
    user = heavy_user(built)
    for args in (["recommend", "-u", str(user), "--no-pred"], ["recommend", "--all-users", "--output", "r.csv"]):
        proc = run_cli(args, cwd=root)
        assert proc.returncode == 2, proc.stderr
        assert field in proc.stderr and "unexpected error" not in proc.stderr


def test_a_non_utf8_manifest_exits_2(built, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(built, root)
    (root / "matrix" / "manifest.json").write_bytes(b'{"schema_version": 1, "x": "\xff\xfe"}')
    proc = run_cli(["recommend", "-u", "1", "--no-pred"], cwd=root)
    assert proc.returncode == 2 and "not UTF-8" in proc.stderr


def test_an_old_manifest_without_chunks_still_loads_one_user_fully(built, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(built, root)
    path = root / "matrix" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.pop("chunk_table")
    for entry in manifest["artifacts"].values():
        entry.pop("chunks")
    path.write_text(json.dumps(manifest))
    user = heavy_user(built)
    art = load_artifacts(paths_at(root), user_ids=[user])
    assert art.sim_rows is None  # read whole and verified by the full sha256
    got = Recommender(art).recommend(user, 5).items[C.MOVIE].tolist()
    assert got == Recommender(load_artifacts(paths_at(built))).recommend(user, 5).items[C.MOVIE].tolist()
