"""Study posenc (C6): the rule on synthetic per-seed accuracy, floor and order tables (every
verdict reachable; inconclusive when nothing learned copy, without a measured floor, where
intervals straddle a threshold and where the no-PE model is censored), the order degree
measured from the best order-blind predictor (a bow floor above the exact one changes it),
the permutation checks kept outside the verdict, and the section."""

import matplotlib
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from seqbench.config import CONF_DIR
from seqbench.report import stability
from seqbench.report.plot import Figures
from seqbench.studies import posenc as study
from seqbench.studies import study_jobs

matplotlib.use("Agg")

FLOOR = 0.25  # the exact order-blind predictor on copy (vocab 16, 16-token segments): ~0.255
SEEDS = (0, 1, 2)


def _row(task, pos, seed, acc, **extra):
    model, family = ("bow", "baseline") if pos == "bow" else ("transformer", "attention")
    return {
        "run": f"{task}-{pos}-{seed}", "study": "posenc", "status": "complete",
        "model": model, "family": family, "task": task, "model.pos": None if pos == "bow" else pos,
        "seed": seed, "val_acc": acc, "test_acc": acc, "vocab_size": 16, "lr": 0.01,
        "steps_to_criterion": 125.0 if acc >= 0.99 else None, "train.steps": 300,
    } | extra  # fmt: skip


def _runs(none_acc, pe_acc=(1.0, 1.0, 1.0), recall=0.95, bow=None, none_censored=False):
    """Runs table: copy accuracy per seed for none (``none_acc``), sinusoidal and rope, and
    the bag of words where ``bow`` gives its accuracies; lag_recall at ``recall``."""
    rows = []
    for pos in ("none", "sinusoidal", "rope"):
        for i, seed in enumerate(SEEDS):
            acc = none_acc[i] if pos == "none" else pe_acc[i] - (pos == "rope") * 0.01
            cen = none_censored and pos == "none"
            rows.append(_row("copy", pos, seed, acc, censored=cen))
            rows.append(_row("lagrecall", pos, seed, recall, censored=False))
    for i, seed in enumerate(SEEDS if bow else ()):
        rows.append(_row("copy", "bow", seed, bow[i], censored=True))
    return pd.DataFrame(rows)


def _order(bidir_error=1e-7, causal_error=0.5, study_name="posenc", seeds=SEEDS, floor=FLOOR):
    """Order rows as rows.csv gives them back (causal as the text True/False), per seed, with
    the exact floor and the two-bag reference where ``floor`` is given."""
    rows = []
    for seed in seeds:
        for pos in ("none", "sinusoidal"):
            for causal in (False, True):
                err = (causal_error if causal else bidir_error) if pos == "none" else 0.3
                base = {"pos": pos, "causal": str(causal), "seed": seed, "run": f"o{seed}"}
                rows.append(base | {"state": "init", "equivariance_error": err,
                                    "probe_r2": 0.1 if pos == "none" else 0.9})  # fmt: skip
                if causal:
                    rows.append(base | {"state": "trained", "equivariance_error": err,
                                        "probe_r2": 0.6 + 0.05 * seed, "val_acc": 0.5})  # fmt: skip
        for name, acc in ((study.EXACT, floor), (study.TWO_BAGS, 0.32)):
            if floor is not None:
                rows.append({"pos": "none", "causal": "True", "seed": seed, "run": f"o{seed}",
                             "state": "floor", "predictor": name,
                             "test_acc": acc + 0.002 * seed})  # fmt: skip
    return pd.DataFrame(rows).assign(
        status="complete", study=study_name, model="transformer", task="copy", seq_len=32
    )


def _verdict(none_acc, pe_acc=(1.0, 1.0, 1.0), bow=None, none_censored=False, **order):
    runs = _runs(none_acc, pe_acc, bow=bow, none_censored=none_censored)
    (v,) = study.verdicts({"runs": runs, "order": _order(**order)})
    assert v.claim == "C6" and v.rule == study.RULE.text
    return v


