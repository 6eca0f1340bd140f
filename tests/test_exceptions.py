"""Error messages stay one short line whatever the input holds."""

import numpy as np
import pytest

from rekko.exceptions import MAX_QUOTED_CHARS, DataValidationError, InputFileError, MissingColumnsError, quote
from rekko.pipeline.ingest import validate_interactions
from tests.conftest import tiny_interactions

HUGE = "Ж" * (5 << 20)


def test_quote_caps_long_values_with_an_ellipsis_and_the_length():
    text = quote(HUGE)
    assert len(text) < MAX_QUOTED_CHARS + 40 and "…" in text and f"{len(HUGE):,}" in text
    assert quote("short") == "'short'" and quote(np.int64(3)) == "3"


def test_quote_is_one_line():
    assert "\n" not in quote("a\nb") and "\n" not in quote(np.arange(1000).reshape(100, 10))


def test_example_row_values_and_column_names_are_capped():
    err = DataValidationError("bad", path="f.csv", column=HUGE, example={HUGE: HUGE, "movie_id": "m3"})
    msg = str(err)
    assert len(msg) < 2_000 and "\n" not in msg and "'movie_id': 'm3'" in msg


def test_missing_columns_lists_found_columns_capped():
    err = MissingColumnsError(["movie_id"], path="f.csv", available=[HUGE, *(f"c{i}" for i in range(10_000))])
    msg = str(err)
    assert msg.startswith("f.csv: Missed columns ['movie_id']; found [") and len(msg) < 2_000
    assert "more" in msg


def test_any_rekko_error_is_capped_to_one_line():
    msg = str(InputFileError(f"x.parquet: cannot read: {HUGE}\nsecond line"))
    assert len(msg) < 5_000 and "\n" not in msg


def test_a_huge_bad_cell_gives_a_short_message():
    raw = tiny_interactions().astype({"user_id": object})
    raw.loc[3, "user_id"] = HUGE
    with pytest.raises(DataValidationError) as err:
        validate_interactions(raw, "inter.csv")
    msg = str(err.value)
    assert len(msg) < 2_000 and "'movie_id': 'm3'" in msg and "inter.csv" in msg


def test_value_caps_keep_small_messages_unchanged():
    raw = tiny_interactions().astype({"watch_duration_minutes": object})
    raw.loc[3, "watch_duration_minutes"] = "x"
    with pytest.raises(DataValidationError) as err:
        validate_interactions(raw, "f.csv")
    assert str(err.value) == (
        "f.csv: expected numbers, got 'x' (column 'watch_duration_minutes'); example row: "
        "{'user_id': 2, 'movie_id': 'm3', 'watch_duration_minutes': 'x', 'year': 2021, 'month': 1, 'day': 4}"
    )
