"""Deterministic synthetic rekko inputs with a known latent taste structure.

Used for the embedded sample in ``data/`` (demo and tests) and for benchmarks
at the seed's scale (17,500 movies, 1,000,000 rows, ~110,000 users).

The data is built around latent *taste clusters* (themes): every movie belongs
to one cluster, which fixes its genres, director and actor pools, typical
country and age certificate, and the topic words of its description. Every
user has one or two favourite clusters, watches mostly from them and watches
those nearly to the end; elsewhere they sample and drop out. Within a cluster
movie popularity is Zipf-like and follows a latent quality that also drives the
external rating. So a recommender that works shows it: a user's top picks come
from their favourite cluster, and the ground truth is returned alongside
(``truth_*`` frames) so tests and benchmarks can measure that.

Everything is vectorized numpy/pandas; the only Python loops run over movies
(building list-valued strings), never over interactions. Same arguments and
seed give equal frames whatever the numpy/pandas version and the CPU: nothing
that decides a draw or a written value is left to the implementation (no
argpartition, whose order is unspecified; no vectorised log/power kernels, which
numpy picks per CPU; no pandas string kernels). The few array exp/power calls
left only shape watched minutes, which are rounded to 0.1 before they are written.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rekko.columns import Columns as C
from rekko.io import write_table
from rekko.paths import PipelinePaths
from rekko.testing.synth_vocab import (
    ADJECTIVES,
    AGE_RATINGS,
    ALL_GENRES,
    COMMON_WORDS,
    COUNTRIES,
    FEMALE_FIRST,
    FOREIGN_FIRST,
    FOREIGN_LAST,
    MALE_FIRST,
    NOUNS,
    SURNAMES,
    SYLLABLES,
    THEMES,
    WORD_ENDINGS,
)

#: ground-truth column names (only in the ``truth_*`` frames, never in inputs)
CLUSTER = "cluster"
CLUSTER_NAME = "cluster_name"
QUALITY = "quality"
FAV_1 = "favourite_cluster"
FAV_2 = "second_cluster"  # -1 when the user has one favourite
TASTE_STRENGTH = "taste_strength"

#: showcase users present whenever n_users >= 10 (ids 1..3; all others are >= 10)
SHOWCASE_SINGLE_CLUSTER = 1  # one favourite cluster (cluster 0)
SHOWCASE_TWO_CLUSTERS = 2  # favourite clusters 1 and 3
SHOWCASE_ONE_MOVIE = 3  # a single watched movie, from the animation cluster

SERIES, FILM, CARTOON, CARTOON_SERIES = "Сериал", "Фильм", "Мультфильм", "Мультсериал"

_FIRST_DAY = np.datetime64("2022-01-01")
_N_DAYS = 730  # two years of watch history
_MULTI_SESSION_SHARE = 0.04  # extra session rows per row: ~8% of rows share a (user, movie)
_COMMA_LIST_SHARE = 0.15  # list cells written as "a, b" instead of '["a", "b"]'
_DOC_END = "\x1e"  # record separator (numpy strips trailing NULs, so not "\x00")
_MAX_DENSITY = 0.2  # share of all (user, movie) pairs; a user watches at most a quarter of the catalogue
_SHOWCASE_COUNTS = (25, 30, 1)  # distinct movies watched by users 1, 2, 3


@dataclass(frozen=True, eq=False)
class SyntheticData:
    """Generated inputs (``interactions``, ``movies``, ``ratings``) plus ground truth.

    ``truth_movies``: movie_id, cluster, cluster_name, quality, popularity, rating
    (the true external rating; NaN where the cache says unknown or has no row).
    ``truth_users``: user_id, favourite_cluster, second_cluster (-1 = none),
    taste_strength (probability that a watch comes from a favourite).
    ``truth_ratings``: aligned row by row with ``ratings``: the movie_id a row
    describes (None for titles not in the metadata) and the rating it encodes.
    """

    interactions: pd.DataFrame
    movies: pd.DataFrame
    ratings: pd.DataFrame
    truth_movies: pd.DataFrame
    truth_users: pd.DataFrame
    truth_ratings: pd.DataFrame
    clusters: tuple[str, ...]


def default_n_clusters(n_movies: int) -> int:
    """About 8 clusters for the 600-movie sample, all 20 themes at the seed's scale."""
    return int(np.clip(round(np.sqrt(n_movies) / 3), 2, len(THEMES)))


