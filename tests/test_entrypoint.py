"""entrypoint.sh, the Docker entrypoint, driven as a real ``bash`` subprocess (no Docker).

Two layers: the variable mapping (P1..P9 -> rekko arguments) through the script's dry run,
which needs nothing but bash; and the seed's two exact ``docker run`` lines end to end on a
copy of the embedded sample, which need the CLI and the sample data.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import REPO

ENTRYPOINT = REPO / "entrypoint.sh"
SAMPLE_INPUTS = ("interactions.parquet", "movies_metdata.parquet", "Movies_r_d.xlsx")

# The seed's pipeline line, value for value: stray spaces and typographic quotes included.
SEED_PIPELINE = {
    "P1": "’ data/interactions.parquet’",
    "P2": "’ data/movies_metdata.parquet’",
    "P3": "’data/Movies_r_d.xlsx’",
    "P4": "’data/movies_rd.parquet’",
    "P5": "’ data/int_coef.parquet’",
    "P6": "’ data/movies_md_upd.parquet’",
    "P7": "’data/interactions_upd.parquet’",
    "P8": "’matrix/cos_sim_md.pkl’",
    "P9": "’ matrix/cos_sim_desc.pkl’",
}
PIPELINE_OUTPUTS = (
    "data/movies_rd.parquet",
    "data/int_coef.parquet",
    "data/movies_md_upd.parquet",
    "data/interactions_upd.parquet",
    "matrix/cos_sim_md.pkl",
    "matrix/cos_sim_desc.pkl",
)


def seed_recommend(user_id: object, n: object) -> dict[str, str]:
    """The seed's recommend line: P1 user id, P2 number of rekkos, P3..P7 the artifacts."""
    return {
        "P1": str(user_id),
        "P2": str(n),
        "P3": "data/interactions_upd.parquet",
        "P4": "data/movies_md_upd.parquet",
        "P5": "data/int_coef.parquet",
        "P6": "matrix/cos_sim_md.pkl",
        "P7": "matrix/cos_sim_desc.pkl",
    }