AT_FLOOR = (FLOOR, FLOOR + 0.01, FLOOR + 0.004)
SOME_ORDER = (0.55, 0.6, 0.65)  # degree 0.4-0.53 over a 0.25 floor


@pytest.mark.parametrize(
    "none_acc, pe_acc, order, expected",
    [
        (AT_FLOOR, (1.0, 1.0, 1.0), {}, "supported"),  # no-PE copy at the floor: no order
        (SOME_ORDER, (1.0, 1.0, 1.0), {}, "nuanced"),  # a causal model learns some
        ((1.0, 0.995, 1.0), (1.0, 1.0, 1.0), {}, "not supported"),  # positions add nothing
        ((0.9, 0.95, 1.0), (0.6, 0.65, 0.62), {}, "not supported"),  # none beats every PE
        # the permutation checks are code checks: a broken one does not move the verdict
        (SOME_ORDER, (1.0, 1.0, 1.0), {"bidir_error": 1e-2}, "nuanced"),
        (SOME_ORDER, (1.0, 1.0, 1.0), {"causal_error": 1e-4}, "nuanced"),
    ],
)
def test_verdicts(none_acc, pe_acc, order, expected):
    assert _verdict(none_acc, pe_acc, **order).verdict == expected


def test_inconclusive_when_nothing_learned_copy():
    v = _verdict(AT_FLOOR, pe_acc=(FLOOR + 0.05, FLOOR + 0.1, FLOOR))  # no encoding learned it
    assert v.verdict == "inconclusive"


def test_inconclusive_without_a_measured_floor():
    """Chance is never assumed as the floor: without the exact predictor's rows or bow's runs
    the degree is not measured, whatever the accuracies say."""
    v = _verdict(AT_FLOOR, floor=None)
    assert v.verdict == "inconclusive" and "no order-blind floor measured" in v.measured
    assert "order degree" not in v.measured


def test_a_measured_bow_floor_above_the_exact_one_changes_the_degree():
    """The floor is the larger of bow's accuracy and the exact predictor's, per seed: a bag of
    words at 0.44 makes a no-PE model at 0.45 learn no order (0.25 would read 0.27)."""
    none = (0.45, 0.46, 0.47)
    exact_only = _verdict(none)
    assert exact_only.verdict == "nuanced" and "order degree of causal no-PE 0.28 [" in (
        exact_only.measured
    )
    assert "set by exact bag-of-prefix predictor 3/3 seeds" in exact_only.measured
    with_bow = _verdict(none, bow=(0.44, 0.45, 0.46))
    assert with_bow.verdict == "supported"
    assert "set by bow (baseline) 3/3 seeds" in with_bow.measured
    assert "exact bag-of-prefix predictor 0.25 [" in with_bow.measured  # the other, below it
    # a bag of words below the exact floor (a short run) does not lower it
    low_bow = _verdict(none, bow=(0.1, 0.11, 0.12))
    assert low_bow.verdict == "nuanced" and "bow (baseline) 0.11 [" in low_bow.measured
    c = study.copy_numbers(_runs(none, bow=(0.1, 0.11, 0.12)), _order())
    assert list(c["floor"].which) == ["exact"] * 3
    assert c["degree"].mean == pytest.approx(((0.45 - 0.25) / 0.75 + (0.46 - 0.252) / 0.748
                                              + (0.47 - 0.254) / 0.746) / 3)  # fmt: skip


def test_a_censored_no_pe_model_is_undecided_not_failed():
    """A no-PE copy run stopped at its cap while still improving is a lower bound: neither
    'learns no order' (supported) nor 'learns some' (nuanced) can be read from it; a cap of
    4x the slowest encoding's steps (125) decides."""
    for none in (AT_FLOOR, SOME_ORDER):
        v = _verdict(none, none_censored=True)
        assert v.verdict == "inconclusive"
        assert "censored, so undecided: none (copy): censored at 300 steps (< 4 x 125)" in (
            v.measured
        )
    runs = _runs(AT_FLOOR, none_censored=True).assign(**{"train.steps": 500})
    (v,) = study.verdicts({"runs": runs, "order": _order()})
    assert v.verdict == "supported" and "censored" not in v.measured