def generate(
    n_movies: int,
    n_users: int,
    n_interactions: int,
    seed: int = 0,
    *,
    n_clusters: int | None = None,
) -> SyntheticData:
    """Generate a coherent synthetic data set; equal arguments give equal frames.

    ``n_interactions`` is the exact number of interaction rows; every user has
    at least one. ``n_clusters`` defaults to :func:`default_n_clusters`.
    """
    k = default_n_clusters(n_movies) if n_clusters is None else n_clusters
    if n_movies < 1 or n_users < 1:
        raise ValueError(f"n_movies and n_users must be >= 1, got {n_movies} and {n_users}")
    if not 1 <= k <= len(THEMES):
        raise ValueError(f"n_clusters must be in 1..{len(THEMES)}, got {k}")
    n_pairs = n_interactions - round(_MULTI_SESSION_SHARE * n_interactions)
    if n_pairs < n_users:
        raise ValueError(f"n_interactions must give every user a row: {n_interactions} rows for {n_users} users")
    if n_pairs > _MAX_DENSITY * n_users * n_movies:
        raise ValueError(
            f"{n_interactions} rows are too dense for {n_users} users x {n_movies} movies "
            f"(expected <= {_MAX_DENSITY:.0%} of all pairs)"
        )
    rng = np.random.default_rng(seed)
    themes = THEMES[:k]

    movies, truth_movies, true_duration, extra_titles = _movies(rng, n_movies, themes)
    ratings, truth_ratings, truth_rating = _ratings(rng, movies, truth_movies, extra_titles, themes)
    truth_movies = truth_movies.assign(**{C.RATING: truth_rating})
    interactions, truth_users = _interactions(rng, n_users, n_pairs, n_interactions, truth_movies, true_duration,
                                              movies[C.ENTITY_TYPE].to_numpy())
    return SyntheticData(
        interactions=interactions,
        movies=movies,
        ratings=ratings,
        truth_movies=truth_movies,
        truth_users=truth_users,
        truth_ratings=truth_ratings,
        clusters=tuple(t.name for t in themes),
    )


# --------------------------------------------------------------------------- helpers


def _uuids(rng: np.random.Generator, n: int) -> np.ndarray:
    """Version-4-shaped UUID strings from the generator's bits (not ``uuid4``: reproducible)."""
    b = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    b[:, 6] = (b[:, 6] & 0x0F) | 0x40
    b[:, 8] = (b[:, 8] & 0x3F) | 0x80
    nibbles = np.empty((n, 32), dtype=np.uint8)
    nibbles[:, 0::2] = b >> 4
    nibbles[:, 1::2] = b & 0x0F
    hexdigits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    out[:, [i for i in range(36) if i not in (8, 13, 18, 23)]] = hexdigits[nibbles]
    ids = np.ascontiguousarray(out).view("S36").ravel().astype(str)
    if len(np.unique(ids)) != n:  # pragma: no cover - 122 random bits
        raise AssertionError("uuid collision")
    return ids


def _sample_in_groups(
    rng: np.random.Generator, group_of_item: np.ndarray, weights: np.ndarray, groups: np.ndarray
) -> np.ndarray:
    """For each entry of ``groups`` draw one item of that group with probability ∝ ``weights``.

    Items must be sorted by group and every drawn group must have an item. One
    ``searchsorted`` over "group + within-group cdf" keys does all draws at once.
    """
    cum = np.cumsum(weights)
    starts = np.r_[0, np.flatnonzero(np.diff(group_of_item)) + 1]
    ends = np.r_[starts[1:], len(weights)]
    before = np.r_[0.0, cum[ends[:-1] - 1]]  # cumulative weight before each group
    within = (cum - np.repeat(before, ends - starts)) / np.repeat(cum[ends - 1] - before, ends - starts)
    within[ends - 1] = 1.0
    keys = group_of_item + within
    u = np.minimum(rng.random(len(groups)), 1.0 - 1e-9)
    return np.searchsorted(keys, groups + u, side="right")


