"""Garbage in: every bad input of tests/bad_inputs.py refused before any work with one line and
exit 2; every kind of garbage file in a runs folder listed by the report (which exits 0), and
retrained by a sweep that meets it in a run's own directory."""

import json
import shutil
from pathlib import Path

import pytest

from seqbench import bench, store
from seqbench.report.__main__ import main as report_main
from seqbench.report.collect import collect
from seqbench.train import train
from tests.bad_inputs import TABLE, attempt, scratch
from tests.bad_inputs import damage as harm_done
from tests.conftest import TINY, compose_cfg
from tests.test_train import metrics


def _param(row):
    if not row.owner:
        return pytest.param(row, id=row.id)
    # strict: once the owner's fix lands this fails, and the row loses its owner
    why = f"needs a change in {row.owner}"
    return pytest.param(row, id=row.id, marks=pytest.mark.xfail(strict=True, reason=why))


@pytest.mark.parametrize("row", [_param(r) for r in TABLE])
def test_bad_input_is_refused_in_one_line_before_any_work(row, tmp_path):
    outcome, said = attempt(row, tmp_path)
    assert outcome == "refused", said


def test_the_table_holds_every_input_of_the_issue():
    """Issue 13, items 8 and 9: each named input is a row (the table only grows)."""
    rows = {" ".join(r.argv) for r in TABLE}
    for argv in (
        "train.betas=5",
        "-m seed=0,",
        "-m seed=choice(0,1",
        "mfu.seq_lens=5",
        "what._target_=os.system",
        "out_dir={file}/runs",
        "train.deterministic=maybe",
        "fresh=maybe",
        "+foo=1",
        "data.seed=abc",
        "data.n_keys=2.5",
        "data.n_train=100.5",
        "seed=18446744073709551616",
        "size=xl",
        "data.distance=null",
        "~train",
        "what=timing what.min_run_time=inf",
        "model.n_layers=100000",
        "-m seed=range(0,100000)",
    ):
        assert argv in rows, argv
    assert len(TABLE) >= 140


def test_the_table_holds_the_inputs_of_issue_21():
    rows = {" ".join(r.argv) for r in TABLE}
    for argv in (
        "~data +data={_target_:logging.FileHandler,filename:{canary},mode:w}",
        "--experimental-rerun {pickle}",
        "--config-dir {evil} +experiment=bad",
        "hydra.output_subdir={outside}",
        "hydra.run.dir=''",
        "out_dir={loop}",
        "out_dir={dangling}",
        "out_dir={dothydra}",
        "-m seed=0,1 hydra/launcher=local hydra.launcher.n_jobs=0",
        "-m seed=0,1 hydra.sweeper.max_batch_size=0",
        "train.criterion=val_acc train.target=2",
        "train.criterion=val_acc train.target=-1",
    ):
        assert argv in rows, argv


@pytest.mark.parametrize("harm", ["security", "lost", None])
def test_the_table_tells_a_file_written_outside_and_a_canary_destroyed(harm, tmp_path):
    paths = scratch(tmp_path)
    if harm == "security":
        (paths["outside"] / "escaped").write_text("written outside {tmp}\n")
    elif harm == "lost":
        paths["canary"].write_text("")
    assert harm_done(paths) == harm
    assert not paths["outside"].exists()  # cleared away either way


# --- garbage files ------------------------------------------------------------------------------
STEPS = 10


def tiny_cfg(out):
    return compose_cfg([*TINY, f"out_dir={out}", f"train.steps={STEPS}", "train.eval_every=5"])


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    """One complete tiny training run: the original every garbage kind damages a copy of."""
    summary = train(tiny_cfg(tmp_path_factory.mktemp("good") / "runs"))
    assert summary["status"] == "complete"
    return Path(summary["run_dir"])


def _edit_summary(d: Path, recompute_checksum: bool):
    from seqbench.runs import summary_digest

    record = json.loads((d / "run.json").read_text())
    record["summary"]["val_acc"] = 0.999  # a better result than the run had
    if recompute_checksum:  # a careful forger: only metrics.csv can contradict it now
        record["summary_sha256"] = summary_digest(record["summary"])
    (d / "run.json").write_text(json.dumps(record))


def _replace_run_json(d: Path, content):
    (d / "run.json").unlink()
    if content is None:
        (d / "run.json").mkdir()
    else:
        (d / "run.json").write_bytes(content)


