"""what=protocols (issue 22, C1*): every trained text model scored under both protocols on
one split, through the harness's own evaluation: on tiny real runs of the stream study, with
what.split=val the state-carried score of the stream arm and the window score of the random
arm are the very figures their runs recorded; with what.split=test (the default) they are the
run's whole-test-stream figure and what=test_set's score; both arms are scored on the same
windows, and a corpus without a test split is refused before any work."""

from pathlib import Path
from random import Random

import pandas as pd
import pytest
from conftest import TINY, compose_cfg

from seqbench import cli
from seqbench.config import ConfigError
from seqbench.data import TEST_SEQUENCES
from seqbench.evaluate import stream_scored
from seqbench.measure.run import run_measurement
from seqbench.train import train


def _args(tmp_path, *extra):
    return [*TINY, f"out_dir={tmp_path / 'runs'}", "+experiment=stream", "train.steps=10",
            "train.eval_every=10", "seed=0", *extra]  # fmt: skip


def _measured(tmp_path, *extra, what=("what=protocols",)) -> tuple[dict, pd.DataFrame]:
    """(training summary, the measurement's rows) of one tiny trained run (trained once: a
    second call reads the run)."""
    trained = train(compose_cfg(_args(tmp_path, *extra)))
    assert trained["status"] == "complete", trained
    return trained, _rows(compose_cfg([*_args(tmp_path, *extra), *what], config_name="measure"))


def _rows(cfg) -> pd.DataFrame:
    cli.validate_job(cfg, "measure")
    done = run_measurement(cfg)
    assert done["status"] == "complete", done
    return pd.read_csv(Path(done["run_dir"]) / "rows.csv")


def test_both_arms_under_both_protocols_equal_the_harness_figures(tmp_path):
    val = ("what=protocols", "what.split=val")
    stream, s_rows = _measured(tmp_path, "data.stream=true", what=val)
    random, r_rows = _measured(tmp_path, "data.stream=false", what=val)
    for summary, rows, arm in ((stream, s_rows, "stream"), (random, r_rows, "random")):
        assert sorted(rows.protocol) == ["stream", "windows"] and (rows.split == "val").all()
        assert (rows.arm == arm).all() and (rows.seed == 0).all() and (rows.model == "lstm").all()
        assert (rows.train_run == Path(summary["run_dir"]).name).all()
    by = {arm: rows.set_index("protocol") for arm, rows in (("stream", s_rows), ("random", r_rows))}
    # the stream arm's state-carried score is its run's whole-stream figure, digit for digit
    assert by["stream"].loss["stream"] == stream["val_stream_loss"] == stream["val_loss"]
    assert by["stream"].state_carried["stream"] and not by["stream"].state_carried["windows"]
    # the random arm's window score is its run's own held-out figure (the harness's windows)
    assert by["random"].loss["windows"] == random["val_loss"]
    # both arms read the same text: the same windows, the same stream in the same columns
    for protocol in ("windows", "stream"):
        assert by["stream"].tokens[protocol] == by["random"].tokens[protocol]
    assert by["random"].tokens["windows"] == 2 * 8 * 64  # train.eval_batches x batch x seq_len
    assert by["random"].tokens["stream"] > 100_000  # the whole held-out stream of the stdlib
    # and the two protocols give different figures for the same model
    assert by["random"].loss["stream"] != by["random"].loss["windows"]


def test_a_model_whose_state_grows_reads_the_stream_fresh(tmp_path):
    _, rows = _measured(tmp_path, "data.stream=true", "model=transformer", "data.seq_len=16")
    assert not rows.state_carried.any() and sorted(rows.protocol) == ["stream", "windows"]


def test_a_missing_training_run_is_a_failed_measurement_never_a_training(tmp_path):
    cfg = compose_cfg([*_args(tmp_path), "what=protocols"], config_name="measure")
    done = run_measurement(cfg)
    assert done["status"] == "failed" and "run the training job first" in done["error"]
    assert not list((tmp_path / "runs").glob("stream-lstm-*"))


