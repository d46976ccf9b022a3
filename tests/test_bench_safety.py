"""The bench moves and signals nothing it does not own (issue 21): --fresh renames only a
folder a bench made, and SIGTERM ends a bench with one line, the running job recorded
``interrupted`` in bench_jobs.csv and the conventional exit code 128 + 15."""

import csv
import os
import signal
import subprocess
import sys
import textwrap
import time

from seqbench import bench
from seqbench.studies import Job


def test_fresh_refuses_to_move_a_folder_a_bench_did_not_make(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "profile_jobs", lambda profile: [])
    project = tmp_path / "proj"
    project.mkdir()
    (project / "main.py").write_text("print('mine')\n")
    argv = [
        "--profile",
        "smoke",
        "--runs",
        str(project),
        "--results",
        str(tmp_path / "r"),
        "--fresh",
    ]
    assert bench.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and f"--runs={project}" in err[0] and "not a seqbench runs folder" in err[0]
    )
    assert (project / "main.py").read_text() == "print('mine')\n"
    assert not (tmp_path / "proj.previous-1").exists()
    assert not (project / bench.MARKER).exists()  # a user's folder is not claimed either


def test_fresh_on_an_empty_folder_moves_nothing_and_marks_it(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "profile_jobs", lambda profile: [])
    runs = tmp_path / "runs"
    runs.mkdir()
    argv = ["--profile", "smoke", "--runs", str(runs), "--results", str(tmp_path / "r"), "--fresh"]
    assert bench.main(argv) == 0
    assert (runs / bench.MARKER).is_file() and not (tmp_path / "runs.previous-1").exists()


# a bench whose one job sleeps; the test sends SIGTERM to the bench alone
BENCH = textwrap.dedent(
    """
    import sys
    from seqbench import bench
    from seqbench.studies import Job
    bench.profile_jobs = lambda profile: [Job("sleeper", "sleeper")]
    sys.exit(bench.main(["--profile", "smoke", "--runs", sys.argv[1], "--results", sys.argv[2]]))
    """
)
SLEEPER = textwrap.dedent(  # a job that ends quietly on the SIGINT the bench passes on
    """
    import pathlib, signal, sys, time
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))
    pathlib.Path(sys.argv[-1].split("=", 1)[1], "started").touch()
    time.sleep(600)
    """
)


def test_sigterm_ends_a_bench_with_one_line_and_the_job_recorded(tmp_path):
    (tmp_path / "sleeper.py").write_text(SLEEPER)
    (tmp_path / "bench_main.py").write_text(BENCH)
    runs = tmp_path / "runs"
    env = os.environ | {"PYTHONPATH": f"{tmp_path}{os.pathsep}{os.getcwd()}"}
    proc = subprocess.Popen(
        [sys.executable, str(tmp_path / "bench_main.py"), str(runs), str(tmp_path / "report")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120  # a hang guard, not a timing assertion
    while not (runs / "started").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line.strip()] == [err.strip()]
    assert "bench stopped (SIGTERM)" in err
    with open(runs / "bench_jobs.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["job"], r["status"]) for r in rows] == [("sleeper", "interrupted")]


def test_fresh_on_the_current_folder_moves_it_by_its_real_name(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "profile_jobs", lambda profile: [])
    runs = tmp_path / "runs"
    (runs / "a-run").mkdir(parents=True)
    (runs / bench.MARKER).touch()
    monkeypatch.chdir(runs)  # --runs . : Path(".").name is "", which cannot be numbered
    assert bench.main(["--profile", "smoke", "--runs", ".", "--results", "../r", "--fresh"]) == 0
    assert (tmp_path / "runs.previous-1" / "a-run").is_dir()
    assert (runs / bench.MARKER).is_file() and not (runs / "a-run").exists()  # a new one


def test_the_console_gets_one_line_as_each_job_starts_and_ends(tmp_path, monkeypatch, capfd):
    """What a job prints (Hydra's launcher lines, result dicts) goes to <runs>/logs/<job>.log;
    the terminal reads [i/n], the time so far and, once a duration is known, what is left."""
    (tmp_path / "chatty.py").write_text("for i in range(50):\n    print('launcher line', i)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setattr(bench, "profile_jobs", lambda p: [Job("a", "chatty"), Job("b", "chatty")])
    runs = tmp_path / "runs"
    argv = ["--profile", "smoke", "--runs", str(runs), "--results", str(tmp_path / "r")]
    assert bench.main([*argv, "--no-report"]) == 0
    lines = capfd.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines[:4]] == [
        "[1/2] a",
        "[1/2] a",
        "[2/2] b",
        "[2/2] b",
    ]
    assert "started, 0s so far" in lines[0] and "left" not in lines[0]  # nothing known yet
    assert "about" in lines[2] and "left" in lines[2]  # the first job's time is the estimate
    assert lines[1].startswith("[1/2] a: ok in ") and str(runs / "logs" / "a.log") in lines[1]
    assert not any("launcher line" in line for line in lines)
    assert (runs / "logs" / "a.log").read_text().count("launcher line") == 50
