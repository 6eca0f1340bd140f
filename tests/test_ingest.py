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


# -- user ids: exact 64-bit integers or bad input, never a float round-trip ---------------------
BIG = 2**53  # the first integer whose neighbour a float64 cannot hold


def _with_users(users: list[object], dtype: object = None) -> pd.DataFrame:
    raw = tiny_interactions().iloc[: len(users)].copy()
    raw["user_id"] = pd.Series(users, dtype=dtype, index=raw.index)
    return raw


def test_user_ids_beyond_2_53_stay_distinct_and_exact():
    out = validate_interactions(_with_users([BIG, BIG + 1, -(2**63), 2**63 - 1]))
    assert out["user_id"].dtype == np.int64
    assert out["user_id"].tolist() == [BIG, BIG + 1, -(2**63), 2**63 - 1]


def test_user_id_beyond_int64_in_a_csv_is_bad_input(tmp_path):
    csv = tmp_path / "inter.csv"
    raw = _with_users([1, 2, 2**70, 3], dtype=object)
    raw.to_csv(csv, index=False)
    with pytest.raises(DataValidationError) as err:
        load_interactions(csv)
    msg = str(err.value)
    assert "inter.csv" in msg and "'user_id'" in msg and "64-bit" in msg
    assert str(2**70) in msg and "'movie_id': 'm4'" in msg  # the offending row is quoted


@pytest.mark.parametrize(
    ("users", "dtype", "fragment"),
    [
        ([1, 2**63], "uint64", "64-bit"),
        ([1, str(2**64 + 5)], object, "64-bit"),
        ([1.0, float(BIG)], "float64", "floating-point"),
        ([1.0, 2.5], "float64", "integer user ids"),
        ([1, "2.5"], object, "integer user ids"),
        ([1, float("inf")], object, "integer user ids"),
        ([True, False], "bool", "integer user ids"),
        ([1, "x"], object, "expected numbers"),
    ],
)
def test_user_ids_that_are_not_exact_int64_are_bad_input(users, dtype, fragment):
    with pytest.raises(DataValidationError, match="'user_id'") as err:
        validate_interactions(_with_users(users, dtype), "inter.parquet")
    assert fragment in str(err.value) and "example row" in str(err.value)


@pytest.mark.parametrize(
    ("users", "dtype", "expected"),
    [
        ([" 7", "-3", "+4"], object, [7, -3, 4]),
        (["1.0", 2.0, np.int64(5)], object, [1, 2, 5]),
        ([str(BIG + 1), BIG + 3], object, [BIG + 1, BIG + 3]),
        ([1.0, -2.0], "float64", [1, -2]),
        ([1, BIG + 1], "Int64", [1, BIG + 1]),
        ([1, BIG + 1], "uint64", [1, BIG + 1]),
    ],
)
def test_exact_integer_user_ids_in_any_column_type(users, dtype, expected):
    assert validate_interactions(_with_users(users, dtype))["user_id"].tolist() == expected


def test_decimal_user_ids_from_parquet_are_exact(tmp_path):
    import decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    raw = _with_users([1, 2, 3])
    table = pa.Table.from_pandas(raw, preserve_index=False)
    ids = pa.array([decimal.Decimal(BIG + 1), decimal.Decimal(2), decimal.Decimal(3)], type=pa.decimal128(20, 0))
    table = table.set_column(table.schema.get_field_index("user_id"), "user_id", ids)
    pq.write_table(table, tmp_path / "i.parquet")
    assert load_interactions(tmp_path / "i.parquet")["user_id"].tolist() == [BIG + 1, 2, 3]


# -- watch minutes and dates: finite sums, plausible years ---------------------------------------
def test_watch_minutes_whose_sum_overflows_are_bad_input(recwarn):
    raw = tiny_interactions()
    raw.loc[[0, 1], "watch_duration_minutes"] = 1e308  # user 1, m1: two sessions that sum to inf
    with pytest.raises(DataValidationError) as err:
        validate_interactions(raw, "inter.parquet")
    msg = str(err.value)
    assert "inter.parquet" in msg and "'watch_duration_minutes'" in msg and "user 1" in msg and "'m1'" in msg
    assert "1e+308" in msg and "example row" in msg
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_watch_minutes_of_one_user_overflowing_across_movies_are_bad_input():
    raw = tiny_interactions()
    raw.loc[[0, 2], "watch_duration_minutes"] = 1e308  # user 1: m1 and m4, each finite, the user total is not
    with pytest.raises(DataValidationError, match=r"user 1 .*sum to infinity"):
        validate_interactions(raw, "inter.parquet")


def test_large_but_finite_minutes_pass():
    raw = tiny_interactions()
    raw.loc[0, "watch_duration_minutes"] = 1e300
    assert validate_interactions(raw)["watch_duration_minutes"].max() == 1e300


@pytest.mark.parametrize("year", [0, 1, 1899, 2101, 9999])
def test_watch_years_outside_1900_2100_are_bad_input(year):
    raw = tiny_interactions()
    raw.loc[3, "year"] = year
    with pytest.raises(DataValidationError) as err:
        validate_interactions(raw, "inter.parquet")
    msg = str(err.value)
    assert "1900..2100" in msg and "'year/month/day'" in msg and "'movie_id': 'm3'" in msg


@pytest.mark.parametrize("stamp", ["1899-12-31 23:59", "2101-01-01", "0001-01-01"])
def test_timestamps_outside_1900_2100_are_bad_input(stamp):
    raw = tiny_interactions().drop(columns=["year", "month", "day"]).assign(timestamp="2021-03-04 10:00")
    raw.loc[2, "timestamp"] = stamp
    with pytest.raises(DataValidationError, match=r"'timestamp'.*'movie_id': 'm4'"):
        validate_interactions(raw, "inter.parquet")


@pytest.mark.parametrize("year", [1900, 2100])
def test_boundary_years_pass(year):
    raw = tiny_interactions()
    raw["year"] = year
    assert (validate_interactions(raw)["last_watch_dt"].dt.year == year).all()
