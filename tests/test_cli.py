"""The CLI as users run it: real subprocesses, real files, exit codes."""

import json
import shutil

import pandas as pd
import pytest

from rekko.cli import main
from tests.conftest import run_cli, tiny_interactions, tiny_movies


class InProcess:
    """``rekko`` called in-process (same main() as the console script), for the long matrix of error cases."""

    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def cli(monkeypatch, capsys):
    def run(args, cwd):
        monkeypatch.chdir(cwd)
        code = main(args)
        out = capsys.readouterr()
        return InProcess(code, out.out, out.err)

    return run

ARTIFACTS = ("data/movies_rd.parquet", "data/int_coef.parquet", "data/movies_md_upd.parquet",
             "data/interactions_upd.parquet", "matrix/cos_sim_md.pkl", "matrix/cos_sim_desc.pkl",
             "matrix/manifest.json")


@pytest.fixture
def built(tiny_dir):
    proc = run_cli(["pipeline"], tiny_dir)
    assert proc.returncode == 0, proc.stderr
    return tiny_dir


def test_pipeline_and_recommend_with_seed_defaults(built):
    for rel in ARTIFACTS:
        assert (built / rel).exists(), rel
    proc = run_cli(["recommend", "--user-id", "1", "-n", "3"], built)
    assert proc.returncode == 0, proc.stderr
    assert "Top 3 movies for user 1" in proc.stdout and "Матрица 2" in proc.stdout
    pred = pd.read_csv(built / "pred" / "pred(1).csv")
    assert len(pred) == 3 and pred.movie_id.is_unique and not {"m1", "m4"} & set(pred.movie_id)


def test_recommend_json_and_cold_start(built):
    proc = run_cli(["recommend", "-u", "777", "-n", "2", "--format", "json", "--no-pred"], built)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert len(rows) == 2 and all(r["cold_start"] for r in rows)
    assert not (built / "pred").exists()


def test_recommend_csv_format(built):
    proc = run_cli(["recommend", "-u", "2", "-n", "2", "--format", "csv", "--no-pred"], built)
    assert proc.returncode == 0
    assert proc.stdout.splitlines()[0].startswith("user_id,rank,movie_id,title,score,based_on")


def test_batch_all_users(built):
    proc = run_cli(["recommend", "--all-users", "-n", "2", "--output", "recs.csv"], built)
    assert proc.returncode == 0, proc.stderr
    recs = pd.read_csv(built / "recs.csv")
    assert list(recs.columns) == ["user_id", "movie_id", "score", "rank"]
    assert set(recs.user_id) == {1, 2, 3} and (recs.groupby("user_id").size() == 2).all()


@pytest.mark.parametrize("args", [["-n", "0"], ["-n", "abc"], ["-n", "2.5"], ["--user-id", "x1"]])
def test_bad_recommend_arguments_exit_2(built, args, cli):
    with pytest.raises(SystemExit) as exit_info:
        cli(["recommend", "-u", "1", *args] if "--user-id" not in args else ["recommend", *args], built)
    assert exit_info.value.code == 2


def test_recommend_without_artifacts_exit_2_with_hint(tiny_dir):
    proc = run_cli(["recommend", "-u", "1"], tiny_dir)
    assert proc.returncode == 2
    assert "manifest not found" in proc.stderr and "Rerun the pipeline" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_recommend_against_tampered_artifact_exit_2(built):
    df = pd.read_parquet(built / "data/interactions_upd.parquet")
    df.iloc[:2].to_parquet(built / "data/interactions_upd.parquet", index=False)
    proc = run_cli(["recommend", "-u", "1"], built)
    assert proc.returncode == 2
    assert "does not match the manifest" in proc.stderr and "Rerun the pipeline" in proc.stderr


