"""Request building, answer parsing and best-match selection for both providers."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rekko.enrich.providers import Candidate, Kinopoisk, ResponseShapeError, Tmdb, best_match, title_key
from rekko.enrich.settings import Secret
from rekko.pipeline.ratings import normalize_title

KEY = Secret("s3cret-key")


def cand(pid: str, title: str, year: int | None = None, votes: int | None = None, *alt: str) -> Candidate:
    return Candidate(pid, title, (title, *alt), year, 7.0, votes, None)


# --- requests ---------------------------------------------------------------------------------------------


def test_kinopoisk_request_puts_key_in_header_and_title_in_query():
    req = Kinopoisk().build_request(None, "Брат", 1997, KEY)
    assert req.url == "https://api.kinopoisk.dev/v1.4/movie/search"
    assert req.params == {"query": "Брат", "page": 1, "limit": 10}
    assert req.headers["X-API-KEY"] == "s3cret-key"


def test_tmdb_request_uses_bearer_and_year_when_known():
    req = Tmdb().build_request("http://127.0.0.1:9/", "Heat", 1995, KEY)
    assert req.url == "http://127.0.0.1:9/3/search/movie"
    assert req.params == {"query": "Heat", "year": 1995}
    assert req.headers["Authorization"] == "Bearer s3cret-key"
    assert "year" not in Tmdb().build_request(None, "Heat", None, KEY).params


# --- parsing ----------------------------------------------------------------------------------------------

KP_DOC = {
    "id": 41519,
    "name": "Брат",
    "alternativeName": None,
    "enName": "Brother",
    "year": 1997,
    "description": "  Демобилизованный Данила Багров...  ",
    "shortDescription": "Короче",
    "rating": {"kp": 8.3, "imdb": 7.8},
    "votes": {"kp": 650000, "imdb": 40000},
    "movieLength": 96,
    "genres": [{"name": "драма"}],
    "countries": [{"name": "Россия"}],
}


def test_kinopoisk_parse_normalises_fields():
    (c,) = Kinopoisk().parse({"docs": [KP_DOC], "total": 1, "limit": 10, "page": 1, "pages": 1})
    assert c == Candidate("41519", "Брат", ("Брат", "Brother"), 1997, 8.3, 650000, "Демобилизованный Данила Багров...")


def test_kinopoisk_zero_rating_falls_back_to_imdb_then_unknown():
    doc = {**KP_DOC, "rating": {"kp": 0, "imdb": 6.5}, "votes": {"kp": 3, "imdb": 900}, "description": ""}
    (c,) = Kinopoisk().parse({"docs": [doc]})
    assert (c.rating, c.votes, c.description) == (6.5, 900, "Короче")
    (c,) = Kinopoisk().parse({"docs": [{**KP_DOC, "rating": {"kp": 0, "imdb": 0}}]})
    assert math.isnan(c.rating)


def test_kinopoisk_tolerates_wrong_field_types():
    doc = {"id": 7, "name": 123, "alternativeName": "Alt", "year": "1999", "rating": "bad", "votes": None}
    (c,) = Kinopoisk().parse({"docs": [doc, "not a dict", {"name": "no id"}]})
    assert (c.title, c.year, c.votes) == ("Alt", 1999, None)
    assert math.isnan(c.rating)


def test_tmdb_parse_reads_year_and_treats_no_votes_as_unknown_rating():
    results = [
        {
            "id": 949,
            "title": "Heat",
            "original_title": "Heat",
            "overview": "Cops and robbers.",
            "vote_average": 7.9,
            "vote_count": 6000,
            "release_date": "1995-12-15",
        },
        {
            "id": 1,
            "title": "Heat",
            "original_title": "Hitze",
            "overview": "",
            "vote_average": 0.0,
            "vote_count": 0,
            "release_date": "",
        },
    ]
    a, b = Tmdb().parse({"page": 1, "results": results, "total_pages": 1, "total_results": 2})
    assert a == Candidate("949", "Heat", ("Heat",), 1995, 7.9, 6000, "Cops and robbers.")
    assert (b.names, b.year, b.votes, b.description) == (("Heat", "Hitze"), None, 0, None)
    assert math.isnan(b.rating)


@pytest.mark.parametrize(
    "payload",
    [[], "text", 3, None, {"results": []}, {"docs": "x"}, {"docs": [1, 2]}, {"docs": [{"name": "no id"}]}],
)
def test_kinopoisk_unexpected_shapes_raise_shape_error(payload):
    with pytest.raises(ResponseShapeError):
        Kinopoisk().parse(payload)


@pytest.mark.parametrize("payload", [{"docs": []}, {"results": {"a": 1}}, ["results"]])
def test_tmdb_unexpected_shapes_raise_shape_error(payload):
    with pytest.raises(ResponseShapeError):
        Tmdb().parse(payload)


def test_empty_result_lists_are_no_candidates():
    assert Kinopoisk().parse({"docs": []}) == []
    assert Kinopoisk().parse({"docs": None}) == []
    assert Tmdb().parse({"results": []}) == []


def test_daily_limit_detection():
    kp = Kinopoisk()
    assert kp.is_daily_limit(403, '{"message":"Вы израсходовали ваш суточный лимит"}')
    assert kp.is_daily_limit(402, "Payment Required")
    assert not kp.is_daily_limit(403, "Forbidden")
    assert not kp.is_daily_limit(429, "limit")


# --- best match -------------------------------------------------------------------------------------------


def test_best_match_requires_the_title_not_the_first_row():
    cands = [cand("1", "Брат 2", 2000, 900), cand("2", "Брат", 1997, 800)]
    assert best_match(cands, "Брат").provider_id == "2"


def test_best_match_matches_alternative_names_and_normalises():
    cands = [cand("1", "Другое", 2000, 1, "Ёлки!")]
    assert best_match(cands, "  елки ").provider_id == "1"


def test_best_match_prefers_exact_year_then_near_year_then_votes():
    cands = [cand("a", "Солярис", 1972, 10_000), cand("b", "Солярис", 2002, 50_000), cand("c", "Солярис", 2003, 9)]
    assert best_match(cands, "Солярис", 1972).provider_id == "a"
    assert best_match(cands, "Солярис", 2003).provider_id == "c"
    assert best_match(cands, "Солярис", 2004).provider_id == "c"  # one year off beats two
    assert best_match(cands, "Солярис", 1990).provider_id == "b"  # no year close: most votes
    assert best_match(cands, "Солярис").provider_id == "b"  # year unknown: most votes


def test_best_match_none_without_title_match():
    assert best_match([cand("1", "Брат 2", 2000, 9)], "Брат") is None
    assert best_match([], "Брат") is None
    assert best_match([cand("1", "x")], "   ") is None


@settings(deadline=None)  # a shared 2-core machine; speed is not what this checks
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["Брат", "брат!", "Брат 2", "Сёстры", "сестры"]),
            st.none() | st.integers(1990, 2000),
            st.none() | st.integers(0, 10),
        ),
        max_size=8,
    ),
    st.sampled_from(["Брат", "Сестры", "Война"]),
    st.none() | st.integers(1990, 2000),
)
def test_best_match_property(rows, title, year):
    cands = [cand(str(i), t, y, v) for i, (t, y, v) in enumerate(rows)]
    got = best_match(cands, title, year)
    key = normalize_title(pd.Series([title])).iloc[0]
    matching = [c for c in cands if normalize_title(pd.Series([c.title])).iloc[0] == key]
    if not matching:
        assert got is None
        return
    assert got in matching
    if year is not None and any(c.year == year for c in matching):
        assert got.year == year
        assert (got.votes or 0) == max(c.votes or 0 for c in matching if c.year == year)
    if year is None:
        assert (got.votes or 0) == max(c.votes or 0 for c in matching)


TITLE_CHARS = st.sampled_from(list("абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВЁЯabcXYZ0129_ \t\n\u00a0!?.,:;-—«»\"'()&"))


@settings(deadline=None)
@given(st.lists(st.text(TITLE_CHARS, max_size=30), min_size=1, max_size=20))
def test_title_key_agrees_with_normalize_title(titles):
    assert [title_key(t) for t in titles] == normalize_title(pd.Series(titles)).tolist()


def test_title_key_examples():
    assert title_key("  Ёлки-2: Новый  год! ") == "елки 2 новый год"
    assert title_key("Brother (1997)") == "brother 1997"
