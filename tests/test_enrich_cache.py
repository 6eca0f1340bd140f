"""The API cache: schema, legacy migration without loss, what to re-ask, merging, reading back."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rekko.columns import Columns as C
from rekko.enrich.cache import (
    SCHEMA,
    append_journal,
    compact_cache,
    default_cache_path,
    empty_cache,
    journal_parts,
    load_cache,
    merge_records,
    migrate_legacy,
    migrate_legacy_file,
    read_cache_as_ratings,
    records_frame,
    result_record,
    titles_to_ask,
    unique_titles,
    write_cache,
)
from rekko.enrich.client import ERROR, FOUND, NOT_FOUND, FetchResult
from rekko.enrich.providers import Candidate
from rekko.exceptions import DataValidationError, InputFileError, MissingColumnsError
from rekko.pipeline.ratings import clean_ratings

NOW = datetime(2026, 11, 1, 12, tzinfo=timezone.utc)
LEGACY = pd.DataFrame(
    {
        "name": ["Брат", "Брат", "Сталкер", "Пустой", "Без рейтинга", "Ёлки"],
        "rating": ["dict_values([8.3])", "dict_values([5.1])", "dict_values([8.1])", "-1", "dict_values([])", 6.664],
        "description": ["О Даниле", "Ремейк", "", None, "Есть описание", "Новый год"],
    }
)


def found(title: str, year: int | None = None, rating: float = 7.0, when: datetime = NOW) -> dict:
    cand = Candidate("42", title, (title,), year, rating, 10, f"About {title}")
    return result_record(title, year, FetchResult(FOUND, candidate=cand), "kinopoisk", when)


def other(title: str, status: str, year: int | None = None, when: datetime = NOW) -> dict:
    return result_record(title, year, FetchResult(status, error="boom" if status == ERROR else None), "kinopoisk", when)


def test_default_cache_path_is_beside_the_ratings():
    assert default_cache_path(Path("data/Movies_r_d.xlsx")) == Path("data/api_cache.parquet")


def test_legacy_xlsx_migrates_every_row(tmp_path):
    xlsx = tmp_path / "Movies_r_d.xlsx"
    LEGACY.to_excel(xlsx, index=False, engine="openpyxl")
    cache_path = tmp_path / "api_cache.parquet"
    assert migrate_legacy_file(xlsx, cache_path) == len(LEGACY)
    cache = load_cache(cache_path)
    assert cache[C.TITLE].tolist() == LEGACY["name"].tolist()
    np.testing.assert_allclose(cache[C.RATING].to_numpy(), [8.3, 5.1, 8.1, np.nan, np.nan, 6.664])
    assert cache[C.DESCRIPTION].tolist() == ["О Даниле", "Ремейк", pd.NA, pd.NA, "Есть описание", "Новый год"]
    assert cache[C.STATUS].tolist() == [FOUND, FOUND, FOUND, NOT_FOUND, FOUND, FOUND]
    assert (cache[C.PROVIDER] == "legacy").all()
    assert cache[C.TITLE_KEY].tolist()[-1] == "елки"
    # second call: the cache exists, nothing is migrated again
    assert migrate_legacy_file(xlsx, cache_path) == 0


def test_legacy_needs_a_title_and_a_rating():
    with pytest.raises(MissingColumnsError, match="rating"):
        migrate_legacy(LEGACY.drop(columns="rating"), source="x.xlsx", fetched_at=NOW)


def test_legacy_rows_without_title_are_counted_and_skipped(caplog):
    legacy = pd.DataFrame({"title": ["A", None, " "], "rating": [1.0, 2.0, 3.0], "description": ["a", "b", "c"]})
    out = migrate_legacy(legacy, source="x.csv", fetched_at=NOW)
    assert out[C.TITLE].tolist() == ["A"]
    assert "2 rows have no title" in caplog.text


def test_cache_round_trip_keeps_dtypes(tmp_path):
    cache = merge_records(empty_cache(), [found("Брат", 1997, 8.3), other("Нет", NOT_FOUND), other("Ой", ERROR)])
    write_cache(cache, tmp_path / "c.parquet")
    back = load_cache(tmp_path / "c.parquet")
    pd.testing.assert_frame_equal(back, cache)
    assert list(back.columns) == list(SCHEMA)
    assert str(back[C.FETCHED_AT].dtype) == "datetime64[us, UTC]"
    assert back[C.ERROR].tolist() == [pd.NA, pd.NA, "boom"]


def test_load_cache_missing_file_is_empty_and_bad_files_are_input_errors(tmp_path):
    assert load_cache(tmp_path / "none.parquet").empty
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputFileError, match="bad.parquet"):
        load_cache(tmp_path / "bad.parquet")
    pd.DataFrame({"title": ["x"]}).to_parquet(tmp_path / "cols.parquet")
    with pytest.raises(MissingColumnsError, match="status"):
        load_cache(tmp_path / "cols.parquet")
    bad = merge_records(empty_cache(), [found("a")]).assign(status="maybe")
    bad.to_parquet(tmp_path / "status.parquet")
    with pytest.raises(DataValidationError, match="unknown status 'maybe'"):
        load_cache(tmp_path / "status.parquet")


def test_unique_titles_dedupes_by_normalised_title_and_year(caplog):
    titles = pd.DataFrame(
        {"title": ["Брат", "брат!", "Брат", "", None, "Сталкер"], "release_year": [1997, 1997, 2010, 2000, 2000, None]}
    )
    out = unique_titles(titles)
    assert out[C.TITLE].tolist() == ["Брат", "Брат", "Сталкер"]
    assert out[C.RELEASE_YEAR].tolist() == [1997, 2010, pd.NA]
    assert "2 rows have an empty title" in caplog.text
    with pytest.raises(MissingColumnsError):
        unique_titles(pd.DataFrame({"name": ["x"]}))


def test_titles_to_ask_follows_status_age_and_year_rules():
    old = NOW - timedelta(days=40)
    cache = merge_records(
        empty_cache(),
        [
            found("Found"),
            other("Missing recently", NOT_FOUND, when=NOW - timedelta(days=1)),
            other("Missing long ago", NOT_FOUND, when=old),
            other("Failed", ERROR),
            found("Yearless"),  # a row without year answers for every year
            found("Dated", 2001),
        ],
    )
    titles = unique_titles(
        pd.DataFrame(
            {
                "title": [
                    "found",
                    "Missing recently",
                    "Missing long ago",
                    "Failed",
                    "Yearless",
                    "Dated",
                    "Dated",
                    "New",
                ],
                "release_year": [None, None, None, None, 1999, 2001, 2002, None],
            }
        )
    )
    todo = titles_to_ask(titles, cache, now=NOW, not_found_max_age=timedelta(days=30))
    assert list(zip(todo[C.TITLE], todo[C.RELEASE_YEAR].astype(object), strict=True)) == [
        ("Missing long ago", pd.NA),
        ("Failed", pd.NA),
        ("Dated", 2002),
        ("New", pd.NA),
    ]
    assert len(titles_to_ask(titles, cache, now=NOW, not_found_max_age=timedelta(0))) == 5


def test_merge_replaces_every_older_row_of_the_key():
    legacy = migrate_legacy(LEGACY, source="legacy.xlsx", fetched_at=NOW)  # two "Брат" rows
    merged = merge_records(legacy, [found("брат", rating=9.0), found("Новый")])
    assert len(merged) == len(legacy) - 2 + 2
    brat = merged[merged[C.TITLE_KEY] == "брат"]
    assert brat[C.RATING].tolist() == [9.0] and brat[C.PROVIDER].tolist() == ["kinopoisk"]
    assert legacy[C.TITLE_KEY].tolist().count("брат") == 2  # input untouched
    # within one batch the last answer wins
    twice = merge_records(empty_cache(), [other("X", ERROR), found("X")])
    assert twice[C.STATUS].tolist() == [FOUND]


def test_read_cache_as_ratings_feeds_clean_ratings(tmp_path):
    cache = merge_records(
        empty_cache(),
        [found("Брат", 1997, 8.3), found("Сталкер", None, math.nan), other("Нет", NOT_FOUND), other("Ой", ERROR)],
    )
    write_cache(cache, tmp_path / "c.parquet")
    ratings = read_cache_as_ratings(tmp_path / "c.parquet")
    assert list(ratings.columns) == [C.TITLE, C.RATING, C.DESCRIPTION, C.RELEASE_YEAR]
    assert ratings[C.TITLE].tolist() == ["Брат", "Сталкер"]
    assert ratings[C.RATING].dtype == "float64" and math.isnan(ratings[C.RATING].iloc[1])
    clean = clean_ratings(ratings)
    assert clean["title_key"].tolist() == ["брат", "сталкер"]
    assert clean[C.RELEASE_YEAR].tolist() == [1997, pd.NA]
    assert clean[C.DESCRIPTION].tolist() == ["About Брат", "About Сталкер"]


def test_read_cache_as_ratings_missing_file_names_it(tmp_path):
    with pytest.raises(InputFileError, match="api_cache.parquet"):
        read_cache_as_ratings(tmp_path / "api_cache.parquet")


def test_write_cache_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "c.parquet"
    write_cache(merge_records(empty_cache(), [found("A")]), path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", boom)
    with pytest.raises(OSError):
        write_cache(merge_records(empty_cache(), [found("B")]), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.parquet"]


def test_journal_parts_are_merged_on_load_and_compacted(tmp_path):
    path = tmp_path / "api_cache.parquet"
    write_cache(merge_records(empty_cache(), [found("A", rating=1.0), other("B", ERROR)]), path)
    p1 = append_journal(records_frame([found("B", rating=2.0)]), path)
    p2 = append_journal(records_frame([found("C", rating=3.0), found("A", rating=4.0)]), path)
    assert journal_parts(path) == [p1, p2] and p1.parent == tmp_path / ".api_cache.parquet.journal"
    merged = load_cache(path)
    assert dict(zip(merged[C.TITLE], merged[C.RATING], strict=True)) == {"A": 4.0, "B": 2.0, "C": 3.0}
    assert read_cache_as_ratings(path)[C.TITLE].tolist() == ["B", "C", "A"]
    # killed after writing the file but before dropping the parts: loading again gives the same cache
    write_cache(merged, path)
    pd.testing.assert_frame_equal(
        load_cache(path).sort_values(C.TITLE, ignore_index=True), merged.sort_values(C.TITLE, ignore_index=True)
    )
    compact_cache(path, merged, [p1, p2])
    assert journal_parts(path) == [] and not (tmp_path / ".api_cache.parquet.journal").exists()
    pd.testing.assert_frame_equal(load_cache(path), merged)


def test_journal_without_cache_file_is_still_read(tmp_path):
    path = tmp_path / "api_cache.parquet"
    append_journal(records_frame([found("A")]), path)
    assert load_cache(path)[C.TITLE].tolist() == ["A"]
    assert read_cache_as_ratings(path)[C.TITLE].tolist() == ["A"]
    LEGACY.to_csv(tmp_path / "legacy.csv", index=False)
    assert migrate_legacy_file(tmp_path / "legacy.csv", path) == 0  # a cache exists: never migrate over it
    assert not path.exists()


@settings(deadline=None, max_examples=40)
@given(
    st.lists(
        st.lists(
            st.tuples(
                st.sampled_from(["Брат", "брат!", "Сталкер", "Ёлки", "елки"]),
                st.sampled_from([None, 1997, 2010]),
                st.sampled_from([FOUND, NOT_FOUND, ERROR]),
            ),
            max_size=6,
        ),
        max_size=4,
    )
)
def test_merging_batches_keeps_one_row_per_key_and_the_latest_answer(batches):
    cache = empty_cache()
    latest = {}
    for i, batch in enumerate(batches):
        records = []
        for j, (title, year, status) in enumerate(batch):
            rec = found(title, year, rating=float(i * 10 + j)) if status == FOUND else other(title, status, year)
            records.append(rec)
            latest[(title.casefold().replace("ё", "е").strip("!"), year)] = (status, rec[C.RATING])
        cache = merge_records(cache, records)
    keys = list(zip(cache[C.TITLE_KEY], cache[C.RELEASE_YEAR].astype(object), strict=True))
    assert len(keys) == len(set(keys)) == len(latest)
    for key, status, rating in zip(keys, cache[C.STATUS], cache[C.RATING], strict=True):
        year = None if key[1] is pd.NA else key[1]
        want_status, want_rating = latest[(key[0], year)]
        assert status == want_status
        assert (math.isnan(rating) and math.isnan(want_rating)) or rating == want_rating