def test_inconclusive_where_intervals_straddle_a_threshold():
    # the order degree reaches both sides of 0.1: one seed learned order, two did not
    v = _verdict((FLOOR, FLOOR + 0.01, 0.6))
    assert v.verdict == "inconclusive" and "order degree of causal no-PE 0.16 [-0.5" in v.measured
    # the gain of positions reaches 0: one seed without positions copies perfectly
    assert _verdict((0.3, 0.99, 1.0)).verdict == "inconclusive"


def test_measured_carries_intervals_and_seeds():
    v = _verdict((0.38, 0.40, 0.42))
    assert "copy accuracy none 0.4 [0.35, 0.45]" in v.measured
    assert "sinusoidal minus none 0.6 [" in v.measured and "(3 seeds)" in v.measured
    assert "position probe R^2 (trained causal no-PE) 0.65 [0.53, 0.77]" in v.measured
    assert "equivariance" not in v.measured and "permutation" not in v.measured
    assert "order-blind floor 0.252 [" in v.measured


def test_a_family_the_rule_does_not_compare_is_named():
    lstm = [_row("copy", "x", s, 0.9, model="lstm", family="recurrent", run=f"lstm-{s}")
            for s in SEEDS]  # fmt: skip
    runs = pd.concat([_runs(SOME_ORDER), pd.DataFrame(lstm)], ignore_index=True)
    (v,) = study.verdicts({"runs": runs, "order": _order()})
    assert v.verdict == "nuanced" and "; recurrent (not compared by this rule): lstm copy 0.9" in (
        v.measured
    )


def test_rule_sentence_carries_the_thresholds():
    text = study.RULE.text
    assert "<= 0.1" in text and "+-0.02" in text and ">= 0.2" in text
    assert "(acc_none - floor) / (1 - floor)" in text and "baseline family" in text


def test_order_checks_are_exact_over_seeds():
    order = _order(1e-7, 0.5)
    order.loc[(order.seed == 2) & (order.causal == "False") & (order.pos == "none"),
              "equivariance_error"] = 3e-5  # fmt: skip
    checks = study.order_checks(order)
    assert checks["bidir_error"] == 3e-5 and checks["causal_error"] == 0.5  # the worst seed
    assert checks["seeds"] == 3 and checks["causal_probe_trained"].mean == pytest.approx(0.65)
    assert study.order_checks(None) == {} and study.order_checks(pd.DataFrame()) == {}
    assert study.order_checks(_order().assign(status="failed")) == {}
    # read whatever study wrote them, as the measurement is one per task
    assert study.order_checks(_order(study_name="other"))["causal_error"] == 0.5


def test_the_floor_experiment_trains_bow_on_the_copy_cells():
    """posenc_floor.yaml repeats posenc_copy's data and training settings for the bag of words:
    checked here, so the two cannot drift apart."""
    with initialize_config_dir(str(CONF_DIR), version_base=None):
        copy = compose("config", overrides=["+experiment=posenc_copy", "model.pos=none"])
        floor = compose("config", overrides=["+experiment=posenc_floor"])
    assert floor.model._target_.endswith("BagOfWords") and floor.study == copy.study
    assert floor.data == copy.data and floor.train == copy.train


def test_no_verdict_without_runs():
    assert study.verdicts({"runs": pd.DataFrame(), "order": _order()}) == []
    runs = _runs(AT_FLOOR)
    assert study.verdicts({"runs": runs[runs["model.pos"] != "none"], "order": _order()}) == []


def test_stability_leaves_out_each_seed():
    tables = {"runs": _runs((FLOOR, FLOOR + 0.01, 0.6)), "order": _order()}
    (v,) = stability.annotate(study, "posenc", tables, study.verdicts(tables))
    assert v.verdict == "inconclusive" and "without seed 2: supported" in v.stability


