"""`enrich` on the command line: argparse wiring, exit codes, and killed runs that resume."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from rekko.columns import Columns as C
from rekko.enrich import cli
from rekko.enrich.cache import load_cache
from rekko.testing.emulator import ApiEmulator
from rekko.exceptions import ConfigError, InputFileError, MissingColumnsError
from rekko.pipeline.ratings import normalize_title

KEY = "kp-SECRET-0123456789"


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="rekko")
    cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["enrich", *argv])


def write_movies(path: Path, n: int) -> Path:
    pd.DataFrame({"movie_id": [f"m{i}" for i in range(n)], "title": [f"Фильм {i}" for i in range(n)]}).to_parquet(path)
    return path


def enrich_cmd(api: ApiEmulator, tmp_path: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "rekko.enrich",
        "--movies",
        str(tmp_path / "movies.parquet"),
        "--ratings",
        str(tmp_path / "Movies_r_d.xlsx"),
        "--api-url",
        api.url,
        "--rate",
        "0",
        "--progress",
        "log",
        *extra,
    ]


def env(**extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("REKKO_")}
    return {**e, **extra}


def test_register_adds_enrich_with_seed_defaults_and_handler():
    args = parse()
    assert args.handler is cli.run
    assert (args.movies, args.ratings, args.cache) == (
        Path("data/movies_metdata.parquet"),
        Path("data/Movies_r_d.xlsx"),
        None,
    )
    args = parse("--provider", "tmdb", "--rate", "0", "--concurrency", "8", "--cache", "x.parquet")
    assert (args.provider, args.rate, args.concurrency, args.cache) == ("tmdb", 0.0, 8, Path("x.parquet"))


def test_options_override_env(monkeypatch):
    monkeypatch.setenv("REKKO_API_KEY", KEY)
    monkeypatch.setenv("REKKO_API_PROVIDER", "tmdb")
    monkeypatch.setenv("REKKO_API_RATE", "2")
    s = cli.settings_from_args(parse("--rate", "0", "--timeout", "3"))
    assert (s.provider, s.rate_limit, s.timeout) == ("tmdb", None, 3.0)


def test_caps_are_options(monkeypatch):
    monkeypatch.setenv("REKKO_API_KEY", KEY)
    s = cli.settings_from_args(parse("--retry-after-cap", "30", "--max-body-bytes", "1000"))
    assert (s.retry_after_cap, s.max_body_bytes) == (30.0, 1000)


def test_run_without_key_is_a_config_error(monkeypatch, tmp_path):
    monkeypatch.delenv("REKKO_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="REKKO_API_KEY is not set"):
        cli.run(parse("--movies", str(write_movies(tmp_path / "movies.parquet", 2))))


def test_run_reports_bad_movies_file(monkeypatch, tmp_path):
    monkeypatch.setenv("REKKO_API_KEY", KEY)
    with pytest.raises(InputFileError, match="not found"):
        cli.run(parse("--movies", str(tmp_path / "none.parquet")))
    pd.DataFrame({"name": ["x"]}).to_parquet(tmp_path / "m.parquet")
    with pytest.raises(MissingColumnsError, match="title"):
        cli.run(parse("--movies", str(tmp_path / "m.parquet")))


def test_module_without_key_exits_2(tmp_path):
    write_movies(tmp_path / "movies.parquet", 2)
    proc = subprocess.run(
        [sys.executable, "-m", "rekko.enrich", "--movies", str(tmp_path / "movies.parquet")],
        capture_output=True,
        text=True,
        env=env(),
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "REKKO_API_KEY is not set" in proc.stderr


def test_module_run_migrates_legacy_and_prints_summary(tmp_path):
    write_movies(tmp_path / "movies.parquet", 5)
    pd.DataFrame({"name": ["Фильм 0"], "rating": ["dict_values([6.664])"], "description": ["Старое"]}).to_excel(
        tmp_path / "Movies_r_d.xlsx", index=False, engine="openpyxl"
    )
    with ApiEmulator("kinopoisk", api_key=KEY, echo_unknown=True) as api:
        proc = subprocess.run(
            enrich_cmd(api, tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
            env=env(REKKO_API_KEY=KEY),
            cwd=tmp_path,
        )
    assert proc.returncode == 0, proc.stderr
    assert "enrich: found 4, not found 0, errors 0, remaining 0" in proc.stdout
    assert "migrated 1 legacy rows" in proc.stdout
    assert "Фильм 0" not in api.hits and len(api.hits) == 4
    cache = load_cache(tmp_path / "api_cache.parquet")
    assert len(cache) == 5 and cache.set_index(C.TITLE).loc["Фильм 0", C.RATING] == 6.664
    assert KEY not in proc.stdout + proc.stderr


def _wait_for_rows(path: Path, proc: subprocess.Popen, at_least: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be killed"
        try:
            if len(load_cache(path)) >= at_least:
                return
        except (InputFileError, OSError):  # a journal part compacted away while being read
            pass
        time.sleep(0.01)
    raise AssertionError(f"{path} never reached {at_least} rows")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM], ids=["SIGKILL", "SIGINT", "SIGTERM"])
def test_killed_run_resumes_without_asking_twice(tmp_path, sig):
    n, flush, conc = 100, 5, 2
    write_movies(tmp_path / "movies.parquet", n)
    cache_path = tmp_path / "api_cache.parquet"
    # 50 ms answers: slow enough to kill the first run midway even on a busy machine
    with ApiEmulator("kinopoisk", api_key=KEY, echo_unknown=True, latency=0.05) as api:
        cmd = enrich_cmd(api, tmp_path, "--concurrency", str(conc), "--flush-every", str(flush))
        proc = subprocess.Popen(
            cmd, env=env(REKKO_API_KEY=KEY), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            _wait_for_rows(cache_path, proc, at_least=15)
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == (-signal.SIGKILL if sig == signal.SIGKILL else 130), err
        at_kill = load_cache(cache_path)  # readable: never half-written
        saved = set(at_kill[C.TITLE])
        hit_first = set(api.hits)
        assert 15 <= len(saved) < n
        if sig != signal.SIGKILL:
            # a clean stop saves every answer it received: nothing fetched is lost
            assert saved == hit_first
            assert "answers received so far are saved" in err
        else:
            assert len(hit_first - saved) <= flush + 2 * conc  # at most one batch and the requests in flight

        api.latency = 0.0  # the resumed run may be fast
        proc2 = subprocess.run(
            cmd, env=env(REKKO_API_KEY=KEY), cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert proc2.returncode == 0, proc2.stderr
        final = load_cache(cache_path)
        assert sorted(final[C.TITLE]) == sorted(f"Фильм {i}" for i in range(n))
        assert (final[C.STATUS] == "found").all()
        assert all(api.hits[t] == 1 for t in saved)  # nothing in the cache was asked again
        assert sum(api.hits.values()) == n + len(hit_first - saved)
        assert KEY not in out + err + proc2.stdout + proc2.stderr


def test_rekko_enrich_on_the_sample_data(tmp_path):
    """Through the real `rekko` CLI on the embedded sample: the legacy xlsx answers what it can."""
    data = Path(__file__).resolve().parents[1] / "data"
    for name in ("movies_metdata.parquet", "Movies_r_d.xlsx"):
        shutil.copy(data / name, tmp_path / name)
    movies = pd.read_parquet(tmp_path / "movies_metdata.parquet")
    with ApiEmulator("kinopoisk", api_key=KEY, echo_unknown=True) as api:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "rekko",
                "enrich",
                "--movies",
                "movies_metdata.parquet",
                "--ratings",
                "Movies_r_d.xlsx",
                "--api-url",
                api.url,
                "--rate",
                "0",
                "--concurrency",
                "4",
                "--log-every",
                "0",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env=env(REKKO_API_KEY=KEY),
            cwd=tmp_path,
        )
    assert proc.returncode == 0, proc.stderr
    cache = load_cache(tmp_path / "api_cache.parquet")
    legacy_found = set(cache.loc[cache[C.PROVIDER] == "legacy", C.TITLE_KEY])
    asked_keys = set(normalize_title(pd.Series(list(api.hits))))
    assert asked_keys and not (asked_keys & legacy_found)  # nothing the legacy cache knew was asked
    assert set(normalize_title(movies[C.TITLE])) <= set(cache[C.TITLE_KEY])  # every title is answered
    assert not (tmp_path / ".api_cache.parquet.journal").exists()  # compacted at the end
    assert "titles/s" in proc.stderr  # no terminal: progress lines instead of a bar, at the CLI's default log level
    assert KEY not in proc.stdout + proc.stderr
