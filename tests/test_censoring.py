"""Why a run stopped, and censored runs in the verdicts (issue 22 item 1).

The stop-reason rule (seqbench.evaluate.stop_reason) on synthetic held-out histories, the
same rule recorded by real tiny training runs and derived by report.collect for runs that
lack the field, and the studies' cells: a run stopped at its cap while improving (or at
chance) is undecided, never failed, unless the cap is long enough (_common.long_enough)."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from seqbench import store
from seqbench.evaluate import (
    CHANCE_ACC,
    FLAT,
    MIN_BUDGET,
    chance_levels,
    eval_history,
    stop_reason,
)
from seqbench.report.collect import _stopped, numeric
from seqbench.studies import core, mqar, path_length, posenc, recall
from seqbench.studies._common import LONG_ENOUGH, censored, long_enough
from seqbench.train import train
from tests.conftest import FAMILY

RECALL = {"task": "LagRecall", "vocab_size": 64, "n_keys": 16}  # chance 1/16


def _history(steps, loss, acc):
    """(step, val_loss, val_acc) every 25 steps up to ``steps``; loss(step), acc(step)."""
    return [(s, loss(s), acc(s)) for s in range(25, steps + 1, 25)]


# --- the rule on synthetic histories ----------------------------------------------------------
def test_a_run_that_reached_its_target_stopped_at_the_criterion():
    evals = _history(150, lambda s: 2.0 - s / 100, lambda s: s / 160)
    out = stop_reason(evals, cap=400, reached=True, data=RECALL)
    assert out["stop_reason"] == "criterion" and out["censored"] is False


def test_a_long_run_whose_loss_went_flat_above_chance_converged():
    steps = MIN_BUDGET + 200
    evals = _history(steps, lambda s: max(0.5, 2.0 - s / 300), lambda s: 0.6)
    out = stop_reason(evals, cap=steps, reached=False, data=RECALL)
    assert out["last_quarter_gain"] <= FLAT
    assert out["stop_reason"] == "converged" and out["censored"] is False
    # the same flat history on a budget below MIN_BUDGET is not called converged
    short = [e for e in evals if e[0] <= 800]
    assert stop_reason(short, cap=800, reached=False, data=RECALL)["stop_reason"] == "cap"


def test_a_run_stopped_at_its_cap_while_improving_is_censored():
    evals = _history(400, lambda s: 3.0 - s / 200, lambda s: 0.3 + s / 2000)
    out = stop_reason(evals, cap=400, reached=False, data=RECALL)
    assert out["last_quarter_gain"] > FLAT and not out["at_chance"]
    assert out["stop_reason"] == "cap" and out["censored"] is True


def test_a_run_at_chance_is_censored_even_where_its_loss_is_flat():
    chance = 1 / RECALL["n_keys"]
    flat = _history(2000, lambda s: math.log(16), lambda s: chance + CHANCE_ACC / 2)
    out = stop_reason(flat, cap=2000, reached=False, data=RECALL)
    assert out["at_chance"] and out["last_quarter_gain"] <= FLAT
    assert out["stop_reason"] == "cap" and out["censored"] is True  # never "converged"
    # a text run is at chance near its unigram cross-entropy (no single answer to guess)
    text = {"task": "Text", "vocab_size": 65, "unigram_xent": 3.0}
    assert chance_levels(text) == (None, 3.0)
    near = stop_reason([(100, 2.99, 0.2), (200, 2.98, 0.2)], 200, False, text)
    assert near["at_chance"] and near["censored"]


def test_early_stopping_before_the_cap_is_converged_and_chance_comes_from_the_data():
    evals = _history(300, lambda s: 1.0 + abs(s - 150) / 100, lambda s: 0.5)
    assert stop_reason(evals, cap=2000, reached=False, data=RECALL)["stop_reason"] == "converged"
    assert chance_levels(RECALL)[0] == 1 / 16
    assert chance_levels({"task": "MQAR", "vocab_size": 64})[0] == 1 / 32
    assert chance_levels({"task": "Copy", "vocab_size": 16})[0] == 1 / 15
    assert chance_levels(None) == (None, None)


# --- recorded by training, derived by the report, the same function ---------------------------
def test_real_runs_record_why_they_stopped_and_collect_derives_the_same(make_cfg):
    common = ["model=gru", "data.seq_len=12", "data.distance=4", "train.criterion=val_acc"]
    reached = train(make_cfg(*common, "train.steps=60", "train.target=0.0"))  # at step 20
    capped = train(make_cfg(*common, "train.steps=40", "train.target=1.0", "train.lr=1e-6"))
    for summary, reason in ((reached, "criterion"), (capped, "cap")):
        record = json.loads((Path(summary["run_dir"]) / "run.json").read_text())
        assert record["summary"]["stop_reason"] == summary["stop_reason"] == reason
        rows, _ = store.read_metrics_rows(Path(summary["run_dir"]) / "metrics.csv")
        metrics = numeric(pd.DataFrame(rows))
        old = record | {"summary": {k: v for k, v in record["summary"].items()
                                    if k not in ("stop_reason", "censored")}}  # fmt: skip
        cfg = {"train.steps": record["config"]["train"]["steps"]}
        derived = _stopped("complete", cfg, old, metrics)  # a run from before the field
        assert derived["stop_reason"] == reason
        assert derived["censored"] == record["summary"]["censored"]
        assert eval_history(rows)[-1][0] == summary["step"]
    assert capped["censored"] is True  # 40 steps of a GRU at lr 1e-6: still at chance


# --- the verdicts: censored is undecided, unless the cap is long enough -----------------------
def _recall_runs(cap, censor):
    """The transformer solves every distance in 100 steps, the gru d <= 16, the rnn d = 4;
    where a model fails it stopped at the cap (censored when ``censor``)."""
    rows = []
    for m in ("transformer", "gru", "rnn"):
        for d in (4, 16, 64, 256):
            for s in (0, 1, 2):
                solves = d <= {"transformer": 256, "gru": 16, "rnn": 4}[m]
                acc = (0.97, 0.98, 0.99)[s] if solves else 0.06
                rows.append(
                    {"run": f"{m}-{d}-{s}", "study": "recall", "status": "complete", "model": m,
                     "family": FAMILY[m], "task": "lagrecall", "seed": s, "data.distance": d,
                     "train.steps": cap, "lr": 1e-3, "val_acc": acc, "test_acc": acc,
                     "steps_to_criterion": 100 if solves else None,
                     "censored": not solves and censor}
                )  # fmt: skip
    return pd.DataFrame(rows)


def _recall_verdict(runs):
    ok = recall.recall_runs(runs).assign(test_acc=lambda r: r.val_acc)
    return recall.verdict(recall.cell_table(ok))


def test_a_censored_failure_is_undecided_until_the_cap_is_long_enough():
    v, measured = _recall_verdict(_recall_runs(cap=4000, censor=False))
    assert v == "supported" and "censored" not in measured  # reach 256 against 16 and 4
    # censored at a cap >= 4 x 100 steps: long enough to call the rnn's cells failed
    assert _recall_verdict(_recall_runs(cap=LONG_ENOUGH * 100, censor=True))[0] == "supported"
    # the same accuracies, censored at a cap below 4 x 100: undecided, the verdict open
    v, measured = _recall_verdict(_recall_runs(cap=LONG_ENOUGH * 100 - 1, censor=True))
    cells = recall.cell_table(recall.recall_runs(_recall_runs(399, True)).assign(
        test_acc=lambda r: r.val_acc)).set_index(["model", "distance"])  # fmt: skip
    assert cells.loc[("rnn", 16), "status"] == "undecided"  # failed without censoring
    assert v == "inconclusive" and "rnn d=16: censored at 399 steps (< 4 x 100)" in measured


def test_no_model_solved_the_cell_so_no_cap_is_long_enough():
    assert not long_enough(10**6, np.nan) and long_enough(400, 100) and not long_enough(399, 100)
    runs = _recall_runs(cap=10**6, censor=True)
    runs.loc[runs["data.distance"] == 256, ["val_acc", "test_acc"]] = 0.06
    runs.loc[runs["data.distance"] == 256, "steps_to_criterion"] = None
    runs.loc[runs["data.distance"] == 256, "censored"] = True
    v, measured = _recall_verdict(runs)
    assert "d=256: censored at 1000000 steps (no model solved the cell)" in measured
    assert censored(pd.DataFrame({"censored": [True, None, "True", False]})).tolist() == [
        True, False, True, False]  # fmt: skip


def test_mqar_attention_is_not_ahead_of_a_recurrence_that_may_catch_up():
    assert mqar.settled("ahead", att_open=False, rec_open=True) == "undecided"
    assert mqar.settled("ahead", att_open=True, rec_open=False) == "ahead"
    assert mqar.settled("behind", att_open=True, rec_open=False) == "undecided"
    assert mqar.settled("level", att_open=False, rec_open=True) == "level"


def test_posenc_a_censored_no_pe_model_leaves_positions_help_open():
    rows = [
        {"run": f"{p}-{s}", "study": "posenc", "status": "complete", "task": "copy",
         "model.pos": p, "seed": s, "train.steps": cap, "val_acc": acc, "test_acc": acc,
         "steps_to_criterion": steps, "censored": cen, "lr": 1e-3, "vocab_size": 16}
        for p, acc, steps, cen, cap in (("none", 0.45, None, True, 300),
                                        ("learned", 1.0, 125, False, 300))
        for s in (0, 1, 2)
    ]  # fmt: skip
    runs = pd.DataFrame(rows)
    assert posenc.none_censored(runs) == "none (copy): censored at 300 steps (< 4 x 125)"
    runs["train.steps"] = 500  # 4 x 125: the no-PE model had its chance
    assert posenc.none_censored(runs) == ""


def test_path_length_names_a_censored_model_and_core_holds_a_censored_model_open():
    r = pd.DataFrame(
        {"model": ["gru"] * 2 + ["rnn"] * 2, "trained": True, "T": 16, "learned": [1, 1, 0, 0],
         "steps_to_criterion": [100, 150, None, None], "censored": [0, 0, 1, 1], "cap": 400}
    ).astype({"learned": bool, "censored": bool})  # fmt: skip
    assert path_length.unlearned(r) == {"rnn": "0/2: censored at 400 steps (< 4 x 150)"}
    assert path_length.unlearned(r.assign(cap=600)) == {"rnn": "0/2"}  # long enough: failing
    text = pd.DataFrame(
        {"run": list("abcdef"), "model": ["gru"] * 3 + ["transformer"] * 3,
         "train.steps": 200, "censored": [False] * 3 + [True] * 3,
         "val_loss": [1.7, 1.75, 1.8, 2.43, 2.44, 2.45]}
    )  # fmt: skip
    curves = pd.DataFrame({"run": ["a", "a", "b", "c"], "step": [50, 100, 100, 75],
                           "val_loss": [2.5, 2.0, 2.1, 2.2]})  # fmt: skip
    losses = core.text_losses(text, "val_loss")
    assert core.steps_to(curves, text[text.model == "gru"], 2.38) == 100
    assert core.unsettled(text, losses, 2.38, curves) == {
        "transformer": "transformer: censored at 200 steps (< 4 x 100)"}  # fmt: skip
    assert core.unsettled(text.assign(**{"train.steps": 400}), losses, 2.38, curves) == {}
