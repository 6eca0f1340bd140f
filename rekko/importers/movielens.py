"""MovieLens (+ TMDB 5000, IMDb 5000) -> rekko's three input files.

MovieLens has explicit star ratings, rekko learns from watch time. The bridge is
one documented, deterministic mapping (:func:`rating_to_minutes`):

    watched minutes = runtime x rating / 5

so a 5-star rating is a full watch and 2.5 stars is half the film; the
pipeline's watch ratio (watched / duration) then equals ``rating / 5`` exactly.

Metadata comes from three places, joined by id (never by title):

* ``movies.csv``: title (the ``(1995)`` suffix becomes ``release_year``; the
  MovieLens "Usual Suspects, The" becomes "The Usual Suspects") and
  pipe-separated genres;
* TMDB 5000 via ``links.csv`` tmdbId: genres (merged), production countries,
  runtime, overview (the description) and vote_average (the rating);
* IMDb 5000 via ``links.csv`` imdbId (the ``tt`` id in ``movie_imdb_link``):
  director, three lead actors, country, content rating (age rating), duration
  and imdb_score (the rating when TMDB has none).

Runtime precedence: TMDB runtime, else IMDb duration, else
:data:`DEFAULT_RUNTIME` minutes (counted in the stats, never silent).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from rekko.columns import Columns as C
from rekko.exceptions import ConfigError, DataValidationError, MissingColumnsError
from rekko.io import read_table, write_table

log = logging.getLogger(__name__)

#: Minutes assumed for a movie neither TMDB nor IMDb has a runtime for
#: (close to the median feature-film runtime in both files).
DEFAULT_RUNTIME = 100.0
#: The top of the MovieLens star scale; a rating of MAX_RATING is a full watch.
MAX_RATING = 5.0
#: MovieLens lists films only.
ENTITY_TYPE = "movie"

ML_RATINGS = ("userId", "movieId", "rating", "timestamp")
ML_MOVIES = ("movieId", "title", "genres")
ML_LINKS = ("movieId", "imdbId", "tmdbId")
TMDB_COLUMNS = ("id", "overview", "runtime", "vote_average", "vote_count", "genres", "production_countries")
IMDB_COLUMNS = (
    "movie_imdb_link",
    "director_name",
    "actor_1_name",
    "actor_2_name",
    "actor_3_name",
    "duration",
    "content_rating",
    "country",
    "imdb_score",
)

#: Output file names: the seed's own names, so ``rekko pipeline`` runs with its
#: defaults when ``--out data``.
INTERACTIONS_FILE = "interactions.parquet"
MOVIES_FILE = "movies_metdata.parquet"
RATINGS_FILES = {"xlsx": "Movies_r_d.xlsx", "parquet": "ratings.parquet", "csv": "ratings.csv"}

_TMDB_ID = "tmdb_id"
_IMDB_ID = "imdb_id"
_YEAR_SUFFIX = r"\s*\((\d{4})(?:\s*[-\u2013]\s*(?:\d{4})?)?\)\s*$"
_TRAILING_ARTICLE = r"^(?P<head>.+?), (?P<article>The|A|An|Les|Le|La|El|Il|Das|Der|Die)(?P<tail>\s+\(.*\))?$"
_JSON_NAME = r'"name":\s*"(?P<name>(?:[^"\\]|\\.)*)"'


@dataclass(frozen=True)
class ImportResult:
    """rekko's three inputs built from MovieLens, plus counts for the user."""

    interactions: pd.DataFrame
    movies: pd.DataFrame
    ratings: pd.DataFrame
    stats: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------- reading


