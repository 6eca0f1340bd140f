import numpy as np
import pandas as pd
import pytest

from rekko.exceptions import DataValidationError, InputFileError, MissingColumnsError
from rekko.pipeline.ingest import (
    load_interactions,
    load_movies,
    parse_list_column,
    validate_interactions,
    validate_movies,
)
from tests.conftest import tiny_interactions, tiny_movies


def test_list_column_three_forms_and_missing():
    raw = pd.Series(['["Драма", "Комедия"]', "Драма, Комедия", ["Драма", "Комедия"], np.array(["Драма"]), None, "[]"],
                    dtype=object)
    got = list(parse_list_column(raw))
    assert got == [("Драма", "Комедия"), ("Драма", "Комедия"), ("Драма", "Комедия"), ("Драма",), (), ()]


def test_interactions_canonical_form():
    out = validate_interactions(tiny_interactions())
    assert list(out.columns) == ["user_id", "movie_id", "watch_duration_minutes", "last_watch_dt"]
    assert out["user_id"].dtype == np.int64
    assert out.loc[0, "last_watch_dt"] == pd.Timestamp("2021-01-01")


def test_interactions_unix_timestamp_column():
    raw = pd.DataFrame({"user_id": [1], "movie_id": [5], "watch_duration_minutes": [3], "timestamp": [86400]})
    out = validate_interactions(raw)
    assert out.loc[0, "last_watch_dt"] == pd.Timestamp("1970-01-02") and out.loc[0, "movie_id"] == "5"


def test_interactions_input_not_mutated():
    raw = tiny_interactions()
    before = raw.copy()
    validate_interactions(raw)
    pd.testing.assert_frame_equal(raw, before)


@pytest.mark.parametrize(
    ("column", "value", "fragment"),
    [
        ("watch_duration_minutes", "много", "expected numbers, got 'много'"),
        ("watch_duration_minutes", -5.0, "non-negative"),
        ("user_id", "abc", "expected numbers"),
        ("user_id", 1.5, "integer user ids"),
    ],
)
def test_interactions_bad_values_name_file_column_and_row(column, value, fragment):
    raw = tiny_interactions().astype({column: object})
    raw.loc[3, column] = value
    with pytest.raises(DataValidationError) as err:
        validate_interactions(raw, "inter.parquet")
    msg = str(err.value)
    assert "inter.parquet" in msg and f"'{column}'" in msg and fragment in msg and "example row" in msg
    assert "'movie_id': 'm3'" in msg  # the example is the offending row


def test_interactions_missing_columns():
    with pytest.raises(MissingColumnsError, match=r"Missed columns \['watch_duration_minutes'\]"):
        validate_interactions(tiny_interactions().drop(columns="watch_duration_minutes"), "x.csv")


def test_interactions_empty():
    with pytest.raises(DataValidationError, match="no interactions"):
        validate_interactions(tiny_interactions().iloc[:0], "x.csv")


def test_movies_duplicate_id_is_an_error():
    raw = tiny_movies()
    raw.loc[2, "movie_id"] = "m1"
    with pytest.raises(DataValidationError, match="duplicate movie_id 'm1'"):
        validate_movies(raw, "movies.parquet")


def test_movies_negative_duration_is_an_error():
    raw = tiny_movies()
    raw.loc[1, "duration"] = -3
    with pytest.raises(DataValidationError, match="'duration'"):
        validate_movies(raw, "movies.parquet")


def test_movies_missing_duration_is_allowed_and_extra_columns_kept():
    raw = tiny_movies().assign(extra=1)
    out = validate_movies(raw)
    assert np.isnan(out.loc[4, "duration"]) and "extra" in out.columns
    assert out.loc[2, "genres"] == ("Комедия", "Мелодрама")


def test_missing_file_and_unknown_extension(tmp_path):
    with pytest.raises(InputFileError, match="not found"):
        load_interactions(tmp_path / "nope.parquet")
    bad = tmp_path / "movies.json"
    bad.write_text("{}")
    with pytest.raises(InputFileError, match="unknown extension '.json'"):
        load_movies(bad)


def test_corrupt_parquet_and_xlsx(tmp_path):
    p = tmp_path / "i.parquet"
    p.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(InputFileError, match=r"i\.parquet: cannot read interactions as parquet"):
        load_interactions(p)
    x = tmp_path / "m.xlsx"
    x.write_bytes(b"PK\x03\x04 broken zip")
    with pytest.raises(InputFileError, match=r"m\.xlsx: cannot read movies metadata as xlsx"):
        load_movies(x)
