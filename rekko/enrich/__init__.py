"""Ratings and descriptions from an external movie API (Kinopoisk or TMDB), cached and resumable.

Entry points for the pipeline and the CLI::

    summary = enrich_titles(movies[["title"]], default_cache_path(ratings_path), EnrichSettings.from_env())
    ratings = read_cache_as_ratings(default_cache_path(ratings_path))  # -> rekko.pipeline.ratings.clean_ratings
"""

from rekko.enrich.cache import CacheBusyError, default_cache_path, migrate_legacy_file, read_cache_as_ratings
from rekko.enrich.client import ApiAccessDenied, ApiKeyRejected, ApiRedirectRefused, ApiStop, DailyLimitReached
from rekko.enrich.runner import EnrichSummary, enrich_titles
from rekko.enrich.settings import EnrichSettings, Secret

__all__ = [
    "ApiAccessDenied",
    "ApiKeyRejected",
    "ApiRedirectRefused",
    "ApiStop",
    "CacheBusyError",
    "DailyLimitReached",
    "EnrichSettings",
    "EnrichSummary",
    "Secret",
    "default_cache_path",
    "enrich_titles",
    "migrate_legacy_file",
    "read_cache_as_ratings",
]