def _folder(tmp_path) -> Path:
    """A tiny corpus folder: train.txt, valid.txt and test.txt of different random text."""
    rng, folder = Random(0), tmp_path / "corpus"
    folder.mkdir()
    for name, n in (("train", 6000), ("valid", 1500), ("test", 2000)):
        words = (rng.choice(["the cat ", "sat on ", "a mat. ", "we ran\n"]) for _ in range(n // 7))
        (folder / f"{name}.txt").write_text("".join(words))
    return folder


def test_the_test_split_is_scored_by_default(tmp_path):
    """A corpus folder with test.txt: what=protocols (split=test) scores its test split: the
    stream arm's state-carried figure is its run's whole-test-stream loss, the random arm's
    window figure what=test_set's on the same run; split=val gives other numbers."""
    corpus = (f"data.path={_folder(tmp_path)}", "data.seq_len=16")
    arms = {}
    for arm, flag in (("stream", "data.stream=true"), ("random", "data.stream=false")):
        summary, test = _measured(tmp_path, *corpus, flag)
        _, val = _measured(tmp_path, *corpus, flag, what=("what=protocols", "what.split=val"))
        _, scored = _measured(tmp_path, *corpus, flag, what=("what=test_set",))
        arms[arm] = summary, test.set_index("protocol"), val.set_index("protocol"), scored
    for _, test, val, _ in arms.values():
        assert (test.split == "test").all() and (val.split == "val").all()
        for protocol in ("windows", "stream"):  # another split: other numbers
            assert test.loss[protocol] != pytest.approx(val.loss[protocol], rel=1e-6)
        assert test.tokens["windows"] == TEST_SEQUENCES * 16  # what=test_set's windows
        test_ids = len((tmp_path / "corpus" / "test.txt").read_text())
        assert test.tokens["stream"] == stream_scored(test_ids, 8)  # the whole test stream
    summary, test, val, _ = arms["stream"]
    assert test.loss["stream"] == summary["test_stream_loss"] and test.state_carried["stream"]
    assert val.loss["stream"] == summary["val_stream_loss"]
    _, test, _, scored = arms["random"]
    assert test.loss["windows"] == pytest.approx(scored.test_loss[0], rel=1e-5)
    assert test.acc["windows"] == pytest.approx(scored.test_acc[0], rel=1e-9)


@pytest.mark.parametrize(
    "data, split, said",
    [((), "train", r"^what\.split=train is not allowed: one of val, test$"),
     (("data.path={file}",), "test", r"^what\.split=test is not allowed: data\.path=.* has no "
                                     r"test split .* what\.split=val scores the validation")],
)  # fmt: skip
def test_a_split_that_is_not_there_is_refused_before_any_work(tmp_path, data, split, said):
    file = tmp_path / "one.txt"
    file.write_text("the cat sat on a mat. " * 400)
    data = [d.format(file=file) for d in data]
    cfg = compose_cfg([*_args(tmp_path, *data), "what=protocols", f"what.split={split}"],
                      config_name="measure")  # fmt: skip
    with pytest.raises(ConfigError, match=said):
        cli.validate_job(cfg, "measure")
    assert not (tmp_path / "runs").exists()
    if data:  # the same corpus is scored on its validation split
        val = [*_args(tmp_path, *data), "what=protocols", "what.split=val"]
        cli.validate_job(compose_cfg(val, config_name="measure"), "measure")


def test_a_task_that_is_not_text_is_refused_before_any_work(tmp_path):
    cfg = compose_cfg([*TINY, f"out_dir={tmp_path}", "what=protocols", "data=lag_recall"],
                      config_name="measure")  # fmt: skip
    with pytest.raises(ConfigError, match=r"^data\._target_=.* is not allowed: what=protocols"):
        cli.validate_job(cfg, "measure")
