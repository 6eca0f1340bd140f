"""Response bodies of the HTTP API (they are also the OpenAPI schema at /docs)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

SimKind = Literal["md", "desc", "cf"]


class RecommendedMovie(BaseModel):
    rank: int = Field(description="1 = best")
    movie_id: str
    title: str
    score: float = Field(description="blended score; higher is better")
    based_on: str | None = Field(description="movie_id of the watched movie this recommendation mainly comes from")
    based_on_title: str | None = Field(description="title of that watched movie")
    components: dict[str, float] = Field(
        description="parts of the score: similarity to the history per kind (sim_md, sim_desc, sim_cf) and movie_score")


class RecommendationList(BaseModel):
    user_id: int
    cold_start: bool = Field(description="true when the user has no watch history: best movie scores instead")
    label: str
    history_size: int = Field(description="movies the user has watched")
    artifacts: str = Field(description="id of the artifact generation that answered")
    items: list[RecommendedMovie]


class SimilarMovie(BaseModel):
    rank: int
    movie_id: str
    title: str
    score: float = Field(description="cosine similarity")


class SimilarList(BaseModel):
    movie_id: str
    title: str
    kind: SimKind
    artifacts: str
    items: list[SimilarMovie]


class Movie(BaseModel):
    movie_id: str
    title: str
    entity_type: str | None = None
    genres: list[str] | None = None
    director: list[str] | None = None
    actors: list[str] | None = None
    country: list[str] | None = None
    age_rating: str | None = None
    duration: float | None = Field(None, description="minutes")
    release_year: int | None = None
    rating: float | None = Field(None, description="external rating, 0-10")
    description: str | None = None
    n_users: int | None = Field(None, description="users who watched it")
    mean_watch_ratio: float | None = None
    popularity: float | None = None
    movie_score: float | None = None
    similarity_kinds: list[SimKind]
    artifacts: str


class ManifestInfo(BaseModel):
    sha256: str
    schema_version: int
    rekko_version: str
    created_at: str


class Counts(BaseModel):
    movies: int
    users: int
    interactions: int
    similarity_nnz: dict[str, int]


class Health(BaseModel):
    status: Literal["ok", "stale"] = Field(
        description="stale: newer artifacts on disk failed to load; the older ones keep serving (see reload_error)")
    artifacts: str
    manifest: ManifestInfo
    counts: Counts
    loaded_at: datetime
    checked_at: datetime
    reloads: int
    failed_reloads: int
    reload_error: str | None


class Error(BaseModel):
    detail: str
