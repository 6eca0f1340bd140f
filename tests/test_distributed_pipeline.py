"""``rekko pipeline --engine dask`` on a real 2-worker LocalCluster: the local engine's artifacts, bad parts, S3."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("distributed")

from rekko.artifacts import read_topk  # noqa: E402
from rekko.config import CollaborativeConfig, PipelineConfig  # noqa: E402
from rekko.exceptions import MissingColumnsError  # noqa: E402
from rekko.paths import PipelinePaths  # noqa: E402
from rekko.build import run_pipeline  # noqa: E402
from tests.conftest import REPO, run_cli, tiny_interactions, write_inputs  # noqa: E402
from tests.s3_support import SECRET, environ, s3_server, upload_parts  # noqa: E402

INPUTS = ("interactions.parquet", "movies_metdata.parquet", "Movies_r_d.xlsx")


@pytest.fixture(scope="module")
def s3_env() -> Iterator[dict[str, str]]:
    """A moto S3 server on 127.0.0.1, its AWS_* variables set before the cluster's workers start (they inherit them)."""
    with s3_server() as env, environ(env):
        yield env


@pytest.fixture(scope="module")
def scheduler(s3_env: dict[str, str]) -> Iterator[str]:
    """ONE 2-worker LocalCluster for the module (single-threaded workers, 127.0.0.1, no dashboard)."""
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None, memory_limit="1GiB")
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


def layout(root: Path, interactions: Path | str | None = None) -> PipelinePaths:
    d = root / "data"
    return PipelinePaths(interactions or d / "interactions.parquet", d / "movies_metdata.parquet",
                         d / "Movies_r_d.xlsx", root / "out/movies_rd.parquet", root / "out/int_coef.parquet",
                         root / "out/movies_md_upd.parquet", root / "out/interactions_upd.parquet",
                         root / "out/matrix/cos_sim_md.pkl", root / "out/matrix/cos_sim_desc.pkl")


def copy_inputs(src: Path, dst: Path) -> Path:
    (dst / "data").mkdir(parents=True)
    for name in INPUTS:
        shutil.copy(src / "data" / name if (src / "data").exists() else src / name, dst / "data" / name)
    return dst


def assert_same_artifacts(a: PipelinePaths, b: PipelinePaths, *, recommend: bool = True, tuned: bool = False) -> None:
    """Tables equal (floats to 1e-9 relative), similarity arrays within 1e-6, identical recommendation lists."""
    for name in ("movies_rd", "int_coef", "movies_upd", "interactions_upd"):
        pd.testing.assert_frame_equal(pd.read_parquet(getattr(a, name)), pd.read_parquet(getattr(b, name)),
                                      check_exact=False, rtol=1e-9)
    for name in ("sim_md", "sim_desc", "sim_cf"):
        x, y = read_topk(getattr(a, name), None), read_topk(getattr(b, name), None)
        assert (x.movie_ids == y.movie_ids).all()
        np.testing.assert_array_equal(x.matrix.indptr, y.matrix.indptr)
        np.testing.assert_array_equal(x.matrix.indices, y.matrix.indices)
        np.testing.assert_allclose(x.matrix.data, y.matrix.data, atol=1e-6)
    ma = json.loads(a.manifest.read_text())
    mb = json.loads(b.manifest.read_text())
    assert ma["engine"] == "local" and mb["engine"] == "dask"
    # both engines tune alike: the same parameters, the tuning summary included
    assert set(ma["artifacts"]) == set(mb["artifacts"]) and ma["parameters"] == mb["parameters"]
    if not tuned:
        assert ma["parameters"].get("tuned", {}).get("status", "skipped") in ("skipped", "off")
    drop = {"timings_s"}
    assert {k: v for k, v in ma["counts"].items() if k not in drop} == \
        {k: v for k, v in mb["counts"].items() if k not in drop}
    if recommend:
        from rekko.recommend import Recommender, load_artifacts

        ra = Recommender(load_artifacts(a.artifacts())).recommend_all(10)
        rb = Recommender(load_artifacts(b.artifacts())).recommend_all(10)
        pd.testing.assert_frame_equal(ra[["user_id", "movie_id", "rank"]].astype({"movie_id": str}),
                                      rb[["user_id", "movie_id", "rank"]].astype({"movie_id": str}))
        np.testing.assert_allclose(ra["score"], rb["score"], atol=1e-6)


