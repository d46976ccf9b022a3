"""The bench's time limits and fresh starts: a job past its cap is stopped (SIGTERM to its
process group, then SIGKILL) and keeps what it wrote; a profile's --budget-s caps each job at
the time left and records the jobs it could not start; the GPU profile runs what decides
first, within budget; --fresh moves the old runs aside instead of mixing them in."""

import csv
import sys
import textwrap

import pytest

from seqbench import bench, gpu
from seqbench.studies import Job

# a job that writes a line per tick and, on SIGTERM, a last line before it ends (as a training
# run checkpoints); with IGNORE it ignores SIGTERM
WORKER = textwrap.dedent(
    """
    import signal, sys, time
    path, mode = sys.argv[1], sys.argv[2]
    def stop(signum, frame):
        with open(path, "a") as f:
            f.write("checkpointed\\n")
        sys.exit(143)
    signal.signal(signal.SIGTERM, signal.SIG_IGN if mode == "IGNORE" else stop)
    with open(path, "a") as f:
        f.write("ready\\n")
    while True:
        time.sleep(0.05)
    """
)


def _worker(tmp_path, mode="STOP"):
    (tmp_path / "worker.py").write_text(WORKER)
    out = tmp_path / "worker.log"
    return [sys.executable, str(tmp_path / "worker.py"), str(out), mode], out


def test_a_job_past_its_cap_gets_sigterm_and_keeps_what_it_wrote(tmp_path):
    cmd, out = _worker(tmp_path)
    rc, capped = bench.run_job(cmd, cap_s=3.0)
    assert capped and rc == 143
    assert out.read_text().split() == ["ready", "checkpointed"]


def test_a_job_that_ignores_sigterm_is_killed_after_the_grace(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "GRACE_S", 0.5)
    cmd, out = _worker(tmp_path, "IGNORE")
    rc, capped = bench.run_job(cmd, cap_s=3.0)
    assert capped and rc == -9
    assert out.read_text().split() == ["ready"]


def test_a_job_within_its_cap_is_not_capped(tmp_path):
    rc, capped = bench.run_job([sys.executable, "-c", "raise SystemExit(3)"], cap_s=60.0)
    assert (rc, capped) == (3, False)


