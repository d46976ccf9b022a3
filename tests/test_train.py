"""The harness: every family learns, runs are reproducible, every config file instantiates."""

import copy
import csv
from pathlib import Path

import pytest
import torch

from seqbench.config import CONF_DIR, build_model, build_task
from seqbench.studies import experiment_files
from seqbench.train import TIMING_COLUMNS, train
from tests.conftest import SMALL_POOL, compose_cfg


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
        "d_embed": 80,
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
    for path in sorted(experiment_files().values()):
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


def test_training_stops_at_the_criterion_and_records_the_step(make_cfg):
    common = [
        "model=lstm",
        "data.seq_len=16",
        "data.distance=4",
        "train.eval_every=20",
        "train.batch_size=32",
        "train.criterion=val_acc",
    ]
    reached = train(make_cfg(*common, "train.steps=600", "train.target=0.9"))
    assert reached["status"] == "complete" and reached["stopped_early"] is True
    assert reached["val_acc"] >= 0.9 and reached["steps_to_criterion"] == reached["step"] < 600
    assert int(metrics(reached["run_dir"])[-1]["step"]) == reached["step"]
    assert (Path(reached["run_dir"]) / "model.pt").exists()
    censored = train(make_cfg(*common, "train.steps=20", "train.target=1.0"))  # not in 20 steps
    assert censored["steps_to_criterion"] is None and censored["step"] == 20
    assert censored["stopped_early"] is False
    # why each stopped (evaluate.stop_reason): 20 steps at the cap cannot be called converged
    assert reached["stop_reason"] == "criterion" and reached["censored"] is False
    assert censored["stop_reason"] == "cap" and censored["censored"] is True


def test_the_learning_rate_is_calibrated_on_the_control_setting_and_recorded(make_cfg):
    import json

    cfg = make_cfg(
        "model=lstm",
        "data.seq_len=16",
        "data.distance=8",
        "train.steps=40",
        "train.eval_every=40",
        "study=toy",
        "train.lr_grid=[1e-5,1e-2]",
        "++train.lr_control={data.distance:2,train.steps:60}",
    )
    summary = train(cfg)
    record = json.loads((Path(summary["run_dir"]) / "run.json").read_text())
    cal = record["lr_calibration"]
    # 1e-2 sits at the top of the grid: the grid extends x3 above it (twice at most)
    assert cal["grid"][:3] == [1e-5, 1e-2, 3e-2] and len(cal["grid"]) <= 4
    best = min(zip(cal["val_loss"], cal["grid"]))[1]  # the lowest loss at the end wins
    assert cal["chosen"] == best == cal["used"] == summary["lr"] and cal["lr_step"] == 0
    assert cal["at_edge"] == (best == cal["grid"][-1] and len(cal["grid"]) == 4)
    assert cal["val_loss"][1] < cal["val_loss"][0]  # 1e-5 learns nothing in 60 steps
    assert cal["control"] == {"data.distance": 2, "train.steps": 60}
    runs = Path(summary["run_dir"]).parent
    calibration = sorted(p.name for p in runs.glob("toy.lr-lstm-*"))
    assert len(calibration) == len(cal["grid"])
    for name in calibration:  # the control setting, seed 0, the lr of the grid
        rec = json.loads((runs / name / "run.json").read_text())
        assert rec["config"]["data"]["distance"] == 2 and rec["config"]["seed"] == 0
        assert rec["config"]["train"]["steps"] == 60 and rec["config"]["train"]["lr_grid"] is None
    # another cell of the same model and task reuses the calibration runs
    other = train(
        make_cfg(
            "model=lstm",
            "data.seq_len=16",
            "data.distance=6",
            "train.steps=40",
            "train.eval_every=40",
            "study=toy",
            "train.lr_grid=[1e-5,1e-2]",
            "++train.lr_control={data.distance:2,train.steps:60}",
        )
    )
    assert other["lr"] == cal["chosen"] and len(list(runs.glob("toy.lr-lstm-*"))) == len(
        cal["grid"]
    )


@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_the_fused_optimiser_takes_the_steps_of_the_per_parameter_loop(name):
    """AdamW or SGD with fused=True, the harness's choice on CPU and CUDA, against the
    reference per-parameter loop."""
    from types import SimpleNamespace

    from seqbench.step import make_optimizer

    t = SimpleNamespace(optimizer=name, lr=3e-3, betas=(0.9, 0.95), weight_decay=0.01)
    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Embedding(50, 16), torch.nn.Linear(16, 50))
    b = copy.deepcopy(a)
    fused = make_optimizer(a.parameters(), t, "cpu")
    reference = {"adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[name]
    extra = {"betas": t.betas} if name == "adamw" else {}
    loop = reference(b.parameters(), lr=t.lr, weight_decay=0.01, foreach=False, **extra)
    assert isinstance(fused, reference) and fused.defaults["fused"] is True
    x = torch.randint(50, (8, 12))
    for _ in range(20):
        for model, opt in ((a, fused), (b, loop)):
            opt.zero_grad()
            model(x).logsumexp(-1).mean().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_early_stopping_ends_after_patience_evaluations_without_a_new_best(make_cfg):
    s = train(
        make_cfg(
            *SMALL_POOL,
            "train.steps=2000",
            "train.eval_every=10",
            "train.patience=3",
        )
    )
    rows = [r for r in metrics(s["run_dir"]) if r["val_loss"]]
    losses = [float(r["val_loss"]) for r in rows]
    assert s["step"] < 2000 and s["best_step"] == int(rows[losses.index(min(losses))]["step"])
    assert len(rows) - 1 - losses.index(min(losses)) == 3  # three evaluations past the best
    assert s["stop_reason"] == "converged" and s["censored"] is False  # patience ran out


def test_early_stopping_keeps_the_weights_of_its_best_evaluation(make_cfg):
    """model.pt is the model the held-out set chose, not the one patience evaluations later:
    scored again on the same validation batches it gives the best held-out loss."""
    from seqbench.evaluate import held_out

    cfg = make_cfg(*SMALL_POOL, "train.steps=2000", "train.eval_every=10", "train.patience=3")
    s = train(cfg)
    assert s["best_step"] < s["step"] and s["best_val_loss"] < s["val_loss"]
    task = build_task(cfg.data)
    model = build_model(cfg.model, task.vocab_size, "cpu")
    model.load_state_dict(torch.load(Path(s["run_dir"]) / "model.pt", weights_only=True))
    got, _ = held_out(model, task, cfg.train.eval_batches, cfg.train.batch_size, "cpu")
    assert got["val_loss"] == pytest.approx(s["best_val_loss"], rel=1e-5)
