"""Artifacts stay proportional to their rows at scale (issue 13)."""

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from rekko.paths import PipelinePaths
from rekko.pipeline import run as run_module
from rekko.build import run_pipeline
from rekko.recommend import Recommender, load_artifacts
from rekko.testing.synth import generate, write_inputs


def paths_in(root) -> PipelinePaths:
    d = PipelinePaths()
    return PipelinePaths(**{f: root / getattr(d, f) for f in d.__dataclass_fields__})


def test_interaction_row_groups_hold_only_their_own_movie_ids(tmp_path, monkeypatch):
    data = generate(2_000, 300, 6_000, seed=5)
    paths = paths_in(tmp_path)
    write_inputs(data, paths.interactions.parent)
    monkeypatch.setattr(run_module, "USER_ROW_GROUP", 256)
    result, _ = run_pipeline(paths)

    pf = pq.ParquetFile(paths.interactions_upd, read_dictionary=["movie_id"])
    assert pf.metadata.num_row_groups >= 10
    for g in range(pf.metadata.num_row_groups):
        column = pf.read_row_group(g, columns=["movie_id"]).column(0)
        assert column.num_chunks == 1
        values = column.to_pylist()
        # the group's dictionary is exactly the movie ids its rows use, not the whole catalogue
        assert sorted(column.chunk(0).dictionary.to_pylist()) == sorted(set(values))
        assert len(column.chunk(0).dictionary) < 2_000

    # the content is what the pipeline computed, read back as before (a categorical of movie ids)
    back = pd.read_parquet(paths.interactions_upd)
    assert isinstance(back["movie_id"].dtype, pd.CategoricalDtype)
    expected = result.interactions.sort_values(["user_id", "movie_idx"], kind="stable").reset_index(drop=True)
    assert np.array_equal(back["movie_id"].astype(str).to_numpy(), expected["movie_id"].astype(str).to_numpy())
    assert np.array_equal(back["movie_idx"].to_numpy(), expected["movie_idx"].to_numpy())
    movie_ids = result.movies["movie_id"].astype(str).to_numpy()
    assert np.array_equal(movie_ids[back["movie_idx"].to_numpy()], back["movie_id"].astype(str).to_numpy())

    # and both loaders (whole set, one user by row group) still read it
    full = Recommender(load_artifacts(paths.artifacts()))
    user = int(back["user_id"].iloc[len(back) // 2])
    one = Recommender(load_artifacts(paths.artifacts(), user_ids=[user]))
    assert list(full.recommend(user, 5).items.movie_id) == list(one.recommend(user, 5).items.movie_id)
