"""The synthetic data generator: determinism, schemas, invariants and latent structure."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rekko.columns import Columns as C
from rekko.io import read_table
from rekko.pipeline.ratings import normalize_title, parse_rating
from rekko.testing.synth import (
    CLUSTER,
    FAV_1,
    FAV_2,
    SHOWCASE_ONE_MOVIE,
    SHOWCASE_SINGLE_CLUSTER,
    SHOWCASE_TWO_CLUSTERS,
    SyntheticData,
    generate,
)

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
SAMPLE_ARGS = (600, 400, 12_000)  # scripts/make_sample_data.py defaults
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
FRAMES = ("interactions", "movies", "ratings", "truth_movies", "truth_users", "truth_ratings")


@pytest.fixture(scope="module")
def data() -> SyntheticData:
    return generate(300, 200, 5_000, seed=7)


def _with_cluster(d: SyntheticData) -> pd.DataFrame:
    return d.interactions.merge(d.truth_movies[[C.MOVIE, CLUSTER]], on=C.MOVIE, how="left", validate="m:1")


def _watch_ratio(d: SyntheticData) -> pd.Series:
    """Per (user, movie): summed minutes / true length, films only (series span episodes)."""
    films = d.movies[d.movies[C.ENTITY_TYPE] == "Фильм"][[C.MOVIE, C.DURATION]].dropna()
    per_pair = d.interactions.groupby([C.USER, C.MOVIE], as_index=False)[C.WATCHED_MINUTES].sum()
    j = per_pair.merge(films, on=C.MOVIE)
    return j.set_index([C.USER, C.MOVIE])[C.WATCHED_MINUTES] / j.set_index([C.USER, C.MOVIE])[C.DURATION]


# ------------------------------------------------------------------ determinism


def test_same_seed_gives_equal_frames() -> None:
    a, b = generate(120, 60, 1_500, seed=3), generate(120, 60, 1_500, seed=3)
    for name in FRAMES:
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), obj=name)
    assert a.clusters == b.clusters


def test_different_seed_gives_different_frames() -> None:
    a, b = generate(120, 60, 1_500, seed=3), generate(120, 60, 1_500, seed=4)
    assert not set(a.movies[C.MOVIE]) & set(b.movies[C.MOVIE])
    assert not a.interactions[C.WATCHED_MINUTES].equals(b.interactions[C.WATCHED_MINUTES])
    assert not a.ratings[C.DESCRIPTION].equals(b.ratings[C.DESCRIPTION])


# ------------------------------------------------------------------ schemas


def test_interactions_schema(data: SyntheticData) -> None:
    df = data.interactions
    assert list(df.columns) == [C.USER, C.MOVIE, C.WATCHED_MINUTES, C.YEAR, C.MONTH, C.DAY]
    assert df[C.USER].dtype == np.int64
    assert pd.api.types.is_string_dtype(df[C.MOVIE])
    assert df[C.WATCHED_MINUTES].dtype == np.float64
    assert all(df[c].dtype == np.int64 for c in (C.YEAR, C.MONTH, C.DAY))


def test_movies_schema(data: SyntheticData) -> None:
    df = data.movies
    assert list(df.columns) == [
        C.MOVIE, C.TITLE, C.ENTITY_TYPE, C.GENRES, C.ACTORS, C.DIRECTOR,
        C.COUNTRY, C.AGE_RATING, C.DURATION, C.RELEASE_YEAR,
    ]  # fmt: skip
    assert df[C.DURATION].dtype == np.float64
    assert df[C.RELEASE_YEAR].dtype == np.int64
    assert df[C.MOVIE].is_unique
    assert df[C.MOVIE].str.fullmatch(UUID).all()
    assert set(df[C.ENTITY_TYPE]) <= {"Фильм", "Сериал", "Мультфильм", "Мультсериал"}
    assert set(df[C.AGE_RATING]) <= {"0+", "6+", "12+", "16+", "18+"}
    assert df[C.TITLE].str.contains(r"[А-Яа-яЁё]").all()


def test_ratings_schema_is_the_legacy_cache(data: SyntheticData) -> None:
    assert list(data.ratings.columns) == [C.NAME, C.RATING, C.DESCRIPTION]  # no year: the legacy xlsx has none
    assert len(data.truth_ratings) == len(data.ratings)


# ------------------------------------------------------------------ invariants


def test_interaction_invariants(data: SyntheticData) -> None:
    df = data.interactions
    assert len(df) == 5_000
    assert set(df[C.MOVIE]) <= set(data.movies[C.MOVIE])
    assert set(df[C.USER]) == set(data.truth_users[C.USER])  # every user has a row
    assert np.isfinite(df[C.WATCHED_MINUTES]).all() and (df[C.WATCHED_MINUTES] >= 0).all()
    dates = pd.to_datetime(df[[C.YEAR, C.MONTH, C.DAY]], errors="raise")
    assert pd.Timestamp("2022-01-01") <= dates.min() and dates.max() <= pd.Timestamp("2023-12-31")
    assert (dates.max() - dates.min()).days > 365


def test_several_sessions_share_a_pair_and_split_its_minutes(data: SyntheticData) -> None:
    multi = data.interactions.duplicated([C.USER, C.MOVIE], keep=False)
    assert 0.04 < multi.mean() < 0.12  # "5-10% of rows"
    ratio = _watch_ratio(data)
    assert (ratio <= 1.0 + 1e-3).mean() > 0.99  # a film's sessions add up to its length or less (rounding)


def test_legacy_ratings_parse_to_the_encoded_values(data: SyntheticData) -> None:
    cells = data.ratings[C.RATING]
    parsed = parse_rating(cells).to_numpy()
    np.testing.assert_array_equal(parsed, data.truth_ratings[C.RATING].to_numpy())
    known = cells.str.startswith("dict_values")
    assert cells[known].str.fullmatch(r"dict_values\(\[\d+\.\d+\]\)").all()
    assert set(cells[~known]) == {"-1", ""}
    assert 0.05 < (~known).mean() < 0.16


def test_ratings_cover_most_movies_with_extras_remakes_and_empties(data: SyntheticData) -> None:
    truth = data.truth_ratings
    covered = truth[C.MOVIE].dropna().nunique() / len(data.movies)
    assert 0.85 < covered < 0.99
    assert truth[C.MOVIE].isna().sum() > 0  # titles the metadata does not have
    assert data.ratings.duplicated().sum() > 0  # the API was asked twice
    remade = data.movies[data.movies[C.TITLE].duplicated(keep=False)]
    assert len(remade) >= 4
    assert remade.groupby(C.TITLE)[C.RELEASE_YEAR].nunique().eq(2).all()  # remakes differ by year
    keys = normalize_title(data.ratings[C.NAME])
    assert keys.isin(set(normalize_title(remade[C.TITLE]))).sum() >= 2  # the join must disambiguate
    desc = data.ratings[C.DESCRIPTION]
    assert 0.08 < (desc == "").mean() < 0.25
    words = desc[desc != ""].str.split().str.len()
    assert words.between(20, 60).all()
    assert desc[desc != ""].str.contains(r"^[А-ЯЁ]").all()


def test_list_columns_come_as_json_and_comma_text(data: SyntheticData) -> None:
    for col in (C.GENRES, C.ACTORS, C.DIRECTOR, C.COUNTRY):
        cells = data.movies[col].dropna()
        as_json = cells.str.startswith("[")
        assert 0.7 < as_json.mean() < 0.95, col
        parsed = cells[as_json].map(json.loads)
        assert parsed.map(lambda v: isinstance(v, list) and len(v) > 0 and all(isinstance(x, str) for x in v)).all()
        assert not cells[~as_json].str.contains(r"[\[\]\"]").any()
    assert data.movies[C.ACTORS].isna().any() or data.movies[C.COUNTRY].isna().any()
    assert data.movies[C.DURATION].isna().any()


def test_durations_by_entity_type(data: SyntheticData) -> None:
    dur = data.movies.groupby(C.ENTITY_TYPE)[C.DURATION]
    assert dur.max()["Сериал"] <= 60 and dur.min()["Фильм"] >= 78 and dur.max()["Фильм"] <= 185


# ------------------------------------------------------------------ latent structure


def test_users_watch_mostly_their_favourite_cluster(data: SyntheticData) -> None:
    j = _with_cluster(data).drop_duplicates([C.USER, C.MOVIE])
    n_clusters = len(data.clusters)
    top_share = j.groupby(C.USER)[CLUSTER].agg(lambda s: s.value_counts(normalize=True).iloc[0])
    assert top_share.mean() > 3 / n_clusters
    favs = data.truth_users.set_index(C.USER)
    in_fav = (j[CLUSTER].to_numpy() == favs.loc[j[C.USER], FAV_1].to_numpy()) | (
        j[CLUSTER].to_numpy() == favs.loc[j[C.USER], FAV_2].to_numpy()
    )
    assert in_fav.mean() > 0.7


def test_favourites_are_watched_nearly_fully(data: SyntheticData) -> None:
    ratio = _watch_ratio(data).rename("ratio").reset_index()
    ratio = ratio.merge(data.truth_movies[[C.MOVIE, CLUSTER]], on=C.MOVIE).merge(data.truth_users, on=C.USER)
    fav = (ratio[CLUSTER] == ratio[FAV_1]) | (ratio[CLUSTER] == ratio[FAV_2])
    assert ratio.loc[fav, "ratio"].mean() > 0.7
    assert ratio.loc[~fav, "ratio"].mean() < 0.45


def test_quality_drives_rating_and_popularity(data: SyntheticData) -> None:
    t = data.truth_movies.dropna(subset=[C.RATING])
    assert t["quality"].corr(t[C.RATING], method="spearman") > 0.8
    viewers = data.interactions.groupby(C.MOVIE)[C.USER].nunique()
    t = data.truth_movies.assign(viewers=data.truth_movies[C.MOVIE].map(viewers).fillna(0))
    assert t[C.POPULARITY].corr(t["viewers"], method="spearman") > 0.5
    assert t["quality"].corr(t["viewers"], method="spearman") > 0.2


def test_descriptions_carry_their_cluster_topic_words(data: SyntheticData) -> None:
    from rekko.testing.synth_vocab import THEMES

    rows = data.truth_ratings[C.MOVIE].notna().to_numpy() & (data.ratings[C.DESCRIPTION] != "").to_numpy()
    cluster = data.truth_ratings.loc[rows, C.MOVIE].map(data.truth_movies.set_index(C.MOVIE)[CLUSTER])
    text = data.ratings.loc[rows, C.DESCRIPTION].str.lower()
    for k in range(len(data.clusters)):
        pattern = r"\b(?:" + "|".join(THEMES[k].topic_words) + r")\b"
        hits = text.str.count(pattern)
        assert hits[cluster == k].mean() > 5 * max(hits[cluster != k].mean(), 0.1), data.clusters[k]


def test_showcase_users() -> None:
    d = generate(*SAMPLE_ARGS, seed=0)
    j = _with_cluster(d).drop_duplicates([C.USER, C.MOVIE])
    one = j[j[C.USER] == SHOWCASE_SINGLE_CLUSTER][CLUSTER]
    assert len(one) == 25 and (one == 0).mean() >= 0.8
    two = j[j[C.USER] == SHOWCASE_TWO_CLUSTERS][CLUSTER]
    assert len(two) == 30 and two.isin([1, 3]).mean() >= 0.8 and two.eq(1).any() and two.eq(3).any()
    single = j[j[C.USER] == SHOWCASE_ONE_MOVIE]
    assert len(single) == 1 and single[CLUSTER].iloc[0] == 5
    assert (d.interactions[C.USER] >= 10).sum() == len(d.interactions) - (d.interactions[C.USER] <= 3).sum()


# ------------------------------------------------------------------ properties and errors


@st.composite
def sizes(draw: st.DrawFn) -> tuple[int, int, int, int]:
    n_movies = draw(st.integers(20, 150))
    n_users = draw(st.integers(3, 60))
    n_rows = draw(st.integers(n_users + 2, int(0.2 * n_movies * n_users)))
    return n_movies, n_users, n_rows, draw(st.integers(0, 2**32 - 1))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes())
def test_invariants_hold_for_any_size(args: tuple[int, int, int, int]) -> None:
    n_movies, n_users, n_rows, seed = args
    d = generate(n_movies, n_users, n_rows, seed=seed)
    assert len(d.movies) == n_movies and d.movies[C.MOVIE].is_unique
    assert len(d.interactions) == n_rows
    assert d.interactions[C.USER].nunique() == n_users
    assert set(d.interactions[C.MOVIE]) <= set(d.movies[C.MOVIE])
    assert (d.interactions[C.WATCHED_MINUTES] >= 0).all()
    np.testing.assert_array_equal(parse_rating(d.ratings[C.RATING]).to_numpy(), d.truth_ratings[C.RATING].to_numpy())


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((0, 5, 10), "n_movies and n_users"),
        ((50, 20, 10), "every user a row"),
        ((10, 10, 90), "too dense"),
    ],
)
def test_impossible_sizes_are_refused(args: tuple[int, int, int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        generate(*args)


def test_unknown_cluster_count_is_refused() -> None:
    with pytest.raises(ValueError, match="n_clusters"):
        generate(50, 10, 100, n_clusters=21)


# ------------------------------------------------------------------ the committed sample and its script


def _read_inputs(directory: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    return (
        read_table(directory / "interactions.parquet"),
        read_table(directory / "movies_metdata.parquet"),
        read_table(directory / "Movies_r_d.xlsx"),
    )


def _assert_files_hold(directory: Path, d: SyntheticData) -> None:
    interactions, movies, ratings = _read_inputs(directory)
    pd.testing.assert_frame_equal(interactions, d.interactions, check_dtype=False)
    pd.testing.assert_frame_equal(movies, d.movies, check_dtype=False)
    # xlsx turns empty strings into empty cells
    assert ratings[C.NAME].tolist() == d.ratings[C.NAME].tolist()
    assert ratings[C.DESCRIPTION].fillna("").tolist() == d.ratings[C.DESCRIPTION].tolist()
    np.testing.assert_array_equal(parse_rating(ratings[C.RATING]).to_numpy(), d.truth_ratings[C.RATING].to_numpy())


def test_committed_sample_is_what_the_script_generates() -> None:
    files = [DATA / "interactions.parquet", DATA / "movies_metdata.parquet", DATA / "Movies_r_d.xlsx"]
    assert sum(f.stat().st_size for f in files) < 3 * 1024 * 1024
    _assert_files_hold(DATA, generate(*SAMPLE_ARGS, seed=0))


_DIGEST = """
import hashlib, sys
import pandas as pd
from rekko.testing.synth import generate
d = generate({args}, seed={seed})
h = hashlib.sha256()
for name in {frames!r}:
    h.update(pd.util.hash_pandas_object(getattr(d, name), index=False).to_numpy().tobytes())