def test_recommend_against_mismatched_run_exit_2(built, tmp_path):
    # a similarity file from another pipeline run (other movies) is refused
    other = tmp_path / "other"
    shutil.copytree(built, other)
    movies = pd.read_parquet(other / "data/movies_metdata.parquet").iloc[:5]
    movies.to_parquet(other / "data/movies_metdata.parquet", index=False)
    assert run_cli(["pipeline"], other).returncode == 0
    shutil.copy(other / "matrix/cos_sim_desc.pkl", built / "matrix/cos_sim_desc.pkl")
    proc = run_cli(["recommend", "-u", "1"], built)
    assert proc.returncode == 2 and "cos_sim_desc.pkl" in proc.stderr and "does not match the manifest" in proc.stderr


def _write(df: pd.DataFrame, path):
    if path.suffix == ".csv":
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path, index=False)


BAD_INPUTS = {
    "missing file": (["--interactions", "data/nope.parquet"], None, "not found"),
    "unknown extension": (["--interactions", "data/inter.txt"], ("inter.txt", b"user_id\n1\n"), "unknown extension"),
    "corrupt parquet": (["--movies", "data/bad.parquet"], ("bad.parquet", b"PAR1garbage"), "cannot read movies"),
    "corrupt xlsx": (["--ratings", "data/bad.xlsx"], ("bad.xlsx", b"PK\x03\x04garbage"), "cannot read ratings"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_unreadable_inputs_exit_2_and_write_nothing(tiny_dir, case, cli):
    args, content, fragment = BAD_INPUTS[case]
    if content:
        (tiny_dir / "data" / content[0]).write_bytes(content[1])
    proc = cli(["pipeline", *args], tiny_dir)
    assert proc.returncode == 2, proc.stderr
    assert fragment in proc.stderr and "Traceback" not in proc.stderr
    assert not (tiny_dir / "matrix").exists()


BAD_CONTENT = {
    "missing column": ("interactions", lambda i, m: (i.drop(columns="movie_id"), m), "Missed columns ['movie_id']"),
    "non-numeric watch time": ("interactions",
                               lambda i, m: (i.astype({"watch_duration_minutes": object}).assign(
                                   watch_duration_minutes=["1", "2", "час", "4", "5", "6", "7"]), m), "'час'"),
    "negative watch time": ("interactions", lambda i, m: (i.assign(watch_duration_minutes=-i.watch_duration_minutes), m),
                            "non-negative"),
    "non-numeric duration": ("movies", lambda i, m: (i, m.astype({"duration": object}).assign(
        duration=["90", "x", "1", "2", "3", "4"])), "'duration'"),
    "negative duration": ("movies", lambda i, m: (i, m.assign(duration=-m.duration)), "non-negative"),
    "duplicate movie_id": ("movies", lambda i, m: (i, m.assign(movie_id=["m1", "m1", "m3", "m4", "m5", "m6"])),
                           "duplicate movie_id 'm1'"),
    "empty interactions": ("interactions", lambda i, m: (i.iloc[:0], m), "no interactions"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONTENT))
def test_bad_content_exit_2_names_file_and_writes_nothing(tiny_dir, case, cli):
    which, mutate, fragment = BAD_CONTENT[case]
    inter, movies = mutate(tiny_interactions(), tiny_movies())
    _write(inter, tiny_dir / "data/interactions.csv")
    _write(movies, tiny_dir / "data/movies.csv")
    proc = cli(["pipeline", "--interactions", "data/interactions.csv", "--movies", "data/movies.csv"], tiny_dir)
    assert proc.returncode == 2, proc.stderr
    assert fragment in proc.stderr
    assert f"data/{which}.csv" in proc.stderr
    assert not (tiny_dir / "matrix").exists() and not (tiny_dir / "data/movies_md_upd.parquet").exists()


def test_unknown_movies_are_counted_not_silently_dropped(tiny_dir):
    proc = run_cli(["pipeline"], tiny_dir)
    assert proc.returncode == 0
    assert "dropped 1 of 7 interactions" in proc.stderr and "1 dropped" in proc.stdout


def test_help_everywhere(tiny_dir, cli, capsys):
    for cmd in ([], ["pipeline"], ["recommend"], ["demo"]):
        with pytest.raises(SystemExit) as exit_info:
            cli([*cmd, "--help"], tiny_dir)
        assert exit_info.value.code == 0 and "usage: rekko" in capsys.readouterr().out


def test_bad_argument_message_names_the_problem(built):
    proc = run_cli(["recommend", "-u", "1", "-n", "0"], built)
    assert proc.returncode == 2 and "integer >= 1, got 0" in proc.stderr


# -- input limits: zip bombs and huge values give a quick, short, exit-2 answer ------------------
def test_xlsx_zip_bomb_exits_2_quickly_with_one_short_line(tiny_dir):
    import time

    from tests.test_io import make_bomb_xlsx

    make_bomb_xlsx(tiny_dir / "data/Movies_r_d.xlsx", cell_bytes=50 << 20)
    t0 = time.perf_counter()
    proc = run_cli(["pipeline"], tiny_dir)
    assert time.perf_counter() - t0 < 30
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and len(errors[0]) < 600, proc.stderr[:2000]
    assert "data/Movies_r_d.xlsx" in errors[0] and "zip bomb" in errors[0]
    assert not (tiny_dir / "matrix").exists()


def test_a_5mb_column_name_gives_a_short_error_line(tiny_dir):
    df = tiny_interactions().rename(columns={"movie_id": "m" * (5 << 20)})
    df.to_csv(tiny_dir / "data/inter.csv", index=False)
    proc = run_cli(["-q", "pipeline", "--interactions", "data/inter.csv"], tiny_dir)  # -q: the error line alone
    assert proc.returncode == 2
    assert "Missed columns ['movie_id']" in proc.stderr and "data/inter.csv" in proc.stderr
    assert len(proc.stderr) < 3_000 and len(proc.stderr.strip().splitlines()) == 1


# -- user ids are exact 64-bit integers end to end ----------------------------------------------
def test_user_ids_beyond_2_53_survive_pipeline_and_recommend(tiny_dir):
    big = 2**53
    inter = tiny_interactions()
    inter["user_id"] = [big, big, big + 1, 2, 2, 3, 3]  # big watched Матрица, big + 1 watched Брат
    inter.to_parquet(tiny_dir / "data/interactions.parquet", index=False)
    proc = run_cli(["pipeline"], tiny_dir)
    assert proc.returncode == 0, proc.stderr
    stored = pd.read_parquet(tiny_dir / "data/interactions_upd.parquet")
    assert {big, big + 1} <= set(stored["user_id"].tolist())
    assert stored.loc[stored.user_id == big + 1, "movie_id"].astype(str).tolist() == ["m4"]
    proc = run_cli(["recommend", "-u", str(big + 1), "-n", "1", "--format", "json", "--no-pred"], tiny_dir)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert rows[0]["user_id"] == big + 1 and not rows[0]["cold_start"] and rows[0]["movie_id"] == "m5"


def test_user_id_beyond_int64_in_a_csv_exits_2_quoting_the_row(tiny_dir):
    inter = tiny_interactions().astype({"user_id": object})
    inter.loc[4, "user_id"] = 2**70
    inter.to_csv(tiny_dir / "data/inter.csv", index=False)
    proc = run_cli(["pipeline", "--interactions", "data/inter.csv"], tiny_dir)
    assert proc.returncode == 2
    assert "data/inter.csv" in proc.stderr and str(2**70) in proc.stderr and "'movie_id': 'm2'" in proc.stderr
    assert not (tiny_dir / "matrix").exists()


@pytest.mark.parametrize("command", ["recommend", "demo"])
@pytest.mark.parametrize("user", ["99999999999999999999", str(2**63), str(-(2**63) - 1)])
def test_user_id_beyond_int64_is_an_argument_error(tiny_dir, command, user):
    proc = run_cli([command, "-u", user, "--format", "json"], tiny_dir)
    assert proc.returncode == 2
    assert "user id out of range" in proc.stderr and user in proc.stderr
    assert "Rerun the pipeline" not in proc.stderr and "OverflowError" not in proc.stderr


@pytest.mark.parametrize("user", ["1_000", "١٢", "7.0", ""])
def test_user_id_must_be_plain_ascii_digits(tiny_dir, cli, user):
    with pytest.raises(SystemExit) as exit_info:
        cli(["recommend", "-u", user], tiny_dir)
    assert exit_info.value.code == 2


def test_negative_and_extreme_user_ids_are_accepted(built):
    for user in ("-5", str(2**63 - 1), str(-(2**63))):
        proc = run_cli(["recommend", "-u", user, "-n", "1", "--no-pred", "--format", "json"], built)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)[0]["user_id"] == int(user)


def test_overflowing_watch_minutes_exit_2_without_a_numpy_warning(tiny_dir):
    inter = tiny_interactions()
    inter.loc[[0, 1], "watch_duration_minutes"] = 1e308
    inter.to_parquet(tiny_dir / "data/interactions.parquet", index=False)
    proc = run_cli(["pipeline"], tiny_dir)
    assert proc.returncode == 2, proc.stderr
    assert "sum to infinity" in proc.stderr and "data/interactions.parquet" in proc.stderr
    assert "Warning" not in proc.stderr and not (tiny_dir / "matrix").exists()


def test_year_zero_exits_2(tiny_dir):
    inter = tiny_interactions()
    inter.loc[2, "year"] = 0
    inter.to_parquet(tiny_dir / "data/interactions.parquet", index=False)
    proc = run_cli(["pipeline"], tiny_dir)
    assert proc.returncode == 2 and "outside the years 1900..2100" in proc.stderr


# -- output paths that collide are refused before anything is read or written --------------------
def _snapshot(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


COLLISIONS = {
    "two outputs on one file": (["--sim-md", "matrix/x.pkl", "--sim-desc", "matrix/x.pkl"],
                                "--sim-desc (P9) and --sim-md (P8) are the same file"),
    "output on an input": (["--movies-rd", "data/interactions.parquet"],
                           "--movies-rd (P4) data/interactions.parquet is the --interactions (P1) input"),
    "output on the manifest": (["--sim-desc", "matrix/manifest.json"], "the manifest (beside --sim-md) and"),
    "output on the co-watching matrix": (["--sim-desc", "matrix/cos_sim_cf.pkl"], "cos_sim_cf.pkl (beside --sim-md)"),
    "same file spelled twice": (["--int-coef", "data/../data/./movies_rd.parquet"], "are the same file"),
    "output on the API cache": (["--movies-rd", "data/api_cache.parquet"], "the API cache (beside --ratings)"),
    "output is a folder": (["--movies-upd", "data"], "is a folder"),
    "unknown table extension": (["--int-coef", "data/int_coef.json"], "unknown extension '.json'"),
}


@pytest.mark.parametrize("case", sorted(COLLISIONS))
def test_colliding_outputs_exit_2_and_change_nothing(built, cli, case):
    args, fragment = COLLISIONS[case]
    before = _snapshot(built)
    proc = cli(["pipeline", *args], built)
    assert proc.returncode == 2, proc.stderr
    assert fragment in proc.stderr
    assert _snapshot(built) == before


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_an_output_linked_to_an_input_is_the_input(tiny_dir, cli, link):
    import os

    target = tiny_dir / "data/interactions.parquet"
    alias = tiny_dir / "data/alias.parquet"
    (os.symlink if link == "symlink" else os.link)(target, alias)
    before = target.read_bytes()
    proc = cli(["pipeline", "--interactions-upd", "data/alias.parquet"], tiny_dir)
    assert proc.returncode == 2 and "is the --interactions (P1) input" in proc.stderr
    assert target.read_bytes() == before and not (tiny_dir / "matrix").exists()
