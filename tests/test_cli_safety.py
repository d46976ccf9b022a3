"""The command line under attack (issue 21): only seqbench's own classes are built, whatever
override or Hydra flag names another; Hydra's folders stay inside out_dir; the tracebacks the
outside campaign found are one line; a signal ends a measurement recorded ``interrupted``.

Each case runs as its own ``python -m seqbench.<entry>`` process, since what matters is what
a user sees: Hydra's own handling, the exit code, and no traceback on stderr."""

import json
import os
import pickle
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TINY = [
    "device=cpu",
    "train.threads=1",
    "train.steps=2",
    "train.eval_every=2",
    "train.eval_batches=1",
    "train.batch_size=4",
    "data.seq_len=16",
    "data.distance=4",
]
CANARY = "the user's own file\n"


def seqbench(entry, *argv, cwd, env=None, preexec_fn=None, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", f"seqbench.{entry}", *map(str, argv)],
        cwd=cwd,
        env=env,
        preexec_fn=preexec_fn,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def refused(proc, key: str, says: str = "") -> str:
    """The one-line refusal naming ``key``, exit 2, no traceback; returns the line."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(f"seqbench: error: {key}=") and "is not allowed" in lines[0]
    assert says in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def canary(tmp_path) -> Path:
    """A file of the user's, outside the runs folder: no command may touch it."""
    path = tmp_path / "mine" / "config.yaml"
    path.parent.mkdir()
    path.write_text(CANARY)
    return path


# --- only seqbench's classes are built --------------------------------------------------------
@pytest.mark.parametrize("entry", ["train", "measure", "perf"])
def test_a_whole_node_replaced_by_a_foreign_class_builds_nothing(entry, tmp_path, canary):
    node = "model" if entry == "measure" else "data"
    foreign = f"+{node}={{_target_:logging.FileHandler,filename:{canary},mode:w}}"
    proc = seqbench(entry, f"~{node}", foreign, f"out_dir={tmp_path}/runs", cwd=tmp_path)
    refused(proc, f"{node}._target_", f"seqbench.{'models' if node == 'model' else 'data'}")
    assert canary.read_text() == CANARY  # not truncated: FileHandler never opened it
    assert not (tmp_path / "runs").exists()


def test_a_seqbench_function_outside_models_is_not_built_either(tmp_path):
    target = tmp_path / "written"
    node = f"+model={{_target_:seqbench.store.atomic_write_text,path:{target},text:x}}"
    proc = seqbench("train", "~model", node, f"out_dir={tmp_path}/runs", cwd=tmp_path)
    refused(proc, "model._target_")
    assert not target.exists()


def test_experimental_rerun_never_loads_the_pickle(tmp_path):
    planted = tmp_path / "pickle_ran"

    class Plant:  # loaded, it would create the file: code from a file ran
        def __reduce__(self):
            return (open, (str(planted), "w"))

    (tmp_path / "config.pickle").write_bytes(pickle.dumps(Plant()))
    for flag in ("--experimental-rerun", "--exp"):  # argparse takes the abbreviation too
        proc = seqbench("train", flag, tmp_path / "config.pickle", cwd=tmp_path)
        refused(proc, "--experimental-rerun", "rerun the same command line")
        assert not planted.exists()


@pytest.mark.parametrize("flag", ["--config-dir", "-cd", "--config-path"])
def test_a_config_folder_from_the_command_line_is_refused(flag, tmp_path, canary):
    evil = tmp_path / "evil" / "experiment"
    evil.mkdir(parents=True)
    (evil / "bad.yaml").write_text(
        "# @package _global_\ndata:\n  _target_: logging.FileHandler\n"
        f"  filename: {canary}\n  mode: w\n"
    )
    proc = seqbench("train", flag, evil.parent, "+experiment=bad", cwd=tmp_path)
    refused(proc, "--config-dir" if flag != "--config-path" else "--config-path", "conf")
    assert canary.read_text() == CANARY


def test_hydra_callbacks_and_logging_name_nothing_foreign(tmp_path, canary):
    out = f"out_dir={tmp_path}/runs"
    proc = seqbench("train", "+hydra.callbacks.x._target_=os.system", out, cwd=tmp_path)
    refused(proc, "hydra.callbacks.x._target_")
    proc = seqbench(
        "train", f"hydra.job_logging.handlers.file.filename={canary}", out, cwd=tmp_path
    )
    refused(proc, "hydra.job_logging.handlers.file.filename")
    assert canary.read_text() == CANARY


def test_show_flags_still_work(tmp_path):
    proc = seqbench("train", "--cfg", "job", "model=gru", cwd=tmp_path)
    assert proc.returncode == 0 and "GRU" in proc.stdout, proc.stderr
    proc = seqbench("train", "--info", "defaults", cwd=tmp_path)
    assert proc.returncode == 0 and "model/lstm" in proc.stdout, proc.stderr


# --- Hydra's folders inside out_dir -----------------------------------------------------------
@pytest.mark.parametrize(
    "override, key",
    [
        ("hydra.output_subdir={mine}", "hydra.output_subdir"),
        ("hydra.output_subdir=../../../mine", "hydra.output_subdir"),
        ("hydra.run.dir={mine}", "hydra.run.dir"),
        ("hydra.run.dir=''", "hydra.run.dir"),
        ("hydra.job.chdir=true", "hydra.job.chdir"),
    ],
)
def test_hydra_folders_outside_out_dir_are_refused(override, key, tmp_path, canary):
    override = override.replace("{mine}", str(canary.parent))
    proc = seqbench("train", override, "out_dir=runs", *TINY, cwd=tmp_path)
    refused(proc, key)
    assert canary.read_text() == CANARY  # Hydra's config.yaml never replaced it
    assert sorted(p.name for p in canary.parent.iterdir()) == ["config.yaml"]


@pytest.mark.parametrize(
    "override, key",
    [
        ("hydra.sweep.dir={mine}", "hydra.sweep.dir"),
        ("hydra.sweep.subdir={mine}", "hydra.sweep.subdir"),
    ],
)
def test_a_sweeps_folders_outside_out_dir_are_refused(override, key, tmp_path, canary):
    override = override.replace("{mine}", str(canary.parent))
    proc = seqbench("train", "-m", "seed=0,1", override, "out_dir=runs", *TINY, cwd=tmp_path)
    refused(proc, key)
    assert sorted(p.name for p in canary.parent.iterdir()) == ["config.yaml"]


def test_hydra_folders_inside_out_dir_work(tmp_path):
    proc = seqbench("train", "hydra.output_subdir=.", "out_dir=runs", *TINY, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert list((tmp_path / "runs" / ".hydra").glob("*/config.yaml"))


# --- tracebacks that became one line ----------------------------------------------------------
def _loop(tmp):
    (tmp / "loop").symlink_to(tmp / "loop")
    return tmp / "loop"


def _dangling(tmp):
    (tmp / "dangling").symlink_to(tmp / "nothing")
    return tmp / "dangling"


def _dot_hydra_a_file(tmp):
    (tmp / "runs").mkdir()
    (tmp / "runs" / ".hydra").write_text("not a folder\n")
    return tmp / "runs"


@pytest.mark.parametrize(
    "make, says",
    [(_loop, "symbolic link"), (_dangling, "symbolic link"), (_dot_hydra_a_file, "is a file")],
)
def test_an_out_dir_seqbench_cannot_write_is_one_line(make, says, tmp_path):
    out = make(tmp_path)
    refused(seqbench("train", f"out_dir={out}", *TINY, cwd=tmp_path), "out_dir", says)


@pytest.mark.parametrize(
    "argv, key, says",
    [
        (["hydra/launcher=local", "hydra.launcher.n_jobs=0"], "hydra.launcher.n_jobs", ">= 1"),
        (["hydra.sweeper.max_batch_size=0"], "hydra.sweeper.max_batch_size", ">= 1"),
        (["hydra/launcher=slurm"], "hydra/launcher", "not available here"),
        (["hydra/launcher=submitit_slurm"], "hydra/launcher", "not available here"),
    ],
)
def test_a_sweep_the_launcher_cannot_run_is_one_line(argv, key, says, tmp_path):
    env = os.environ | {"PATH": str(Path(sys.executable).parent)}  # no srun, no sbatch here
    proc = seqbench("train", "-m", "seed=0,1", *argv, "out_dir=runs", *TINY, cwd=tmp_path, env=env)
    refused(proc, key, says)
    assert not (tmp_path / "runs").exists()


def test_out_dir_under_hydras_runtime_cwd_works(tmp_path):
    proc = seqbench("train", "out_dir=${hydra:runtime.cwd}/runs", *TINY, cwd=tmp_path)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert list((tmp_path / "runs").glob("adhoc-*/run.json"))


def test_a_corpus_too_small_names_the_corpus(tmp_path):
    corpus = tmp_path / "tiny.txt"
    corpus.write_text("hello world, this corpus is tiny\n")
    proc = seqbench("train", "data=text", f"data.path={corpus}", "out_dir=runs", cwd=tmp_path)
    line = refused(proc, "data.path", "tokens")
    assert str(corpus) in line and "val_frac=None is not allowed" not in line


def test_a_model_too_big_for_the_machine_says_so(tmp_path):
    proc = seqbench(
        "train", "model.d_model=60000", "model.n_layers=200", "out_dir=runs", cwd=tmp_path
    )
    refused(proc, "model", "too big")
    assert "parameters" in proc.stderr and "full_key" not in proc.stderr


def test_a_model_that_fails_to_allocate_is_recorded_oom(tmp_path):
    """Fits the machine on paper, not in the address space this process is given: the build
    fails for want of memory, and the run says so (oom, its size), not `full_key: model`."""

    def small_address_space():
        resource.setrlimit(resource.RLIMIT_AS, (1536 << 20, 1536 << 20))

    proc = seqbench(
        "train",
        "model.d_model=8192",
        *TINY,
        f"out_dir={tmp_path}/runs",
        cwd=tmp_path,
        preexec_fn=small_address_space,
    )
    if proc.returncode == 2:  # a machine with little memory refuses it up front: also right
        refused(proc, "model", "too big")
        return
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    record = json.loads(next((tmp_path / "runs").glob("*/run.json")).read_text())
    assert record["status"] == "oom", record
    assert "too big" in record["summary"]["error"] and "parameters" in record["summary"]["error"]


# --- signals ------------------------------------------------------------------------------------
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_a_measurement_recorded_interrupted(signum, tmp_path):
    def default_signals():  # a test run from a background shell inherits SIGINT ignored
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    command = [
        sys.executable,
        "-m",
        "seqbench.measure",
        "what=timing",
        "device=cpu",
        "train.threads=1",
        f"out_dir={tmp_path}/runs",
    ]
    proc = subprocess.Popen(
        command,
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
        stdout=subprocess.DEVNULL,
        preexec_fn=default_signals,
    )
    try:
        deadline = time.monotonic() + 240
        while not list((tmp_path / "runs").glob("*/rows.csv")) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.2)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signum, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err and "interrupted" in lines[0], err
    record = json.loads(next((tmp_path / "runs").glob("*/run.json")).read_text())
    assert record["status"] == "interrupted"


# --- model sets, and each job validated once ---------------------------------------------------
def dry_run_count(capsys, *argv) -> int:
    from seqbench import cli

    assert cli.main("train", ["-m", *argv, "hydra.sweeper.dry_run=true"]) == 0
    out = capsys.readouterr().out
    return int(out.rsplit("dry run: ", 1)[1].split()[0])


def test_a_model_set_on_the_command_line_sweeps_its_models(tmp_path, capsys):
    """model=@lecture is the lecture's models, each over every cell of the experiment."""
    from seqbench.sets import members

    out = f"out_dir={tmp_path / 'runs'}"
    one = dry_run_count(capsys, "+experiment=recall", "model=rnn", out)
    lecture = dry_run_count(capsys, "+experiment=recall", "model=@lecture", out)
    assert len(members("lecture")) == 4 and lecture == 4 * one > 0
    mixed = dry_run_count(capsys, "+experiment=recall", "model=@lecture,bow,rnn", out)
    assert mixed == 5 * one  # a name already in the set is not run twice
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("argv", [["-m", "model=@nope"], ["model=@nope"], ["model=@"]])
def test_an_unknown_model_set_is_one_line(argv, tmp_path):
    proc = seqbench("train", *argv, "out_dir=runs", cwd=tmp_path)
    refused(proc, "model", "choose one of @all")
    assert not (tmp_path / "runs").exists()


def test_a_sweep_runs_only_under_the_validating_sweeper(tmp_path):
    """Hydra's basic sweeper would launch jobs nobody checked: refused before the first."""
    proc = seqbench("train", "-m", "seed=0,1", "hydra/sweeper=basic", "out_dir=runs", *TINY,
                    cwd=tmp_path)  # fmt: skip
    refused(proc, "hydra/sweeper", "validates every job")
    assert not (tmp_path / "runs").exists()


def test_each_job_of_a_sweep_is_validated_once(tmp_path, capsys, monkeypatch):
    """The sweeper checks every job; the first job is not checked again before Hydra starts
    (preflight), nor by the task function."""
    from seqbench import cli, config

    calls = []
    real = config.validate_training
    monkeypatch.setattr(config, "validate_training", lambda cfg: calls.append(1) or real(cfg))
    argv = ["-m", "seed=0,1,2", "hydra.sweeper.dry_run=true", f"out_dir={tmp_path / 'runs'}"]
    assert cli.main("train", [*argv, *TINY]) == 0
    assert len(calls) == 3
    calls.clear()
    assert cli.main("train", ["--cfg", "job", *TINY]) == 0  # Hydra prints; no job runs
    assert calls == []