def run_entrypoint(
    cwd: Path, variables: dict[str, str], *args: str, dry_run: bool = False, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run ``bash entrypoint.sh`` with only the given P/REKKO variables set (plus PATH etc.)."""
    env = {k: v for k, v in os.environ.items() if not re.fullmatch(r"P[1-9]|REKKO_.*", k)}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env["PYTHON"] = sys.executable
    env["LANG"] = env["LC_ALL"] = "C.UTF-8"
    env.update(variables)
    if dry_run:
        env["REKKO_ENTRYPOINT_DRY_RUN"] = "1"
    return subprocess.run(
        ["bash", str(ENTRYPOINT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def planned(cwd: Path, variables: dict[str, str], *args: str) -> list[str]:
    """The rekko arguments the entrypoint would run."""
    proc = run_entrypoint(cwd, variables, *args, dry_run=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


# -- the mapping (bash only) --------------------------------------------------------------------
def test_seed_pipeline_line_maps_to_the_nine_options_in_order(tmp_path: Path) -> None:
    assert planned(tmp_path, SEED_PIPELINE) == [
        "pipeline",
        "--interactions", "data/interactions.parquet",
        "--movies", "data/movies_metdata.parquet",
        "--ratings", "data/Movies_r_d.xlsx",
        "--movies-rd", "data/movies_rd.parquet",
        "--int-coef", "data/int_coef.parquet",
        "--movies-upd", "data/movies_md_upd.parquet",
        "--interactions-upd", "data/interactions_upd.parquet",
        "--sim-md", "matrix/cos_sim_md.pkl",
        "--sim-desc", "matrix/cos_sim_desc.pkl",
    ]  # fmt: skip


def test_seed_recommend_line_maps_user_n_and_five_artifacts(tmp_path: Path) -> None:
    assert planned(tmp_path, seed_recommend(42, 7)) == [
        "recommend", "--user-id", "42", "-n", "7",
        "--interactions-upd", "data/interactions_upd.parquet",
        "--movies-upd", "data/movies_md_upd.parquet",
        "--int-coef", "data/int_coef.parquet",
        "--sim-md", "matrix/cos_sim_md.pkl",
        "--sim-desc", "matrix/cos_sim_desc.pkl",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({}, ["demo"]),
        ({"P1": "“ 7 ”"}, ["recommend", "--user-id", "7"]),
        ({"P1": "movies.CSV"}, ["pipeline", "--interactions", "movies.CSV"]),
        ({"P1": "input/events"}, ["pipeline", "--interactions", "input/events"]),
        ({"REKKO_MODE": "pipeline"}, ["pipeline"]),
        ({"REKKO_MODE": " Recommend ", "P1": "3"}, ["recommend", "--user-id", "3"]),
        ({"REKKO_MODE": "demo", "P1": "3"}, ["demo"]),
        ({"REKKO_MODE": "serve"}, ["serve", "--host", "0.0.0.0", "--port", "80"]),
        (
            {"REKKO_MODE": "serve", "PORT": "8080", "P1": "1", "P6": "’m/md.pkl’"},
            ["serve", "--host", "0.0.0.0", "--port", "8080", "--sim-md", "m/md.pkl"],
        ),
        ({"P1": "   ", "P2": "’’"}, ["demo"]),  # blank after stripping = not set
    ],
)
def test_mode_guess_and_override(tmp_path: Path, variables: dict[str, str], expected: list[str]) -> None:
    assert planned(tmp_path, variables) == expected


@pytest.mark.parametrize(
    ("variables", "args", "expected"),
    [
        ({"P1": "5", "P2": "3"}, ["--format", "json", "--no-pred"],
         ["recommend", "--user-id", "5", "-n", "3", "--format", "json", "--no-pred"]),
        ({"REKKO_MODE": "demo"}, ["-n", "3"], ["demo", "-n", "3"]),
        ({"P1": "data/i.csv"}, ["-k", "20"], ["pipeline", "--interactions", "data/i.csv", "-k", "20"]),
        ({}, ["--version"], ["--version"]),
    ],
)  # fmt: skip
def test_container_options_are_added_to_the_mode_command(
    tmp_path: Path, variables: dict[str, str], args: list[str], expected: list[str]
) -> None:
    assert planned(tmp_path, variables, *args) == expected


def test_container_arguments_go_straight_to_the_cli(tmp_path: Path) -> None:
    proc = run_entrypoint(tmp_path, {"P1": "5"}, "recommend", "--user-id", "9", "--format", "json", dry_run=True)
    assert proc.returncode == 0
    assert proc.stdout.splitlines() == ["recommend", "--user-id", "9", "--format", "json"]
    assert "ignoring P1..P9" in proc.stderr


JUNK = st.text(alphabet=[" ", "\t", "'", '"', "’", "‘", "“", "”", "«", "»", "\u00a0"], max_size=4)
PATHS = st.from_regex(r"[A-Za-z0-9_]{1,8}(/[A-Za-z0-9_.\- ]{0,8}[A-Za-z0-9_]){0,2}\.parquet", fullmatch=True)


@settings(max_examples=40, deadline=None)
@given(before=JUNK, path=PATHS, after=JUNK)
def test_spaces_and_quotes_are_stripped_from_both_ends_only(before: str, path: str, after: str) -> None:
    """Whatever mix of spaces and quotes surrounds a value, exactly the value is left."""
    with tempfile.TemporaryDirectory() as tmp:
        assert planned(Path(tmp), {"P1": before + path + after}) == ["pipeline", "--interactions", path]


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"P1": "’hello’", "P2": "5"}, "P1 is neither a path nor a user id: 'hello'"),
        ({"P1": "12abc"}, "P1 is neither a path nor a user id: '12abc'"),
        ({"P2": "5", "P3": "data/interactions_upd.parquet"}, "P1 is empty"),
        ({"P1": "42", "P2": "ten"}, "P2 (number of rekkos) must be a positive whole number, got 'ten'"),
        ({"P1": "42", "P2": "0"}, "P2 (number of rekkos) must be a positive whole number, got '0'"),
        ({"REKKO_MODE": "recommend", "P1": "data/x.parquet"}, "P1 must be a user id"),
        ({"REKKO_MODE": "train"}, "REKKO_MODE must be pipeline, recommend, demo, serve, scheduler or worker, got 'train'"),
    ],
)
def test_bad_variables_exit_2_with_a_clear_message(tmp_path: Path, variables: dict[str, str], message: str) -> None:
    proc = run_entrypoint(tmp_path, variables, dry_run=True)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize(
    "variables",
    [{"P1": "-5", "P2": "3"}, {"P1": "’ -5’", "P2": "3"}, {"REKKO_MODE": "recommend", "P1": "-5", "P2": "3"}],
)
def test_negative_user_ids_are_user_ids(tmp_path: Path, variables: dict[str, str]) -> None:
    """Negative ids are valid everywhere else in rekko (ingest, CLI, artifacts): P1=-5 is recommend mode."""
    assert planned(tmp_path, variables) == ["recommend", "--user-id", "-5", "-n", "3"]


@pytest.mark.parametrize("value", ["--5", "-", "5-", "-5a", "+-5"])
def test_almost_numbers_are_still_refused(tmp_path: Path, value: str) -> None:
    proc = run_entrypoint(tmp_path, {"P1": value}, dry_run=True)
    assert proc.returncode == 2 and "P1 is neither a path nor a user id" in proc.stderr


def test_recommend_mode_warns_that_p8_p9_are_unused(tmp_path: Path) -> None:
    proc = run_entrypoint(tmp_path, {**seed_recommend(1, 3), "P8": "matrix/x.pkl"}, dry_run=True)
    assert proc.returncode == 0
    assert "P8 and P9 are not used in recommend mode" in proc.stderr
    assert "matrix/x.pkl" not in proc.stdout


def _as_other_user(cmd: list[str]) -> list[str] | None:
    """Run ``cmd`` as an unprivileged uid: as root via setpriv, else as ourselves."""
    if os.geteuid() != 0:
        return cmd
    if shutil.which("setpriv") is None:
        return None
    return ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "--", *cmd]


@pytest.mark.parametrize(
    ("variables", "args"),
    [
        ({"P1": "data/interactions.parquet"}, []),
        ({"P1": "3", "P2": "2"}, []),
        ({"P1": "3", "P2": "2"}, ["--pred-dir", "pred/sub"]),
    ],
)
def test_unwritable_output_folder_exits_2_with_the_docker_user_hint(
    variables: dict[str, str], args: list[str]
) -> None:
    """The bind-mount ownership clash is reported before any work, with the --user remedy."""
    cmd = _as_other_user(["bash", "entrypoint.sh", *args])
    if cmd is None:
        pytest.skip("running as root without setpriv: cannot act as an unprivileged user")
    work = Path(tempfile.mkdtemp())  # not tmp_path: its parents are private to the owner
    try:
        shutil.copy(ENTRYPOINT, work / "entrypoint.sh")
        for sub in ("data", "matrix", "pred"):
            (work / sub).mkdir()
        work.chmod(0o755)
        for sub in ("data", "matrix", "pred"):
            (work / sub).chmod(0o555)
        env = {"PATH": os.environ["PATH"], "REKKO_ENTRYPOINT_DRY_RUN": "1", **variables}
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=60)
    finally:
        shutil.rmtree(work)
    assert proc.returncode == 2, proc.stderr
    assert "is not writable by uid" in proc.stderr
    assert '--user "$(id -u):$(id -g)"' in proc.stderr
    assert proc.stdout == ""


def test_no_pred_skips_the_pred_folder_check() -> None:
    cmd = _as_other_user(["bash", "entrypoint.sh", "--no-pred"])
    if cmd is None:
        pytest.skip("running as root without setpriv: cannot act as an unprivileged user")
    work = Path(tempfile.mkdtemp())
    try:
        shutil.copy(ENTRYPOINT, work / "entrypoint.sh")
        work.chmod(0o555)
        env = {"PATH": os.environ["PATH"], "REKKO_ENTRYPOINT_DRY_RUN": "1", "P1": "3"}
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=60)
    finally:
        work.chmod(0o755)
        shutil.rmtree(work)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["recommend", "--user-id", "3", "--no-pred"]


# -- the seed's lines end to end (CLI + sample data) ----------------------------------------------
needs_cli = pytest.mark.skipif(
    importlib.util.find_spec("rekko.cli") is None, reason="rekko.cli is not written yet (issue 2's CLI)"
)
needs_sample = pytest.mark.skipif(
    not all((REPO / "data" / name).exists() for name in SAMPLE_INPUTS),
    reason="the embedded sample in data/ is not generated yet",
)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory with a copy of the sample inputs and an empty matrix/, as the seed's users have."""
    work = tmp_path_factory.mktemp("entrypoint")
    (work / "data").mkdir()
    (work / "matrix").mkdir()
    for name in SAMPLE_INPUTS:
        shutil.copy(REPO / "data" / name, work / "data" / name)
    return work


@pytest.fixture(scope="module")
def pipeline_run(project: Path) -> subprocess.CompletedProcess[str]:
    return run_entrypoint(project, SEED_PIPELINE)


@pytest.fixture(scope="module")
def active_user(project: Path) -> int:
    """The sample's most active user: a personal (not cold-start) list."""
    return int(pd.read_parquet(project / "data" / "interactions.parquet")["user_id"].value_counts().index[0])


@needs_cli
@needs_sample
def test_seed_pipeline_line_writes_every_artifact(project: Path, pipeline_run: subprocess.CompletedProcess[str]) -> None:
    assert pipeline_run.returncode == 0, pipeline_run.stderr
    for name in PIPELINE_OUTPUTS:
        assert (project / name).stat().st_size > 0, name
    assert (project / "matrix" / "manifest.json").exists()
    assert "rekko pipeline --interactions data/interactions.parquet" in pipeline_run.stderr


@needs_cli
@needs_sample
@pytest.mark.parametrize("n", [1, 5])
def test_seed_recommend_line_prints_n_movies_and_writes_pred_csv(
    project: Path, pipeline_run: subprocess.CompletedProcess[str], active_user: int, n: int
) -> None:
    assert pipeline_run.returncode == 0, pipeline_run.stderr
    proc = run_entrypoint(project, seed_recommend(active_user, n))
    assert proc.returncode == 0, proc.stderr
    assert f"Top {n} movies for user {active_user}" in proc.stdout
    pred = project / "pred" / f"pred({active_user}).csv"
    with pred.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == n
    assert len({row["movie_id"] for row in rows}) == n
    for row in rows:
        assert row["title"] in proc.stdout


@needs_cli
@needs_sample
def test_demo_without_variables_prints_recommendations(
    project: Path, pipeline_run: subprocess.CompletedProcess[str]
) -> None:
    """The artifacts the seed's pipeline line wrote are fresh for the demo: no rebuild, just a list."""
    assert pipeline_run.returncode == 0, pipeline_run.stderr
    proc = run_entrypoint(project, {})
    assert proc.returncode == 0, proc.stderr
    assert "Top 10 movies for user" in proc.stdout
    assert "building artifacts" not in proc.stderr


@needs_cli
@needs_sample
def test_recommend_before_any_pipeline_run_exits_2_and_says_run_the_pipeline(tmp_path: Path) -> None:
    (tmp_path / "matrix").mkdir()
    proc = run_entrypoint(tmp_path, seed_recommend(1, 5))
    assert proc.returncode == 2
    assert "pipeline" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "pred").exists()


