"""The FastAPI application: JSON endpoints over one :class:`~rekko.serve.state.Snapshot` per request.

Handlers are ``async def`` on purpose: each does a bounded amount of numpy work
(n <= 100, one sparse row product) in well under a few milliseconds, so
running it on the event loop is cheaper than a thread-pool hop, and it keeps
the recommender single-threaded within a worker. Every handler reads
``state.snapshot`` exactly once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi_offline import FastAPIOffline

from rekko import __version__
from rekko.columns import Columns as C
from rekko.exceptions import ArtifactError, ConfigError
from rekko.paths import ArtifactPaths
from rekko.serve.page import PAGE_HTML

from rekko.serve.schemas import (
    Error,
    Health,
    Movie,
    RecommendationList,
    SimilarList,
    SimilarMovie,
    SimKind,
)
from rekko.serve.state import ArtifactState, Snapshot, SnapshotSource

log = logging.getLogger(__name__)

MAX_N = 100
_LABEL_PERSONAL = "personal: scored by similarity to the movies the user watched"
_LABEL_COLD = "cold start: no watch history, best-rated popular movies"

N = Annotated[int, Query(ge=1, le=MAX_N, description=f"number of movies, 1..{MAX_N}")]
UserId = Annotated[int, Path(ge=-(2**63), le=2**63 - 1, description="user id (integer)")]
MovieId = Annotated[str, Path(description="movie id as in the movies metadata")]
_NOT_FOUND = {404: {"model": Error, "description": "unknown movie"}}


def create_app(paths: ArtifactPaths | None = None, *, state: SnapshotSource | None = None,
               reload_interval: float | None = 2.0) -> FastAPI:
    """Build the app over ``paths`` (loaded and verified now) or over a ready ``state``.

    Raises :class:`~rekko.exceptions.ArtifactError` when the artifacts are
    missing or do not verify, so a server never starts without them.
    ``reload_interval`` (seconds) is how often the watcher looks for a new
    pipeline run; None turns reloading off.
    """
    if state is None:
        state = ArtifactState.from_paths(paths or ArtifactPaths(), interval=reload_interval)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state.start()
        try:
            yield
        finally:
            state.stop()

    # Swagger UI and ReDoc from files shipped in the package, not a CDN: the docs work offline
    app = FastAPIOffline(
        title="rekko",
        version=__version__,
        description="Movie recommendations from watch history, metadata and descriptions. "
                    "Every answer names the artifact generation (`artifacts`) it came from.",
        lifespan=lifespan,
    )
    app.state.artifacts = state

    @app.exception_handler(ConfigError)
    async def _config_error(_: Request, exc: ConfigError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(ArtifactError)
    async def _artifact_error(_: Request, exc: ArtifactError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, status_code=500)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return PAGE_HTML

    @app.get("/health", response_model=Health, summary="artifact generation, counts and reload status")
    async def health() -> Health:
        snap = state.snapshot
        m = snap.manifest
        return Health(
            status=state.status,
            artifacts=snap.version,
            manifest={"sha256": snap.manifest_sha256, "schema_version": m.schema_version,
                      "rekko_version": m.rekko_version, "created_at": m.created_at},
            counts=snap.counts(),
            loaded_at=snap.loaded_at,
            checked_at=state.checked_at,
            reloads=state.reloads,
            failed_reloads=state.failed_reloads,
            reload_error=state.reload_error,
        )

    @app.get("/recommendations/{user_id}", response_model=RecommendationList,
             summary="top-n unwatched movies for a user (cold-start list for an unknown user)")
    async def recommendations(user_id: UserId, n: N = 10) -> Response:
        return _json(recommendation_list(state.snapshot, user_id, n))

    @app.get("/movies/{movie_id}", response_model=Movie, responses=_NOT_FOUND, summary="one movie's details")
    async def movie(movie_id: MovieId) -> Movie:
        snap = state.snapshot
        details = snap.catalog.details(_position(snap, movie_id))
        return Movie(**details, similarity_kinds=list(snap.recommender.artifacts.sims), artifacts=snap.version)

    @app.get("/movies/{movie_id}/similar", response_model=SimilarList, responses=_NOT_FOUND,
             summary="nearest movies by metadata (md), description (desc) or co-watching (cf)")
    async def similar(movie_id: MovieId, n: N = 10, kind: SimKind = "md") -> SimilarList:
        snap = state.snapshot
        pos = _position(snap, movie_id)
        sims = snap.recommender.artifacts.sims
        if kind not in sims:
            raise HTTPException(404, f"no '{kind}' similarity in the loaded artifacts; available: {sorted(sims)}")
        found = snap.recommender.similar(movie_id, n, kind)
        items = [SimilarMovie(rank=i, movie_id=m, title=t, score=s) for i, (m, t, s) in enumerate(
            zip(found[C.MOVIE].tolist(), found[C.TITLE].tolist(), found[C.SCORE].tolist(), strict=True), start=1)]
        title = str(snap.recommender.artifacts.titles[pos])
        return SimilarList(movie_id=movie_id, title=title, kind=kind, artifacts=snap.version, items=items)

    return app


def _position(snap: Snapshot, movie_id: str) -> int:
    pos = snap.recommender.movie_position(movie_id)
    if pos < 0:
        raise HTTPException(404, f"unknown movie_id {movie_id!r}")
    return pos


def recommendation_list(snap: Snapshot, user_id: int, n: int) -> dict[str, Any]:
    """The CLI's recommend answer (movie_id, title, score, based_on, components) as a JSON-ready dict.

    Shaped exactly like :class:`RecommendationList`; plain dicts because this is
    the hot path (the schema is still enforced by the tests and schemathesis).
    """
    r = snap.recommender.rank(user_id, n)
    a = snap.recommender.artifacts
    ids, titles = a.movie_ids, a.titles
    parts = list(r.components)
    comps = zip(*(r.components[p].tolist() for p in parts), strict=True)
    items = [
        {"rank": i, "movie_id": str(ids[m]), "title": str(titles[m]), "score": score,
         "based_on": str(ids[b]) if b >= 0 else None, "based_on_title": str(titles[b]) if b >= 0 else None,
         "components": dict(zip(parts, values, strict=True))}
        for i, (m, score, b, values) in enumerate(
            zip(r.movies.tolist(), r.scores.tolist(), r.based_on.tolist(), comps, strict=True), start=1)
    ]
    return {
        "user_id": user_id,
        "cold_start": r.cold_start,
        "label": _LABEL_COLD if r.cold_start else _LABEL_PERSONAL,
        "history_size": r.history_size,
        "artifacts": snap.version,
        "items": items,
    }


def _json(body: dict[str, Any]) -> Response:
    """Serialize once, without FastAPI's re-validation of the response model (documented via response_model)."""
    return Response(json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode(),
                    media_type="application/json")
