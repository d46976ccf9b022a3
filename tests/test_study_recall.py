"""Study recall (C5): cells from run rows (intervals over seeds, the best lr of a swept grid),
reach on intervals, the control rule, every verdict including inconclusive, the section and
the bench jobs, and the verdict on the report's perturbed tables (stability)."""

import matplotlib
import pandas as pd
import pytest
from conftest import measured_test_set

from seqbench.report.plot import Figures
from seqbench.report.stability import annotate, half_budget, without_seed
from seqbench.sets import expand_sets
from seqbench.studies import experiment_files, study_jobs
from seqbench.studies import recall as study

matplotlib.use("Agg")

FAMILIES = {"rnn": "recurrent", "gru": "recurrent", "transformer": "attention", "mingru": "scan"}
DISTANCES = (4, 16, 64, 256)
CAP = 400


def _runs(acc_of, models=("transformer", "gru", "rnn"), distances=DISTANCES, seeds=(0, 1, 2),
          lrs=(3e-3,), grid=(1e-3, 3e-3, 1e-2)):  # fmt: skip
    """Run rows as collect() writes them; acc_of(model, d, seed, lr) -> final accuracy.
    A run at or above 0.9 reached the criterion, sooner the further above it is."""
    rows = []
    for m in models:
        for d in distances:
            for s in seeds:
                for lr in lrs:
                    acc = acc_of(m, d, s, lr)
                    reached = acc >= 0.9
                    rows.append(
                        {"run": f"{m}-{d}-{s}-{lr}", "study": "recall", "status": "complete",
                         "model": m, "family": FAMILIES[m], "task": "lagrecall", "seed": s,
                         "data.distance": d, "data.n_keys": 16, "train.steps": CAP,
                         "train.batch_size": 16, "train.eval_every": 25, "train.eval_batches": 8,
                         "train.lr_grid": list(grid) if len(lrs) == 1 else None, "lr": lr,
                         "val_acc": acc, "test_acc": acc,
                         "steps_to_criterion": int(100 + 50 * d**0.5 * (1 - acc))
                         if reached else None, "stopped_early": reached,
                         "criterion": "val_acc >= 0.9", "device": "cpu"}
                    )  # fmt: skip
    return pd.DataFrame(rows)


def _reach_acc(reaches, noisy=()):
    """Accuracy 0.98 up to each model's reach, 0.07 beyond; ``noisy`` cells split their seeds
    (two above the bar, one below: an interval across it)."""

    def acc(m, d, s, lr):
        if (m, d) in noisy:
            return 0.95 if s < 2 else 0.5
        return 0.98 if d <= reaches[m] else 0.07

    return acc


def _verdict(runs):
    return study.verdict(study.cell_table(study.recall_runs(runs)))


def test_status_reads_the_interval_not_the_mean():
    assert study.status(0.91, 0.99) == "solved"
    assert study.status(0.05, 0.60) == "failed"
    assert study.status(0.50, 0.97) == "undecided"  # the seeds disagree
    assert study.status(float("nan"), float("nan")) == "undecided"  # one seed: no interval


@pytest.mark.parametrize(
    "reaches,distances,expected",
    [
        ({"transformer": 256, "gru": 64, "rnn": 4}, DISTANCES, "supported"),  # 4x
        ({"transformer": 64, "gru": 32, "rnn": 4}, (4, 16, 32, 64), "nuanced"),  # 2x
        ({"transformer": 64, "gru": 64, "rnn": 4}, DISTANCES, "not supported"),
    ],
)
def test_each_verdict_from_reaches(reaches, distances, expected):
    v, measured = _verdict(_runs(_reach_acc(reaches), distances=distances))
    assert v == expected, measured
    assert "reach (d solved at >= 90%)" in measured and "(3 seeds)" in measured


def test_an_undecided_cell_that_could_flip_the_verdict_is_inconclusive():
    runs = _runs(_reach_acc({"transformer": 256, "gru": 64, "rnn": 4}, noisy={("gru", 256)}))
    cells = study.cell_table(study.recall_runs(runs))
    assert study.reach(cells)["gru"] == (64, 256)  # 2 of 3 seeds solve d = 256
    v, measured = study.verdict(cells)
    assert v == "inconclusive" and "gru 64 to 256 (undecided)" in measured
    # an undecided cell where it cannot matter: gru 4-16 is 1/16-1/64 of 256 either way
    runs = _runs(_reach_acc({"transformer": 256, "gru": 4, "rnn": 4}, noisy={("gru", 16)}))
    assert _verdict(runs)[0] == "supported"


def test_the_attention_model_undecided_is_inconclusive_where_it_matters():
    acc = _reach_acc({"transformer": 16, "gru": 16, "rnn": 4}, noisy={("transformer", 64)})
    assert _verdict(_runs(acc))[0] == "inconclusive"  # reach 16 (level) or 64 (4x)