@needs_cli
@needs_sample
def test_pipeline_with_a_missing_input_exits_2_naming_it_and_writes_nothing(project: Path, tmp_path: Path) -> None:
    for name in SAMPLE_INPUTS[1:]:
        (tmp_path / "data").mkdir(exist_ok=True)
        shutil.copy(project / "data" / name, tmp_path / "data" / name)
    proc = run_entrypoint(tmp_path, {**SEED_PIPELINE, "P1": "’ data/no_such_file.parquet’"})
    assert proc.returncode == 2
    assert "data/no_such_file.parquet" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == sorted(SAMPLE_INPUTS[1:])
    assert not (tmp_path / "matrix").exists() or not any((tmp_path / "matrix").iterdir())


@needs_cli
@needs_sample
def test_negative_user_id_runs_end_to_end(project: Path, pipeline_run: subprocess.CompletedProcess[str]) -> None:
    assert pipeline_run.returncode == 0, pipeline_run.stderr
    proc = run_entrypoint(project, seed_recommend(-5, 2), "--no-pred")
    assert proc.returncode == 0, proc.stderr
    assert "Top 2 movies for user -5" in proc.stdout


# -- the Dask modes and the engine variables ---------------------------------------------------------
@pytest.mark.parametrize(
    ("variables", "args", "expected"),
    [
        ({"REKKO_MODE": "scheduler"}, [],
         ["dask", "scheduler", "--host", "0.0.0.0", "--port", "8786", "--dashboard-address", ":8787"]),
        ({"REKKO_MODE": "Scheduler", "HOST": "10.0.0.5", "REKKO_DASK_PORT": "9786",
          "REKKO_DASK_DASHBOARD_PORT": "9787"}, ["--idle-timeout", "1h"],
         ["dask", "scheduler", "--host", "10.0.0.5", "--port", "9786", "--dashboard-address", ":9787",
          "--idle-timeout", "1h"]),
        ({"REKKO_MODE": "worker", "REKKO_DASK_SCHEDULER": "’ tcp://scheduler:8786’"}, ["--nthreads", "2"],
         ["dask", "worker", "tcp://scheduler:8786", "--nthreads", "2"]),
        # the engine changes nothing in the P1..P9 mapping: the CLI reads the variables itself
        ({**SEED_PIPELINE, "REKKO_ENGINE": "dask", "REKKO_DASK_SCHEDULER": "tcp://s:8786"}, [],
         ["pipeline", "--interactions", "data/interactions.parquet", "--movies", "data/movies_metdata.parquet",
          "--ratings", "data/Movies_r_d.xlsx", "--movies-rd", "data/movies_rd.parquet",
          "--int-coef", "data/int_coef.parquet", "--movies-upd", "data/movies_md_upd.parquet",
          "--interactions-upd", "data/interactions_upd.parquet", "--sim-md", "matrix/cos_sim_md.pkl",
          "--sim-desc", "matrix/cos_sim_desc.pkl"]),
        ({"P1": "42", "P2": "3", "REKKO_ENGINE": "dask"}, [], ["recommend", "--user-id", "42", "-n", "3"]),
        ({"REKKO_ENGINE": "dask"}, ["recommend", "--all-users", "--output", "data/recs/"],
         ["recommend", "--all-users", "--output", "data/recs/"]),
    ],
)  # fmt: skip
def test_dask_modes_and_engine_variables_map_to_commands(
    tmp_path: Path, variables: dict[str, str], args: list[str], expected: list[str]
) -> None:
    assert planned(tmp_path, variables, *args) == expected


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"REKKO_MODE": "worker"}, "REKKO_MODE=worker needs REKKO_DASK_SCHEDULER"),
        ({"REKKO_MODE": "worker", "REKKO_DASK_SCHEDULER": "’ ’"}, "REKKO_MODE=worker needs REKKO_DASK_SCHEDULER"),
        ({"P1": "42", "REKKO_ENGINE": "spark"}, "REKKO_ENGINE must be local or dask, got 'spark'"),
        ({"REKKO_MODE": "cluster"}, "REKKO_MODE must be pipeline, recommend, demo, serve, scheduler or worker"),
    ],
)
def test_bad_dask_variables_exit_2(tmp_path: Path, variables: dict[str, str], message: str) -> None:
    proc = run_entrypoint(tmp_path, variables, dry_run=True)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert proc.stdout == ""


