"""Column names used across rekko, in one place.

Every stage reads and writes frames through these constants so that a renamed
column is a one-line change and a typo is an ``AttributeError``, not a silent
``KeyError`` deep inside a join.
"""

from __future__ import annotations


class Columns:
    """Canonical column names of rekko's frames and artifacts."""

    # ids
    USER = "user_id"
    MOVIE = "movie_id"

    # interactions (input)
    WATCHED_MINUTES = "watch_duration_minutes"
    YEAR = "year"
    MONTH = "month"
    DAY = "day"
    DATETIME = "last_watch_dt"
    # interactions (derived)
    WATCH_RATIO = "watch_ratio"
    RECENCY_RANK = "recency_rank"  # 0 = the user's latest watch
    N_SESSIONS = "n_sessions"

    # movies metadata (input)
    TITLE = "title"
    ENTITY_TYPE = "entity_type"
    GENRES = "genres"
    ACTORS = "actors"
    DIRECTOR = "director"
    COUNTRY = "country"
    AGE_RATING = "age_rating"
    DURATION = "duration"
    RELEASE_YEAR = "release_year"

    # ratings and descriptions (the external API's cache)
    NAME = "name"
    RATING = "rating"
    DESCRIPTION = "description"
    # the API cache (rekko.enrich): one row per title asked
    TITLE_KEY = "title_key"
    VOTES = "votes"
    PROVIDER = "provider"
    PROVIDER_ID = "provider_id"
    MATCHED_TITLE = "matched_title"
    MATCHED_YEAR = "matched_year"
    FETCHED_AT = "fetched_at"
    STATUS = "status"
    ERROR = "error"

    # per-movie features
    N_USERS = "n_users"
    MEAN_WATCH_RATIO = "mean_watch_ratio"
    POPULARITY = "popularity"
    RATING_NORM = "rating_norm"
    MOVIE_SCORE = "movie_score"

    # per-user features
    N_MOVIES = "n_movies"
    TOTAL_MINUTES = "watched_minutes_total"
    INT_COEF = "int_coef"

    # recommendations
    SCORE = "score"
    RANK = "rank"
    BASED_ON = "based_on"
    BASED_ON_TITLE = "based_on_title"
    SIM_MD = "sim_md"
    SIM_DESC = "sim_desc"
    SIM_CF = "sim_cf"
    COLD_START = "cold_start"


#: Columns an interactions file must have (the date may come in several forms).
INTERACTIONS_REQUIRED = (Columns.USER, Columns.MOVIE, Columns.WATCHED_MINUTES)
#: Columns a movies metadata file must have; the rest are optional and kept.
MOVIES_REQUIRED = (Columns.MOVIE, Columns.TITLE)
#: Optional metadata columns rekko uses when present.
MOVIES_OPTIONAL = (
    Columns.ENTITY_TYPE,
    Columns.GENRES,
    Columns.ACTORS,
    Columns.DIRECTOR,
    Columns.COUNTRY,
    Columns.AGE_RATING,
    Columns.DURATION,
)
#: List-valued metadata columns (JSON-like strings, lists/arrays or comma-separated text).
LIST_COLUMNS = (Columns.GENRES, Columns.ACTORS, Columns.DIRECTOR, Columns.COUNTRY)
#: Metadata fields that go into the metadata TF-IDF text, in order.
METADATA_TEXT_FIELDS = (
    Columns.TITLE,
    Columns.ENTITY_TYPE,
    Columns.GENRES,
    Columns.DIRECTOR,
    Columns.ACTORS,
    Columns.COUNTRY,
)
