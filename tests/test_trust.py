"""Issue 21: a run record proves what it is, files are only read when they are regular files,
and the numbers at the edges are honest. Real files, real subprocesses, real signals."""

import hashlib
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

from seqbench import cli, store
from seqbench.errors import ConfigError
from seqbench.runs import distrust
from seqbench.train import train
from tests.test_corpora import write_corpus
from tests.test_reliability import ROOT, RUN, _alive, _children
from tests.test_train import metrics

PY = sys.executable
STEPS = 25  # a checkpoint at step 20 stays beside the finished run


def record_of(run_dir) -> dict:
    return json.loads((Path(run_dir) / "run.json").read_text())


def finished(make_cfg, *extra):
    """(config, run directory) of a complete tiny run."""
    cfg = make_cfg(*RUN, f"train.steps={STEPS}", *extra)
    summary = train(cfg)
    assert summary["status"] == "complete", summary
    return cfg, Path(summary["run_dir"])


def assert_redone(cfg, run_dir, reason: str):
    """A rerun does not trust the record: its files go to untrusted-0/, the run starts over
    (all its steps again) and run.json says why; the rerun after that trusts it."""
    again = train(cfg)
    assert again["status"] == "complete" and again["executed_steps"] == STEPS, again
    assert again["resumed_from"] is None
    recovered = record_of(run_dir)["recovered"]
    assert reason in recovered and "untrusted-0/" in recovered, recovered
    assert (run_dir / "untrusted-0").is_dir()
    assert train(cfg)["executed_steps"] == 0  # and now it is trusted
    return again


# --- a record proves what it is ----------------------------------------------------------------
def test_a_run_folder_copied_under_another_configs_key_is_redone(make_cfg):
    _, seed0 = finished(make_cfg, "seed=0")
    cfg1, seed1 = finished(make_cfg, "seed=1")
    truth = metrics(seed1)
    for p in seed1.iterdir():  # seed 0's files, under seed 1's name
        if p.is_file() and p.name != "lock":
            shutil.copy(seed0 / p.name, p)
    assert_redone(cfg1, seed1, "in folder")
    assert metrics(seed1) == truth  # seed 1's own run, not seed 0's


def test_an_edited_config_in_run_json_is_caught_by_a_rerun_and_the_report(make_cfg):
    from seqbench.runs import summary_digest

    cfg, run_dir = finished(make_cfg)
    record = record_of(run_dir)
    record["config"]["model"]["_target_"] = "seqbench.models.transformer.Transformer"
    record["config"]["train"]["lr"] = 0.1
    record["summary_sha256"] = summary_digest(record["summary"])  # a careful forger
    (run_dir / "run.json").write_text(json.dumps(record))
    assert "edited" in distrust(record, run_dir, weights=False)  # what the report asks
    assert_redone(cfg, run_dir, "its config does not give its key")
    assert record_of(run_dir)["config"]["model"]["_target_"].endswith("LSTM")


def test_a_deleted_middle_row_of_metrics_csv_is_caught(make_cfg):
    cfg, run_dir = finished(make_cfg)
    truth = metrics(run_dir)
    lines = (run_dir / "metrics.csv").read_text().splitlines(keepends=True)
    assert len(lines) > 4
    del lines[2]  # a middle row: the last row and its step are intact
    (run_dir / "metrics.csv").write_text("".join(lines))
    assert_redone(cfg, run_dir, "metric_rows=")
    assert metrics(run_dir) == truth


def test_an_edited_corpus_file_is_not_trusted_and_the_run_is_redone(make_cfg, tmp_path):
    folder = write_corpus(tmp_path / "corpus")
    text = ["data=text", f"data.path={folder}", "data.tokenizer=whitespace", "data.seq_len=8"]
    cfg = make_cfg(*RUN[:1], *RUN[4:], *text, f"train.steps={STEPS}")
    first = train(cfg)
    assert first["status"] == "complete", first
    run_dir = Path(first["run_dir"])
    assert train(cfg)["executed_steps"] == 0  # unchanged: skipped
    with open(folder / "train.txt", "a") as f:
        f.write("an edited line of the corpus .\n")
    again = assert_redone(cfg, run_dir, "data: the corpus (train.txt) now has sha256")
    new = hashlib.sha256((folder / "train.txt").read_bytes()).hexdigest()
    assert record_of(run_dir)["data"]["corpus_files"]["train.txt"] == new
    assert again["train_loss"] != first["train_loss"]  # it read the new text


