"""Study posenc (C6): the rule on synthetic accuracy and order tables (every verdict
reachable), the chance-corrected order degree, the order checks, and the section."""

import matplotlib
import pandas as pd
import pytest

from seqbench.report.plot import Figures
from seqbench.studies import posenc as study

matplotlib.use("Agg")


def _acc(none_acc):
    rows = [
        {"task": "copy", "pos": p, "acc": a, "acc_std": 0.0, "seeds": 2, "vocab_size": 16}
        for p, a in (("none", none_acc), ("sinusoidal", 1.0), ("rope", 0.98))
    ]
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    "none_acc,bidir_error,expected",
    [
        (0.07, 1e-7, "supported"),  # no-PE copy at chance 1/15: no order at all
        (0.40, 1e-7, "nuanced"),  # bag of words, but the causal model learns some order
        (0.40, 1e-2, "not supported"),  # the bidirectional model is not even equivariant
        (1.00, 1e-7, "not supported"),  # positions add nothing
    ],
)
def test_verdicts(none_acc, bidir_error, expected):
    checks = {"bidir_error": bidir_error, "causal_error": 0.8}
    assert study.verdict(_acc(none_acc), checks)[0] == expected


def test_a_causal_model_that_stays_equivariant_is_no_nuance():
    checks = {"bidir_error": 1e-7, "causal_error": 1e-4}  # below RULE.broken
    assert study.verdict(_acc(0.40), checks)[0] == "supported"


def test_order_degree_is_chance_corrected():
    assert study.order_degree(_acc(1 / 15)) == pytest.approx(0.0, abs=1e-9)
    assert study.order_degree(_acc(1.0)) == pytest.approx(1.0)
    at_chance = _acc(0.5).assign(acc=1 / 15)  # nothing learned copy: no degree, no verdict
    assert study.order_degree(at_chance) is None
    assert study.verdict(at_chance, {"bidir_error": 1e-7, "causal_error": 0.8}) is None
    assert study.order_degree(_acc(0.5)[lambda d: d.pos != "none"]) is None


def test_rule_sentence_carries_the_thresholds():
    text = study.RULE.text
    assert "error >= 1e-05" in text and "degree > 0.1" in text and "error > 0.001" in text


def _order(bidir_error=1e-7, causal_error=0.5, study_name="posenc"):
    """Order rows as rows.csv gives them back: causal as the text True/False."""
    rows = []
    for pos in ("none", "sinusoidal"):
        for causal in (False, True):
            err = (causal_error if causal else bidir_error) if pos == "none" else 0.3
            rows.append(
                {
                    "pos": pos,
                    "causal": str(causal),
                    "state": "init",
                    "equivariance_error": err,
                    "probe_r2": 0.1 if pos == "none" else 0.9,
                }
            )
            if causal:
                rows.append(
                    {
                        "pos": pos,
                        "causal": "True",
                        "state": "trained",
                        "equivariance_error": err,
                        "probe_r2": 0.7,
                        "val_acc": 0.5,
                    }
                )
    return pd.DataFrame(rows).assign(
        status="complete", study=study_name, model="transformer", task="copy", seq_len=32
    )


def test_order_checks_read_the_no_pe_rows():
    checks = study.order_checks(_order(1e-7, 0.5))
    assert checks["bidir_error"] == 1e-7 and checks["causal_error"] == 0.5
    assert checks["causal_probe_trained"] == 0.7 and checks["bidir_probe"] == 0.1
    assert study.order_checks(None) == {} and study.order_checks(pd.DataFrame()) == {}
    failed = _order().assign(status="failed")
    assert study.order_checks(failed) == {}
    # read whatever study wrote them, as the measurement is one per task
    assert study.order_checks(_order(study_name="other"))["causal_error"] == 0.5


def _runs(none_acc):
    return pd.DataFrame(
        [
            {
                "run": f"{task}-{pos}-{seed}",
                "study": "posenc",
                "status": "complete",
                "model": "transformer",
                "family": "attention",
                "task": task,
                "model.pos": pos,
                "seed": seed,
                "val_acc": a,
                "vocab_size": 16,
            }
            for task in ("copy", "lagrecall")
            for pos, a in (("none", none_acc), ("sinusoidal", 1.0), ("rope", 0.95))
            for seed in (0, 1)
        ]
    )


def test_verdicts_from_tables():
    (v,) = study.verdicts({"runs": _runs(1 / 15), "order": _order()})
    assert v.claim == "C6" and v.verdict == "supported" and v.rule == study.RULE.text
    assert "order degree of causal no-PE 0.00" in v.measured and "R^2" in v.measured
    assert study.verdicts({"runs": _runs(0.4), "order": _order(bidir_error=0.1)})[0].verdict == (
        "not supported"
    )
    assert study.verdicts({"runs": _runs(0.4)}) == []  # no order checks: not measured
    assert study.verdicts({"runs": pd.DataFrame(), "order": _order()}) == []


def test_section_draws_the_figure(tmp_path):
    figs = Figures(tmp_path, {"transformer": "attention"})
    md = study.section({"runs": _runs(0.4), "order": _order()}, figs)
    assert "![posenc_accuracy](posenc_accuracy.png)" in md
    assert (tmp_path / "posenc_accuracy.png").exists()
    assert "Order degree" in md and "equivariant at 1e-05" in md and "NOT" not in md
    md = study.section({"runs": pd.DataFrame(), "order": _order(bidir_error=0.1)}, figs)
    assert "NOT equivariant" in md and "Order degree" not in md
    assert "No completed runs" in study.section({"runs": pd.DataFrame()}, figs)


def test_bench_jobs():
    names = {p: [j.name for j in jobs] for p, jobs in study.BENCH.items()}
    assert names["smoke"] == ["posenc_copy", "posenc_order"]
    assert names["cpu"] == names["gpu"] == ["posenc_copy", "posenc_recall", "posenc_order"]
    for jobs in study.BENCH.values():
        order = jobs[-1]
        assert order.module == "seqbench.measure"
        assert order.args[:2] == ["what=order", "+experiment=posenc_copy"]
