"""The report under attack (issue 21): paths read from files never leave the results folder,
the report writes only into a folder it owns and leaves the previous report whole when it
fails or is killed, two reports never mix, and a run folder full of FIFOs, devices and loops
is listed, not read. Run folders are made by hand (a record and a CSV) so each test costs one
report, not a training run."""

import errno
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from seqbench.report import folder
from seqbench.report.__main__ import main
from seqbench.report.collect import OWN_TABLES, collect, regular_problem
from seqbench.report.write import write_report

HANG_S = 300  # a guard against a hang, not a timing: a report takes seconds
REPORT = [sys.executable, "-m", "seqbench.report"]


def make_run(runs: Path, name: str, kind="train", **fields) -> Path:
    """A run folder a failed run leaves: its record and one CSV (no summary to verify)."""
    d = runs / name
    d.mkdir(parents=True)
    config = {
        "study": "adhoc",
        "seed": 0,
        "model": {"_target_": "seqbench.models.recurrent.LSTM"},
        "data": {"_target_": "seqbench.data.copy.Copy"},
    }
    record = {"kind": kind, "status": "failed", "config": config} | fields
    (d / "run.json").write_text(json.dumps(record))
    csv = "rows.csv" if kind == "measure" else "metrics.csv"
    (d / csv).write_text("step,train_loss\n1,2.0\n")
    return d


def snapshot(root: Path) -> dict:
    """Every file under root (links as their target), byte for byte."""
    return {
        str(p.relative_to(root)): os.readlink(p) if p.is_symlink() else p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_symlink() or p.is_file()
    }


def report(runs, results, *flags, **kw) -> subprocess.CompletedProcess:
    argv = [*REPORT, "--runs", runs, "--results", results, *flags]
    return subprocess.run(argv, capture_output=True, text=True, timeout=HANG_S, **kw)


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("seqbench: error: "), err
    return lines[0]


@pytest.fixture
def previous(tmp_path):
    """A runs folder and the report it wrote (tmp/runs, tmp/results)."""
    runs, results = tmp_path / "runs", tmp_path / "results"
    make_run(runs, "lstm-1")
    write_report(runs, results)
    return runs, results


# --- paths read from files stay inside their folder ----------------------------------------
@pytest.mark.parametrize(
    "how", ["../victim", "absolute", "a link out", "a subfolder", "a page path"]
)
def test_a_crafted_manifest_deletes_and_writes_nothing(previous, tmp_path, capsys, how):
    runs, results = previous
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    entry = {
        "../victim": "../victim",
        "absolute": str(victim),
        "a page path": "studies/../README.md",  # study pages are plain names beside README.md
    }.get(how, "evil.png")
    if how == "a link out":
        (results / "evil.png").symlink_to(victim)
    if how == "a subfolder":
        (results / "sub").symlink_to(tmp_path)
        entry = "sub/victim"
    manifest = json.loads((results / ".report.json").read_text())
    (results / ".report.json").write_text(json.dumps(manifest | {"files": [entry]}))
    before = snapshot(tmp_path)
    for force in ([], ["--force"]):
        assert main(["--runs", str(runs), "--results", str(results), *force]) == 2
        line = one_error_line(capsys.readouterr().err)
        assert "its .report.json is not one the report wrote" in line and repr(entry) in line
    assert victim.read_text() == "keep me" and snapshot(tmp_path) == before


def test_a_table_name_from_a_run_is_a_checked_identifier_never_a_report_table(tmp_path):
    runs, results = tmp_path / "runs", tmp_path / "a" / "results"
    make_run(runs, "lstm-1")
    make_run(runs, "escape", kind="measure", table="../../x")
    make_run(runs, "takeover", kind="measure", table="runs")
    make_run(runs, "nameless", kind="measure")
    make_run(runs, "fine", kind="measure", table="my_table")
    write_report(runs, results)
    assert not list(tmp_path.rglob("x.csv"))  # ../../x: written nowhere
    assert set(pd.read_csv(results / "runs.csv").run) == {"lstm-1"}  # not replaced
    assert set(pd.read_csv(results / "my_table.csv").run) == {"fine"}
    bad = pd.read_csv(results / "unreadable.csv").set_index("run")
    assert "'../../x' is not allowed" in bad.loc["escape", "reason"]
    assert "the report writes runs.csv itself" in bad.loc["takeover", "reason"]
    assert "None is not allowed" in bad.loc["nameless", "reason"]
    for own in [*OWN_TABLES, "verdicts"]:  # every table the report writes itself
        make_run(runs, f"m-{own}", kind="measure", table=own)
    listed = set(collect(runs, reserved=("verdicts",))["unreadable"].run)
    assert {f"m-{own}" for own in [*OWN_TABLES, "verdicts"]} <= listed