def test_section_draws_the_figure(tmp_path):
    figs = Figures(tmp_path, {"transformer": "attention"})
    runs = _runs((0.38, 0.40, 0.42), bow=(0.1, 0.11, 0.12), none_censored=True)
    md = study.section({"runs": runs, "order": _order()}, figs)
    assert "![posenc_accuracy](posenc_accuracy.png)" in md
    assert (tmp_path / "posenc_accuracy.png").exists()
    assert "| copy | none | 0.4 [0.35, 0.45] | 3 | 0/3 | 3/3 | > 300 |" in md
    assert "| copy | bow | 0.110 [" in md and study.CPU_CUT in md
    assert "Order degree" in md and "equivariant at 1e-05" in md and "NOT" not in md
    assert "stays below the exact floor" in md and "| 0 | 0.1 | 0.25 | 0.25 | exact | 0.32 |" in md
    assert "shown as a reference only" in md and "Checks of the code" in md
    assert "0.65 [0.53, 0.77]" in md  # the trained probe, over seeds
    md = study.section({"runs": pd.DataFrame(), "order": _order(bidir_error=0.1)}, figs)
    assert "NOT equivariant" in md and "Order degree" not in md
    assert "No completed runs" in study.section({"runs": pd.DataFrame()}, figs)


def test_bench_jobs():
    names = {p: [j.name for j in jobs] for p, jobs in study_jobs(study.__name__).items()}
    floor = ["posenc_floor", "posenc_floor_test"]
    assert names["smoke"] == ["posenc_copy", "posenc_copy_test", "posenc_order", *floor]
    assert names["cpu"] == ["posenc_copy", "posenc_recall", "posenc_floor", "posenc_copy_test",
                            "posenc_recall_test", "posenc_floor_test", "posenc_order"]  # fmt: skip
    assert set(names["gpu"]) == set(names["cpu"])
    jobs = {j.name: j for j in study_jobs(study.__name__)["full"]}
    assert names["full"][: len(names["cpu"])] == names["cpu"]  # the same runs, first
    for name in ("posenc_copy_long", "posenc_floor_long", "posenc_copy_long_test"):
        assert jobs[name].rank == 20 and "train.budget=4" in jobs[name].args
    for name in ("posenc_copy_lr", "posenc_floor_lr_test"):
        assert jobs[name].rank == 30 and "train.lr_step=-1,1" in jobs[name].args
    for profile, jobs in study_jobs(study.__name__).items():
        (order,) = [j for j in jobs if j.name == "posenc_order"]
        assert order.module == "seqbench.measure"
        assert order.args[:4] == ["-m", "what=order", "+experiment=posenc_copy", "model.pos=none"]
        assert profile == "smoke" or "seed=0,1,2" in order.args  # one order run per seed


def test_the_figure_takes_its_colours_from_the_style_and_names_task_and_seeds(tmp_path):
    """Issue 23: hard-coded 'tab:' colours clashed with the family colours, a panel was
    titled 'lagrecall', and the seeds were not stated."""
    from matplotlib.colors import to_rgba

    seen = []
    figs = Figures(tmp_path, {"transformer": "attention"}, on_save=lambda f, _: seen.append(f))
    study.section({"runs": _runs((0.38, 0.40, 0.42))}, figs)
    (fig,) = seen
    for ax in fig.axes:
        bars = [p for c in ax.containers if hasattr(c, "patches") for p in c.patches]
        assert [to_rgba(p.get_facecolor()) for p in bars] == [
            to_rgba(figs.category(t.get_text())) for t in ax.get_xticklabels()
        ]  # each encoding one style colour, the same in both panels
        assert "3 seeds" in ax.get_title()
    assert [ax.get_title().split(",")[0] for ax in fig.axes] == [
        study.TASK_WORDS["copy"],
        study.TASK_WORDS["lagrecall"],
    ]


def test_the_floor_names_are_the_measurements_own():
    from seqbench.measure.order import PREDICTORS

    assert [study.EXACT, study.TWO_BAGS] == list(PREDICTORS)
