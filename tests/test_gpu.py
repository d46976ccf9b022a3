"""The GPU run, tested without a GPU: every job of the gpu profile composes and validates
here (device=cpu), and the archive the GPU machine writes unpacks into a report."""

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pandas as pd
import pytest

from seqbench import gpu
from seqbench.bench import profile_jobs
from seqbench.report import generic
from seqbench.train import train


def test_every_job_of_the_gpu_profile_composes_and_validates():
    counts = gpu.dry_run("gpu")
    assert set(counts) == {j.name for j in profile_jobs("gpu")}
    assert all(n >= 1 for n in counts.values())


def test_a_bad_job_in_a_profile_fails_the_dry_run(monkeypatch, capsys):
    from seqbench import bench
    from seqbench.studies import Job

    bad = Job("recall", "seqbench.train", ["-m", "+experiment=recall", "train.steps=0"])
    monkeypatch.setattr(bench, "profile_jobs", lambda profile: [bad])
    with pytest.raises(SystemExit) as stop:
        gpu.dry_run("gpu")
    assert stop.value.code == 2 and "train.steps=0 is not allowed" in capsys.readouterr().err


def test_the_archive_round_trip_writes_the_report(make_cfg, tmp_path):
    train(make_cfg("model=gru", "data=copy", "data.seq_len=12", "train.steps=10", "study=core"))
    runs = tmp_path / "runs"
    archive = gpu.pack(runs, runs / "report", tmp_path / "out" / gpu.ARCHIVE)
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert any(n.endswith("run.json") for n in names) and any("metrics.csv" in n for n in names)
    assert not any(n.endswith(("ckpt.pt", "model.pt", "lock")) for n in names)
    readme = gpu.unpack(archive, tmp_path / "here" / "runs", tmp_path / "here" / "gpu")
    assert (tmp_path / "here" / "gpu" / "runs.csv").exists() and "| C1 |" in readme.read_text()


# --- the prepared call, rehearsed on CPU: whatever fails, the runs come back --------------------
REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu-run.sh"


def _call(tmp_path, python, wheels, *options):
    """The prepared call as the device tool runs it: bash, the script, $OUT; no make."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {
        "PYTHON": str(python),
        "WHEELS": str(wheels),
    }
    out, runs = tmp_path / "out", tmp_path / "runs"
    cmd = ["bash", str(SCRIPT), str(out), "--runs", str(runs), *options]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    return proc, out, runs


def _check_archive(out: Path) -> list[str]:
    """The archive holds the records and logs of what ran, the report's error, no weights."""
    with tarfile.open(out / gpu.ARCHIVE) as tar:
        names = tar.getnames()
        records = {n: json.load(tar.extractfile(n)) for n in names if n.endswith("/run.json")}
        report_log = tar.extractfile("runs/report.log").read().decode()
    assert records, "no run came back"
    for name, record in records.items():
        if record.get("status") == "complete" and record.get("kind", "train") == "train":
            assert name.replace("run.json", "metrics.csv") in names, name
    assert "runs/bench_jobs.csv" in names and "runs/logs/core_copy.log" in names
    assert "Traceback" in report_log and "made to fail" in report_log
    assert not any(n.endswith((".pt", ".sha256", "lock")) for n in names)
    return names


REHEARSAL = ("--profile", "smoke", "--only", "core_copy,recall", "--budget-s", "15",
             "--grace-s", "2", "--fail-report")  # fmt: skip


def test_the_rehearsal_brings_the_runs_back_when_the_report_fails(tmp_path):
    """The smoke jobs with a tiny budget (the second is capped mid-way), the report forced
    to fail: the call says so in one line, exits 1, and $OUT still holds every record."""
    proc, out, runs = _call(tmp_path, sys.executable, tmp_path / "no-wheels", *REHEARSAL)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    _check_archive(out)
    console = (out / "gpu-run.log").read_text()
    assert console == proc.stdout and "the report failed" in console
    assert "Traceback" not in console  # capped jobs and the report keep theirs in files
    assert "packed" in console
    # here: the half-finished runs (a job capped mid-calibration) make a report
    readme = gpu.unpack(out / gpu.ARCHIVE, tmp_path / "here", tmp_path / "gpu")
    assert "| C1 |" in readme.read_text()