def _require(df: pd.DataFrame, columns: tuple[str, ...], path: os.PathLike[str] | str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise MissingColumnsError(missing, path=str(path), available=df.columns)


def _numeric(df: pd.DataFrame, column: str, path: Path, *, allow_na: bool = False) -> pd.Series:
    """``df[column]`` as numbers; a non-numeric cell is a DataValidationError naming the row."""
    values = pd.to_numeric(df[column], errors="coerce")
    bad = values.isna() & (df[column].notna() | (not allow_na))
    if bad.any():
        row = df.loc[bad].iloc[0]
        raise DataValidationError(
            f"expected a number, got {row[column]!r}", path=str(path), column=column, example=row.to_dict()
        )
    return values


def read_movielens(directory: str | os.PathLike[str]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Read and validate ``ratings.csv``, ``movies.csv`` and ``links.csv`` from a MovieLens directory."""
    d = Path(directory)
    ratings_path, movies_path, links_path = d / "ratings.csv", d / "movies.csv", d / "links.csv"
    ratings = read_table(ratings_path, what="MovieLens ratings")
    movies = read_table(movies_path, what="MovieLens movies")
    links = read_table(links_path, what="MovieLens links")
    _require(ratings, ML_RATINGS, ratings_path)
    _require(movies, ML_MOVIES, movies_path)
    _require(links, ML_LINKS, links_path)

    rating = _numeric(ratings, "rating", ratings_path)
    out_of_scale = (rating <= 0) | (rating > MAX_RATING)
    if out_of_scale.any():
        row = ratings.loc[out_of_scale].iloc[0]
        raise DataValidationError(
            f"rating must be in (0, {MAX_RATING:g}], got {row['rating']!r}",
            path=str(ratings_path),
            column="rating",
            example=row.to_dict(),
        )
    ratings = pd.DataFrame(
        {
            "userId": _numeric(ratings, "userId", ratings_path).astype("int64"),
            "movieId": _numeric(ratings, "movieId", ratings_path).astype("int64"),
            "rating": rating.astype("float64"),
            "timestamp": _numeric(ratings, "timestamp", ratings_path).astype("int64"),
        }
    )
    movies = movies.assign(movieId=_numeric(movies, "movieId", movies_path).astype("int64"))
    dup = movies["movieId"].duplicated(keep=False)
    if dup.any():
        row = movies.loc[dup].iloc[0]
        raise DataValidationError(
            f"duplicate movieId {row['movieId']} ({int(dup.sum())} rows share a movieId)",
            path=str(movies_path),
            column="movieId",
            example=row.to_dict(),
        )
    links = links.assign(
        movieId=_numeric(links, "movieId", links_path).astype("int64"),
        imdbId=_numeric(links, "imdbId", links_path, allow_na=True).astype("Int64"),
        tmdbId=_numeric(links, "tmdbId", links_path, allow_na=True).astype("Int64"),
    ).drop_duplicates("movieId")
    return ratings, movies, links


def _json_names(values: pd.Series) -> pd.Series:
    """TMDB's ``[{"id": 28, "name": "Action"}, ...]`` cells -> lists of names (empty list when none)."""
    found = values.astype("string").str.extractall(_JSON_NAME)["name"]
    return _lists_by_key(
        pd.DataFrame({"key": found.index.get_level_values(0), "value": found.to_numpy()}), values.index
    )


def _lists_by_key(long: pd.DataFrame, index: pd.Index) -> pd.Series:
    """Gather a long (key, value) frame into one list per key of ``index``; keys with no value get ``[]``.

    Values are stripped, empty ones dropped and duplicates removed keeping the
    first occurrence, so the order of ``long`` decides the order of each list.
    """
    values = long["value"].astype("string").str.strip()
    long = long.assign(value=values)[values.notna() & (values != "")].drop_duplicates(["key", "value"])
    grouped = long.groupby("key", sort=False)["value"].agg(list).to_dict()
    return pd.Series([grouped.get(k, []) for k in index], index=index, dtype=object)


def read_tmdb(path: str | os.PathLike[str]) -> pd.DataFrame:
    """TMDB 5000 movies -> one row per tmdb id with tidy types (unknowns are NaN, not 0)."""
    raw = read_table(path, what="TMDB movies")
    _require(raw, TMDB_COLUMNS, path)
    ids = _numeric(raw, "id", Path(path)).astype("int64")
    runtime = pd.to_numeric(raw["runtime"], errors="coerce")
    votes = pd.to_numeric(raw["vote_count"], errors="coerce").fillna(0)
    vote_average = pd.to_numeric(raw["vote_average"], errors="coerce")
    overview = raw["overview"].astype("string").str.strip()
    year = (
        pd.to_datetime(raw["release_date"], errors="coerce").dt.year
        if "release_date" in raw.columns
        else pd.Series(np.nan, index=raw.index)
    )
    tidy = pd.DataFrame(
        {
            _TMDB_ID: ids,
            "tmdb_runtime": runtime.where(runtime > 0),
            "tmdb_rating": vote_average.where(votes > 0),
            "tmdb_overview": overview.mask(overview == "").astype(object),
            "tmdb_genres": _json_names(raw["genres"]),
            "tmdb_countries": _json_names(raw["production_countries"]),
            "tmdb_year": pd.array(year, dtype="Int64"),
        }
    )
    out = tidy.drop_duplicates(_TMDB_ID, keep="first").reset_index(drop=True)
    if len(out) < len(tidy):
        log.info("%s: %d repeated TMDB ids ignored (the first row of each wins)", path, len(tidy) - len(out))
    return out


def read_imdb(path: str | os.PathLike[str]) -> pd.DataFrame:
    """IMDb 5000 -> one row per ``tt`` id (the file repeats some films: the first row wins)."""
    raw = read_table(path, what="IMDb movies")
    _require(raw, IMDB_COLUMNS, path)
    tt = raw["movie_imdb_link"].astype("string").str.extract(r"tt(\d+)", expand=False)
    text = {
        c: raw[c].astype("string").str.replace("\u00a0", " ", regex=False).str.strip()
        for c in ("director_name", "content_rating", "country")
    }
    actors = (
        raw[["actor_1_name", "actor_2_name", "actor_3_name"]]
        .rename_axis("key")
        .reset_index()
        .melt(id_vars="key", var_name="slot", value_name="value")
        .sort_values(["key", "slot"], kind="stable")
    )
    duration = pd.to_numeric(raw["duration"], errors="coerce")
    tidy = pd.DataFrame(
        {
            _IMDB_ID: pd.to_numeric(tt, errors="coerce").astype("Int64"),
            "imdb_director": text["director_name"].astype(object),
            "imdb_actors": _lists_by_key(actors, raw.index),
            "imdb_country": text["country"].astype(object),
            "imdb_age_rating": text["content_rating"].astype(object),
            "imdb_duration": duration.where(duration > 0),
            "imdb_rating": pd.to_numeric(raw["imdb_score"], errors="coerce"),
        }
    )
    no_id = int(tidy[_IMDB_ID].isna().sum())
    tidy = tidy[tidy[_IMDB_ID].notna()]
    out = tidy.drop_duplicates(_IMDB_ID, keep="first").reset_index(drop=True)
    if no_id or len(out) < len(tidy):
        log.info(
            "%s: %d rows without a tt id and %d repeated tt ids ignored (the first row of each wins)",
            path,
            no_id,
            len(tidy) - len(out),
        )
    return out


# --------------------------------------------------------------------------- transforming


def split_title_year(titles: pd.Series) -> tuple[pd.Series, pd.Series]:
    """``"Usual Suspects, The (1995)"`` -> (``"The Usual Suspects"``, 1995).

    The year is the trailing ``(YYYY)`` (a series' ``(2006-2007)`` gives its
    first year); titles without one keep their text and get ``<NA>``. The
    MovieLens habit of moving a leading article to the end is undone.
    """
    text = titles.astype("string").str.strip()
    year = pd.to_numeric(text.str.extract(_YEAR_SUFFIX, expand=False), errors="coerce").astype("Int64")
    bare = text.str.replace(_YEAR_SUFFIX, "", regex=True).str.strip()
    parts = bare.str.extract(_TRAILING_ARTICLE)
    moved = parts["article"] + " " + parts["head"] + parts["tail"].fillna("")
    title = moved.where(parts["article"].notna(), bare)
    return title.astype(object), year


def rating_to_minutes(rating: pd.Series | np.ndarray, runtime: pd.Series | np.ndarray) -> np.ndarray:
    """Watched minutes for a star rating: ``runtime x rating / 5`` (5 stars = the whole film)."""
    return np.asarray(runtime, dtype="float64") * np.asarray(rating, dtype="float64") / MAX_RATING


def build_movies(
    ml_movies: pd.DataFrame,
    links: pd.DataFrame,
    tmdb: pd.DataFrame | None = None,
    imdb: pd.DataFrame | None = None,
    *,
    default_runtime: float = DEFAULT_RUNTIME,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """Metadata (one row per MovieLens movie) and the ratings/descriptions cache, enriched by id.

    The cache holds the movies TMDB or IMDb knows (TMDB's vote_average, else
    IMDb's imdb_score, both 0-10; TMDB's overview) under the same title and
    year as the metadata, so rekko's title+year join finds them.
    """
    title, year = split_title_year(ml_movies["title"])
    base = pd.DataFrame(
        {"movieId": ml_movies["movieId"].to_numpy(), "_title": title.to_numpy(), "_year": year.to_numpy()}
    )
    base = base.merge(links[["movieId", "imdbId", "tmdbId"]], on="movieId", how="left", validate="one_to_one")
    if tmdb is not None:
        base = base.merge(tmdb, left_on="tmdbId", right_on=_TMDB_ID, how="left", validate="many_to_one")
    if imdb is not None:
        base = base.merge(imdb, left_on="imdbId", right_on=_IMDB_ID, how="left", validate="many_to_one")
    n = len(base)
    empty = pd.Series([np.nan] * n, index=base.index, dtype=object)
    col = lambda name: base[name] if name in base.columns else empty  # noqa: E731

    # genres: MovieLens first, then TMDB's, each once
    ml_genres = ml_movies["genres"].astype("string").reset_index(drop=True).str.split("|").explode().rename("value")
    ml_genres = ml_genres[ml_genres != "(no genres listed)"]
    long = [pd.DataFrame({"key": ml_genres.index, "value": ml_genres.to_numpy()})]
    if "tmdb_genres" in base.columns:
        tg = base["tmdb_genres"].dropna().explode().dropna()
        long.append(pd.DataFrame({"key": tg.index, "value": tg.to_numpy()}))
    genres = _lists_by_key(pd.concat(long, ignore_index=True), base.index)

    director = col("imdb_director")
    director_list = _lists_by_key(pd.DataFrame({"key": base.index, "value": director.to_numpy()}), base.index)
    actors = col("imdb_actors").map(lambda v: v if isinstance(v, list) else [])
    tmdb_countries = col("tmdb_countries").dropna().explode().dropna()
    imdb_country = col("imdb_country").dropna()
    has_tmdb_country = base.index.isin(tmdb_countries.index)
    imdb_country = imdb_country[~imdb_country.index.isin(tmdb_countries.index)]
    country = _lists_by_key(
        pd.concat(
            [
                pd.DataFrame({"key": tmdb_countries.index, "value": tmdb_countries.to_numpy()}),
                pd.DataFrame({"key": imdb_country.index, "value": imdb_country.to_numpy()}),
            ],
            ignore_index=True,
        ),
        base.index,
    )

    tmdb_runtime = pd.to_numeric(col("tmdb_runtime"), errors="coerce")
    imdb_duration = pd.to_numeric(col("imdb_duration"), errors="coerce")
    duration = tmdb_runtime.fillna(imdb_duration).fillna(default_runtime).astype("float64")
    release_year = base["_year"].astype("Int64")
    if "tmdb_year" in base.columns:
        release_year = release_year.fillna(base["tmdb_year"].astype("Int64"))

    movies = pd.DataFrame(
        {
            C.MOVIE: base["movieId"].astype("int64").astype(str).astype(object),
            C.TITLE: base["_title"].astype(object),
            C.RELEASE_YEAR: release_year,
            C.ENTITY_TYPE: ENTITY_TYPE,
            C.GENRES: genres,
            C.DIRECTOR: director_list,
            C.ACTORS: actors.to_numpy(),
            C.COUNTRY: country,
            C.AGE_RATING: col("imdb_age_rating").astype(object),
            C.DURATION: duration,
            _TMDB_ID: base["tmdbId"].astype("Int64"),
            _IMDB_ID: base["imdbId"].astype("Int64"),
        }
    )
    stats = {
        "movies": n,
        "movies_without_year": int(release_year.isna().sum()),
        "tmdb_matched": int(col(_TMDB_ID).notna().sum()),
        "imdb_matched": int(col(_IMDB_ID).notna().sum()),
        "runtime_from_tmdb": int(tmdb_runtime.notna().sum()),
        "runtime_from_imdb": int((tmdb_runtime.isna() & imdb_duration.notna()).sum()),
        "runtime_default": int((tmdb_runtime.isna() & imdb_duration.isna()).sum()),
        "country_from_tmdb": int(has_tmdb_country.sum()),
    }
    # the external API cache: TMDB's overview and vote_average, else IMDb's score
    rating = pd.to_numeric(col("tmdb_rating"), errors="coerce").fillna(
        pd.to_numeric(col("imdb_rating"), errors="coerce")
    )
    description = col("tmdb_overview")
    known = rating.notna() | description.notna()
    ratings = pd.DataFrame(
        {
            C.TITLE: movies[C.TITLE],
            C.RATING: rating.astype("float64"),
            C.DESCRIPTION: description.astype(object),
            "year": release_year,
        }
    )[known.to_numpy()].reset_index(drop=True)
    stats["ratings_rows"] = len(ratings)
    stats["with_description"] = int(ratings[C.DESCRIPTION].notna().sum())
    return movies, ratings, stats


def build_interactions(ratings: pd.DataFrame, movies: pd.DataFrame) -> pd.DataFrame:
    """MovieLens ratings -> rekko interactions (one watch per rating, minutes by :func:`rating_to_minutes`).

    The UTC timestamp becomes ``year``/``month``/``day`` (the seed's form) and is
    also kept whole as ``last_watch_dt`` so that time splits can order a
    user's same-day watches.
    """
    runtime = ratings["movieId"].map(pd.Series(movies[C.DURATION].to_numpy(), index=movies[C.MOVIE].astype("int64")))
    when = pd.to_datetime(ratings["timestamp"], unit="s", utc=True).dt.tz_localize(None)
    return pd.DataFrame(
        {
            C.USER: ratings["userId"].astype("int64").to_numpy(),
            C.MOVIE: ratings["movieId"].astype("int64").astype(str).astype(object).to_numpy(),
            C.WATCHED_MINUTES: rating_to_minutes(ratings["rating"], runtime.fillna(DEFAULT_RUNTIME)),
            C.YEAR: when.dt.year.astype("int64").to_numpy(),
            C.MONTH: when.dt.month.astype("int64").to_numpy(),
            C.DAY: when.dt.day.astype("int64").to_numpy(),
            C.DATETIME: when.to_numpy(),
        }
    )


# --------------------------------------------------------------------------- end to end


def import_movielens(
    directory: str | os.PathLike[str],
    *,
    tmdb: str | os.PathLike[str] | None = None,
    imdb: str | os.PathLike[str] | None = None,
    default_runtime: float = DEFAULT_RUNTIME,
) -> ImportResult:
    """Read a MovieLens directory (and optionally TMDB/IMDb files) into rekko's three inputs."""
    if not default_runtime > 0:
        raise ConfigError(f"default runtime must be a positive number of minutes, got {default_runtime!r}")
    ml_ratings, ml_movies, links = read_movielens(directory)
    tmdb_rows = read_tmdb(tmdb) if tmdb is not None else None
    imdb_rows = read_imdb(imdb) if imdb is not None else None
    movies, ratings, stats = build_movies(ml_movies, links, tmdb_rows, imdb_rows, default_runtime=default_runtime)
    interactions = build_interactions(ml_ratings, movies)
    known = ml_ratings["movieId"].isin(ml_movies["movieId"])
    stats = {
        "interactions": len(interactions),
        "users": int(interactions[C.USER].nunique()),
        "interactions_unknown_movie": int((~known).sum()),
        **stats,
    }
    if stats["interactions_unknown_movie"]:
        log.warning(
            "%d ratings refer to movies missing from movies.csv; kept (rekko's ingest drops and counts them)",
            stats["interactions_unknown_movie"],
        )
    return ImportResult(interactions=interactions, movies=movies, ratings=ratings, stats=stats)


def import_paths(out_dir: str | os.PathLike[str], ratings_format: str = "xlsx") -> dict[str, Path]:
    """The three files an import writes into ``out_dir``, by what they hold."""
    if ratings_format not in RATINGS_FILES:
        raise ValueError(f"ratings_format must be one of {sorted(RATINGS_FILES)}, got {ratings_format!r}")
    out = Path(out_dir)
    return {
        "interactions": out / INTERACTIONS_FILE,
        "movies": out / MOVIES_FILE,
        "ratings": out / RATINGS_FILES[ratings_format],
    }


def source_files(directory: str | os.PathLike[str], *, tmdb: str | os.PathLike[str] | None = None,
                 imdb: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """Every file an import reads, by what it is (for the output checks)."""
    d = Path(directory)
    files = {f"the MovieLens {name}": d / name for name in ("ratings.csv", "movies.csv", "links.csv")}
    if tmdb is not None:
        files["the --tmdb file"] = Path(tmdb)
    if imdb is not None:
        files["the --imdb file"] = Path(imdb)
    return files


def write_import(
    result: ImportResult, out_dir: str | os.PathLike[str], *, ratings_format: str = "xlsx"
) -> dict[str, Path]:
    """Write the three files atomically into ``out_dir`` under the seed's names; return their paths."""
    paths = import_paths(out_dir, ratings_format)
    write_table(result.interactions, paths["interactions"])
    write_table(result.movies, paths["movies"])
    write_table(result.ratings, paths["ratings"])
    return paths