def test_engine_variables_reach_the_cli_cleaned(tmp_path: Path) -> None:
    """A fake ``rekko`` first on PATH shows what the real one would receive: the arguments and the variables."""
    fake = tmp_path / "bin" / "rekko"
    fake.parent.mkdir()
    fake.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "engine=${REKKO_ENGINE-unset}" '
                    '"scheduler=${REKKO_DASK_SCHEDULER-unset}" "$@"\n', encoding="utf-8")
    fake.chmod(0o755)
    path = f"{fake.parent}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    proc = run_entrypoint(tmp_path, {"PATH": path, "P1": "7", "REKKO_ENGINE": "“ DASK ”",
                                     "REKKO_DASK_SCHEDULER": "’tcp://10.1.2.3:8786’"}, "--no-pred")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["engine=dask", "scheduler=tcp://10.1.2.3:8786",
                                        "recommend", "--user-id", "7", "--no-pred"]
    assert "REKKO_ENGINE=dask REKKO_DASK_SCHEDULER=tcp://10.1.2.3:8786 rekko recommend" in proc.stderr
    proc = run_entrypoint(tmp_path, {"PATH": path, "P1": "7", "REKKO_DASK_SCHEDULER": "  "}, "--no-pred")
    assert proc.stdout.splitlines()[:2] == ["engine=unset", "scheduler=unset"]  # blank = not set


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@needs_cli
@needs_sample
def test_scheduler_and_worker_modes_run_the_batch_end_to_end(
    project: Path, pipeline_run: subprocess.CompletedProcess[str]
) -> None:
    """REKKO_MODE=scheduler and =worker for real (on 127.0.0.1), then the batch through them with REKKO_ENGINE=dask."""
    pytest.importorskip("distributed")
    assert pipeline_run.returncode == 0, pipeline_run.stderr
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not re.fullmatch(r"P[1-9]|REKKO_.*", k)}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    logs = project / "dask-logs"
    logs.mkdir(exist_ok=True)
    procs = []
    try:
        for mode, extra in (("scheduler", {"HOST": "127.0.0.1", "REKKO_DASK_PORT": str(port),
                                           "REKKO_DASK_DASHBOARD_PORT": str(_free_port())}),
                            ("worker", {"REKKO_DASK_SCHEDULER": address})):
            with (logs / f"{mode}.log").open("w") as log:
                procs.append(subprocess.Popen(
                    ["bash", str(ENTRYPOINT), *(["--nthreads", "1", "--host", "127.0.0.1"] if mode == "worker" else [])],
                    cwd=project, env={**env, "REKKO_MODE": mode, **extra}, stdout=log, stderr=subprocess.STDOUT))
        proc = run_entrypoint(project, {"REKKO_ENGINE": "dask", "REKKO_DASK_SCHEDULER": address},
                              "recommend", "--all-users", "-n", "4", "--output", "recs/")
        assert proc.returncode == 0, proc.stderr + "".join(p.read_text() for p in logs.iterdir())
        assert "batch recommend (dask) done: 1,600 rows, 400 users" in proc.stderr
        assert len(pd.read_parquet(project / "recs")) == 1600
        assert f"dask scheduler --host 127.0.0.1 --port {port}" in (logs / "scheduler.log").read_text()
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