@pytest.mark.slow
def test_the_rehearsal_in_the_device_versions_venv(tmp_path):
    """As on the lent image: a venv with torch 2.11 and numpy 2.5 and no Hydra
    (SEQBENCH_DEVICE_VENV), the wheels of `make gpu-wheels` carried in .whl/: every GPU job
    validates, and the prepared call brings the runs back."""
    venv = os.environ.get("SEQBENCH_DEVICE_VENV")
    if not venv:
        pytest.skip("SEQBENCH_DEVICE_VENV is not set (a venv with the device's torch and numpy)")
    wheels = REPO / ".whl"
    if not list(wheels.glob("*.whl")):
        pytest.skip("no wheels in .whl/: run `make gpu-wheels`")
    python = Path(venv) / "bin" / "python"
    site = tmp_path / "site"
    pip = [str(python), "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target"]
    subprocess.run([*pip, str(site), *map(str, wheels.glob("*.whl"))], check=True)
    env = {**os.environ, "PYTHONPATH": f"{site}:{REPO}"}
    dry = subprocess.run([str(python), "-m", "seqbench.gpu", "dry-run", "--profile", "gpu"],
                         env=env, capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert dry.returncode == 0 and "jobs validated" in dry.stdout, dry.stdout + dry.stderr
    proc, out, _ = _call(tmp_path, python, wheels, *REHEARSAL)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    _check_archive(out)


# --- unpack: nothing lands outside the runs folder ----------------------------------------------
def _member(tar, name, data=b"x", kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, len(data) if kind == tarfile.REGTYPE else 0
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def test_unpack_refuses_links_absolute_paths_and_dotdot_one_line_each(tmp_path, capsys):
    archive = tmp_path / "a.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        _member(tar, "runs/ok/bench_jobs.txt", b"kept")
        _member(tar, "runs/link", kind=tarfile.SYMTYPE, link="/etc/passwd")
        _member(tar, "runs/hard", kind=tarfile.LNKTYPE, link="runs/ok/bench_jobs.txt")
        _member(tar, "/abs/evil.txt")
        _member(tar, "runs/../../evil.txt")
        _member(tar, "elsewhere/evil.txt")
        _member(tar, "report/README.md", b"made again here")
    runs = tmp_path / "deep" / "runs"
    gpu.unpack(archive, runs, tmp_path / "gpu")
    refused = [ln for ln in capsys.readouterr().out.splitlines() if "refused" in ln]
    assert len(refused) == 5
    for name in ("runs/link", "runs/hard", "/abs/evil.txt", "runs/../../evil.txt", "elsewhere"):
        assert sum(name in ln for ln in refused) == 1, name
    assert (runs / "ok" / "bench_jobs.txt").read_text() == "kept"
    assert not (runs / "link").exists() and not (runs / "hard").exists()
    assert not list(tmp_path.rglob("evil.txt"))


def test_the_calibration_table_of_runs_cut_off_before_their_first_evaluation():
    """The GPU rehearsal's TypeError: calibration runs interrupted before any held-out loss
    (None in the records) and before an lr was recorded."""
    runs = pd.DataFrame([
        {"study": "recall.lr", "model": "lstm", "task": "lagrecall", "lr": 1e-3,
         "status": "interrupted", "val_loss": None, "run": "a"},
        {"study": "recall.lr", "model": "lstm", "task": "lagrecall", "lr": None,
         "status": "interrupted", "val_loss": None, "run": "b"},
    ])  # fmt: skip
    text = generic.calibration({"runs": runs})
    assert "| recall | lstm | lagrecall | 0.001: - (-), -: - (-) | none completed |" in text
