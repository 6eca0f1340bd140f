"""The two movie APIs: how to ask them, how to read their answers, which answer to keep.

Each provider turns a title (and year, when known) into one HTTP request and its
JSON answer into a list of :class:`Candidate`, one normalised shape for both.
:func:`best_match` then picks the candidate whose normalised title equals the
asked one, preferring the right year, then the most votes -- the seed blindly took
the first row, which is often a namesake.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rekko.enrich.settings import Secret

DAILY_LIMIT_MARKERS = ("лимит", "limit", "quota")


class ResponseShapeError(ValueError):
    """The API answered JSON, but not in the shape its documentation promises."""


@dataclass(frozen=True)
class Candidate:
    """One search result, provider-neutral. ``rating`` is NaN when unknown."""

    provider_id: str
    title: str
    names: tuple[str, ...]  # every name to match against; ``title`` first
    year: int | None
    rating: float
    votes: int | None
    description: str | None


@dataclass(frozen=True)
class ApiRequest:
    url: str
    params: dict[str, str | int]
    headers: dict[str, str]


class Provider(ABC):
    """How one API is asked and answered."""

    name: str
    default_url: str
    #: the search filters by year when given one (so a year off by one finds nothing)
    filters_by_year: bool = False

    @abstractmethod
    def build_request(self, base_url: str | None, title: str, year: int | None, key: Secret) -> ApiRequest:
        """The search request for one title."""

    @abstractmethod
    def parse(self, payload: object) -> list[Candidate]:
        """Candidates from a decoded JSON body; :class:`ResponseShapeError` if the shape is wrong."""

    def is_daily_limit(self, status: int, body: str) -> bool:
        """402, or 403 whose body talks about a (daily) limit: stop for today."""
        if status == 402:
            return True
        return status == 403 and any(marker in body.casefold() for marker in DAILY_LIMIT_MARKERS)

    def _url(self, base_url: str | None, path: str) -> str:
        return (base_url or self.default_url).rstrip("/") + path


class Kinopoisk(Provider):
    """api.kinopoisk.dev v1.4: ``GET /v1.4/movie/search``, key in ``X-API-KEY``."""

    name = "kinopoisk"
    default_url = "https://api.kinopoisk.dev"

    def build_request(self, base_url: str | None, title: str, year: int | None, key: Secret) -> ApiRequest:
        # the search endpoint takes no year; the year is used when picking the best match
        return ApiRequest(
            url=self._url(base_url, "/v1.4/movie/search"),
            params={"query": title, "page": 1, "limit": 10},
            headers={"X-API-KEY": key.reveal(), "Accept": "application/json"},
        )

    def parse(self, payload: object) -> list[Candidate]:
        docs = _results(payload, "docs")
        out = []
        for doc in docs:
            if not isinstance(doc, Mapping) or doc.get("id") is None:
                continue
            names = _names(doc.get("name"), doc.get("alternativeName"), doc.get("enName"))
            rating, votes = _kp_rating(doc.get("rating"), doc.get("votes"))
            out.append(
                Candidate(
                    provider_id=str(doc["id"]),
                    title=names[0] if names else "",
                    names=names,
                    year=_int(doc.get("year")),
                    rating=rating,
                    votes=votes,
                    description=_text(doc.get("description")) or _text(doc.get("shortDescription")),
                )
            )
        _check_usable(docs, out)
        return out


class Tmdb(Provider):
    """The Movie Database v3: ``GET /3/search/movie``, key as a Bearer token."""

    name = "tmdb"
    default_url = "https://api.themoviedb.org"
    filters_by_year = True

    def build_request(self, base_url: str | None, title: str, year: int | None, key: Secret) -> ApiRequest:
        params: dict[str, str | int] = {"query": title}
        if year is not None:
            params["year"] = int(year)
        return ApiRequest(
            url=self._url(base_url, "/3/search/movie"),
            params=params,
            headers={"Authorization": f"Bearer {key.reveal()}", "Accept": "application/json"},
        )

    def parse(self, payload: object) -> list[Candidate]:
        results = _results(payload, "results")
        out = []
        for res in results:
            if not isinstance(res, Mapping) or res.get("id") is None:
                continue
            names = _names(res.get("title"), res.get("original_title"))
            votes = _int(res.get("vote_count"))
            rating = _float(res.get("vote_average"))
            if not votes:  # TMDB reports 0.0 for "nobody voted"
                rating = math.nan
            date = res.get("release_date")
            year = _int(date[:4]) if isinstance(date, str) and len(date) >= 4 else None
            out.append(
                Candidate(
                    provider_id=str(res["id"]),
                    title=names[0] if names else "",
                    names=names,
                    year=year,
                    rating=rating,
                    votes=votes,
                    description=_text(res.get("overview")),
                )
            )
        _check_usable(results, out)
        return out


PROVIDERS: dict[str, Provider] = {p.name: p for p in (Kinopoisk(), Tmdb())}


def get_provider(name: str) -> Provider:
    return PROVIDERS[name]


_PUNCT = re.compile(r"[^\w\s]")
_SPACES = re.compile(r"\s+")


def title_key(title: str) -> str:
    """:func:`rekko.pipeline.ratings.normalize_title` for one string.

    Matching runs once per API answer on the worker threads; a pandas call per
    answer would cost about a millisecond of GIL each. Tests check both agree.
    """
    key = title.casefold().replace("ё", "е")
    return _SPACES.sub(" ", _PUNCT.sub(" ", key)).strip()


def best_match(candidates: Sequence[Candidate], title: str, year: int | None = None) -> Candidate | None:
    """The candidate whose normalised title (any of its names) equals ``title``'s.

    Among those: the right year first (exact, then one year off -- release dates
    differ between festivals and cinemas), then the most votes. ``None`` when no
    candidate carries the asked title: a namesake-free miss is "not found", not a guess.
    """
    wanted = title_key(title)
    if not candidates or not wanted:
        return None
    best: Candidate | None = None
    best_rank: tuple[int, int] | None = None
    for cand in candidates:
        if not any(title_key(name) == wanted for name in cand.names):
            continue
        if year is None or cand.year is None:
            year_rank = 0 if year is None else 2
        else:
            year_rank = min(abs(int(cand.year) - int(year)), 2)
        rank = (year_rank, -(cand.votes or 0))
        if best_rank is None or rank < best_rank:  # ties keep the API's order
            best, best_rank = cand, rank
    return best


# --- tolerant field readers: a wrong type in one field never crashes a run ---------------------------------


def _results(payload: object, key: str) -> list[Any]:
    if not isinstance(payload, Mapping):
        raise ResponseShapeError(f"expected a JSON object with '{key}', got {type(payload).__name__}")
    if key not in payload:
        raise ResponseShapeError(f"expected a JSON object with '{key}', got keys {sorted(map(str, payload))[:8]}")
    items = payload[key]
    if items is None:
        return []
    if not isinstance(items, list):
        raise ResponseShapeError(f"expected '{key}' to be a list, got {type(items).__name__}")
    return items


def _check_usable(raw: list[Any], parsed: list[Candidate]) -> None:
    if raw and not parsed:
        raise ResponseShapeError(f"none of the {len(raw)} results is an object with an 'id'")


def _names(*values: object) -> tuple[str, ...]:
    seen: list[str] = []
    for v in values:
        t = _text(v)
        if t and t not in seen:
            seen.append(t)
    return tuple(seen)


def _text(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


def _float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, str):
            try:
                return float(value.replace(",", "."))
            except ValueError:
                return math.nan
        return math.nan
    return float(value) if math.isfinite(value) else math.nan


def _int(value: object) -> int | None:
    f = _float(value)
    return int(f) if math.isfinite(f) else None


def _kp_rating(rating: object, votes: object) -> tuple[float, int | None]:
    """Kinopoisk's own rating, else IMDb's; 0 means "no rating" there."""
    ratings = rating if isinstance(rating, Mapping) else {}
    counts = votes if isinstance(votes, Mapping) else {}
    for source in ("kp", "imdb"):
        r = _float(ratings.get(source))
        if math.isfinite(r) and r > 0:
            return r, _int(counts.get(source))
    return math.nan, _int(counts.get("kp"))
