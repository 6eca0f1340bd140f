"""How often enrichment picks the right movie, on real titles, against the seed's "first row".

Real data, read in place from ``../shared/data`` (skipped cleanly when absent):
MovieLens titles ("American President, The (1995)") are asked of a local TMDB
emulator whose catalogue is TMDB 5000; the truth is MovieLens' ``links.csv``
(movieId -> tmdbId). The emulator answers a search like TMDB does: every movie
whose title contains all the query's words, most popular first, 20 per page,
filtered by ``year`` when one is sent. Nothing leaves the machine.

    .venv/bin/python benchmarks/bench_enrich_matching.py
"""

from __future__ import annotations

import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import pandas as pd

from rekko.enrich import EnrichSettings, enrich_titles
from rekko.enrich.cache import load_cache
from rekko.testing.emulator import ApiEmulator, Movie
from rekko.enrich.providers import title_key

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
KEY = "bench-key"
PAGE = 20


def movielens_titles() -> pd.DataFrame:
    """MovieLens movies with a TMDB id in TMDB 5000: query title, year, true tmdb id."""
    movies = pd.read_csv(SHARED / "movielens-small" / "movies.csv")
    links = pd.read_csv(SHARED / "movielens-small" / "links.csv").dropna(subset=["tmdbId"])
    parts = movies["title"].str.strip().str.extract(r"^(?P<name>.*?)\s*(?:\((?P<year>\d{4})\))?\s*$")
    # "American President, The" -> "The American President"
    name = parts["name"].str.replace(r"^(.*), (The|A|An|Les|La|Le|Il|Das|Der|Die|El)$", r"\2 \1", regex=True)
    out = pd.DataFrame(
        {
            "movieId": movies["movieId"],
            "title": name,
            "release_year": pd.to_numeric(parts["year"], errors="coerce").astype("Int64"),
        }
    ).merge(links[["movieId", "tmdbId"]], on="movieId")
    out["tmdbId"] = out["tmdbId"].astype("int64").astype(str)
    return out


def tmdb_catalogue() -> pd.DataFrame:
    tmdb = pd.read_csv(SHARED / "tmdb-5000" / "tmdb_5000_movies.csv")
    tmdb["year"] = pd.to_datetime(tmdb["release_date"], errors="coerce").dt.year.astype("Int64")
    return tmdb


def search_index(tmdb: pd.DataFrame, queries: list[str]) -> dict[str, list[Movie]]:
    """query -> the movies a TMDB-like search returns: all query words in the title, most popular first."""
    words_of = [set(title_key(t).split()) for t in tmdb["title"]]
    by_word: dict[str, set[int]] = defaultdict(set)
    for i, words in enumerate(words_of):
        for w in words:
            by_word[w].add(i)
    order = tmdb["popularity"].to_numpy()
    movies = [
        Movie(
            int(r.id),
            r.title,
            None if pd.isna(r.year) else int(r.year),
            float(r.vote_average),
            int(r.vote_count),
            r.overview if isinstance(r.overview, str) else None,
            r.original_title if r.original_title != r.title else None,
        )
        for r in tmdb.itertuples()
    ]
    out = {}
    for q in queries:
        words = title_key(q).split()
        if not words:
            continue
        hits = set.intersection(*(by_word.get(w, set()) for w in words))
        ranked = sorted(hits, key=lambda i: -order[i])
        out[q] = [movies[i] for i in ranked[: PAGE * 3]]  # the year filter narrows a longer list
    return out


class PagedTmdb(ApiEmulator):
    """TMDB's page size: 20 results after the year filter."""

    def _render(self, movies):
        return super()._render(movies[:PAGE])


def main() -> None:
    if not SHARED.exists():
        print(f"skipped: {SHARED} not found (real data is not shipped with rekko)")
        return
    truth = movielens_titles()
    tmdb = tmdb_catalogue()
    truth = truth[truth["tmdbId"].isin(set(tmdb["id"].astype(str)))].reset_index(drop=True)
    catalogue = search_index(tmdb, truth["title"].unique().tolist())

    # the seed: the first row of the search answer, no year, no title check
    first = {q: str(c[0].id) for q, c in catalogue.items() if c}
    seed_pick = truth["title"].map(first)

    results = {}
    for label, with_year in (("rekko, title + year", True), ("rekko, title only", False)):
        asked = truth if with_year else truth.assign(release_year=pd.NA)
        with PagedTmdb("tmdb", api_key=KEY, catalogue=catalogue) as api, tempfile.TemporaryDirectory() as tmp:
            cfg = EnrichSettings(
                api_key=KEY, provider="tmdb", base_url=api.url, rate_limit=None, concurrency=8, progress="off"
            )
            enrich_titles(asked[["title", "release_year"]], Path(tmp) / "c.parquet", cfg)
            cache = load_cache(Path(tmp) / "c.parquet")
        cache["title_key"] = cache["title_key"].astype(object)
        key = asked.assign(title_key=[title_key(t) for t in asked["title"]])
        key["release_year"] = key["release_year"].astype("Int64")
        merged = key.merge(
            cache[["title_key", "release_year", "provider_id", "status"]], on=["title_key", "release_year"], how="left"
        )
        results[label] = (merged["provider_id"].astype(object), merged["status"])

    n = len(truth)
    print(f"MovieLens movies in TMDB 5000: {n} (queries: {truth['title'].nunique()})")
    print(f"{'method':<24} {'correct':>8} {'wrong':>7} {'no answer':>10} {'precision':>10} {'recall':>7}")

    def row(label: str, picked: pd.Series) -> None:
        answered = picked.notna()
        correct = int((picked[answered] == truth.loc[answered, "tmdbId"]).sum())
        wrong = int(answered.sum()) - correct
        print(
            f"{label:<24} {correct:>8} {wrong:>7} {n - int(answered.sum()):>10} "
            f"{correct / max(int(answered.sum()), 1):>10.1%} {correct / n:>7.1%}"
        )

    row("seed: first row", seed_pick)
    for label, (picked, _status) in results.items():
        row(label, picked)


if __name__ == "__main__":
    sys.exit(main())
