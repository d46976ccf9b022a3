"""what=protocols (issue 22, C1*): every trained text model scored under both protocols on the
same held-out split, through the harness's own evaluation: on tiny real runs of the stream
study, the state-carried score of the stream arm and the window score of the random arm are
the very figures their runs recorded, and both arms are scored on the same windows."""

from pathlib import Path

import pandas as pd
import pytest
from conftest import TINY, compose_cfg

from seqbench import cli
from seqbench.config import ConfigError
from seqbench.measure.run import run_measurement
from seqbench.train import train


def _args(tmp_path, *extra):
    return [*TINY, f"out_dir={tmp_path / 'runs'}", "+experiment=stream", "train.steps=10",
            "train.eval_every=10", "seed=0", *extra]  # fmt: skip


def _measured(tmp_path, *extra) -> tuple[dict, pd.DataFrame]:
    """(training summary, the measurement's rows) of one tiny trained run."""
    trained = train(compose_cfg(_args(tmp_path, *extra)))
    assert trained["status"] == "complete", trained
    cfg = compose_cfg([*_args(tmp_path, *extra), "what=protocols"], config_name="measure")
    cli.validate_job(cfg, "measure")
    done = run_measurement(cfg)
    assert done["status"] == "complete", done
    return trained, pd.read_csv(Path(done["run_dir"]) / "rows.csv")


def test_both_arms_under_both_protocols_equal_the_harness_figures(tmp_path):
    stream, s_rows = _measured(tmp_path, "data.stream=true")
    random, r_rows = _measured(tmp_path, "data.stream=false")
    for summary, rows, arm in ((stream, s_rows, "stream"), (random, r_rows, "random")):
        assert sorted(rows.protocol) == ["stream", "windows"]
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


def test_a_task_that_is_not_text_is_refused_before_any_work(tmp_path):
    cfg = compose_cfg([*TINY, f"out_dir={tmp_path}", "what=protocols", "data=lag_recall"],
                      config_name="measure")  # fmt: skip
    with pytest.raises(ConfigError, match=r"^data\._target_=.* is not allowed: what=protocols"):
        cli.validate_job(cfg, "measure")