@pytest.mark.parametrize("weighting", ["bm25", "cosine", "rp3beta", "ease"])
def test_tiny_equals_local_engine(tmp_path: Path, scheduler: str, weighting: str) -> None:
    write_inputs(tmp_path)
    local, dask_ = layout(tmp_path / "local", tmp_path / "data/interactions.parquet"), layout(tmp_path)
    local = PipelinePaths(**{**local.__dict__, "movies": dask_.movies, "ratings": dask_.ratings})
    config = PipelineConfig(collaborative=CollaborativeConfig(weighting=weighting))
    run_pipeline(local, config)
    # two movies per block: the co-watching reduce runs over several blocks even on six movies
    run_pipeline(dask_, config, engine="dask", scheduler=scheduler, block_entries=12)
    assert_same_artifacts(local, dask_)


def test_sample_equals_local_engine(tmp_path: Path, scheduler: str) -> None:
    if not (REPO / "data" / "interactions.parquet").exists():
        pytest.skip("embedded sample not generated")
    a = copy_inputs(REPO / "data", tmp_path / "a")
    b = copy_inputs(REPO / "data", tmp_path / "b")
    # the dask side reads the sample as three parquet parts (users spread over all of them)
    raw = pd.read_parquet(b / "data/interactions.parquet")
    (b / "data/parts").mkdir()
    for i in range(3):
        raw.iloc[i::3].to_parquet(b / f"data/parts/part-{i}.parquet", index=False)
    run_pipeline(layout(a))
    run_pipeline(layout(b, b / "data/parts"), engine="dask", scheduler=scheduler)
    assert_same_artifacts(layout(a), layout(b, b / "data/parts"))