def test_a_failed_control_drops_the_model_and_an_empty_side_is_inconclusive():
    # the rnn fails even d = 4: left out, the gru still decides
    runs = _runs(_reach_acc({"transformer": 256, "gru": 64, "rnn": 0}))
    v, measured = _verdict(runs)
    assert v == "supported" and "left out, control d=4 not solved: rnn" in measured
    # every recurrence fails its control: no side to compare with
    runs = _runs(_reach_acc({"transformer": 256, "gru": 0, "rnn": 0}))
    v, measured = _verdict(runs)
    assert v == "inconclusive" and "gru, rnn" in measured


def test_a_model_run_over_fewer_distances_may_reach_further():
    runs = pd.concat(
        [
            _runs(
                _reach_acc({"transformer": 256, "gru": 16, "rnn": 4}),
                models=("transformer", "gru", "rnn"),
            ),
            _runs(_reach_acc({"mingru": 64}), models=("mingru",), distances=(4, 16, 64)),
        ]
    )
    cells = study.cell_table(study.recall_runs(runs))
    assert study.reach(cells)["mingru"] == (64, 256)  # solved all it was given
    assert study.verdict(cells)[0] == "inconclusive"
    at = (runs.model == "mingru") & (runs["data.distance"] == 64)
    runs.loc[at, ["val_acc", "test_acc"]] = 0.1
    assert _verdict(runs)[0] == "supported"  # mingru fails at 64: reach 16 either way


def test_no_verdict_without_both_families():
    runs = _runs(_reach_acc({"transformer": 256}), models=("transformer",))
    assert _verdict(runs) is None
    assert study.verdicts({"runs": pd.DataFrame()}) == []


def test_the_best_lr_of_a_swept_grid_is_kept_per_cell():
    # at 1e-2 every seed reaches the criterion; at 1e-3 none does
    runs = _runs(lambda m, d, s, lr: 0.98 if lr > 5e-3 else 0.3, lrs=(1e-3, 1e-2))
    ok = study.recall_runs(runs)
    assert set(ok.lr) == {1e-2} and len(ok) == len(runs) // 2
    cells = study.cell_table(ok)
    assert (cells.reached == 3).all() and (cells.lr == "0.01").all()


def test_steps_count_a_censored_seed_at_the_cap():
    runs = _runs(_reach_acc({"transformer": 256, "gru": 16, "rnn": 4}, noisy={("gru", 64)}))
    cells = study.cell_table(study.recall_runs(runs)).set_index(["model", "distance"])
    c = cells.loc[("gru", 64)]
    # a t interval over 2 seeds at ~200 steps and one at the cap reaches past the cap
    assert c.reached == 2 and c.seeds == 3 and c.steps_hi > CAP and c.status == "undecided"
    assert cells.loc[("gru", 256)].steps == CAP  # nothing reached: the cap, a lower bound
    rows = {
        (r.model, r.distance): r for r in study.cell_table(study.recall_runs(runs)).itertuples()
    }
    assert study.steps_text(rows[("gru", 64)]).endswith("(1/3 seeds at the cap)")
    assert study.steps_text(rows[("gru", 256)]) == f"> {CAP}"
    assert study.steps_text(rows[("transformer", 256)]).count("[") == 1  # every seed: interval


def _tables(runs):
    """runs plus curves (evaluations every 50 steps): what the stability column reads."""
    curves = [
        {"run": r.run, "study": "recall", "model": r.model, "family": r.family,
         "task": "lagrecall", "step": step, "val_loss": 1.0,
         "val_acc": r.val_acc * min(1.0, step / (r.steps_to_criterion or CAP))}
        for r in runs.itertuples() for step in range(50, CAP + 1, 50)
    ]  # fmt: skip
    return {"runs": runs, "curves": pd.DataFrame(curves), "test_set": measured_test_set(runs)}


def test_the_verdict_runs_on_the_perturbed_tables_of_the_stability_column():
    tables = _tables(_runs(_reach_acc({"transformer": 256, "gru": 64, "rnn": 4})))
    (v,) = study.verdicts(tables)
    assert v.verdict == "supported" and v.rule == study.RULE.text
    for perturbed in (without_seed(tables, 1), half_budget(tables)):
        assert len(study.verdicts(perturbed)) == 1  # fewer seeds, fewer evaluations: no error
    (annotated,) = annotate(study, "recall", tables, [v])
    assert annotated.stability  # "stable" or what flips it


def test_section_draws_both_panels_and_the_table(tmp_path):
    runs = _runs(_reach_acc({"transformer": 256, "gru": 64, "rnn": 4}, noisy={("gru", 256)}))
    tables = {"runs": runs, "test_set": measured_test_set(runs)}
    md = study.section(tables, Figures(tmp_path, FAMILIES))
    assert "![recall_vs_distance](recall_vs_distance.png)" in md
    assert (tmp_path / "recall_vs_distance.png").exists()
    assert "calibrated once per model on the control" in md and "CPU profile" in md
    assert "| 256 | gru |" in md and "> 400" in md and "Control d = 4: solved by every model" in md
    assert "No completed runs" in study.section({"runs": pd.DataFrame()}, None)


