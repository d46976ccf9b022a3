"""Launchers: the thread split per job, the preemption hand-back, and (slow) a real sweep through
hydra-submitit-launcher's local executor, one process per job, that the report aggregates."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.utils import JobReturn, JobStatus

from seqbench import launch
from seqbench.config import CONF_DIR

ROOT = Path(__file__).resolve().parents[1]
ENTRY = [sys.executable, "-m", "seqbench.train"]  # exactly what a user runs
TINY = [
    "data.seq_len=16",
    "data.distance=4",
    "train.batch_size=4",
    "train.eval_batches=1",
    "train.threads=1",
    "device=cpu",
    "++hydra.callbacks.launch._target_=seqbench.launch.LaunchCallback",  # ++: also with the hook
]


@pytest.mark.parametrize(
    "launcher, cores, expected",
    [
        ({"_target_": "x.JoblibLauncher", "n_jobs": 2}, 8, 4),
        ({"_target_": "x.JoblibLauncher", "n_jobs": 3}, 8, 2),  # 3 x 2 = 6 <= 8
        ({"_target_": "x.JoblibLauncher", "n_jobs": -1}, 8, 1),  # one job per core
        ({"_target_": "x.JoblibLauncher", "n_jobs": -2}, 8, 1),  # 7 workers
        ({"_target_": "x.JoblibLauncher", "n_jobs": 16}, 8, 1),  # more jobs than cores
        ({"_target_": "x.JoblibLauncher", "n_jobs": 1}, 8, 8),
        (
            {
                "_target_": "hydra_plugins.hydra_submitit_launcher.x.SlurmLauncher",
                "cpus_per_task": 6,
            },
            64,
            6,
        ),
        (
            {
                "_target_": "hydra_plugins.hydra_submitit_launcher.x.LocalLauncher",
                "cpus_per_task": None,
            },
            8,
            None,
        ),
        ({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, 8, None),
    ],
)
def test_jobs_times_threads_never_exceeds_the_cores(launcher, cores, expected):
    threads = launch.split_threads(launcher, cores)
    assert threads == expected
    if threads and "joblib" in launcher["_target_"].lower():
        n = launcher["n_jobs"]
        at_once = min(cores + 1 + n if n < 0 else n, cores)
        assert at_once * threads <= cores


@pytest.mark.parametrize("name", ["local", "slurm_local", "slurm"])
def test_launcher_presets_compose(name):
    with initialize_config_dir(str(CONF_DIR), version_base=None):
        cfg = compose("config", overrides=[f"hydra/launcher={name}"], return_hydra_config=True)
    node = cfg.hydra.launcher
    assert node._target_.startswith("hydra_plugins.")
    if name == "local":
        assert launch.split_threads(node, 2) * node.n_jobs <= 2
    else:
        assert node.cpus_per_task >= 1 and launch.split_threads(node, 64) == node.cpus_per_task
    if name == "slurm":  # requeue on preemption is on, with time to checkpoint first
        assert node.max_num_timeout > 0 and node.signal_delay_s >= 60


def test_preemption_is_handed_back_only_for_the_cluster_signal(monkeypatch):
    sent = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append((pid, sig)))
    interrupted = {"status": "interrupted", "error": f"received {launch.PREEMPT_SIGNAL}"}
    monkeypatch.delenv("SUBMITIT_EXECUTOR", raising=False)
    assert not launch.hand_back_preemption(interrupted)  # not a submitit job
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    assert not launch.hand_back_preemption({"status": "complete", "error": None})
    assert not launch.hand_back_preemption({"status": "interrupted", "error": "received SIGTERM"})
    assert launch.hand_back_preemption(interrupted)
    assert sent == [(os.getpid(), getattr(signal, launch.PREEMPT_SIGNAL))]
    # the callback passes only a completed job's return value on
    ret = JobReturn(status=JobStatus.COMPLETED, _return_value=interrupted)
    launch.LaunchCallback().on_job_end(config=None, job_return=ret)
    assert len(sent) == 2


# --- end to end: a real sweep, one process per job ------------------------------------------
def _sweep(out_dir, *overrides, timeout=600):
    cmd = [*ENTRY, "-m", *TINY, f"out_dir={out_dir}", *overrides]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_slurm_local_sweep_runs_four_jobs_in_separate_processes_and_the_report_sees_them(tmp_path):
    from seqbench.report.collect import collect
    from seqbench.report.write import write_report
    from seqbench.studies._common import complete

    runs = tmp_path / "runs"
    proc = _sweep(
        runs,
        "hydra/launcher=slurm_local",
        "model=rnn,lstm,gru,transformer",
        "train.steps=20",
        "train.eval_every=20",
        "study=launch",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = [d for d in runs.glob(".hydra/*/.submitit/*") if d.is_dir() and d.name.isdigit()]
    assert len(jobs) == 4, jobs  # one submitit job (its own controller process) per run
    pids = {int(d.name) for d in jobs}
    assert len(pids) == 4 and os.getpid() not in pids
    assert all(list(d.glob("*_result.pkl")) for d in jobs)
    table = complete(collect(runs)["runs"], "launch")
    assert sorted(table.model) == ["gru", "lstm", "rnn", "transformer"]
    assert (table.step == 20).all() and (table.threads == 1).all()
    readme = write_report(runs, tmp_path / "results").read_text()
    assert "transformer" in readme and "gru" in readme


def _descendants(root: int) -> list[int]:
    """Process ids below ``root`` (read from /proc; only processes this test started)."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out += children.get(pid, [])
        todo += children.get(pid, [])
    return out


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").exists(), reason="needs /proc to find the job process")
def test_preempted_job_is_requeued_and_resumes_from_its_checkpoint(tmp_path):
    """USR2 (what SLURM sends before a time limit) to a running job: submitit requeues it and
    the requeued job finishes the run from ckpt.pt instead of starting over."""
    runs = tmp_path / "runs"
    cmd = [
        *ENTRY,
        "-m",
        *TINY,
        f"out_dir={runs}",
        "hydra/launcher=slurm_local",
        "model=lstm",
        "train.steps=4000",
        "train.log_every=5",
        "train.ckpt_every=5",
        "train.eval_every=4000",
        "study=requeue",
    ]
    sweep = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline, job = time.time() + 300, None
        while time.time() < deadline and job is None:  # wait for a checkpoint to exist
            time.sleep(0.5)
            if list(runs.glob("requeue-*/ckpt.pt")):
                job = next(
                    (
                        p
                        for p in _descendants(sweep.pid)
                        if b"submitit.core._submit" in Path(f"/proc/{p}/cmdline").read_bytes()
                    ),
                    None,
                )
        assert job is not None, "the job never wrote a checkpoint"
        os.kill(job, getattr(signal, launch.PREEMPT_SIGNAL))
        out, _ = sweep.communicate(timeout=600)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    assert sweep.returncode == 0, out[-3000:]
    logs = "".join(p.read_text() for p in runs.glob(".hydra/*/.submitit/*/*.out"))
    assert "Requeued" in logs or "requeue" in logs.lower(), logs[-3000:]
    record = next(runs.glob("requeue-*/run.json")).read_text()
    assert '"status": "complete"' in record
    assert '"resumed_from": null' not in record  # it continued from a checkpoint