def test_cli_bad_partition_exit_2_nothing_written(tmp_path: Path, scheduler: str) -> None:
    write_inputs(tmp_path)
    parts = tmp_path / "data/parts"
    parts.mkdir()
    good = tiny_interactions()
    good.iloc[:4].to_parquet(parts / "part-0.parquet", index=False)
    bad = good.iloc[4:].astype({"watch_duration_minutes": str})
    bad.iloc[1, bad.columns.get_loc("watch_duration_minutes")] = "12 min"
    bad.to_parquet(parts / "part-1.parquet", index=False)
    result = run_cli(["pipeline", "--engine", "dask", "--scheduler", scheduler, "--interactions", "data/parts",
                      "--sim-md", "out/cos_sim_md.pkl", "--sim-desc", "out/cos_sim_desc.pkl",
                      "--movies-rd", "out/movies_rd.parquet", "--int-coef", "out/int_coef.parquet",
                      "--movies-upd", "out/movies_md_upd.parquet", "--interactions-upd", "out/interactions_upd.parquet"],
                     cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    err = result.stderr
    assert "part-1.parquet" in err and "watch_duration_minutes" in err and "example row" in err and "12 min" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_missing_column_in_a_part(tmp_path: Path, scheduler: str) -> None:
    write_inputs(tmp_path)
    parts = tmp_path / "data/parts"
    parts.mkdir()
    tiny_interactions().to_parquet(parts / "a.parquet", index=False)
    tiny_interactions().drop(columns=["movie_id"]).to_parquet(parts / "b.parquet", index=False)
    with pytest.raises(MissingColumnsError, match=r"b\.parquet.*movie_id"):
        run_pipeline(layout(tmp_path, parts), engine="dask", scheduler=scheduler)
    assert not (tmp_path / "out").exists()


def test_s3_prefix_both_engines(tmp_path: Path, scheduler: str, s3_env: dict[str, str]) -> None:
    write_inputs(tmp_path)
    df = tiny_interactions()
    url = upload_parts(s3_env, "rekko-logs", "2021/watch", [df.iloc[[0, 3, 5]], df.iloc[[1, 2, 4, 6]]])
    local = layout(tmp_path / "l", url)
    local = PipelinePaths(**{**local.__dict__, "movies": tmp_path / "data/movies_metdata.parquet",
                             "ratings": tmp_path / "data/Movies_r_d.xlsx"})
    run_pipeline(local)
    remote = layout(tmp_path, url)
    _, manifest = run_pipeline(remote, engine="dask", scheduler=scheduler)
    assert_same_artifacts(local, remote, recommend=False)
    parts = manifest.inputs["interactions"]["parts"]
    assert [p["path"] for p in parts] == [url + "part-00000.parquet", url + "part-00001.parquet"]
    assert all(p["etag"] and p["bytes"] > 0 for p in parts)
    assert SECRET not in remote.manifest.read_text()


def test_top_k_rows_is_keep_top_k() -> None:
    """The block selection keeps what keep_top_k keeps: largest first, ties to the lower column."""
    import scipy.sparse as sp

    from rekko.pipeline.collaborative import top_k_rows
    from rekko.pipeline.similarity import keep_top_k

    rng = np.random.default_rng(0)
    dense = rng.choice([0.0, 0.25, 0.5, 0.75, 1.0], size=(40, 30), p=[0.4, 0.15, 0.15, 0.15, 0.15])
    m = sp.csr_matrix(dense.astype(np.float32))
    rows = np.repeat(np.arange(40), np.diff(m.indptr))
    for k in (1, 3, 10, 40):
        got = top_k_rows(rows, m.indices, m.data, m.shape, k)
        want = keep_top_k(m, k, drop_diagonal=False)
        assert (got != want).nnz == 0 and got.nnz == want.nnz


def test_movie_blocks_respect_the_budget() -> None:
    from rekko.distributed.cowatch import movie_blocks

    cooc = np.array([5, 1, 30, 2, 2, 2, 0, 9], dtype=float)  # bound per movie: min(cooc, 8)
    blocks = movie_blocks(cooc, 10)
    assert blocks[0][0] == 0 and blocks[-1][1] == 8 and all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
    bound = np.minimum(cooc, 8)
    assert all(bound[lo:hi].sum() <= 10 or hi - lo == 1 for lo, hi in blocks)
    assert blocks == [(0, 2), (2, 4), (4, 7), (7, 8)]  # 5+1 | 8+2 | 2+2+0 (+8 > 10) | 8


@pytest.mark.parametrize("weighting", ["bm25", "cosine", "rp3beta", "ease"])
def test_rekko_tunes_parameters_build_the_same_set_on_both_engines(tmp_path: Path, scheduler: str,
                                                                  weighting: str) -> None:
    """A manifest carrying `rekko tune`'s parameters (family, k, recency) is rebuilt alike by both engines."""
    from rekko.build import run_with_enrichment

    write_inputs(tmp_path)
    local, dask_ = layout(tmp_path / "local", tmp_path / "data/interactions.parquet"), layout(tmp_path)
    local = PipelinePaths(**{**local.__dict__, "movies": dask_.movies, "ratings": dask_.ratings})
    tuned = {"blend": {"md": 0.2, "desc": 0.1, "cf": 0.6, "movie": 0.1, "recency_half_life": 2.0,
                       "ratio_power": 1.0},
             "collaborative": CollaborativeConfig(weighting=weighting, k=3, recency="days").to_dict()}
    for paths in (local, dask_):
        paths.manifest.parent.mkdir(parents=True, exist_ok=True)
        run_pipeline(paths, PipelineConfig())
        manifest = json.loads(paths.manifest.read_text())
        manifest["parameters"]["tuned"] = {"source": "rekko tune", "parameters": tuned, "validation_ndcg": 0.5}
        paths.manifest.write_text(json.dumps(manifest))
    run_with_enrichment(local)
    run_with_enrichment(dask_, engine="dask", scheduler=scheduler)
    assert_same_artifacts(local, dask_)
    built = json.loads(dask_.manifest.read_text())["parameters"]
    assert built["collaborative"]["weighting"] == weighting and built["collaborative"]["k"] == 3
    assert built["collaborative"]["recency"] == "days" and built["tuned"]["source"] == "rekko tune"


def test_dask_engine_tunes_and_chooses_what_the_local_engine_chooses(tmp_path: Path, scheduler: str) -> None:
    """The default pipeline (its own tuning on) on data large enough to tune: same parameters, same artifacts."""
    from rekko.testing.synth import generate

    data = generate(150, 560, 9_000, seed=11)
    a, b = copy_inputs_from(data, tmp_path / "a"), copy_inputs_from(data, tmp_path / "b")
    run_pipeline(layout(a))
    run_pipeline(layout(b), engine="dask", scheduler=scheduler)
    tuned = json.loads(layout(a).manifest.read_text())["parameters"]["tuned"]
    assert tuned["status"] == "tuned", tuned  # the comparison below is about a real tuning run
    assert_same_artifacts(layout(a), layout(b), tuned=True)


def copy_inputs_from(data, root: Path) -> Path:
    from rekko.testing.synth import write_inputs as write_synth

    (root / "data").mkdir(parents=True)
    write_synth(data, root / "data")
    return root