def _stuck(m, d, s, lr):
    """The reviewer's recall table: the GRU at chance at d=16 until its cap (censored), the
    RNN failing from d=16 on (settled), the Transformer solving every distance (its slowest
    seed at d=16 needs 175 steps)."""
    return 0.07 if (m, d) == ("gru", 16) or (m == "rnn" and d >= 16) else 0.98


@pytest.mark.parametrize("budget,expected", [(1, "undecided"), (4, "failed")])
def test_a_4x_run_is_censored_against_its_own_cap(budget, expected):
    """A 4x run's cap (collect reads train.steps x train.budget) is 1,600 steps, >= 4 x the
    175 the slowest solver needed, so a GRU still at chance there failed; at 1x (cap 400 <
    700) it is censored, so undecided, and so is the verdict."""
    runs = _runs(_stuck).assign(**{"train.budget": budget, "train.steps": CAP * budget})
    runs["censored"] = (runs.model == "gru") & (runs["data.distance"] == 16)
    runs.loc[
        (runs.model == "transformer") & (runs["data.distance"] == 16), "steps_to_criterion"
    ] = [125, 150, 175]
    cells = study.cell_table(study.recall_runs(runs)).set_index(["model", "distance"])
    assert cells.at[("gru", 16), "cap"] == CAP * budget
    assert cells.at[("gru", 16), "status"] == expected
    v, measured = _verdict(runs)
    if budget == 1:  # gru reach 4-256 against the Transformer's 256: either way
        assert v == "inconclusive" and "gru d=16: censored at 400 steps (< 4 x 175)" in measured
    else:
        assert v == "supported" and "censored" not in measured  # reach 256 against 4
    # the cap the report's collect makes of a run's config: train.steps x train.budget
    from seqbench.report.collect import capped

    assert capped({"train.steps": CAP, "train.budget": budget})["train.steps"] == CAP * budget
    assert capped({"train.steps": CAP})["train.steps"] == CAP  # older runs: budget 1


def test_bench_jobs_cover_the_control_to_long_distances_with_three_seeds():
    from tests.conftest import compose_cfg

    jobs = study_jobs(study.__name__)
    names = {p: [j.name for j in js] for p, js in jobs.items()}
    assert names == {p: ["recall", "recall_test"] for p in ("smoke", "cpu", "gpu")} | {
        "full": ["recall", "recall_test", "recall_long", "recall_long_test"]
    }  # fmt: skip
    full = {j.name: j for j in jobs["full"]}
    for cpu in jobs["cpu"]:  # the cpu runs, found again by content key
        assert full[cpu.name].args == cpu.args
    for name, rank, extra in (("recall_long", 40, "train.budget=4"),):
        train, test = full[name], full[f"{name}_test"]
        assert train.rank == test.rank == rank and extra in train.args and extra in test.args
        assert train.entry == "train" and test.entry == "measure" and "what=test_set" in test.args
        # every distance the verdict reads: the experiment's sweep, every seed
        assert not [a for a in train.args if a.startswith(("hydra.sweeper", "seed="))]
    cfg = compose_cfg(["+experiment=recall"])
    assert cfg.train.criterion == "val_acc" and cfg.train.lr_control["data.distance"] == 4
    assert len(cfg.train.lr_grid) >= 3
    yaml = experiment_files()["recall"].read_text()
    assert "seed: 0,1,2" in yaml and "{distance:4," in yaml and "{distance:256," in yaml
    jobs = study_jobs(study.__name__)
    assert "seed=" not in " ".join(jobs["cpu"][0].args)  # every seed of the yaml
    gpu = " ".join(expand_sets(jobs["gpu"][0].args))  # model=@set written out
    assert "{distance:1024," in gpu and "mingru" in gpu and "minlstm" in gpu and "seed=" not in gpu
    assert jobs["gpu"][0].cap_s and jobs["gpu"][0].rank < 9


def test_the_figure_rings_censored_cells_and_tells_close_reds_apart(tmp_path):
    """Issue 23: censored triangles hid the line ends, the 'step cap' label sat on a point,
    and lstm/rnn differed only by a close red: hollow rings, a legend entry, one shape each."""
    seen = []
    runs = _runs(lambda m, d, s, lr: 0.99 if d <= 16 or m == "transformer" else 0.1,
                 models=("transformer", "gru", "mingru", "rnn"))  # fmt: skip
    study.section({"runs": runs}, Figures(tmp_path, FAMILIES, on_save=lambda f, _: seen.append(f)))
    (fig,) = seen
    steps = fig.axes[1]
    rings = [ln for ln in steps.get_lines() if ln.get_label() == "_censored"]
    assert rings and all(ln.get_markerfacecolor() == "none" for ln in rings)
    assert not [t for t in steps.texts if "cap" in t.get_text()]  # the cap is a legend entry
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any(t.startswith("step cap (") for t in legend)
    shapes = {
        ln.get_label(): ln.get_marker() for ln in steps.get_lines() if ln.get_label()[0] != "_"
    }
    assert len(set(shapes.values())) == len(shapes) >= 4
