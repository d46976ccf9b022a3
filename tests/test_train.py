"""The harness: every family learns, runs are reproducible, every config file instantiates."""

import csv
from pathlib import Path

import pytest

from seqbench.config import CONF_DIR, build_model, build_task
from seqbench.train import TIMING_COLUMNS, train
from tests.conftest import compose_cfg


def metrics(run_dir):
    with open(Path(run_dir) / "metrics.csv") as f:
        return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in csv.DictReader(f)]


@pytest.mark.parametrize("model", ["rnn", "lstm", "gru", "transformer"])
def test_each_family_learns_short_lag_recall(make_cfg, model):
    """A learning check, not 'loss went down': >= 95% recall within 600 steps."""
    cfg = make_cfg(
        f"model={model}",
        "data=lag_recall",
        "data.seq_len=16",
        "data.distance=4",
        "train.steps=600",
        "train.batch_size=32",
        "train.eval_every=600",
        "train.eval_batches=8",
    )
    summary = train(cfg)
    assert summary["status"] == "complete"
    assert summary["val_acc"] >= 0.95, summary


def test_same_seed_and_config_give_identical_metrics(tmp_path):
    runs = []
    for name in ("a", "b"):
        cfg = compose_cfg(
            [
                "device=cpu",
                "train.threads=1",
                "model=transformer",
                "data=copy",
                "data.seq_len=12",
                "train.steps=30",
                "train.log_every=5",
                "train.eval_every=15",
                "train.batch_size=8",
                f"out_dir={tmp_path / name}",
            ]
        )
        runs.append(metrics(train(cfg)["run_dir"]))
    assert len(runs[0]) == 6 and runs[0] == runs[1]


def test_different_model_seeds_see_the_same_data_but_differ(make_cfg):
    a = train(make_cfg("model=gru", "data=copy", "data.seq_len=12", "train.steps=10", "seed=0"))
    b = train(make_cfg("model=gru", "data=copy", "data.seq_len=12", "train.steps=10", "seed=1"))
    assert a["run_dir"] != b["run_dir"] and a["train_loss"] != b["train_loss"]


def test_run_json_records_fairness_figures(make_cfg):
    import json

    summary = train(make_cfg("model=lstm", "data=text", "data.seq_len=32", "train.steps=5"))
    record = json.loads((Path(summary["run_dir"]) / "run.json").read_text())
    assert record["status"] == "complete"
    assert record["params"]["params_non_embedding"] > 0
    assert record["family"] == "recurrent"
    assert record["model_args"]["d_model"] is None  # what the constructor received ...
    assert record["model_hparams"] | {} == record["model_args"] | {  # ... and as built
        "d_model": 80,
        "n_layers": 2,
        "impl": "fused",
    }
    assert record["data"]["corpus_sha256"] and record["env"]["threads"] == 1
    assert record["config"]["train"]["steps"] == 5
    assert (Path(summary["run_dir"]) / "model.pt").exists()
    rows = metrics(summary["run_dir"])
    assert rows[-1]["step"] == "5" and rows[-1]["val_ppl"]


def test_bag_of_words_example_runs_through_the_harness(make_cfg):
    summary = train(make_cfg("model=bow", "data=text", "data.seq_len=32", "train.steps=20"))
    assert summary["status"] == "complete" and summary["val_loss"] < 6


@pytest.mark.parametrize("group", ["model", "data"])
def test_every_config_file_composes_and_instantiates(group):
    for path in sorted((CONF_DIR / group).glob("*.yaml")):
        cfg = compose_cfg(
            [f"{group}={path.stem}", "data.seq_len=64"]
            if group == "model"
            else [f"{group}={path.stem}"]
        )
        task = build_task(cfg.data)
        model = build_model(cfg.model, task.vocab_size, device="cpu")
        tokens, _ = task.batch("train", 0, 2)
        logits, _ = model(tokens)
        assert logits.shape == (*tokens.shape, task.vocab_size), path.name


def test_every_experiment_file_composes():
    for path in sorted((CONF_DIR / "experiment").glob("*.yaml")):
        # measurement experiments override the `what` group of the measure entry's config
        primary = "measure" if "override /what" in path.read_text() else "config"
        cfg = compose_cfg([f"+experiment={path.stem}"], config_name=primary)
        task = build_task(cfg.data)
        assert cfg.study and build_model(cfg.model, task.vocab_size) is not None, path.name


@pytest.mark.slow
def test_compiled_training_follows_the_eager_run(tmp_path):
    """train.compile=true (torch.compile, inductor on CPU) trains the same model: the same
    losses at every logged step up to kernel rounding."""
    losses = {}
    for compiled in (False, True):
        cfg = compose_cfg(
            [
                "model=transformer",
                "data.seq_len=16",
                "data.distance=4",
                "train.steps=8",
                "train.log_every=2",
                "train.eval_every=8",
                "train.eval_batches=1",
                "train.batch_size=4",
                "train.progress=false",
                f"train.compile={str(compiled).lower()}",
                f"out_dir={tmp_path / str(compiled)}",
            ]
        )
        summary = train(cfg)
        assert summary["status"] == "complete", summary
        losses[compiled] = [float(r["train_loss"]) for r in metrics(summary["run_dir"])]
    assert len(losses[True]) == len(losses[False]) == 4
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)
