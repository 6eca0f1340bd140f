"""Issue 18, item 19: a partitioned input with 0-row parts (Spark and Dask write them) is read without them."""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from rekko.build import run_pipeline
from rekko.exceptions import DataValidationError
from tests.conftest import tiny_interactions
from tests.test_partitioned_inputs import outputs, parts_dir  # noqa: F401 - the fixture


def _empty_part(path) -> None:
    tiny_interactions().iloc[:0].to_parquet(path, index=False)


def test_empty_parts_are_skipped_counted_and_reported(parts_dir, caplog):  # noqa: F811
    folder = parts_dir / "data" / "parts"
    full, _ = run_pipeline(outputs(parts_dir / "full", folder, parts_dir / "data"))
    _empty_part(folder / "part-00002.parquet")
    _empty_part(folder / "day=2" / "part-00003.parquet")
    with caplog.at_level(logging.WARNING, logger="rekko"):
        result, manifest = run_pipeline(outputs(parts_dir, folder))
    pd.testing.assert_frame_equal(result.interactions, full.interactions)
    assert result.counts["interaction_rows"] == 7
    assert "skipped 2 of 4 interaction parts with no rows" in caplog.text
    assert len(manifest.inputs["interactions"]["parts"]) == 4  # still fingerprinted: a new row there is a change


def test_only_empty_parts_is_an_error(parts_dir):  # noqa: F811
    folder = parts_dir / "data" / "only-empty"
    folder.mkdir()
    for i in range(3):
        _empty_part(folder / f"part-{i}.parquet")
    with pytest.raises(DataValidationError, match="all 3 parts have no rows"):
        run_pipeline(outputs(parts_dir, folder))
