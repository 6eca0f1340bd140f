import json

import numpy as np
import pandas as pd
import pytest

from rekko.artifacts import read_manifest
from rekko.exceptions import DataValidationError
from rekko.io import sha256_file
from rekko.paths import PipelinePaths
from rekko.build import run_pipeline
from rekko.recommend import Recommender, load_artifacts


def paths_in(root) -> PipelinePaths:
    d = PipelinePaths()
    return PipelinePaths(**{f: root / getattr(d, f) for f in d.__dataclass_fields__})


def test_pipeline_writes_every_artifact_and_manifest(tiny_dir):
    paths = paths_in(tiny_dir)
    result, manifest = run_pipeline(paths)
    for role in ("movies_rd", "int_coef", "movies_upd", "interactions_upd", "sim_md", "sim_desc"):
        entry = manifest.artifacts[role]
        assert sha256_file(entry["path"]) == entry["sha256"]
    assert read_manifest(paths.manifest).artifacts == manifest.artifacts
    assert manifest.counts["interactions_unknown_movie_dropped"] == 1
    assert manifest.counts["interactions_sessions_merged"] == 1
    assert manifest.parameters["similarity"]["k"] == 100
    movies = pd.read_parquet(paths.movies_upd)
    assert len(movies) == 6 and movies.loc[0, "rating"] == 8.5  # the known rating wins over the duplicate title
    assert list(movies.loc[0, "genres"]) == ["Фантастика", "Боевик"]
    inter = pd.read_parquet(paths.interactions_upd)
    assert inter["user_id"].is_monotonic_increasing and len(inter) == 5


def test_recommend_from_written_artifacts(tiny_dir):
    paths = paths_in(tiny_dir)
    run_pipeline(paths)
    rec = Recommender(load_artifacts(paths.artifacts()))
    items = rec.recommend(1, 3).items
    # Матрица was watched fully (weight 2/3), Брат half (1/3): their sequels lead, in that order
    assert list(items.movie_id[:2]) == ["m2", "m5"]
    assert list(items.based_on[:2]) == ["m1", "m4"]
    assert not {"m1", "m4"} & set(items.movie_id)


def test_bad_input_writes_nothing(tiny_dir):
    paths = paths_in(tiny_dir)
    bad = pd.read_parquet(paths.interactions).astype({"watch_duration_minutes": object})
    bad.loc[2, "watch_duration_minutes"] = "долго"
    csv = paths.interactions.with_suffix(".csv")
    bad.to_csv(csv, index=False)
    paths = PipelinePaths(**{**paths.__dict__, "interactions": csv})
    with pytest.raises(DataValidationError, match="долго"):
        run_pipeline(paths)
    assert not paths.manifest.exists() and not paths.sim_md.exists() and not paths.movies_upd.exists()


def test_no_known_movies_is_an_error(tiny_dir):
    paths = paths_in(tiny_dir)
    df = pd.read_parquet(paths.interactions).assign(movie_id="zzz")
    df.to_parquet(paths.interactions, index=False)
    with pytest.raises(DataValidationError, match="no interaction refers to a movie"):
        run_pipeline(paths)


def _artifact_bytes(paths: PipelinePaths) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (*paths.outputs().values(),) if p.exists() and p != paths.lock}


def test_crash_while_staging_keeps_the_old_set_usable(tiny_dir, monkeypatch):
    """Disk full (or any failure) while the new files are written: the old set, manifest included, is untouched."""
    paths = paths_in(tiny_dir)
    run_pipeline(paths)
    before = _artifact_bytes(paths)
    import rekko.pipeline.run as pl

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pl, "topk_to_bytes", boom)
    with pytest.raises(OSError, match="disk full"):
        run_pipeline(paths)
    assert _artifact_bytes(paths) == before
    Recommender(load_artifacts(paths.artifacts())).recommend(1, 3)  # the old set still verifies
    assert not list(tiny_dir.rglob("*.tmp"))


def test_crash_among_the_renames_puts_the_old_set_back(tiny_dir, monkeypatch):
    """A failure between the first and the last rename: the renamed files get their old content back."""
    paths = paths_in(tiny_dir)
    run_pipeline(paths)
    before = _artifact_bytes(paths)
    import rekko.io

    real_replace, calls = rekko.io.os.replace, []

    def second_rename_fails(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("I/O error")
        real_replace(src, dst)

    monkeypatch.setattr(rekko.io.os, "replace", second_rename_fails)
    with pytest.raises(OSError, match="I/O error"):
        run_pipeline(paths)
    monkeypatch.undo()
    assert _artifact_bytes(paths) == before
    Recommender(load_artifacts(paths.artifacts())).recommend(1, 3)
    assert not list(tiny_dir.rglob("*.tmp"))


def test_rebuild_keeps_parameters_rekko_tune_stored(tiny_dir):
    from dataclasses import asdict

    from rekko.artifacts import write_manifest
    from rekko.build import run_with_enrichment
    from rekko.recommend import BlendWeights

    paths = paths_in(tiny_dir)
    _, manifest = run_with_enrichment(paths)
    tuned_blend = {"md": 0.1, "desc": 0.2, "cf": 0.3, "movie": 0.4, "recency_half_life": 5.0}
    manifest.parameters = {
        **manifest.parameters,
        "blend": tuned_blend,
        "tuned": {"parameters": {"blend": tuned_blend, "collaborative": {"k": 7, "weighting": "cosine"}}},
    }
    write_manifest(manifest, paths.manifest)

    _, rebuilt = run_with_enrichment(paths)
    written = {**tuned_blend, "ratio_power": 1.0}  # read through BlendWeights: a field it lacked gets its default
    assert rebuilt.parameters["blend"] == written
    assert rebuilt.parameters["collaborative"]["k"] == 7
    assert rebuilt.parameters["collaborative"]["weighting"] == "cosine"
    # and again: the tuning summary travels with the parameters
    _, twice = run_with_enrichment(paths)
    assert twice.parameters["blend"] == written and twice.parameters["tuned"]["parameters"]["blend"] == tuned_blend

    _, reset = run_with_enrichment(paths, keep_tuned=False)
    # dropped: the pipeline tunes on its own input again (this tiny input is below the threshold: defaults)
    assert reset.parameters["blend"] == asdict(BlendWeights())
    assert reset.parameters["tuned"]["source"] == "pipeline" and reset.parameters["tuned"]["status"] == "skipped"
