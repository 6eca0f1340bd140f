"""`rekko enrich` as a real process against hostile servers: it ends when told to, exits with the
right code for a bad key, and never prints the key -- not even with ``-v``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from rekko.columns import Columns as C
from rekko.enrich.cache import load_cache
from rekko.exceptions import InputFileError
from rekko.testing.emulator import ApiEmulator, Reply

KEY = "kp-SECRET-0123456789"


def write_movies(path: Path, n: int) -> Path:
    pd.DataFrame({"movie_id": [f"m{i}" for i in range(n)], "title": [f"Фильм {i}" for i in range(n)]}).to_parquet(path)
    return path


def rekko_enrich(api: ApiEmulator, tmp_path: Path, *extra: str, verbose: bool = False) -> list[str]:
    """``python -m rekko [-v] enrich`` on ``tmp_path/movies.parquet`` against ``api``."""
    return [
        sys.executable,
        "-m",
        "rekko",
        *(["-v"] if verbose else []),
        "enrich",
        "--movies",
        str(tmp_path / "movies.parquet"),
        "--ratings",
        str(tmp_path / "Movies_r_d.xlsx"),
        "--api-url",
        api.url,
        "--provider",
        api.provider,
        "--rate",
        "0",
        "--progress",
        "log",
        "--backoff-base",
        "0.01",
        *extra,
    ]


def env(key: str = KEY) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("REKKO_")}
    return {**e, "REKKO_API_KEY": key}


def run(cmd: list[str], cwd: Path, key: str = KEY, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, env=env(key), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


def cached_titles(path: Path) -> list[str]:
    return sorted(load_cache(path)[C.TITLE]) if path.exists() else []


def _wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended before {what}"
        try:
            if condition():
                return
        except (InputFileError, OSError):  # a journal part compacted away while being read
            pass
        time.sleep(0.02)
    raise AssertionError(f"never saw {what}")


# -- 2. a stuck request never keeps the run alive -------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_ends_a_run_stuck_on_a_dripping_server(tmp_path, sig):
    write_movies(tmp_path / "movies.parquet", 8)
    cache_path = tmp_path / "api_cache.parquet"
    with ApiEmulator("kinopoisk", api_key=KEY, echo_unknown=True) as api:
        api.script("Фильм 3", Reply(200, drip=1.0))  # ~10 minutes for one answer
        cmd = rekko_enrich(api, tmp_path, "--concurrency", "1", "--flush-every", "1", "--timeout", "600")
        proc = subprocess.Popen(cmd, env=env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _wait_for(
                lambda: any(d.title == "Фильм 3" and d.sent >= 2 for d in api.deliveries),
                proc,
                "the dripping answer start",
            )
            _wait_for(lambda: len(cached_titles(cache_path)) == 3, proc, "three answers saved")
            proc.send_signal(sig)
            sent_at = time.monotonic()
            out, err = proc.communicate(timeout=30)
            took = time.monotonic() - sent_at
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 130, err
    assert took < 6, f"{sig.name} took {took:.1f} s to end the run"
    assert cached_titles(cache_path) == ["Фильм 0", "Фильм 1", "Фильм 2"]  # kept; the stuck one stays to do
    assert "interrupted" in err and KEY not in out + err


def test_a_dripping_answer_ends_at_the_timeout_and_the_run_goes_on(tmp_path):
    write_movies(tmp_path / "movies.parquet", 5)
    with ApiEmulator("kinopoisk", api_key=KEY, echo_unknown=True) as api:
        api.script("Фильм 2", Reply(200, drip=1.0))
        started = time.monotonic()
        proc = run(rekko_enrich(api, tmp_path, "--timeout", "1", "--retries", "0"), tmp_path, timeout=60)
        took = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert "found 4, not found 0, errors 1, remaining 0" in proc.stdout
    cache = load_cache(tmp_path / "api_cache.parquet").set_index(C.TITLE)
    assert cache.loc["Фильм 2", C.STATUS] == "error" and cache.loc["Фильм 2", C.ERROR].startswith("timeout")
    assert took < 30


# -- 5. a key an HTTP header cannot carry; a key the server rejects ------------------------------------


@pytest.mark.parametrize("bad_key", ["ключ-0123456789", "clé-0123456789", "kp-SECRET\u00a0012"])
def test_a_non_ascii_key_exits_2_once_before_any_request(tmp_path, bad_key):
    write_movies(tmp_path / "movies.parquet", 5)
    with ApiEmulator("kinopoisk", api_key=KEY, echo_unknown=True) as api:
        proc = run(rekko_enrich(api, tmp_path, verbose=True), tmp_path, key=bad_key)
    assert proc.returncode == 2, proc.stderr
    assert "REKKO_API_KEY" in proc.stderr and proc.stderr.count("error:") == 1
    assert "Traceback" not in proc.stderr and api.total_hits == 0
    assert bad_key not in proc.stdout + proc.stderr and bad_key[:4] not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "provider, reply",
    [
        ("kinopoisk", None),  # the emulator's own 401 for a wrong key
        ("kinopoisk", Reply(403, {"message": "Forbidden"})),
        ("tmdb", None),
        ("tmdb", Reply(403, {"status_message": "Access denied"})),
    ],
    ids=["kinopoisk-401", "kinopoisk-403", "tmdb-401", "tmdb-403"],
)
def test_a_rejected_key_exits_2_naming_the_provider(tmp_path, provider, reply):
    write_movies(tmp_path / "movies.parquet", 5)
    server_key = KEY if reply is not None else "the-right-key"
    with ApiEmulator(provider, api_key=server_key, echo_unknown=True) as api:
        if reply is not None:
            api.script("Фильм 0", reply)
        proc = run(rekko_enrich(api, tmp_path, "--concurrency", "1"), tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert provider in proc.stderr and "REKKO_API_KEY" in proc.stderr
    assert KEY not in proc.stdout + proc.stderr


# -- 6. the key never reaches a log or a message, even with -v ----------------------------------------


def _scenarios(api: ApiEmulator, other: ApiEmulator, ending: str) -> None:
    """Every way a server could get the key printed: echoing it in bodies, redirecting with it, rejecting it."""
    echo = {"message": f"token {KEY} is not valid", "token": KEY}
    api.script("Фильм 0", Reply(400, echo))  # an error row, logged and cached
    api.script("Фильм 1", Reply(500, echo), Reply(503, echo, {"Retry-After": "0.05"}))  # retried
    api.script("Фильм 2", Reply(200, f"not json {KEY}".encode()))
    api.script("Фильм 3", Reply(503, echo, {"Retry-After": "9999"}))  # over the cap: a WARNING
    if ending == "redirect":  # refused: the run stops (exit 1)
        api.script("Фильм 4", Reply(302, b"", {"Location": f"{other.url}/collect?key={KEY}"}))
    else:  # a rejection quoting the key: the run stops (exit 2)
        api.script("Фильм 4", Reply(int(ending), echo))


@pytest.mark.parametrize("provider", ["kinopoisk", "tmdb"])
@pytest.mark.parametrize("ending", ["redirect", "401", "403"])
def test_the_key_is_never_printed_even_verbose(tmp_path, provider, ending):
    write_movies(tmp_path / "movies.parquet", 8)
    runs = {}
    with ApiEmulator(provider, api_key=KEY, echo_unknown=True) as api, ApiEmulator(provider, api_key=KEY) as other:
        for verbose in (False, True):
            _scenarios(api, other, ending)
            cache = tmp_path / f"cache-{verbose}.parquet"
            cmd = rekko_enrich(api, tmp_path, "--concurrency", "1", "--cache", str(cache), verbose=verbose)
            runs[verbose] = run(cmd, tmp_path)
        assert not any(KEY in " ".join(r["headers"].values()) for r in other.requests)
    for p in runs.values():
        assert p.returncode == (1 if ending == "redirect" else 2), p.stderr
        assert KEY not in p.stdout + p.stderr
    assert "rekko: INFO:" in runs[True].stderr  # -v did log, and still no key
    assert "rekko: WARNING:" in runs[False].stderr and "9999" in runs[False].stderr  # shown without -v
    for verbose in (False, True):
        cache = load_cache(tmp_path / f"cache-{verbose}.parquet")
        assert len(cache) == 4  # the answers before the stop are kept
        assert not cache.astype(str).apply(lambda col: col.str.contains(KEY, regex=False)).to_numpy().any()
