"""Shared fixtures: a tiny hand-made catalogue whose answers can be computed by hand."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import settings

# CI runs the same examples every time: a red run must be reproducible, not a lottery ticket.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def tiny_movies() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "movie_id": ["m1", "m2", "m3", "m4", "m5", "m6"],
            "title": ["Матрица", "Матрица 2", "Ёлки", "Брат", "Брат 2", "Сёстры"],
            "entity_type": ["Фильм"] * 5 + ["Сериал"],
            "genres": [
                '["Фантастика", "Боевик"]',
                '["Фантастика", "Боевик"]',
                "Комедия, Мелодрама",
                '["Криминал", "Драма"]',
                "Криминал, Драма",
                '["Драма"]',
            ],
            "actors": ['["Киану Ривз"]', '["Киану Ривз"]', "[]", '["Сергей Бодров"]', '["Сергей Бодров"]', "[]"],
            "director": ['["Вачовски"]', '["Вачовски"]', "[]", '["Балабанов"]', '["Балабанов"]', '["Бодров"]'],
            "country": ["США", "США", "Россия", "Россия", "Россия", "Россия"],
            "age_rating": ["16+"] * 6,
            "duration": [120.0, 120.0, 90.0, 100.0, np.nan, 45.0],
        }
    )


def tiny_interactions() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [1, 1, 1, 2, 2, 3, 3],
            "movie_id": ["m1", "m1", "m4", "m3", "m2", "m5", "unknown"],
            "watch_duration_minutes": [60.0, 60.0, 50.0, 45.0, 12.0, 25.0, 5.0],
            "year": [2021] * 7,
            "month": [1] * 7,
            "day": [1, 2, 3, 4, 5, 6, 7],
        }
    )


def tiny_ratings() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "name": ["Матрица", "Брат", "Брат 2", "Ёлки", "Матрица"],
            "rating": ["dict_values([8.5])", "dict_values([8.3])", "-1", "", "dict_values([5.0])"],
            "description": [
                "Хакер Нео узнаёт правду о матрице",
                "Данила Багров приезжает в Петербург к брату",
                "Данила Багров едет в Америку за братом",
                "Новогодние истории",
                "",
            ],
        }
    )


def write_inputs(directory: Path) -> Path:
    """Write the tiny inputs in the seed's layout under ``directory/data``."""
    data = directory / "data"
    data.mkdir(parents=True, exist_ok=True)
    tiny_interactions().to_parquet(data / "interactions.parquet", index=False)
    tiny_movies().to_parquet(data / "movies_metdata.parquet", index=False)
    tiny_ratings().to_excel(data / "Movies_r_d.xlsx", index=False)
    return directory


@pytest.fixture
def tiny_dir(tmp_path: Path) -> Path:
    return write_inputs(tmp_path)


@pytest.fixture
def sample_dir(tmp_path: Path) -> Path:
    """A working directory holding a copy of the embedded sample in data/."""
    src = REPO / "data"
    if not (src / "interactions.parquet").exists():
        pytest.skip("embedded sample data/ not generated yet")
    dst = tmp_path / "work"
    (dst / "data").mkdir(parents=True)
    for name in ("interactions.parquet", "movies_metdata.parquet", "Movies_r_d.xlsx"):
        shutil.copy(src / name, dst / "data" / name)
    return dst


def run_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``python -m rekko`` as a real subprocess."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("REKKO_API_KEY", None) if not (env and "REKKO_API_KEY" in env) else None
    return subprocess.run([sys.executable, "-m", "rekko", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