# --- checkpoints: whose they are, and those that cannot be loaded ------------------------------
def interrupted(run_dir):
    """Make a finished run look like one killed after its step-20 checkpoint."""
    (run_dir / "run.json").unlink()
    (run_dir / "model.pt").unlink()


def test_a_checkpoint_of_another_seed_is_refused_and_the_run_starts_over(make_cfg):
    cfg, run_dir = finished(make_cfg, "seed=0")
    truth = metrics(run_dir)
    _, other = finished(make_cfg, "seed=1")
    interrupted(run_dir)
    for name in ("ckpt.pt", "ckpt.pt.sha256"):  # a pair that agrees, of another run
        shutil.copy(other / name, run_dir / name)
    again = train(cfg)
    assert again["status"] == "complete" and again["resumed_from"] is None, again
    recovered = record_of(run_dir)["recovered"]
    assert "ckpt.pt: the checkpoint of another run" in recovered and "seed 1" in recovered
    assert (run_dir / "untrusted-0" / "ckpt.pt").read_bytes() == (other / "ckpt.pt").read_bytes()
    assert metrics(run_dir) == truth


def _refused_pickle(run_dir, cfg):
    store.save_torch({"evil": Path("/")}, run_dir / "ckpt.pt")  # weights_only refuses it


def _other_weights(run_dir, cfg):
    ckpt = store.load_torch(run_dir / "ckpt.pt")  # this run's key, seed and step ...
    ckpt["model"] = torch.nn.GRU(4, 4).state_dict()  # ... another architecture's weights
    store.save_torch(ckpt, run_dir / "ckpt.pt")


def _a_directory(run_dir, cfg):
    (run_dir / "ckpt.pt").unlink()
    (run_dir / "ckpt.pt").mkdir()


@pytest.mark.parametrize(
    "damage, reason",
    [
        (_refused_pickle, "UnpicklingError"),
        (_other_weights, "RuntimeError: Error(s) in loading state_dict"),
        (_a_directory, "not a regular file (a directory)"),
    ],
    ids=["refused pickle", "other weights", "a directory"],
)
def test_an_unloadable_checkpoint_is_set_aside_not_failed_on_every_rerun(make_cfg, damage, reason):
    cfg, run_dir = finished(make_cfg)
    truth = metrics(run_dir)
    interrupted(run_dir)
    damage(run_dir, cfg)
    again = train(cfg)
    assert again["status"] == "complete" and again["resumed_from"] is None, again
    recovered = record_of(run_dir)["recovered"]
    assert recovered.startswith("ckpt.pt: ") and reason in recovered, recovered
    assert (run_dir / "untrusted-0" / "ckpt.pt").exists()
    assert metrics(run_dir) == truth  # started over: the run that never had the checkpoint
    assert train(cfg)["executed_steps"] == 0