def _zipf(n: int, a: float) -> np.ndarray:
    # math.pow, not the array power: numpy's vectorised power may differ in the last bit between
    # versions and CPUs (numpy 1.26 with AVX-512 did), and these weights decide draws
    return 1.0 / np.array([math.pow(i, a) for i in range(1, n + 1)], dtype=np.float64)


def _within_group_rank(groups: np.ndarray, score: np.ndarray) -> np.ndarray:
    """0 for the highest score in each group, 1 for the next, ..."""
    order = np.lexsort((-score, groups))
    g_sorted = groups[order]
    starts = np.r_[0, np.flatnonzero(np.diff(g_sorted)) + 1]
    pos = np.arange(len(groups)) - np.repeat(starts, np.diff(np.r_[starts, len(groups)]))
    rank = np.empty(len(groups), dtype=np.int64)
    rank[order] = pos
    return rank


def _cap_counts(counts: np.ndarray, cap: int, *, protected: int = 0, total: int | None = None) -> np.ndarray:
    """Clip per-user counts to ``cap`` and hand the excess to users with room, keeping the total.

    The first ``protected`` users (the showcase) are left as they are.
    """
    total = int(counts.sum()) if total is None else total
    out = np.minimum(counts, cap)
    room = np.where(np.arange(len(out)) < protected, 0, cap - out)
    while (excess := total - int(out.sum())) > 0:
        add = np.minimum(room, np.floor(excess * room / room.sum()).astype(np.int64))
        if add.sum() == 0:  # the remainder: one each to the users with the most room
            add = np.zeros_like(out)
            add[np.argsort(-room, kind="stable")[:excess]] = 1
            add = np.minimum(add, room)
        out, room = out + add, room - add
    return out


def _feminine(surname: str) -> str:
    if surname.endswith(("ий", "ый")):
        return surname[:-2] + "ая"
    return surname + "а"


