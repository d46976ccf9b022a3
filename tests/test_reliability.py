"""Fault injection: contained failures, kills, resume, atomic files, locks, reruns."""

import json
import os
import shutil
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


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """reference(args) -> the run directory of an uninterrupted run of args (once per args)."""
    done = {}

    def run(args):
        key = tuple(args)
        if key not in done:
            out = tmp_path_factory.mktemp("ref")
            ref = cli(*args, f"out_dir={out}")
            assert ref.returncode == 0, ref.stderr[-2000:]
            done[key] = next(out.glob("*/run.json")).parent
        return done[key]

    return run


def killed_run(out, args, sig=signal.SIGKILL, at_step=45) -> Path:
    """The run directory of args, killed with sig once metrics.csv has reached at_step."""
    proc = subprocess.Popen(
        [PY, "-m", "seqbench.train", *args, f"out_dir={out}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_for_step(out, at_step, proc)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    return next(out.glob("*/run.json")).parent


def assert_same_run(ref_dir, run_dir):
    a = torch.load(ref_dir / "model.pt", weights_only=True)
    b = torch.load(run_dir / "model.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert metrics(ref_dir) == metrics(run_dir)  # no row lost, none twice


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_run_resumes_to_bitwise_identical_result(tmp_path, sig, reference):
    args = [*RUN, "train.steps=400"]
    run_dir = killed_run(tmp_path / "killed", args, sig)
    status = json.loads((run_dir / "run.json").read_text())["status"]
    assert status == ("running" if sig == signal.SIGKILL else "interrupted")
    assert (run_dir / "ckpt.pt").exists() and not (run_dir / "model.pt").exists()
    again = cli(*args, f"out_dir={tmp_path / 'killed'}")
    assert again.returncode == 0, again.stderr[-2000:]
    assert_same_run(reference(args), run_dir)
    summary = json.loads((run_dir / "run.json").read_text())["summary"]
    assert summary["resumed_from"] >= 20 and summary["status"] == "complete"


def test_run_killed_before_its_first_checkpoint_restarts_without_duplicate_rows(
    tmp_path, reference
):
    args = [*RUN, "train.steps=200", "train.ckpt_every=1000"]  # no checkpoint before the end
    run_dir = killed_run(tmp_path / "killed", args)
    assert not (run_dir / "ckpt.pt").exists()
    assert len(store.read_metrics_rows(run_dir / "metrics.csv")[0]) >= 9  # rows to be redone
    again = cli(*args, f"out_dir={tmp_path / 'killed'}")
    assert again.returncode == 0, again.stderr[-2000:]
    steps = [int(r["step"]) for r in metrics(run_dir)]
    assert steps == sorted(set(steps))  # 5, 10, ..., never 5, 10, 15, 5, 10
    assert_same_run(reference(args), run_dir)
    summary = json.loads((run_dir / "run.json").read_text())["summary"]
    assert summary["resumed_from"] is None and summary["executed_steps"] == 200


def test_a_flipped_bit_in_the_checkpoint_is_detected_and_recovered(tmp_path, reference):
    args = [*RUN, "train.steps=400"]
    run_dir = killed_run(tmp_path / "killed", args)
    ckpt = bytearray((run_dir / "ckpt.pt").read_bytes())
    ckpt[len(ckpt) // 2] ^= 0x10  # one bit
    (run_dir / "ckpt.pt").write_bytes(bytes(ckpt))
    again = cli(*args, f"out_dir={tmp_path / 'killed'}")
    assert again.returncode == 0, again.stderr[-2000:]
    record = json.loads((run_dir / "run.json").read_text())
    assert "sha256" in record["recovered"] and "restarted at 0" in record["recovered"]
    assert (run_dir / "ckpt.pt.corrupt-0").read_bytes() == bytes(ckpt)  # kept, as it was
    assert record["summary"]["resumed_from"] is None and record["status"] == "complete"
    assert_same_run(reference(args), run_dir)  # metrics truncated to step 0, nothing doubled


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


# --- issue 13: moved folders, full disks, CPU OOM, orphaned workers ------------------------------
def test_a_moved_runs_folder_is_measured_from_its_new_place(tmp_path):
    """Weights are found from the config, never through a stored path: after a move the
    measurement reads the moved run, and a different folder at the old path is never used."""
    from seqbench.measure.run import run_measurement
    from tests.conftest import TINY, compose_cfg

    def cfg(out, *extra):
        return compose_cfg(
            [*TINY, "what=influence", "what.trained=[true]", "what.batch_size=8",
             "data.seq_len=16", "data.distance=4", "train.steps=20", f"out_dir={out}", *extra],
            config_name="measure",
        )  # fmt: skip

    old, new = tmp_path / "old", tmp_path / "new"
    first = run_measurement(cfg(old))
    assert first["status"] == "complete", first
    rows = (Path(first["run_dir"]) / "rows.csv").read_text()
    shutil.move(old, new)
    shutil.copytree(new, old)  # the trap: the same run names at the old path, other weights
    trained = next(old.glob("measure-*/model.pt"))  # the measurement's own study
    state = store.load_torch(trained)
    store.save_torch({k: torch.zeros_like(v) for k, v in state.items()}, trained)
    trap = {p: p.read_bytes() for p in old.rglob("*") if p.is_file()}
    again = run_measurement(cfg(new, "fresh=true"))  # measure again; the training is reused
    assert again["status"] == "complete", again
    assert Path(again["run_dir"]).parent == new
    assert (Path(again["run_dir"]) / "rows.csv").read_text() == rows  # the moved weights
    assert {p: p.read_bytes() for p in old.rglob("*") if p.is_file()} == trap  # untouched


@pytest.fixture
def full_disk(tmp_path):
    """A directory on a full filesystem: a 256 KiB tmpfs filled up (root, Linux), else None."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True
        ).returncode
    ):
        yield None
        return
    try:
        with open(mnt / "filler", "wb", buffering=0) as f, pytest.raises(OSError):
            while True:
                f.write(b"\0" * 4096)
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_a_full_disk_at_start_is_refused_in_one_line(full_disk, tmp_path, monkeypatch, capsys):
    from tests.test_config import run_cli

    if full_disk is not None:  # a real full filesystem, through the real command line
        before = sorted(full_disk.rglob("*"))
        proc = cli(*RUN, "train.steps=10", f"out_dir={full_disk / 'runs'}")
        assert proc.returncode == 2 and sorted(full_disk.rglob("*")) == before
        err = proc.stderr.strip().splitlines()
    else:  # no tmpfs to mount here: the disk reports no space left
        monkeypatch.setattr(os, "statvfs", lambda p: os.statvfs_result((4096,) * 2 + (0,) * 8))
        assert run_cli([*RUN, "train.steps=10", f"out_dir={tmp_path / 'runs'}"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("seqbench: error: out_dir=")
    assert "is full" in err[0], err


def test_a_record_that_cannot_be_written_refuses_the_sweep_in_one_line(
    tmp_path, monkeypatch, capsys
):
    """The disk fills between the checks and the first run.json: exit 2 and one line, not a
    traceback, and no run directory left behind."""
    import errno

    from tests.test_config import run_cli

    def no_space(path, write):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(store, "_atomic", no_space)
    out = tmp_path / "runs"
    assert run_cli(["-m", *RUN, "train.steps=10", "seed=0,1", f"out_dir={out}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "run.json (No space left on device)" in err[0], err
    assert not [p for p in out.iterdir() if p.name != ".hydra"]


def test_a_disk_that_fills_during_the_run_is_recorded_and_resumed(make_cfg, monkeypatch):
    import errno

    cfg = make_cfg(*RUN, "train.steps=30")

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as m:
        m.setattr(store, "save_torch", no_space)  # the first checkpoint, at step 20
        summary = train(cfg)
    assert summary["status"] == "failed" and "No space left" in summary["error"]
    again = train(cfg)  # space again: the run restarts at 0 (no checkpoint), rows not doubled
    assert again["status"] == "complete" and again["executed_steps"] == 30
    steps = [int(r["step"]) for r in metrics(again["run_dir"])]
    assert steps == sorted(set(steps))


def test_a_cpu_allocation_failure_is_recorded_oom(make_cfg, monkeypatch):
    from seqbench.models.recurrent import Recurrent

    def allocate_4_eib(self, tokens, state=None):
        return torch.empty(1 << 62, dtype=torch.uint8)  # DefaultCPUAllocator: can't allocate

    monkeypatch.setattr(Recurrent, "forward", allocate_4_eib)
    summary = train(make_cfg("model=lstm", "train.steps=10"))
    assert summary["status"] == "oom", summary
    assert "DefaultCPUAllocator" in summary["error"]


def _children(pid) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid) -> bool:
    try:  # a zombie (state Z) has ended; only its parent has not reaped it yet
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_joblib_workers_end_when_the_launching_process_dies(tmp_path):
    out = tmp_path / "runs"
    args = [*RUN, "train.steps=1000000", "train.eval_every=100000", "train.ckpt_every=100000"]
    proc = subprocess.Popen(
        [PY, "-m", "seqbench.train", "-m", "hydra/launcher=local", "seed=0,1", *args,
         f"out_dir={out}"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    workers = []
    try:
        deadline = time.time() + 180
        while len(list(out.glob("*/metrics.csv"))) < 2 or any(
            not store.read_metrics_rows(m)[0] for m in out.glob("*/metrics.csv")
        ):
            assert proc.poll() is None and time.time() < deadline, "the sweep did not start"
            time.sleep(0.2)
        workers = [
            p
            for p in _children(proc.pid)
            if b"loky" in Path(f"/proc/{p}/cmdline").read_bytes()
            and b"resource_tracker" not in Path(f"/proc/{p}/cmdline").read_bytes()
        ]
        assert len(workers) == 2
        proc.kill()  # SIGKILL: the launching process can do nothing on its way out
        proc.wait(timeout=30)
        deadline = time.time() + 60
        while any(_alive(w) for w in workers) and time.time() < deadline:
            time.sleep(0.2)
        assert not any(_alive(w) for w in workers), "orphaned workers kept training"
    finally:
        for w in workers:  # whatever happened, leave no trainer behind
            if _alive(w):
                os.kill(w, signal.SIGKILL)
    for run_json in out.glob("*/run.json"):  # each stopped at a step boundary, checkpointed
        record = json.loads(run_json.read_text())
        assert record["status"] == "interrupted" and "SIGTERM" in record["summary"]["error"]
        assert (run_json.parent / "ckpt.pt").exists()
