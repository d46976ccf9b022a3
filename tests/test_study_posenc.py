"""Study posenc (C6): the rule on synthetic per-seed accuracy and order tables (every verdict
reachable, inconclusive when nothing learned copy and where intervals straddle a threshold),
the chance-corrected order degree per seed, the exact order checks, and the section."""

import matplotlib
import pandas as pd
import pytest

from seqbench.report import stability
from seqbench.report.plot import Figures
from seqbench.studies import posenc as study
from seqbench.studies import study_jobs

matplotlib.use("Agg")

CHANCE = 1 / 15  # copy tokens come from [1, 16)
SEEDS = (0, 1, 2)


def _runs(none_acc, pe_acc=(1.0, 1.0, 1.0), recall=0.95):
    """Runs table: copy accuracy per seed for none (``none_acc``), sinusoidal and rope."""
    rows = []
    for task in ("copy", "lagrecall"):
        for pos in ("none", "sinusoidal", "rope"):
            for i, seed in enumerate(SEEDS):
                if task == "copy":
                    acc = none_acc[i] if pos == "none" else pe_acc[i] - (pos == "rope") * 0.01
                else:
                    acc = recall
                rows.append({
                    "run": f"{task}-{pos}-{seed}", "study": "posenc", "status": "complete",
                    "model": "transformer", "family": "attention", "task": task,
                    "model.pos": pos, "seed": seed, "val_acc": acc, "test_acc": acc,
                    "vocab_size": 16,
                    "lr": 0.01, "steps_to_criterion": 100.0 if acc >= 0.99 else None,
                })  # fmt: skip
    return pd.DataFrame(rows)


def _order(bidir_error=1e-7, causal_error=0.5, study_name="posenc", seeds=SEEDS):
    """Order rows as rows.csv gives them back (causal as the text True/False), per seed."""
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
    return pd.DataFrame(rows).assign(
        status="complete", study=study_name, model="transformer", task="copy", seq_len=32
    )


def _verdict(none_acc, pe_acc=(1.0, 1.0, 1.0), **order):
    (v,) = study.verdicts({"runs": _runs(none_acc, pe_acc), "order": _order(**order)})
    assert v.claim == "C6" and v.rule == study.RULE.text
    return v


AT_CHANCE = (CHANCE, CHANCE + 0.01, CHANCE)


@pytest.mark.parametrize(
    "none_acc, pe_acc, order, expected",
    [
        (AT_CHANCE, (1.0, 1.0, 1.0), {}, "supported"),  # no-PE copy at chance: no order
        ((0.38, 0.40, 0.42), (1.0, 1.0, 1.0), {}, "nuanced"),  # a causal model learns some
        ((0.38, 0.40, 0.42), (1.0, 1.0, 1.0), {"bidir_error": 1e-2}, "not supported"),
        ((1.0, 0.995, 1.0), (1.0, 1.0, 1.0), {}, "not supported"),  # positions add nothing
        ((0.9, 0.95, 1.0), (0.5, 0.6, 0.55), {}, "not supported"),  # none beats every PE
        # a causal model that stays equivariant cannot have learned order: no nuance
        ((0.38, 0.40, 0.42), (1.0, 1.0, 1.0), {"causal_error": 1e-4}, "supported"),
    ],
)
def test_verdicts(none_acc, pe_acc, order, expected):
    assert _verdict(none_acc, pe_acc, **order).verdict == expected


def test_inconclusive_when_nothing_learned_copy():
    at_chance = (CHANCE, CHANCE, CHANCE)
    v = _verdict(at_chance, pe_acc=(CHANCE + 0.05, CHANCE + 0.1, CHANCE))  # the control fails
    assert v.verdict == "inconclusive"


def test_inconclusive_where_intervals_straddle_a_threshold():
    # the order degree reaches both sides of 0.1: one seed learned order, two did not
    v = _verdict((CHANCE, CHANCE + 0.01, 0.5))
    assert v.verdict == "inconclusive" and "order degree of causal no-PE 0.16 [-0.5" in v.measured
    # the gain of positions reaches 0: one seed without positions copies perfectly
    assert _verdict((0.3, 0.99, 1.0)).verdict == "inconclusive"


def test_measured_carries_intervals_and_seeds():
    v = _verdict((0.38, 0.40, 0.42))
    assert "copy accuracy none 0.4 [0.35, 0.45]" in v.measured
    assert "sinusoidal minus none 0.6 [" in v.measured and "(3 seeds)" in v.measured
    assert "position probe R^2 (trained causal no-PE) 0.65 [0.53, 0.77]" in v.measured
    assert "3 seeds: bidirectional no-PE (worst) 1.0e-07" in v.measured


def test_order_degree_pairs_seeds_and_is_chance_corrected():
    c = study.copy_numbers(_runs((CHANCE, CHANCE, CHANCE)))
    assert c["best"] == "sinusoidal" and c["degree"].mean == pytest.approx(0.0, abs=1e-9)
    assert study.copy_numbers(_runs((1.0, 1.0, 1.0)))["degree"].mean == pytest.approx(1.0)
    runs = _runs(AT_CHANCE)
    assert study.copy_numbers(runs[runs["model.pos"] != "none"]) is None
    assert study.copy_numbers(runs[runs.task != "copy"]) is None


def test_rule_sentence_carries_the_thresholds():
    text = study.RULE.text
    assert "error >= 1e-05" in text and "<= 0.1" in text and "error > 0.001" in text
    assert "+-0.02" in text and ">= 0.2" in text


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


def test_no_verdict_without_runs_or_order_checks():
    assert study.verdicts({"runs": _runs(AT_CHANCE)}) == []
    assert study.verdicts({"runs": pd.DataFrame(), "order": _order()}) == []


def test_stability_leaves_out_each_seed():
    tables = {"runs": _runs((CHANCE, CHANCE + 0.01, 0.5)), "order": _order()}
    (v,) = stability.annotate(study, "posenc", tables, study.verdicts(tables))
    assert v.verdict == "inconclusive" and "without seed 2: supported" in v.stability


def test_section_draws_the_figure(tmp_path):
    figs = Figures(tmp_path, {"transformer": "attention"})
    md = study.section({"runs": _runs((0.38, 0.40, 0.42)), "order": _order()}, figs)
    assert "![posenc_accuracy](posenc_accuracy.png)" in md
    assert (tmp_path / "posenc_accuracy.png").exists()
    assert "| copy | none | 0.4 [0.35, 0.45] | 3 | 0/3 |" in md and study.CPU_CUT in md
    assert "Order degree" in md and "equivariant at 1e-05" in md and "NOT" not in md
    assert "0.65 [0.53, 0.77]" in md  # the trained probe, over seeds
    md = study.section({"runs": pd.DataFrame(), "order": _order(bidir_error=0.1)}, figs)
    assert "NOT equivariant" in md and "Order degree" not in md
    assert "No completed runs" in study.section({"runs": pd.DataFrame()}, figs)


def test_bench_jobs():
    names = {p: [j.name for j in jobs] for p, jobs in study_jobs(study.__name__).items()}
    assert names["smoke"] == ["posenc_copy", "posenc_copy_test", "posenc_order"]
    assert names["cpu"] == names["gpu"] == ["posenc_copy", "posenc_recall", "posenc_copy_test",
                                            "posenc_recall_test", "posenc_order"]  # fmt: skip
    for profile, jobs in study_jobs(study.__name__).items():
        order = jobs[-1]
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