print(h.hexdigest())
"""


def _digest(env: dict[str, str] | None = None, args: tuple[int, int, int] = SAMPLE_ARGS, seed: int = 0) -> str:
    code = _DIGEST.format(args=", ".join(map(str, args)), seed=seed, frames=FRAMES)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_generator_does_not_depend_on_the_cpu_kernels_numpy_picks() -> None:
    """numpy picks SIMD kernels per CPU (argpartition's order, log, power): none may reach the frames.

    A machine without AVX-512 once generated other titles than the committed sample; here the same
    generation runs with every optional kernel numpy dispatched on this CPU switched off.
    """
    try:
        from numpy._core import _multiarray_umath as umath
    except ImportError:  # numpy < 2
        from numpy.core import _multiarray_umath as umath
    found = [f for f in umath.__cpu_dispatch__ if umath.__cpu_features__.get(f)]
    if not found:
        pytest.skip("numpy dispatches no optional kernels on this CPU")
    plain = dict(os.environ, NPY_DISABLE_CPU_FEATURES=" ".join(found))
    assert _digest(plain) == _digest(), f"the frames change with {found} switched off"


def test_sample_script_is_deterministic(tmp_path: Path) -> None:
    argv = [sys.executable, str(ROOT / "scripts" / "make_sample_data.py"), "--movies", "80", "--users", "30",
            "--interactions", "400", "--seed", "5"]  # fmt: skip
    for out in ("a", "b"):
        done = subprocess.run([*argv, "--out", str(tmp_path / out)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "400 interaction rows" in done.stdout
    first, second = _read_inputs(tmp_path / "a"), _read_inputs(tmp_path / "b")
    for x, y in zip(first, second):
        pd.testing.assert_frame_equal(x, y)
    _assert_files_hold(tmp_path / "a", generate(80, 30, 400, seed=5))


def test_concentrated_tastes_still_fill_every_pair() -> None:
    # found by hypothesis: popularity-weighted redraws alone could not finish this one
    data = generate(111, 19, 399, seed=153)
    assert len(data.interactions.drop_duplicates(["user_id", "movie_id"])) <= len(data.interactions)
    pairs = data.interactions.groupby(["user_id", "movie_id"]).ngroups
    assert pairs > 0 and data.interactions["user_id"].nunique() == 19
