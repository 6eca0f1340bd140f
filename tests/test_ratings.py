import numpy as np
import pandas as pd
import pytest

from rekko.exceptions import DataValidationError, MissingColumnsError
from rekko.pipeline.ratings import attach_ratings, clean_ratings, normalize_title, parse_rating


def test_parse_rating_every_legacy_form():
    raw = pd.Series(["dict_values([6.664])", "7,5", "-1", "", None, "dict_values([])", "8", 9.1])
    got = parse_rating(raw)
    expected = [6.664, 7.5, np.nan, np.nan, np.nan, np.nan, 8.0, 9.1]
    np.testing.assert_allclose(got.to_numpy(), expected, equal_nan=True)


def test_parse_rating_numeric_negative_is_unknown():
    got = parse_rating(pd.Series([7.0, -1.0, np.nan]))
    assert got.iloc[0] == 7.0 and np.isnan(got.iloc[1]) and np.isnan(got.iloc[2])


def test_normalize_title_folds_case_yo_and_punctuation():
    got = normalize_title(pd.Series(["Ёлки-2!", "  ЁЛКИ 2 ", "The Matrix: Reloaded"]))
    assert list(got) == ["елки 2", "елки 2", "the matrix reloaded"]


def test_clean_ratings_accepts_name_and_does_not_mutate():
    raw = pd.DataFrame({"name": ["A"], "rating": ["dict_values([5.5])"], "description": ["  text "]})
    before = raw.copy()
    out = clean_ratings(raw)
    pd.testing.assert_frame_equal(raw, before)
    assert out.loc[0, "title"] == "A" and out.loc[0, "rating"] == 5.5 and out.loc[0, "description"] == "text"


def test_clean_ratings_missing_column_is_named():
    with pytest.raises(MissingColumnsError, match=r"Missed columns \['description'\]"):
        clean_ratings(pd.DataFrame({"title": ["A"], "rating": [1.0]}), path="r.xlsx")


def test_clean_ratings_rejects_text_rating_with_example():
    raw = pd.DataFrame({"title": ["A", "B"], "rating": ["7.0", "отлично"], "description": ["", ""]})
    with pytest.raises(DataValidationError) as err:
        clean_ratings(raw, path="r.csv")
    msg = str(err.value)
    assert "r.csv" in msg and "'rating'" in msg and "отлично" in msg


def test_attach_never_multiplies_rows_and_prefers_known_rating():
    movies = pd.DataFrame({"movie_id": ["1", "2"], "title": ["Матрица", "Другое"]})
    ratings = clean_ratings(pd.DataFrame({
        "title": ["матрица", "Матрица", "МАТРИЦА"],
        "rating": ["-1", "dict_values([8.0])", "dict_values([6.0])"],
        "description": ["", "хорошо", "плохо"],
    }))
    out, stats = attach_ratings(movies, ratings)
    assert len(out) == 2
    assert out.loc[0, "rating"] == 8.0 and out.loc[0, "description"] == "хорошо"
    assert np.isnan(out.loc[1, "rating"])
    assert stats["matched"] == 1 and stats["ambiguous_title_matches"] == 1


def test_attach_uses_year_to_disambiguate_remakes():
    movies = pd.DataFrame({"movie_id": ["old", "new"], "title": ["Солярис", "Солярис"],
                           "release_year": [1972, 2002]})
    ratings = clean_ratings(pd.DataFrame({
        "title": ["Солярис", "Солярис"], "rating": [8.1, 6.2], "description": ["Тарковский", "Содерберг"],
        "year": [1972, 2002],
    }))
    out, stats = attach_ratings(movies, ratings)
    assert list(out["rating"]) == [8.1, 6.2]
    assert list(out["description"]) == ["Тарковский", "Содерберг"]
    assert stats["matched_by_year"] == 2


def test_rows_without_a_title_are_counted_and_named_not_dropped_silently(caplog):
    raw = pd.DataFrame({"title": ["Alpha", "", None, "Beta"], "rating": [7.0, 8.0, 6.0, 5.0],
                        "description": ["a", "b", "c", "d"]})
    with caplog.at_level("WARNING", logger="rekko.pipeline.ratings"):
        out = clean_ratings(raw, path="data/Movies_r_d.xlsx")
    assert list(out["title"]) == ["Alpha", "Beta"]
    [record] = caplog.records
    assert "data/Movies_r_d.xlsx: dropped 2 of 4 rows without a title" in record.getMessage()
    assert "'rating': 8.0" in record.getMessage()