def test_the_budget_caps_the_running_job_and_records_the_jobs_it_could_not_start(
    tmp_path, monkeypatch
):
    (tmp_path / "sleeper.py").write_text("import time\ntime.sleep(60)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    jobs = [Job("first", "sleeper", ["x=1"]), Job("second", "sleeper", ["x=2"], cap_s=5.0)]
    monkeypatch.setattr(bench, "profile_jobs", lambda profile: jobs)
    runs, results = tmp_path / "runs", tmp_path / "results"
    argv = ["--profile", "smoke", "--runs", str(runs), "--results", str(results)]
    assert bench.main([*argv, "--budget-s", "2"]) == 0  # stopped in time is not a failure
    with open(runs / "bench_jobs.csv", newline="") as f:
        rows = {r["job"]: r for r in csv.DictReader(f)}
    assert rows["first"]["status"] == "capped at 2 s"
    assert rows["second"]["status"] == "not run: the budget was spent"
    assert rows["second"]["cap_s"] == "5.0"
    report = (results / "README.md").read_text()
    assert "stopped by their cap or the profile's budget: first, second" in report


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf"])
def test_a_budget_that_is_not_a_positive_number_is_refused_in_one_line(tmp_path, capsys, value):
    argv = ["--profile", "smoke", "--runs", str(tmp_path / "r"), "--budget-s", value]
    assert bench.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--budget-s={value}" in err[0] and "above 0" in err[0]
    assert not (tmp_path / "r").exists()  # refused before any work


def test_the_gpu_profile_runs_what_decides_first_and_fits_its_budget():
    jobs = bench.profile_jobs("gpu")
    names = [j.name for j in jobs]
    assert names[:5] == ["time_vs_length", "time_vs_length_scan", "decode_cost", "kernels",
                         "kernels_scan"]  # fmt: skip
    ranked = [j for j in jobs if j.rank < 9]
    assert all(j.cap_s for j in ranked), "a job the profile counts on has no cap"


def test_the_gpu_call_fits_twice_in_the_device_time():
    """Machine start + wheels + the planned jobs' caps + one grace + report + packing fit
    the 6 minutes of one call, so a rerun fits in the 15 minutes of device time."""
    planned = [j for j in bench.profile_jobs("gpu") if j.rank <= gpu.PLANNED_RANK]
    assert {"time_vs_length", "decode_cost", "kernels", "harness_overhead"} <= {
        j.name for j in planned
    }
    assert all(j.cap_s >= gpu.JOB_START_S for j in planned), "a cap below one start-up"
    assert sum(j.cap_s for j in planned) <= gpu.BUDGET_S
    assert gpu.call_seconds(planned) <= gpu.CALL_S == 360
    assert 2 * gpu.CALL_S <= 15 * 60
    assert gpu.GRACE_S < bench.GRACE_S  # the gpu run stops capped jobs sooner


def test_job_logs_keep_a_capped_jobs_traceback_off_the_terminal(tmp_path, monkeypatch, capfd):
    (tmp_path / "noisy.py").write_text(
        "import time\nprint('working', flush=True)\ntime.sleep(60)\n"
    )  # its output goes to its file; the terminal gets one line
    (tmp_path / "crash.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    jobs = [Job("noisy", "noisy", cap_s=3.0), Job("crash", "crash")]
    monkeypatch.setattr(bench, "profile_jobs", lambda profile: jobs)
    runs, logs = tmp_path / "runs", tmp_path / "logs"
    argv = ["--profile", "smoke", "--runs", str(runs), "--job-logs", str(logs), "--no-report",
            "--grace-s", "1"]  # fmt: skip
    assert bench.main(argv) == 1  # crash failed
    terminal = capfd.readouterr()
    assert "working" not in terminal.out and "working" in (logs / "noisy.log").read_text()
    assert "[1/2] noisy: capped at 3 s" in terminal.out
    assert "RuntimeError: boom" in terminal.out  # a failed job's tail is shown
    assert "Traceback" in (logs / "crash.log").read_text()
    assert not (runs / "report").exists()  # --no-report


@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_a_grace_that_is_not_a_number_of_seconds_is_refused_in_one_line(tmp_path, capsys, value):
    argv = ["--profile", "smoke", "--runs", str(tmp_path / "r"), "--grace-s", value]
    assert bench.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--grace-s={value}" in err[0]
    assert not (tmp_path / "r").exists()


def test_fresh_moves_the_old_runs_aside_and_starts_in_an_empty_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "profile_jobs", lambda profile: [])
    runs, results = tmp_path / "runs", tmp_path / "results"
    (runs / "core-lstm-text-0123").mkdir(parents=True)
    (runs / "core-lstm-text-0123" / "run.json").write_text("{}")
    (runs / bench.MARKER).touch()  # a folder a bench made
    (tmp_path / "runs.previous-1").mkdir()  # taken: the next free number is used
    argv = ["--profile", "smoke", "--runs", str(runs), "--results", str(results), "--fresh"]
    assert bench.main(argv) == 0
    assert (tmp_path / "runs.previous-2" / "core-lstm-text-0123" / "run.json").exists()
    assert runs.is_dir() and not (runs / "core-lstm-text-0123").exists()


def test_fresh_with_only_starts_those_jobs_over_in_place(tmp_path, monkeypatch):
    (tmp_path / "echo_args.py").write_text(
        "import sys, pathlib\n"
        "out = [a.split('=', 1)[1] for a in sys.argv if a.startswith('out_dir=')][0]\n"
        "pathlib.Path(out, 'args.txt').write_text(' '.join(sys.argv[1:]))\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setattr(bench, "profile_jobs", lambda p: [Job("a", "echo_args"), Job("b", "x")])
    runs, results = tmp_path / "runs", tmp_path / "results"
    (runs / "other-run").mkdir(parents=True)  # another job's run: it stays
    argv = ["--profile", "smoke", "--runs", str(runs), "--results", str(results)]
    assert bench.main([*argv, "--fresh", "--only", "a"]) == 0
    assert (runs / "other-run").is_dir() and not (tmp_path / "runs.previous-1").exists()
    assert (runs / "args.txt").read_text().endswith("fresh=true")
