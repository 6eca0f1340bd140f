"""Distributed batch recommend on a real 2-worker Dask LocalCluster, against the local engine's answers.

One cluster for the module (its workers are separate processes, as on a real
cluster); the CLI runs as a real subprocess connected to it with --scheduler.
The artifacts are the embedded sample's, built once by the pipeline.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rekko.distributed.batch import UserPartition, plan_partitions
from rekko.exceptions import ArtifactError, ConfigError
from rekko.paths import ArtifactPaths
from tests.conftest import REPO, run_cli

distributed = pytest.importorskip("distributed")

SAMPLE = ("interactions.parquet", "movies_metdata.parquet", "Movies_r_d.xlsx")
#: The sample has 11,520 (user, movie) rows: this cuts its 400 users into several partitions.
PARTITION_ROWS = "2500"


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A LocalCluster of two single-threaded worker processes on 127.0.0.1; yields the scheduler address."""
    local = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                     dashboard_address="127.0.0.1:0", memory_limit="1GB")
    try:
        yield local.scheduler_address
    finally:
        local.close()


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample's artifacts (pipeline run once) and the local engine's batch answer, local.parquet."""
    if not all((REPO / "data" / name).exists() for name in SAMPLE):
        pytest.skip("embedded sample data/ not generated yet")
    root = tmp_path_factory.mktemp("dask-batch")
    (root / "data").mkdir()
    for name in SAMPLE:
        shutil.copy(REPO / "data" / name, root / "data" / name)
    proc = run_cli(["-q", "pipeline"], root)
    assert proc.returncode == 0, proc.stderr
    proc = run_cli(["-q", "recommend", "--all-users", "-n", "7", "--output", "local.parquet"], root)
    assert proc.returncode == 0, proc.stderr
    return root


def read_recs(path: Path) -> pd.DataFrame:
    frame = pd.read_parquet(path)
    return frame.assign(movie_id=frame["movie_id"].astype(str)).reset_index(drop=True)


def artifact_paths(root: Path) -> ArtifactPaths:
    """The seed's artifact paths under ``root``."""
    return ArtifactPaths(**{f.name: root / getattr(ArtifactPaths(), f.name) for f in fields(ArtifactPaths)})


def copy_artifacts(src: Path, dst: Path) -> Path:
    for sub in ("data", "matrix"):
        shutil.copytree(src / sub, dst / sub)
    return dst


# -- the plan (a pure function, hand-computed) ----------------------------------------------------
def test_plan_cuts_partitions_at_user_boundaries_across_row_groups() -> None:
    groups = [(0, np.array([1, 1, 2, 2, 3])), (1, np.array([3, 3, 4])), (2, np.array([5, 6, 6]))]
    # users (rows): 1 (2), 2 (2), 3 (3, in row groups 0 and 1), 4 (1), 5 (1), 6 (2); target 3 rows
    assert plan_partitions(iter(groups), 3) == [
        UserPartition(0, 1, 2, (0,), rows=4, users=2),
        UserPartition(1, 3, 3, (0, 1), rows=3, users=1),
        UserPartition(2, 4, 6, (1, 2), rows=4, users=3),
    ]
    assert plan_partitions(iter(groups), 100) == [UserPartition(0, 1, 6, (0, 1, 2), rows=11, users=6)]


def test_plan_refuses_interactions_not_sorted_by_user() -> None:
    with pytest.raises(ArtifactError, match="not sorted by user_id"):
        plan_partitions(iter([(0, np.array([1, 2])), (1, np.array([1, 3]))]), 10)


# -- the CLI on the cluster ------------------------------------------------------------------------
def test_dask_batch_to_a_folder_equals_the_local_batch(work: Path, cluster: str) -> None:
    proc = run_cli(["recommend", "--all-users", "-n", "7", "--engine", "dask", "--scheduler", cluster,
                    "--partition-rows", PARTITION_ROWS, "--output", "recs/"], work)
    assert proc.returncode == 0, proc.stderr
    assert "batch recommend (dask) done: 2,800 rows, 400 users" in proc.stderr
    manifest = json.loads((work / "recs" / "_manifest.json").read_text(encoding="utf-8"))
    assert (work / "recs" / "_SUCCESS").exists()
    assert manifest["engine"] == "dask" and manifest["users"] == 400 and manifest["rows"] == 2800
    assert len(manifest["parts"]) == manifest["partitions"] >= 4
    assert sorted(p.name for p in (work / "recs").glob("part-*.parquet")) == [p["file"] for p in manifest["parts"]]
    pd.testing.assert_frame_equal(read_recs(work / "recs"), read_recs(work / "local.parquet"))
    assert not [p for p in work.iterdir() if p.name.startswith(".recs.")], "staging folders left behind"