def _kill_hooks(kill_at: int):
    """In a child process: SIGKILL itself at write event ``kill_at`` of store._atomic (before
    the temp file is written, half-way, all written, after its rename)."""
    events = [0]
    real = store._atomic

    def tick():
        events[0] += 1
        if events[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    def atomic(path, write):
        def halves(f):
            tick()
            data = store.io.BytesIO()
            write(data)
            data = data.getvalue()
            f.write(data[: len(data) // 2])
            f.flush()
            tick()
            f.write(data[len(data) // 2 :])
            tick()

        real(path, halves)
        tick()

    store._atomic = atomic
    return events


def _save_in_child(path, previous, new, kill_at) -> int:
    """Fork; the child saves ``previous`` (if any) unhindered, then ``new`` with a kill at
    event ``kill_at``. Returns the child's wait status."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            if previous is not None:
                store.save_torch(previous, path)
            events = _kill_hooks(kill_at)
            store.save_torch(new, path)
            code = 0 if events[0] < kill_at else 3
        finally:
            os._exit(code)
    return os.waitpid(pid, 0)[1]


@pytest.mark.parametrize("previous", [True, False], ids=["replacing one", "the first"])
def test_a_checkpoint_save_killed_at_each_write_leaves_the_old_or_the_new_one(tmp_path, previous):
    """Issue 21: a kill between the checkpoint's rename and its sidecar's made an intact file
    look corrupt. Killed at every write event of a save, the next load gets the previous or
    the new checkpoint, never CorruptFile; the save after that works as ever."""
    old = {"step": 20, "w": torch.arange(4096.0)} if previous else None
    new = {"step": 40, "w": torch.arange(4096.0) * 2}
    weights = {20: torch.arange(4096.0), 40: new["w"]}
    kills = 0
    for kill_at in range(1, 100):
        path = tmp_path / str(kill_at) / "ckpt.pt"
        path.parent.mkdir()
        status = _save_in_child(path, old, new, kill_at)
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            break  # the save finished before this event: every write point was tried
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
        kills += 1
        if path.exists() or old is not None:
            loaded = store.load_torch(path)  # never CorruptFile
            assert torch.equal(loaded["w"], weights[loaded["step"]])
        later = {"step": 60, "w": torch.ones(3)}
        store.save_torch(later, path)
        assert store.load_torch(path)["step"] == 60 and store.checksum_problem(path) is None
        assert len((tmp_path / str(kill_at) / "ckpt.pt.sha256").read_text().split()) == 1
    assert kills == (12 if previous else 8)  # 4 write events in each of its atomic writes


# --- only regular files are read ---------------------------------------------------------------
def test_read_regular_refuses_what_is_not_a_regular_file_in_one_line(tmp_path):
    def alarm(signum, frame):
        raise TimeoutError("read_regular hung")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(20)
    try:
        os.mkfifo(tmp_path / "fifo")
        (tmp_path / "zero").symlink_to("/dev/zero")
        (tmp_path / "dir").mkdir()
        (tmp_path / "loop").symlink_to(tmp_path / "loop")
        (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
        (tmp_path / "big").write_bytes(b"x" * 100)
        expected = {
            "fifo": "a FIFO",
            "zero": "a character device",
            "dir": "a directory",
            "loop": "a symbolic link loop",
            "dangling": "a dangling symbolic link",
            "big": "100 bytes, more than the 99 read",
        }
        for name, why in expected.items():
            with pytest.raises(store.NotRegular) as e:
                store.read_regular(tmp_path / name, 99)
            assert e.value.strerror == f"not a regular file ({why})", name
            assert "\n" not in str(e.value)
        assert store.read_regular(tmp_path / "big", 100) == b"x" * 100
        with pytest.raises(FileNotFoundError):
            store.read_regular(tmp_path / "absent", 100)
        with pytest.raises(store.NotRegular):  # appending rows to a FIFO: refused, not blocked
            store.MetricsLog(tmp_path / "fifo", ["step"])
        lock = tmp_path / "run"
        lock.mkdir()
        (lock / "lock").symlink_to(tmp_path / "elsewhere")
        with pytest.raises(store.NotRegular):  # a lock never creates a file through a link
            store.RunLock(lock).acquire()
        assert not (tmp_path / "elsewhere").exists()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _fifo(path):
    path.unlink()
    os.mkfifo(path)


def _to_dev_zero(path):
    path.unlink()
    path.symlink_to("/dev/zero")


FAULTS = {  # seed -> (file, damage, what run.json then says)
    0: ("metrics.csv", _fifo, "metrics.csv: not a regular file (a FIFO)"),
    1: ("metrics.csv", _to_dev_zero, "metrics.csv: not a regular file (a character device)"),
    2: ("model.pt.sha256", _fifo, "model.pt: no readable checksum beside it"),
    3: ("run.json", _fifo, "run.json: not a regular file (a FIFO)"),
    4: ("ckpt.pt.sha256", _fifo, "ckpt.pt: no readable checksum beside it"),
    5: ("ckpt.pt", _to_dev_zero, "ckpt.pt: NotRegular"),
}


def test_a_fifo_or_dev_zero_in_a_run_folder_never_hangs_training(make_cfg, tmp_path):
    """Each seed's run folder gets one fault; one sweep, in a subprocess with a timeout (a
    hang fails the test), sets each aside and trains every run to the end."""
    out = tmp_path / "runs"
    dirs = {}
    for seed, (name, damage, _) in FAULTS.items():
        _, run_dir = finished(make_cfg, f"seed={seed}")
        if name.startswith("ckpt"):
            interrupted(run_dir)  # a run to resume: its checkpoint is read
        damage(run_dir / name)
        dirs[seed] = run_dir
    seeds = ",".join(map(str, FAULTS))
    proc = subprocess.run(
        [PY, "-m", "seqbench.train", "-m", *RUN, f"train.steps={STEPS}", f"seed={seeds}",
         "train.warmup=5", f"out_dir={out}"],
        cwd=ROOT, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    for seed, (_, _, said) in FAULTS.items():
        record = record_of(dirs[seed])
        assert record["status"] == "complete" and record["summary"]["resumed_from"] is None
        assert said.lower() in record["recovered"].lower(), (seed, record["recovered"])


# --- honest numbers at the edges ---------------------------------------------------------------
def test_a_held_out_stream_too_short_to_score_is_refused_before_training(
    make_cfg, tmp_path, capsys
):
    """Issue 21: a valid.txt shorter than one evaluation column scored 0 tokens and the run
    ended complete with val_stream_ppl 1.0."""
    folder = write_corpus(tmp_path / "corpus", valid="the game .\n")  # 4 tokens
    cfg = make_cfg("data=text", f"data.path={folder}", "data.tokenizer=whitespace",
                   "data.seq_len=2", "train.steps=5")  # fmt: skip
    with pytest.raises(ConfigError) as e:  # as a library caller checks a config it built
        cli.validate_job(cfg, "train")
    message = str(e.value)
    assert message.startswith(f"data.path={folder} is not allowed: its valid.txt holds 4 tokens")
    assert "scores 0 of them, fewer than the 64" in message and "\n" not in message
    assert not (tmp_path / "runs").exists()  # refused before any run directory
    code = cli.main("train", ["data=text", f"data.path={folder}", "data.tokenizer=whitespace",
                              "data.seq_len=2", f"out_dir={tmp_path / 'runs'}"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == f"seqbench: error: {message}".replace("8 columns", "32 columns")
    assert not (tmp_path / "runs").exists()


def test_a_loss_far_above_its_start_is_diverged_and_calibration_never_picks_it(make_cfg):
    blown = train(make_cfg(*RUN, "train.steps=30", "train.lr=1e6", "train.warmup=0"))
    assert blown["status"] == "diverged", blown  # finite (about 1e19), far above the start
    assert (
        "is above" in blown["error"] and "x max(ln vocab, the first step's loss" in blown["error"]
    )
    calibrated = train(
        make_cfg(*RUN, "train.steps=30", "study=toy", "train.lr_grid=[1e-2,1e6]",
                 "++train.lr_control={train.steps:30}")
    )  # fmt: skip
    record = record_of(calibrated["run_dir"])["lr_calibration"]
    # the diverged top never wins; 1e-2 at the bottom edge extends the grid below it
    assert record["status"][-1] == "diverged" and record["grid"][-1] == 1e6
    assert record["chosen"] < 1e6 and set(record["status"][:-1]) == {"complete"}
    alone = train(make_cfg(*RUN, "train.steps=30", "study=toy2", "train.lr_grid=[1e6]",
                           "++train.lr_control={train.steps:30}"))  # fmt: skip
    assert alone["status"] == "failed" and "no rate of train.lr_grid completed" in alone["error"]


# --- a killed joblib worker ---------------------------------------------------------------------
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_a_killed_joblib_worker_leaves_runs_a_rerun_resumes(tmp_path):
    """SIGKILL one worker of a two-run joblib sweep: loky then kills the other worker too,
    so both runs are left `running` with their checkpoints. Neither is left so: the locks
    died with their owners, and the same command resumes both to the end."""
    out = tmp_path / "runs"
    args = [*RUN, "train.steps=400", "train.eval_every=400", "train.ckpt_every=20",
            "seed=0,1", f"out_dir={out}"]  # fmt: skip
    proc = subprocess.Popen(
        [PY, "-m", "seqbench.train", "-m", "hydra/launcher=joblib", *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    workers = []
    try:
        deadline = time.time() + 240
        while len(list(out.glob("*/ckpt.pt"))) < 2:
            assert proc.poll() is None and time.time() < deadline, proc.communicate()
            time.sleep(0.1)
        workers = [
            p
            for p in _children(proc.pid)
            if b"loky" in Path(f"/proc/{p}/cmdline").read_bytes()
            and b"resource_tracker" not in Path(f"/proc/{p}/cmdline").read_bytes()
        ]
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGKILL)
        proc.communicate(timeout=120)  # the sweep ends (loky's own error, not a hang)
    finally:
        for w in workers:
            if _alive(w):
                os.kill(w, signal.SIGKILL)
    left = {p.parent: record_of(p.parent)["status"] for p in out.glob("*/run.json")}
    assert len(left) == 2 and set(left.values()) <= {"running", "interrupted", "complete"}
    again = subprocess.run(
        [PY, "-m", "seqbench.train", "-m", *args], cwd=ROOT, capture_output=True, text=True,
        timeout=400,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-2000:]
    for run_dir, status in left.items():
        record = record_of(run_dir)
        assert record["status"] == "complete"
        if status == "running":  # killed mid-run: resumed from its checkpoint, and said so
            assert record["summary"]["resumed_from"] >= 20
            assert record["resumed_after"] == "a process that died while it was running"
