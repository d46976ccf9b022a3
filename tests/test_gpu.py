"""The GPU run, tested without a GPU: every job of the gpu profile composes and validates
here (device=cpu), and the archive the GPU machine writes unpacks into a report."""

import tarfile

import pytest

from seqbench import gpu
from seqbench.bench import profile_jobs
from seqbench.train import train


def test_every_job_of_the_gpu_profile_composes_and_validates():
    counts = gpu.dry_run("gpu")
    assert set(counts) == {j.name for j in profile_jobs("gpu")}
    assert all(n >= 1 for n in counts.values())


def test_a_bad_job_in_a_profile_fails_the_dry_run(monkeypatch, capsys):
    from seqbench import bench
    from seqbench.studies import train as job

    bad = job("recall", "-m", "+experiment=recall", "train.steps=0")
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