def test_dask_batch_to_one_file_equals_the_local_batch(work: Path, cluster: str) -> None:
    proc = run_cli(["-q", "recommend", "--all-users", "-n", "7", "--scheduler", cluster,
                    "--partition-rows", PARTITION_ROWS, "--output", "dask.parquet"], work,
                   env={"REKKO_ENGINE": "dask"})
    assert proc.returncode == 0, proc.stderr
    pd.testing.assert_frame_equal(read_recs(work / "dask.parquet"), read_recs(work / "local.parquet"))


def test_each_worker_loads_the_catalogue_once_not_once_per_partition(work: Path, cluster: str) -> None:
    from rekko.distributed import batch

    paths = artifact_paths(work)

    def loads() -> int:
        from rekko.distributed import batch as worker_batch

        return worker_batch.LOADS

    with distributed.Client(cluster) as client:
        before = client.run(loads)
        result = batch.recommend_all(client, paths, 3, work / "three", partition_rows=1000)
        after = client.run(loads)
    assert result.partitions >= 8 and result.users == 400
    assert sum(after[w] - before[w] for w in after) <= len(after) == 2
    assert batch.LOADS == 0  # the client loaded no catalogue: no similarity matrix in this process


def test_local_engine_writes_the_folder_form_and_replaces_only_a_dataset(work: Path) -> None:
    from rekko.recommend.batch import recommend_all_local

    proc = run_cli(["-q", "recommend", "--all-users", "-n", "7", "--output", "local_recs"], work)
    assert proc.returncode == 0, proc.stderr
    pd.testing.assert_frame_equal(read_recs(work / "local_recs"), read_recs(work / "local.parquet"))
    first = json.loads((work / "local_recs" / "_manifest.json").read_text(encoding="utf-8"))
    assert first["engine"] == "local"
    assert recommend_all_local(artifact_paths(work), 2, work / "local_recs") == (800, 400, "dataset")
    assert len(read_recs(work / "local_recs")) == 800  # the previous dataset was replaced whole
    other = work / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(ConfigError, match="holds no rekko batch dataset .*todo.txt"):
        recommend_all_local(artifact_paths(work), 2, f"{other}/")
    assert [p.name for p in other.iterdir()] == ["todo.txt"]
    assert not [p for p in work.iterdir() if p.name.startswith(".")], "staging folders left behind"


def test_bad_engine_from_the_environment_exits_2(work: Path) -> None:
    proc = run_cli(["recommend", "--all-users", "--output", "x/"], work, env={"REKKO_ENGINE": "spark"})
    assert proc.returncode == 2
    assert "REKKO_ENGINE must be one of local, dask, got 'spark'" in proc.stderr
    assert not (work / "x").exists()


def test_artifacts_workers_cannot_read_exit_2_naming_worker_and_file(work: Path, cluster: str,
                                                                      tmp_path: Path) -> None:
    """The client plans from the manifest and user ids alone; the workers need the similarity files."""
    copy = copy_artifacts(work, tmp_path / "elsewhere")
    (copy / "matrix" / "cos_sim_md.pkl").unlink()
    proc = run_cli(["recommend", "--all-users", "--engine", "dask", "--scheduler", cluster, "--output", "recs/"],
                   copy)
    assert proc.returncode == 2, proc.stderr
    assert "2 of 2 Dask workers cannot use the artifacts: worker tcp://127.0.0.1:" in proc.stderr
    assert str(copy / "matrix" / "cos_sim_md.pkl") in proc.stderr
    assert "same path" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in copy.iterdir()) == ["data", "matrix"]  # no output, no staging folder


@pytest.mark.parametrize("output", ["out.csv", "recs/"])
def test_a_tampered_similarity_file_stops_the_workers_with_exit_2_and_writes_nothing(
    work: Path, cluster: str, tmp_path: Path, output: str
) -> None:
    """Caught on the workers, in the tasks (the file is readable, its bytes are not the manifest's)."""
    copy = copy_artifacts(work, tmp_path / "tampered")
    sim = copy / "matrix" / "cos_sim_desc.pkl"
    data = bytearray(sim.read_bytes())
    data[-20] ^= 0xFF
    sim.write_bytes(bytes(data))
    proc = run_cli(["recommend", "--all-users", "--engine", "dask", "--scheduler", cluster,
                    "--partition-rows", PARTITION_ROWS, "--output", output], copy)
    assert proc.returncode == 2, proc.stderr
    assert "Dask worker tcp://127.0.0.1:" in proc.stderr and "does not match the manifest" in proc.stderr
    assert sorted(p.name for p in copy.iterdir()) == ["data", "matrix"]  # no output, no staging folder