# --- the report writes only into a folder it owns ------------------------------------------
def test_a_user_folder_is_refused_and_force_never_replaces_or_deletes_its_files(
    previous, tmp_path, capsys
):
    runs, _ = previous
    mine = tmp_path / "mydocs"
    mine.mkdir()
    (mine / "README.md").write_text("# my notes")
    (mine / "main.py").write_text("print('mine')")
    before = snapshot(mine)
    assert main(["--runs", str(runs), "--results", str(mine)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "holds files the report did not write ('README.md', 'main.py')" in line
    assert main(["--runs", str(runs), "--results", str(mine), "--force"]) == 2  # README.md
    assert "'README.md' is not the report's" in one_error_line(capsys.readouterr().err)
    assert snapshot(mine) == before and sorted(os.listdir(mine)) == ["README.md", "main.py"]
    (mine / "README.md").unlink()  # --force writes beside a user's files, never over them
    assert main(["--runs", str(runs), "--results", str(mine), "--force"]) == 0
    assert main(["--runs", str(runs), "--results", str(mine), "--force"]) == 0
    assert (mine / "main.py").read_text() == "print('mine')"
    assert (mine / "README.md").read_text().startswith("# seqbench results")


def test_force_refuses_a_report_file_whose_name_a_user_file_holds(tmp_path, capsys):
    runs, results = tmp_path / "runs", tmp_path / "mine"
    make_run(runs, "fine", kind="measure", table="my_table")
    results.mkdir()
    (results / "my_table.csv").write_text("my own numbers\n")  # known only once written
    assert main(["--runs", str(runs), "--results", str(results), "--force"]) == 2
    assert "holds 'my_table.csv', which the report" in one_error_line(capsys.readouterr().err)
    assert os.listdir(results) == ["my_table.csv"]
    assert (results / "my_table.csv").read_text() == "my own numbers\n"


def test_results_dot_in_a_project_or_the_runs_folder_is_refused(tmp_path, monkeypatch, capsys):
    project = tmp_path / "project"
    make_run(project / "runs", "lstm-1")
    (project / "README.md").write_text("# my project")
    (project / "main.py").write_text("print('mine')")
    monkeypatch.chdir(project)
    before = snapshot(project)
    for results in (".", "runs", str(project)):
        assert main(["--runs", "runs", "--results", results]) == 2
        one_error_line(capsys.readouterr().err)
    assert snapshot(project) == before
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["--runs", "runs", "--results", str(empty)]) == 0  # an empty folder is fine


def test_a_report_that_fails_midway_leaves_the_previous_one_byte_identical(
    previous, capsys, monkeypatch
):
    runs, results = previous
    make_run(runs, "gru-2")  # this report would differ from the previous one
    before = snapshot(results)
    from seqbench import store
    from seqbench.report import hardware

    write = store.atomic_write_text

    def full_at_readme(path, text):  # the tables are written (staged), then the disk is full
        if Path(path).name == "README.md":
            raise OSError(errno.ENOSPC, "No space left on device")
        write(path, text)

    monkeypatch.setattr(store, "atomic_write_text", full_at_readme)
    assert main(["--runs", str(runs), "--results", str(results)]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line == f"seqbench: error: cannot write the report to {results}: No space left on device"
    assert snapshot(results) == before
    monkeypatch.setattr(hardware, "listing", lambda tables: 1 / 0)  # a writer that raises
    with pytest.raises(ZeroDivisionError):
        write_report(runs, results)
    assert snapshot(results) == before and sorted(os.listdir(results)) == sorted(before)


def test_a_real_write_error_is_one_line_and_the_previous_report_stands(previous):
    runs, results = previous
    make_run(runs, "gru-2")
    before = snapshot(results)

    def small_files():  # writes past 2 KiB fail with EFBIG (Python ignores SIGXFSZ)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))

    done = report(runs, results, preexec_fn=small_files)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    line = one_error_line(done.stderr)
    assert line.startswith(f"seqbench: error: cannot write the report to {results}: File too large")
    assert snapshot(results) == before and sorted(os.listdir(results)) == sorted(before)


def test_a_killed_report_leaves_the_previous_one_and_the_next_report_recovers(previous):
    runs, results = previous
    make_run(runs, "gru-2")
    before = snapshot(results)
    argv = [*REPORT, "--runs", runs, "--results", results]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    staged = results / f".report-tmp-{proc.pid}"
    deadline = time.monotonic() + HANG_S
    while not (staged.is_dir() and any(staged.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.005)  # until it has written its first file, still staged
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = {k: v for k, v in snapshot(results).items() if k.split("/")[0] not in before}
    assert snapshot(results) == before | left  # the previous report, untouched
    assert all(folder.LEFTOVER.fullmatch(k.split("/")[0]) or k == folder.LOCK for k in left)
    assert report(runs, results).returncode == 0  # the leftovers are the report's own
    assert sorted(os.listdir(results)) == sorted(before)  # and gone
    assert set(pd.read_csv(results / "runs.csv").run) == {"lstm-1", "gru-2"}


def test_a_second_report_waits_for_the_first_and_two_at_once_never_mix(tmp_path):
    results = tmp_path / "results"
    one, two = tmp_path / "one", tmp_path / "two"
    make_run(one, "lstm-1")
    make_run(two, "gru-2")
    write_report(one, results)
    before = snapshot(results)
    with folder.locked(results):  # a report in progress: the second one waits, writing nothing
        err = tmp_path / "err"
        with open(err, "w") as f:
            proc = subprocess.Popen(
                [*REPORT, "--runs", two, "--results", results, "--force"],
                stdout=subprocess.DEVNULL,
                stderr=f,
            )
        deadline = time.monotonic() + HANG_S
        while "waiting for the report" not in err.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, err.read_text()
            time.sleep(0.05)
        assert snapshot(results) == before | {folder.LOCK: b""}  # ours, the lock held here
    assert proc.wait(timeout=HANG_S) == 0
    assert set(pd.read_csv(results / "runs.csv").run) == {"gru-2"}
    both = [
        subprocess.Popen(
            [*REPORT, "--runs", runs, "--results", results, "--force"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for runs in (one, two)
    ]
    assert [p.wait(timeout=HANG_S) for p in both] == [0, 0]
    manifest = json.loads((results / ".report.json").read_text())
    assert sorted(os.listdir(results)) == sorted([".report.json", *manifest["files"]])
    runs = (results / manifest["runs"]).resolve()
    assert runs in (one, two)
    assert set(pd.read_csv(results / "runs.csv").run) == {p.name for p in runs.iterdir()}


# --- only regular files are read, with a bound ---------------------------------------------
def test_fifos_devices_loops_and_dangling_links_are_listed_never_read(tmp_path):
    runs, results = tmp_path / "runs", tmp_path / "results"
    make_run(runs, "good")
    damage = {
        "fifo-metrics": lambda d: _replace(d / "metrics.csv", os.mkfifo),
        "zero-positions": lambda d: (d / "position_loss.csv").symlink_to("/dev/zero"),
        "fifo-record": lambda d: _replace(d / "run.json", os.mkfifo),
        "zero-record": lambda d: _replace(d / "run.json", lambda p: p.symlink_to("/dev/zero")),
        "dir-metrics": lambda d: _replace(d / "metrics.csv", os.mkdir),
        "loop-metrics": lambda d: _replace(d / "metrics.csv", lambda p: p.symlink_to(p)),
        "dangling-metrics": lambda d: _replace(d / "metrics.csv", lambda p: p.symlink_to("gone")),
    }
    for name, make in damage.items():
        make(make_run(runs, name))
    os.mkfifo(runs / "bench_jobs.csv")
    done = report(runs, results)  # a hang fails here (timeout), never blocks the suite
    assert done.returncode == 0, done.stderr
    bad = pd.read_csv(results / "unreadable.csv")
    assert set(bad.run) == {*damage, "-"}
    reasons = dict(zip(bad.run + ":" + bad.file, bad.reason))
    assert reasons["fifo-metrics:metrics.csv"] == "metrics.csv: not a regular file (a FIFO)"
    assert "(a character device)" in reasons["zero-positions:position_loss.csv"]
    assert "(a character device)" in reasons["zero-record:run.json"]
    assert "(a directory)" in reasons["dir-metrics:metrics.csv"]
    assert "loop" in reasons["loop-metrics:metrics.csv"]
    assert "dangling" in reasons["dangling-metrics:metrics.csv"]
    assert reasons["-:bench_jobs.csv"] == "bench_jobs.csv: not a regular file (a FIFO)"
    assert all("\n" not in r for r in bad.reason)


def test_a_file_over_the_bound_is_a_reason_not_a_read(tmp_path):
    big = tmp_path / "metrics.csv"
    big.write_text("step\n" + "1\n" * 100)
    assert regular_problem(big, max_bytes=1000) is None
    assert "205 bytes, more than the 100" in regular_problem(big, max_bytes=100)


def _replace(path: Path, make) -> None:
    path.unlink(missing_ok=True)
    make(path)
