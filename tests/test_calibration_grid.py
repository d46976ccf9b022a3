"""The learning-rate procedure (issue 22 item 2): the held-out loss at the end of the control
run decides, a best rate at an edge extends the grid, a neighbour of the choice is one grid
step away; and the step budget (train.budget) and the criterion run's schedule."""

import json
import math
from pathlib import Path

import pytest

from seqbench.calibrate import EXTEND, MAX_EXTENSIONS, calibration_score, choose, neighbour
from seqbench.train import train


def bowl(optimum):
    """A synthetic calibration: the loss at the end is a bowl in log(lr) around ``optimum``."""
    return lambda lr: (0, (math.log10(lr) - math.log10(optimum)) ** 2)


def test_an_optimum_beyond_the_top_extends_the_grid_up_to_twice_and_flags_the_edge():
    chosen, grid, at_edge = choose([1e-3, 3e-3, 1e-2], bowl(1.0))
    assert grid == [1e-3, 3e-3, 1e-2, 3e-2, 9e-2] and len(grid) == 3 + MAX_EXTENSIONS
    assert chosen == 9e-2 and at_edge  # still the largest: flagged, not extended again


def test_an_optimum_one_step_beyond_the_bottom_is_found_and_is_interior():
    chosen, grid, at_edge = choose([1e-3, 3e-3, 1e-2], bowl(3.5e-4))
    # 3.33e-4 is at the new edge, so one more step below (1.11e-4) is tried and loses
    assert grid == [1.11e-4, 3.33e-4, 1e-3, 3e-3, 1e-2]
    assert chosen == 3.33e-4 and not at_edge


def test_an_interior_optimum_leaves_the_grid_alone():
    chosen, grid, at_edge = choose([1e-2, 1e-3, 3e-3], bowl(3e-3))
    assert (chosen, grid, at_edge) == (3e-3, [1e-3, 3e-3, 1e-2], False)


def test_a_rate_that_did_not_complete_never_wins_and_is_not_an_edge_to_extend_past():
    def score(lr):  # the top rate diverged; the middle one is the best that completed
        return (1, math.inf) if lr == 1e-2 else bowl(1.0)(lr)

    chosen, grid, at_edge = choose([1e-3, 3e-3, 1e-2], score)
    assert (chosen, grid, at_edge) == (3e-3, [1e-3, 3e-3, 1e-2], False)
    assert choose([1e-2], lambda lr: (1, math.inf))[0] is None


def test_the_score_is_the_loss_at_the_end_and_a_failed_run_is_last():
    assert calibration_score({"status": "complete", "val_loss": 0.5}) == (0, 0.5)
    assert calibration_score({"status": "diverged", "val_loss": 0.1}) == (1, math.inf)
    assert calibration_score({"status": "complete", "val_loss": float("nan")}) == (0, math.inf)


def test_the_neighbouring_rate_is_one_grid_step_away_and_x3_beyond_the_grid():
    grid = [1e-3, 3e-3, 1e-2]
    assert neighbour(grid, 3e-3, -1) == 1e-3 and neighbour(grid, 3e-3, 1) == 1e-2
    assert neighbour(grid, 1e-2, 1) == pytest.approx(1e-2 * EXTEND)
    assert neighbour(grid, 1e-3, -1) == pytest.approx(1e-3 / EXTEND, rel=1e-2)
    assert neighbour(grid, 3e-3, 0) == 3e-3


RUN = ("model=lstm", "data.seq_len=12", "data.distance=4", "train.eval_every=10",
       "train.steps=20", "study=toy")  # fmt: skip


def _record(summary) -> dict:
    return json.loads((Path(summary["run_dir"]) / "run.json").read_text())


def test_a_budget_of_4_trains_4x_the_steps_on_the_lr_calibrated_at_budget_1(make_cfg):
    grid = ("train.lr_grid=[1e-3,3e-3]", "++train.lr_control={train.steps:20}")
    base = train(make_cfg(*RUN, *grid))
    long = train(make_cfg(*RUN, *grid, "train.budget=4"))
    assert base["step"] == 20 and long["step"] == 80 and long["lr"] == base["lr"]
    runs = Path(base["run_dir"]).parent
    assert len(list(runs.glob("toy.lr-*"))) == len(_record(base)["lr_calibration"]["grid"])
    metrics = (Path(long["run_dir"]) / "metrics.csv").read_text().splitlines()
    header = metrics[0].split(",")
    rows = [dict(zip(header, line.split(","))) for line in metrics[1:]]
    evals = [int(float(r["step"])) for r in rows if r["val_loss"] not in ("", None)]
    assert evals == list(range(10, 81, 10)), evals  # evaluations keep their interval