def _flip_a_bit(path: Path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


GARBAGE = {  # kind -> (damage a run directory, the file the report must name)
    "run.json not UTF-8": (lambda d: _replace_run_json(d, b"\xff\xfe{\x00garbage"), "run.json"),
    "run.json a list": (lambda d: _replace_run_json(d, b"[1, 2, 3]"), "run.json"),
    "run.json a directory": (lambda d: _replace_run_json(d, None), "run.json"),
    "run.json truncated": (
        lambda d: _replace_run_json(d, (d / "run.json").read_bytes()[:200]),
        "run.json",
    ),
    "complete without summary": (
        lambda d: _replace_run_json(d, b'{"status": "complete"}'),
        "run.json",
    ),
    "metrics.csv not UTF-8": (
        lambda d: (d / "metrics.csv").write_bytes(b"step,loss\n\xff\xfe\x00\n"),
        "metrics.csv",
    ),
    "position_loss.csv not UTF-8": (
        lambda d: (d / "position_loss.csv").write_bytes(b"\xff" * 64),
        "position_loss.csv",
    ),
    "summary edited": (lambda d: _edit_summary(d, False), "run.json"),
    "summary and its checksum edited": (lambda d: _edit_summary(d, True), "run.json"),
}
WEIGHTS = {"model.pt flipped bit": lambda d: _flip_a_bit(d / "model.pt")}  # sweeps only


def test_the_report_lists_every_garbage_file_and_exits_0(good_run, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(good_run, root / good_run.name)
    for i, (damage, _) in enumerate(GARBAGE.values()):
        copy = root / f"garbage{i}-{good_run.name}"
        shutil.copytree(good_run, copy)
        damage(copy)
    (root / "bench_jobs.csv").write_bytes(b'job,seconds\n"unclosed,\x00\n')
    assert report_main(["--runs", str(root), "--results", str(tmp_path / "results")]) == 0
    tables = collect(root)
    listed = {(r.run, r.file) for r in tables["unreadable"].itertuples()}
    for i, (kind, (_, file)) in enumerate(GARBAGE.items()):
        assert (f"garbage{i}-{good_run.name}", file) in listed, kind
    assert ("-", "bench_jobs.csv") in listed
    runs = tables["runs"].set_index("run")
    assert runs.loc[good_run.name, "status"] == "complete"  # the good run is untouched
    edited = [f"garbage{i}-{good_run.name}" for i, k in enumerate(GARBAGE) if "edited" in k]
    assert set(runs.loc[edited, "status"]) == {"untrusted"}  # never counted as complete
    readme = (tmp_path / "results" / "README.md").read_text()
    assert "Files that could not be read" in readme


@pytest.mark.parametrize("kind", [*GARBAGE, *WEIGHTS])
def test_a_sweep_retrains_what_it_cannot_trust(kind, tmp_path):
    cfg = tiny_cfg(tmp_path / "runs")
    first = train(cfg)
    run_dir = Path(first["run_dir"])
    original = metrics(run_dir)
    (GARBAGE[kind][0] if kind in GARBAGE else WEIGHTS[kind])(run_dir)
    again = train(cfg)
    assert again["status"] == "complete" and again["executed_steps"] == STEPS, again
    record = json.loads((run_dir / "run.json").read_text())
    assert "untrusted-0/" in record["recovered"], record.get("recovered")
    assert (run_dir / "untrusted-0").is_dir()  # the damaged files, kept for inspection
    assert metrics(run_dir) == original  # retrained from zero: the same run
    assert store.checksum_problem(run_dir / "model.pt") is None
    assert train(cfg)["executed_steps"] == 0  # and now trusted


def test_a_bench_whose_only_names_no_job_touches_nothing(tmp_path, capsys):
    runs, results = tmp_path / "runs", tmp_path / "results"
    runs.mkdir()
    results.mkdir()
    (results / "README.md").write_text("# the previous report, 431 lines\n")
    (runs / "bench_jobs.csv").write_text("job,returncode,seconds,command\nx,0,1.0,y\n")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    argv = ["--profile", "smoke", "--only", "no_such_job", "--runs", str(runs)]
    assert bench.main([*argv, "--results", str(results)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--only=no_such_job is not allowed" in err[0]
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before
