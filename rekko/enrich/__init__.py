"""Ratings and descriptions from an external movie API (Kinopoisk or TMDB), cached and resumable.

Entry points for the pipeline and the CLI::

    summary = enrich_titles(movies[["title"]], default_cache_path(ratings_path), EnrichSettings.from_env())
    ratings = read_cache_as_ratings(default_cache_path(ratings_path))  # -> rekko.pipeline.ratings.clean_ratings
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CacheBusyError": "cache", "default_cache_path": "cache", "migrate_legacy_file": "cache",
    "read_cache_as_ratings": "cache",
    "ApiAccessDenied": "client", "ApiKeyRejected": "client", "ApiRedirectRefused": "client", "ApiStop": "client",
    "DailyLimitReached": "client",
    "EnrichSummary": "runner", "enrich_titles": "runner",
    "EnrichSettings": "settings", "Secret": "settings",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Load on first use: registering ``rekko enrich`` on the CLI must not import the HTTP client."""
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"rekko.enrich.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'rekko.enrich' has no attribute {name!r}")
