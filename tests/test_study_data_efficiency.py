"""Data efficiency (C7): the gap, steps to threshold, every verdict, and the section's figure."""

import math

import matplotlib
import pandas as pd
import pytest

from seqbench.report.plot import Figures
from seqbench.studies import data_efficiency as de

matplotlib.use("Agg")

FAMILY = {"rnn": "recurrent", "lstm": "recurrent", "gru": "recurrent", "transformer": "attention",
          "mingru": "scan"}  # fmt: skip
NS = (10, 100, 1000, 10000)


def _losses(curves: dict):
    """A loss table: model -> final loss at each N of NS."""
    return pd.DataFrame(
        [
            {"model": m, "family": FAMILY[m], "n_train": n, "loss": v[i], "loss_std": 0.0,
             "seeds": 1}
            for m, v in curves.items()
            for i, n in enumerate(NS)
        ]
    )  # fmt: skip


HUNGRY = (5, 3, 2.1, 1.5)  # above the LSTM's (4, 2.5, 2.0, 1.8) at small N, below at large N
SATED = (3, 2.5, 2.4, 2.35)  # below at N=10, and the gap grows


@pytest.mark.parametrize(
    "tr,steps,expected",
    [
        (HUNGRY, {"lstm": 300, "transformer": 100}, "supported"),  # (a) and (b)
        (HUNGRY, {"lstm": 100, "transformer": 300}, "nuanced"),  # (a) only
        (SATED, {"lstm": 300, "transformer": 100}, "nuanced"),  # (b) only
        (SATED, {"lstm": 100, "transformer": 300}, "not supported"),  # neither
        (HUNGRY, None, "supported"),  # no curves: (a) alone decides
        (SATED, None, "not supported"),
        (HUNGRY, {"lstm": None, "transformer": 100}, "nuanced"),  # the LSTM never got there
    ],
)
def test_data_efficiency_verdicts(tr, steps, expected):
    v, measured = de.verdict(_losses({"transformer": tr, "lstm": (4, 2.5, 2.0, 1.8)}), steps)
    assert v == expected
    if tr is HUNGRY:
        assert "crossing at N 1000–10000" in measured
        assert "gap transformer - best of lstm: +1.000 nats at N=10" in measured


def test_part_b_needs_the_lstm():
    # without an LSTM part (b) is undecided, whatever the other recurrences' steps
    table = _losses({"transformer": SATED, "gru": (4, 2.5, 2.0, 1.8)})
    v, _ = de.verdict(table, {"gru": 300, "transformer": 100})
    assert v == "not supported"


def test_the_gap_is_to_the_best_recurrence_scans_included():
    table = _losses({"transformer": HUNGRY, "lstm": (9, 9, 9, 9), "mingru": (4, 2.5, 2.0, 1.8)})
    g = de.gaps(table)
    assert list(g) == pytest.approx([1.0, 0.5, 0.1, -0.3])
    assert de.crossings(g) == ["1000–10000"]


def test_no_verdict_without_both_kinds_or_two_pool_sizes():
    assert de.verdict(pd.DataFrame(), None) is None
    assert de.verdict(_losses({"lstm": HUNGRY, "gru": SATED}), None) is None
    one_n = _losses({"transformer": HUNGRY, "lstm": SATED}).query("n_train == 10")
    assert de.verdict(one_n, None) is None


def _tables(with_curves=True):
    """Run-like tables: transformer and lstm at each N, eval curves at every run."""
    runs, curves = [], []
    for m, finals in (("transformer", HUNGRY), ("lstm", (4, 2.5, 2.0, 1.8))):
        for n, final in zip(NS, finals):
            run = f"{m}-{n}"
            runs.append(
                {"run": run, "study": "data_efficiency", "status": "complete", "model": m,
                 "family": FAMILY[m], "task": "text", "data.n_train": n, "seed": 0,
                 "val_loss": final, "vocab_size": 100}
            )  # fmt: skip
            for step in (50, 100, 150, 200):  # the transformer falls fast, the lstm slowly
                fast = m == "transformer"
                val = final + (0.0 if fast and step >= 100 else 2.0 * (200 - step) / 150)
                curves.append({"run": run, "model": m, "step": step, "val_loss": val})
    runs.append(runs[0] | {"run": "failed", "status": "failed", "data.n_train": 10**6})
    return {"runs": pd.DataFrame(runs), "curves": pd.DataFrame(curves if with_curves else [])}


def test_steps_to_threshold_from_curves():
    runs = pd.DataFrame(
        [
            {"run": m, "study": "data_efficiency", "status": "complete", "model": m,
             "data.n_train": 100, "vocab_size": 100}
            for m in ("a", "b")
        ]
    )  # fmt: skip
    steps = [25, 50, 75, 100]
    curves = pd.DataFrame(
        [
            {"run": m, "model": m, "step": s, "val_loss": v}
            for m, vals in (("a", (4, 3, 2.5, 2.0)), ("b", (3, 2.2, 2.1, 2.05)))
            for s, v in zip(steps, vals)
        ]
    )
    found, tau = de.steps_to_threshold({"runs": runs, "curves": curves})
    # worst best = 2.05; tau = 2.05 + slack (ln 100 - 2.05)
    assert tau == pytest.approx(2.05 + de.RULE.slack * (math.log(100) - 2.05), abs=1e-9)
    assert found == {"a": 100, "b": 50}


def test_verdicts_from_run_tables():
    (v,) = de.verdicts(_tables())
    assert v.claim == "C7" and v.rule == de.RULE.text and f"{de.RULE.slack:.0%}" in v.rule
    assert v.verdict == "supported"  # hungry, and the lstm needs more steps at N=10000
    assert "steps to threshold lstm 200, transformer 100" in v.measured
    assert de.verdicts({"runs": pd.DataFrame(), "curves": pd.DataFrame()}) == []


def test_section_draws_the_figure(tmp_path):
    md = de.section(_tables(), Figures(tmp_path, FAMILY))
    assert (tmp_path / "data_efficiency.png").stat().st_size > 1000
    assert "(data_efficiency.png)" in md and "Steps to reach held-out loss tau" in md
    no_curves = de.section(_tables(with_curves=False), Figures(tmp_path, FAMILY))
    assert "Steps to reach" not in no_curves
    empty = de.section({"runs": pd.DataFrame(), "curves": pd.DataFrame()}, Figures(tmp_path, {}))
    assert "No completed runs" in empty


def test_bench_jobs():
    for profile in ("smoke", "cpu", "gpu"):
        (job,) = de.BENCH[profile]
        assert job.name == "data_efficiency" and "+experiment=data_efficiency" in job.args
