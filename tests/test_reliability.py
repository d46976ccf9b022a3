"""Fault injection: contained failures, kills, resume, atomic files, locks, reruns."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from seqbench import store
from seqbench.report.collect import collect
from seqbench.train import train
from tests.test_train import metrics

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
RUN = [
    "model=lstm",
    "data=lag_recall",
    "data.seq_len=16",
    "data.distance=4",
    "device=cpu",
    "train.threads=1",
    "train.batch_size=16",
    "train.log_every=5",
    "train.eval_every=50",
    "train.eval_batches=2",
    "train.ckpt_every=20",
]


def cli(*args, **kw):
    return subprocess.run(
        [PY, "-m", "seqbench.train", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        **kw,
    )


def test_poisoned_job_is_contained_and_the_sweep_goes_on(tmp_path):
    out = tmp_path / "runs"
    proc = cli("-m", *RUN, "train.steps=30", "train.inject_nan_at=null,5,9999", f"out_dir={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = collect(out)["runs"].set_index("status")
    assert sorted(runs.index) == ["complete", "complete", "diverged"]
    assert "at step 5" in runs.loc["diverged", "error"]
    assert runs.loc["diverged", "step"] == 10  # stopped at the next check, metrics intact


def test_oom_is_recorded_without_retry(make_cfg, monkeypatch):
    from seqbench.models.recurrent import Recurrent

    calls = []

    def boom(self, tokens, state=None):
        calls.append(1)
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 TiB")

    monkeypatch.setattr(Recurrent, "forward", boom)
    summary = train(make_cfg("model=gru", "train.steps=10"))
    assert summary["status"] == "oom" and len(calls) == 1
    assert "out of memory" in summary["error"]


def test_other_exceptions_are_recorded_as_failed(make_cfg, monkeypatch):
    from seqbench.models.transformer import Transformer

    monkeypatch.setattr(Transformer, "forward", lambda *a, **k: 1 / 0)
    summary = train(make_cfg("model=transformer", "train.steps=10"))
    assert summary["status"] == "failed" and summary["error"].startswith("ZeroDivisionError")
    record = json.loads((Path(summary["run_dir"]) / "run.json").read_text())
    assert record["status"] == "failed"


def _wait_for_step(run_root, step, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for m in Path(run_root).glob("*/metrics.csv"):
            rows, _ = store.read_metrics_rows(m)
            if rows and int(rows[-1]["step"]) >= step:
                return
        assert proc.poll() is None, "the run ended before it could be interrupted"
        time.sleep(0.02)
    raise AssertionError("no progress")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_run_resumes_to_bitwise_identical_result(tmp_path, sig):
    args = [*RUN, "train.steps=400"]
    ref = cli(*args, f"out_dir={tmp_path / 'ref'}")
    assert ref.returncode == 0, ref.stderr[-2000:]
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [PY, "-m", "seqbench.train", *args, f"out_dir={out}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_for_step(out, 45, proc)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    run_dir = next(out.glob("*/run.json")).parent
    status = json.loads((run_dir / "run.json").read_text())["status"]
    assert status == ("running" if sig == signal.SIGKILL else "interrupted")
    assert (run_dir / "ckpt.pt").exists() and not (run_dir / "model.pt").exists()
    again = cli(*args, f"out_dir={out}")
    assert again.returncode == 0, again.stderr[-2000:]
    ref_dir = next((tmp_path / "ref").glob("*/run.json")).parent
    a = torch.load(ref_dir / "model.pt", weights_only=True)
    b = torch.load(run_dir / "model.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert metrics(ref_dir) == metrics(run_dir)
    summary = json.loads((run_dir / "run.json").read_text())["summary"]
    assert summary["resumed_from"] >= 20 and summary["status"] == "complete"


def test_rerunning_a_finished_sweep_trains_nothing(tmp_path):
    out = tmp_path / "runs"
    first = cli("-m", *RUN, "train.steps=20", "seed=0,1", f"out_dir={out}")
    second = cli("-m", *RUN, "train.steps=20", "seed=0,1", f"out_dir={out}")
    assert first.returncode == second.returncode == 0
    assert first.stdout.count("'status': 'complete'") == 2
    assert first.stdout.count("'executed_steps': 20") == 2
    assert second.stdout.count("'executed_steps': 0") == 2  # counted, not assumed


def test_rerun_in_process_reports_zero_executed_steps(make_cfg):
    cfg = make_cfg(*RUN, "train.steps=20")
    assert train(cfg)["executed_steps"] == 20
    assert train(cfg)["executed_steps"] == 0
    cfg.fresh = True
    assert train(cfg)["executed_steps"] == 20


def test_a_locked_run_is_executed_once(make_cfg):
    cfg = make_cfg(*RUN, "train.steps=10")
    run_dir = Path(train(cfg)["run_dir"])
    (run_dir / "run.json").unlink()  # pretend it never finished
    lock = store.RunLock(run_dir)
    assert lock.acquire()  # another process is working on it
    try:
        assert train(cfg)["status"] == "skipped"
    finally:
        lock.release()
    assert train(cfg)["status"] == "complete"


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "run.json"
    store.atomic_write_json(path, {"status": "complete"})

    def half_then_crash(f):
        f.write(b'{"status": "runn')
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        store._atomic(path, half_then_crash)
    assert json.loads(path.read_text()) == {"status": "complete"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]  # no temp file left


def test_a_torn_last_metrics_line_is_ignored_and_counted(tmp_path):
    log = store.MetricsLog(tmp_path / "metrics.csv", ["step", "loss"])
    log.append({"step": 1, "loss": 0.5})
    log.append({"step": 2, "loss": 0.25})
    with open(tmp_path / "metrics.csv", "a") as f:
        f.write("3,0.1")  # killed mid-write: no newline
    rows, torn = store.read_metrics_rows(tmp_path / "metrics.csv")
    assert [r["step"] for r in rows] == ["1", "2"] and torn == 1


def test_content_key_ignores_output_paths_but_not_hyperparameters(make_cfg):
    a, b = make_cfg("train.steps=7"), make_cfg("train.steps=7", "out_dir=/elsewhere")
    assert store.content_key(a) == store.content_key(b)
    assert store.content_key(a) != store.content_key(make_cfg("train.steps=8"))


def test_checkpoint_loads_with_weights_only(make_cfg):
    cfg = make_cfg(*RUN, "train.steps=25")
    run_dir = Path(train(cfg)["run_dir"])
    ckpt = torch.load(run_dir / "ckpt.pt", weights_only=True)  # raises if anything unsafe
    assert ckpt["step"] == 20 and "opt" in ckpt and ckpt["torch_rng"].dtype == torch.uint8


def test_deterministic_flag_sets_torch_state(make_cfg):
    try:
        train(make_cfg("train.steps=3", "train.deterministic=true"))
        assert torch.are_deterministic_algorithms_enabled()
        assert os.environ.get("CUBLAS_WORKSPACE_CONFIG") == ":4096:8"
    finally:
        torch.use_deterministic_algorithms(False)


def test_two_processes_on_the_same_run_train_it_once(tmp_path):
    args = [PY, "-m", "seqbench.train", *RUN, "train.steps=150", f"out_dir={tmp_path}"]
    procs = [
        subprocess.Popen(
            args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    executed = [int(o.split("'executed_steps': ")[1].split(",")[0]) for o in outs]
    assert sorted(executed) == [0, 150]  # one trained it; the other skipped or found it done
    assert len(list(tmp_path.glob("*/run.json"))) == 1