def test_lr_step_trains_at_the_neighbour_of_the_calibrated_rate(make_cfg):
    grid = ("train.lr_grid=[1e-3,3e-3,1e-2]", "++train.lr_control={train.steps:20}")
    chosen = _record(train(make_cfg(*RUN, *grid)))["lr_calibration"]
    up = train(make_cfg(*RUN, *grid, "train.lr_step=1"))
    cal = _record(up)["lr_calibration"]
    assert cal["chosen"] == chosen["chosen"] and cal["lr_step"] == 1
    assert up["lr"] == neighbour(cal["grid"], cal["chosen"], 1) > cal["chosen"]


def _last_lr(run_dir) -> float:
    lines = (Path(run_dir) / "metrics.csv").read_text().splitlines()
    return float(dict(zip(lines[0].split(","), lines[-1].split(",")))["lr"])


def test_a_criterion_run_keeps_its_rate_after_the_warm_up_and_a_plain_run_decays(make_cfg):
    plain = train(make_cfg(*RUN, "train.warmup=2", "train.min_lr_frac=0.1"))
    crit = train(make_cfg(*RUN, "train.warmup=2", "train.min_lr_frac=0.1",
                          "train.criterion=val_acc", "train.target=0.999"))  # fmt: skip
    assert _last_lr(crit["run_dir"]) == pytest.approx(crit["lr"]) and crit["step"] == 20
    assert _last_lr(plain["run_dir"]) < 0.2 * plain["lr"]


def test_the_calibration_of_a_criterion_run_trains_with_its_constant_rate(make_cfg):
    """A calibration run decaying to 0.1x at its end would favour rates the criterion run,
    constant after warm-up, cannot train at: both keep the rate; a plain run's both decay."""
    grid = ("train.lr_grid=[1e-3,3e-3]", "++train.lr_control={train.steps:20}")
    sched = ("train.warmup=2", "train.min_lr_frac=0.1")
    crit = train(make_cfg(*RUN, *grid, *sched, "train.criterion=val_acc", "train.target=0.999",
                          "study=crit"))  # fmt: skip
    plain = train(make_cfg(*RUN, *grid, *sched, "study=plain"))
    for summary, kept in ((crit, True), (plain, False)):
        cal = _record(summary)["lr_calibration"]
        runs = Path(summary["run_dir"]).parent
        for lr, run in zip(cal["grid"], cal["runs"]):
            assert (_last_lr(runs / run) == pytest.approx(lr)) is kept, (run, lr)


def test_each_replicate_draws_its_own_data(make_cfg):
    a, b = (make_cfg(*RUN, f"seed={s}") for s in (0, 1))
    assert a.data.seed == 0 and b.data.seed == 1
    assert make_cfg(*RUN, "seed=1", "data.seed=5").data.seed == 5  # still settable


def test_the_sections_say_how_the_rate_was_calibrated_and_under_which_schedule():
    import pandas as pd

    from seqbench.studies._common import lr_sentence

    runs = pd.DataFrame({"model": ["gru", "lstm"], "lr": [3e-3, 0.03],
                         "train.lr_grid": [[1e-3, 3e-3, 1e-2]] * 2,
                         "train.lr_control": [{"data.distance": 4}] * 2,
                         "lr_at_edge": [False, True], "lr_grid_searched": ["", "1e-3/.../0.09"],
                         "train.criterion": ["val_acc", "val_acc"]})  # fmt: skip
    text = lr_sentence(runs, "distance")
    assert "under the run's own schedule (constant after warm-up)" in text
    assert "gru 0.003, lstm 0.03" in text and "Still at an edge of the extended grid: lstm" in text
    plain = lr_sentence(runs.drop(columns="train.criterion"), "distance")
    assert "under the run's own schedule;" in plain


def test_every_seed_shares_the_calibration_of_seed_0_even_with_its_data_seed_resolved(make_cfg):
    """A caller that resolves ${seed} into data.seed (prefix_eval builds its masked task so)
    must still reuse seed 0's calibration runs: data seed 0, the same content keys."""
    from seqbench.calibrate import calibration_config
    from seqbench.store import content_key

    grid = ("train.lr_grid=[1e-3,3e-3]", "++train.lr_control={train.steps:20}")
    zero = calibration_config(make_cfg(*RUN, *grid, "seed=0"), 1e-3)
    for seed in (1, 2):
        two = make_cfg(*RUN, *grid, f"seed={seed}", f"data.seed={seed}")  # resolved literal
        assert content_key(calibration_config(two, 1e-3)) == content_key(zero)