def _people(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` distinct full names (Russian mostly, some foreign); repeats only past the name space."""
    space = np.array(
        [f"{f} {s}" for f in MALE_FIRST for s in SURNAMES]
        + [f"{f} {_feminine(s)}" for f in FEMALE_FIRST for s in SURNAMES]
        + [f"{f} {s}" for f in FOREIGN_FIRST for s in FOREIGN_LAST]
    )
    return rng.choice(space, size=n, replace=n > len(space))


def _titles(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` distinct Russian titles: "Тёмная ночь", "Берег реки", "Тихое море времени".

    Drawn without replacement from three grammatical patterns, weighted so that
    short titles dominate small samples; a numeric suffix extends the space
    when ``n`` exceeds it.
    """
    n_adj, n_noun = len(ADJECTIVES), len(NOUNS)
    sizes = np.array([n_adj * n_noun, n_noun * (n_noun - 1), n_adj * n_noun * (n_noun - 1)])
    total = int(sizes.sum())
    take = min(n, total)
    # Gumbel top-k = weighted sampling without replacement. The log weights come from math.log (numpy's
    # vectorised log may differ in the last bit between CPUs), and the top k are taken by a stable sort,
    # not argpartition: argpartition leaves its first k in an unspecified order, which differs between
    # numpy versions and CPUs (AVX-512 or not), and the permutation below would carry that into the titles.
    log_weights = np.repeat(np.array([math.log(w / s) for w, s in zip((0.35, 0.35, 0.30), sizes.tolist())]), sizes)
    keys = log_weights + rng.gumbel(size=total)
    chosen = rng.permutation(np.argsort(-keys, kind="stable")[:take]) if take < total else rng.permutation(total)
    adj = np.array(ADJECTIVES)
    word = np.array([w for w, _, _ in NOUNS])
    lower = np.array([w[0].lower() + w[1:] for w, _, _ in NOUNS])
    gender = np.array([g for _, g, _ in NOUNS])
    genitive = np.array([g for _, _, g in NOUNS])

    def other(i: np.ndarray, j: np.ndarray) -> np.ndarray:  # j-th noun different from i
        return j + (j >= i)

    titles = np.empty(take, dtype=object)
    a = chosen < sizes[0]
    i = chosen[a]
    titles[a] = np.char.add(np.char.add(adj[i // n_noun, gender[i % n_noun]], " "), lower[i % n_noun])
    b = (chosen >= sizes[0]) & (chosen < sizes[0] + sizes[1])
    i = chosen[b] - sizes[0]
    head, mod = i // (n_noun - 1), other(i // (n_noun - 1), i % (n_noun - 1))
    titles[b] = np.char.add(np.char.add(word[head], " "), genitive[mod])
    c = chosen >= sizes[0] + sizes[1]
    i = chosen[c] - sizes[0] - sizes[1]
    ai, rest = i // (n_noun * (n_noun - 1)), i % (n_noun * (n_noun - 1))
    head, mod = rest // (n_noun - 1), other(rest // (n_noun - 1), rest % (n_noun - 1))
    titles[c] = np.char.add(
        np.char.add(np.char.add(adj[ai, gender[head]], " "), np.char.add(lower[head], " ")), genitive[mod]
    )
    if n > total:  # beyond the space: "Тёмная ночь 2", "... 3"
        extra = np.arange(n - total)
        titles = np.r_[titles, np.char.add(np.char.add(titles[extra % total].astype(str), " "),
                                           (extra // total + 2).astype(str))]
    return titles.astype(str)


def _pseudo_words(rng: np.random.Generator, n: int) -> np.ndarray:
    """Russian-looking nonsense words: the long tail of the description vocabulary."""
    syl = np.array(SYLLABLES)
    n_syl = rng.integers(2, 4, size=3 * n)
    parts = syl[rng.integers(0, len(syl), size=(3 * n, 3))]
    words = np.char.add(parts[:, 0], parts[:, 1])
    words = np.where(n_syl == 3, np.char.add(words, parts[:, 2]), words)
    words = np.char.add(words, np.array(WORD_ENDINGS)[rng.integers(0, len(WORD_ENDINGS), size=3 * n)])
    words = pd.unique(pd.Series(words))
    words = words[~np.isin(words, COMMON_WORDS)]
    return np.asarray(words[:n], dtype=str)


def _format_lists(rng: np.random.Generator, lists: list[list[str] | None]) -> np.ndarray:
    """JSON-like strings for most cells, comma-separated text for a minority; None stays None."""
    comma = rng.random(len(lists)) < _COMMA_LIST_SHARE
    return np.array(
        [
            None if v is None else (", ".join(v) if c else json.dumps(v, ensure_ascii=False))
            for v, c in zip(lists, comma)
        ],
        dtype=object,
    )


def _rows_to_lists(matrix: np.ndarray, keep: np.ndarray) -> list[list[str]]:
    """Per row: the kept entries, de-duplicated in order (a per-movie loop, not per interaction)."""
    return [list(dict.fromkeys(row[mask])) for row, mask in zip(matrix, keep)]


# --------------------------------------------------------------------------- movies


def _movies(
    rng: np.random.Generator, n: int, themes: tuple
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]:
    k = len(themes)
    ids = _uuids(rng, n)
    titles = _titles(rng, n + max(3, round(0.03 * n)))  # the tail is for cache-only titles
    cluster_share = rng.gamma(4.0, size=k)
    cluster = rng.choice(k, size=n, p=cluster_share / cluster_share.sum())
    cluster[: min(k, n)] = np.arange(min(k, n))  # every cluster has a movie
    quality = rng.standard_normal(n)
    rank = _within_group_rank(cluster, quality + 0.8 * rng.standard_normal(n))
    popularity = _zipf(int(rank.max()) + 1, 1.0)[rank]

    # entity type and duration
    series_share = np.array([t.series_share for t in themes])[cluster]
    is_series = rng.random(n) < series_share
    animated = np.array(["Мультфильм" in t.genres for t in themes])[cluster]
    entity = np.where(animated, np.where(is_series, CARTOON_SERIES, CARTOON), np.where(is_series, SERIES, FILM))
    duration = np.where(
        is_series,
        np.clip(rng.normal(45, 6, n), 22, 60),
        np.where(animated, np.clip(rng.normal(85, 12, n), 60, 120), np.clip(rng.normal(110, 22, n), 78, 185)),
    ).round()
    true_duration = duration.copy()
    duration[rng.random(n) < 0.01] = np.nan
    duration[rng.integers(0, n)] = np.nan  # at least one missing, even in tiny samples
    year = np.clip(2024 - np.floor(rng.exponential(11.0, n)), 1955, 2024).astype(np.int64)
    age = np.array(AGE_RATINGS)[np.clip(np.array([t.age for t in themes])[cluster] + rng.integers(-1, 2, n), 0, 4)]

    # genres: the theme's genres (each kept with p=.75, the first always), sometimes one off-theme genre
    theme_genres = np.array([(list(t.genres) + ["", "", ""])[:3] for t in themes])[cluster]
    keep = (rng.random((n, 3)) < 0.75) & (theme_genres != "")
    keep[:, 0] |= ~keep.any(axis=1)
    off = np.array(ALL_GENRES)[rng.integers(0, len(ALL_GENRES), n)]
    genre_matrix = np.c_[theme_genres, off]
    genre_keep = np.c_[keep, rng.random(n) < 0.15]
    genres = _rows_to_lists(genre_matrix, genre_keep)

    # people: per-cluster director and actor pools plus a global pool of stars
    size = np.bincount(cluster, minlength=k)
    n_dir = np.clip(size // 40, 2, 8)
    n_act = np.clip(size // 3, 8, 120)
    n_stars = max(5, n // 200)
    people = _people(rng, int(n_dir.sum() + n_act.sum() + n_stars))
    dir_names = people[: n_dir.sum()]
    act_names = people[n_dir.sum(): n_dir.sum() + n_act.sum()]
    stars = people[n_dir.sum() + n_act.sum():]
    dir_group = np.repeat(np.arange(k), n_dir)
    act_group = np.repeat(np.arange(k), n_act)
    dir_w = np.concatenate([_zipf(m, 0.7) for m in n_dir])
    act_w = np.concatenate([_zipf(m, 0.9) for m in n_act])
    directors = dir_names[_sample_in_groups(rng, dir_group, dir_w, np.repeat(cluster, 2))].reshape(n, 2)
    dir_keep = np.c_[np.ones(n, bool), rng.random(n) < 0.08]
    actors_m = act_names[_sample_in_groups(rng, act_group, act_w, np.repeat(cluster, 6))].reshape(n, 6)
    star = rng.random((n, 6)) < 0.12
    actors_m = np.where(star, stars[rng.integers(0, len(stars), (n, 6))], actors_m)
    actor_keep = np.arange(6)[None, :] < rng.integers(3, 7, n)[:, None]

    # countries: the theme's country usually, sometimes a co-production
    home = np.array([t.country for t in themes])[cluster]
    first = np.where(rng.random(n) < 0.65, home, rng.integers(0, len(COUNTRIES), n))
    country_m = np.array(COUNTRIES)[np.c_[first, rng.integers(0, len(COUNTRIES), n)]]
    country_keep = np.c_[np.ones(n, bool), rng.random(n) < 0.2]

    actors = _rows_to_lists(actors_m, actor_keep)
    countries: list[list[str] | None] = _rows_to_lists(country_m, country_keep)
    no_actors = rng.random(n) < 0.015
    no_country = rng.random(n) < 0.01
    actors = [None if m else v for v, m in zip(actors, no_actors)]
    countries = [None if m else v for v, m in zip(countries, no_country)]

    # remakes: a few movies take an older movie's title, years apart
    n_remakes = max(2, round(0.015 * n)) if n >= 8 else 0
    pick = rng.permutation(n)[: 2 * n_remakes]
    src, dst = pick[:n_remakes], pick[n_remakes:]
    movie_titles = titles[:n].copy()
    movie_titles[dst] = movie_titles[src]
    gap = rng.integers(4, 30, n_remakes)
    year[dst] = np.where(year[src] + gap <= 2024, year[src] + gap, year[src] - gap)

    movies = pd.DataFrame(
        {
            C.MOVIE: ids,
            C.TITLE: movie_titles,
            C.ENTITY_TYPE: entity,
            C.GENRES: _format_lists(rng, genres),
            C.ACTORS: _format_lists(rng, actors),
            C.DIRECTOR: _format_lists(rng, _rows_to_lists(directors, dir_keep)),
            C.COUNTRY: _format_lists(rng, countries),
            C.AGE_RATING: age,
            C.DURATION: duration.astype("float64"),
            C.RELEASE_YEAR: year,
        }
    )
    truth = pd.DataFrame(
        {
            C.MOVIE: ids,
            CLUSTER: cluster.astype(np.int64),
            CLUSTER_NAME: np.array([t.name for t in themes])[cluster],
            QUALITY: quality,
            C.POPULARITY: popularity,
        }
    )
    return movies, truth, true_duration, titles[n:]


# --------------------------------------------------------------------------- ratings


def _descriptions(rng: np.random.Generator, cluster: np.ndarray, themes: tuple) -> np.ndarray:
    """20-60 words each: ~30% topic words of the movie's cluster, the rest a Zipf common vocabulary."""
    n = len(cluster)
    lengths = rng.integers(20, 61, n)
    total = int(lengths.sum())
    doc = np.repeat(np.arange(n), lengths)
    vocab = np.r_[np.array(COMMON_WORDS), _pseudo_words(rng, 1000)]
    weights = _zipf(len(vocab), 1.0)
    tokens = vocab.astype(object)[rng.choice(len(vocab), size=total, p=weights / weights.sum())]
    n_topic = len(themes[0].topic_words)
    topic_vocab = np.array([t.topic_words for t in themes]).ravel()
    topic = rng.random(total) < 0.3
    topic_idx = _sample_in_groups(rng, np.repeat(np.arange(len(themes)), n_topic),
                                  np.tile(_zipf(n_topic, 0.8), len(themes)), cluster[doc[topic]])
    tokens[topic] = topic_vocab[topic_idx]
    comma = rng.random(total) < 0.07
    tokens[comma] = tokens[comma] + ","
    last = np.cumsum(lengths) - 1
    tokens[last] = np.char.rstrip(tokens[last].astype(str), ",").astype(object) + "." + _DOC_END
    sep = np.full(total, " ", dtype=object)
    sep[last] = ""
    text = "".join((tokens + sep).tolist())
    # Python's str.capitalize, not pandas' .str.capitalize (pyarrow's kernel under pandas 3): one rule everywhere
    return np.array([doc.capitalize() for doc in text.split(_DOC_END)[:n]], dtype=object)


def _legacy_rating(values: np.ndarray, unknown: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``dict_values([6.664])`` as the seed's cache wrote it; unknown as ``-1`` or an empty cell."""
    known = np.array([repr(float(v)) for v in values], dtype=object)
    out = "dict_values([" + known + "])"
    out[unknown] = np.where(rng.random(int(unknown.sum())) < 0.6, "-1", "")
    return out


def _ratings(
    rng: np.random.Generator, movies: pd.DataFrame, truth: pd.DataFrame, extra_titles: np.ndarray, themes: tuple
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    n = len(movies)
    quality = truth[QUALITY].to_numpy()
    rating = np.clip(6.4 + 1.0 * quality + rng.normal(0, 0.35, n), 1.5, 9.6).round(3)
    n_extra = len(extra_titles)

    # one cache row for most movies, plus titles the metadata does not have
    has_row = rng.random(n) < 0.93
    rows = np.flatnonzero(has_row)
    names = movies[C.TITLE].to_numpy(dtype=object)[rows].copy()
    variant = rng.random(len(rows))
    names = np.where(variant < 0.015, np.char.upper(names.astype(str)), names)  # "ТЁМНАЯ НОЧЬ"
    names = np.where((variant >= 0.015) & (variant < 0.04), np.char.replace(names.astype(str), "ё", "е"), names)
    extra_cluster = rng.integers(0, len(themes), n_extra)
    extra_rating = np.clip(rng.normal(6.2, 1.1, n_extra), 1.5, 9.6).round(3)

    all_names = np.r_[names, extra_titles].astype(object)
    all_rating = np.r_[rating[rows], extra_rating]
    all_movie = np.r_[movies[C.MOVIE].to_numpy(dtype=object)[rows], np.full(n_extra, None, dtype=object)]
    desc = _descriptions(rng, np.r_[truth[CLUSTER].to_numpy()[rows], extra_cluster], themes)
    desc[rng.random(len(desc)) < 0.15] = ""
    unknown = rng.random(len(all_rating)) < 0.10
    cell = _legacy_rating(all_rating, unknown, rng)
    encoded = np.where(unknown, np.nan, all_rating)

    # the API was sometimes asked twice: a few exact duplicate rows
    dup = rng.choice(len(cell), size=max(1, round(0.01 * len(cell))), replace=False)
    order = rng.permutation(np.r_[np.arange(len(cell)), dup])
    ratings = pd.DataFrame({C.NAME: all_names[order], C.RATING: cell[order], C.DESCRIPTION: desc[order]})
    truth_ratings = pd.DataFrame({C.MOVIE: all_movie[order], C.RATING: encoded[order]})

    movie_rating = np.full(n, np.nan)
    movie_rating[rows] = encoded[: len(rows)]
    return ratings, truth_ratings, movie_rating


# --------------------------------------------------------------------------- interactions


def _interactions(
    rng: np.random.Generator,
    n_users: int,
    n_pairs: int,
    n_rows: int,
    truth_movies: pd.DataFrame,
    true_duration: np.ndarray,
    entity: np.ndarray,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    cluster = truth_movies[CLUSTER].to_numpy()
    k = int(cluster.max()) + 1
    n_movies = len(cluster)

    # users: favourite cluster(s), taste strength, activity
    cluster_pop = np.bincount(cluster, minlength=k) * rng.gamma(3.0, size=k)
    cluster_p = cluster_pop / cluster_pop.sum()
    fav1 = rng.choice(k, size=n_users, p=cluster_p)
    fav2 = np.where(
        (rng.random(n_users) < 0.45) & (k > 1), (fav1 + 1 + rng.integers(0, max(k - 1, 1), n_users)) % k, -1
    )
    strength = rng.beta(8.0, 2.0, n_users)
    activity = rng.lognormal(0.0, 1.0, n_users)
    ids = np.r_[np.arange(1, 4), 10 + rng.choice(10 * n_users, size=max(n_users - 3, 0), replace=False)][:n_users]
    fixed = np.array(_SHOWCASE_COUNTS)
    cap = -(-n_movies // 4)  # ceil: with the density check, total room always covers n_pairs
    showcase = n_users >= 10 and n_pairs - fixed.sum() >= n_users - 3 and fixed.max() <= cap
    if showcase:  # demo users with an obvious taste; see data/README.md
        fav1[:3] = [0, 1 % k, 5 % k]
        fav2[:3] = [-1, 3 % k if k > 3 else -1, -1]
        strength[:3] = [0.95, 0.9, 1.0]
        activity[:3] = 0.0  # their counts are fixed; redraws never go to them
        counts = np.r_[fixed, 1 + rng.multinomial(n_pairs - fixed.sum() - (n_users - 3), activity[3:] / activity.sum())]
    else:
        counts = 1 + rng.multinomial(n_pairs - n_users, activity / activity.sum())
    counts = _cap_counts(counts, cap, protected=3 if showcase else 0)

    # movies sorted by cluster for group sampling, weighted by Zipf popularity
    by_cluster = np.argsort(cluster, kind="stable")
    pop_sorted = truth_movies[C.POPULARITY].to_numpy()[by_cluster]

    def draw(users: np.ndarray, uniform: bool = False) -> tuple[np.ndarray, np.ndarray]:
        if uniform:  # last resort for users whose taste pool is exhausted
            movie = rng.integers(0, n_movies, len(users))
            c = cluster[movie]
            return movie, (c == fav1[users]) | (c == fav2[users])
        fav = rng.random(len(users)) < strength[users]
        second = (fav2[users] >= 0) & (rng.random(len(users)) < 0.4)
        c = np.where(second, fav2[users], fav1[users])
        c = np.where(fav, c, rng.choice(k, size=len(users), p=cluster_p))
        movie = by_cluster[_sample_in_groups(rng, cluster[by_cluster], pop_sorted, c)]
        return movie, (c == fav1[users]) | (c == fav2[users])

    user = np.repeat(np.arange(n_users), counts)
    movie, liked = draw(user)
    # a user drew the same movie twice: keep one and redraw for the same user, so
    # per-user counts stay exact; a few stubborn leftovers go to random users
    for attempt in range(60):
        key = user.astype(np.int64) * n_movies + movie
        _, first = np.unique(key, return_index=True)
        if len(first) == n_pairs:
            break
        first.sort()
        lost = counts - np.bincount(user[first], minlength=n_users)
        user, movie, liked = user[first], movie[first], liked[first]
        if attempt < 40:
            more = np.repeat(np.arange(n_users), lost)
        else:
            counts = _cap_counts(counts - lost, cap, protected=3 if showcase else 0, total=n_pairs)
            more = np.repeat(np.arange(n_users), counts - np.bincount(user, minlength=n_users))
        m2, l2 = draw(more, uniform=attempt >= 50)
        user, movie, liked = np.r_[user, more], np.r_[movie, m2], np.r_[liked, l2]
    else:  # pragma: no cover - guarded by the density check in generate()
        raise AssertionError("could not draw enough distinct (user, movie) pairs")

    # how much of it they watched: favourites nearly fully, the rest partially
    q = truth_movies[QUALITY].to_numpy()[movie]
    ratio = np.where(liked, rng.beta(6.0, 1.2, n_pairs), rng.beta(1.2, 2.5, n_pairs))
    ratio = np.where(liked & (rng.random(n_pairs) < 0.25), 1.0, ratio) ** np.exp(-0.15 * q)
    serial = np.isin(entity[movie], [SERIES, CARTOON_SERIES])
    episodes = 1 + np.where(serial, rng.poisson(np.where(liked, 1.5, 0.3)), 0)  # series: several episodes
    minutes = ratio * true_duration[movie] * episodes
    minutes[rng.random(n_pairs) < 0.01] = 0.0  # opened, not watched

    # several sessions for some pairs: split the pair's minutes, dates a few days apart
    day = np.floor(_N_DAYS * np.sqrt(rng.random(n_pairs))).astype(np.int64)  # growing service
    extra = rng.integers(0, n_pairs, n_rows - n_pairs)
    pair = np.r_[np.arange(n_pairs), extra]
    share = rng.uniform(0.3, 1.0, n_rows)
    share = share / np.bincount(pair, weights=share, minlength=n_pairs)[pair]
    row_minutes = (minutes[pair] * share).round(1)
    row_day = np.minimum(day[pair] + np.where(np.arange(n_rows) >= n_pairs, rng.integers(0, 21, n_rows), 0),
                         _N_DAYS - 1)
    order = rng.permutation(n_rows)
    dates = pd.DatetimeIndex((_FIRST_DAY + row_day[order]).astype("datetime64[ns]"))
    interactions = pd.DataFrame(
        {
            C.USER: ids[user[pair[order]]].astype(np.int64),
            C.MOVIE: truth_movies[C.MOVIE].to_numpy()[movie[pair[order]]],
            C.WATCHED_MINUTES: row_minutes[order].astype("float64"),
            C.YEAR: dates.year.to_numpy().astype(np.int64),
            C.MONTH: dates.month.to_numpy().astype(np.int64),
            C.DAY: dates.day.to_numpy().astype(np.int64),
        }
    )
    truth_users = pd.DataFrame(
        {C.USER: ids.astype(np.int64), FAV_1: fav1, FAV_2: fav2.astype(np.int64), TASTE_STRENGTH: strength}
    )
    return interactions, truth_users


# --------------------------------------------------------------------------- files


def write_inputs(data: SyntheticData, directory: str | Path) -> dict[str, Path]:
    """Write the three inputs under the seed's file names (parquet, parquet, legacy xlsx).

    Atomic per file (:func:`rekko.io.write_table`); returns the paths by role.
    """
    defaults = PipelinePaths()
    out = Path(directory)
    paths = {
        "interactions": out / defaults.interactions.name,
        "movies": out / defaults.movies.name,
        "ratings": out / defaults.ratings.name,
    }
    write_table(data.interactions, paths["interactions"])
    write_table(data.movies, paths["movies"])
    write_table(data.ratings, paths["ratings"])
    return paths
