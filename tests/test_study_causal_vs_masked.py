"""Causal versus masked at equal counted compute (C8): every verdict, the budget table, figure."""

import matplotlib
import pandas as pd
import pytest

from seqbench.report.plot import Figures
from seqbench.studies import causal_vs_masked as cvm

matplotlib.use("Agg")


def _objectives(causal, masked, flops_masked=1.0, prefixes=(4, 8)):
    """objectives rows as prefix_eval writes them: one per (objective, budget, prefix)."""
    rows = []
    for i, (c, m) in enumerate(zip(causal, masked)):
        steps = 100 * 2**i
        for obj, loss, flops, targets in (
            ("causal", c, 1e9 * steps, 1024),
            ("masked", m, flops_masked * 1e9 * steps, 154),
        ):
            rows += [
                {"run": f"{obj}{steps}", "study": "causal_vs_masked", "status": "complete",
                 "model": "transformer", "family": "attention", "objective": obj,
                 "steps": steps, "prefix_len": p, "prefix_loss": loss, "prefix_acc": 0.3,
                 "train_flops": flops, "targets_per_pass": targets, "tokens_per_pass": 1024,
                 "val_loss": loss}
                for p in prefixes
            ]  # fmt: skip
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    "causal,masked,flops,expected",
    [
        ((2.4, 2.2, 2.0), (3.0, 2.9, 2.8), 1.0, "supported"),
        ((2.4, 2.2, 2.0), (2.3, 2.3, 2.3), 1.0, "nuanced"),
        ((2.4, 2.2, 2.0), (3.0, 2.9, 2.8), 1.5, "nuanced"),  # compute not matched
        ((3.0, 2.9, 2.8), (2.4, 2.2, 2.0), 1.0, "not supported"),
    ],
)
def test_objective_verdicts(causal, masked, flops, expected):
    v, measured = cvm.verdict(cvm.budget_table(_objectives(causal, masked, flops)))
    assert v == expected and "6.6x" in measured and "at 3 budgets" in measured
    assert ("compute not matched" in measured) == (flops > 1 + cvm.RULE.matched)


def test_flops_within_the_matched_share_count_as_equal():
    near = 1 + cvm.RULE.matched / 2
    v, measured = cvm.verdict(cvm.budget_table(_objectives((2.0,), (3.0,), near)))
    assert v == "supported" and "matched within 2.5%" in measured


def test_no_verdict_without_both_objectives():
    causal_only = _objectives((2.0, 1.9), (3.0, 2.9)).query("objective == 'causal'")
    assert cvm.verdict(cvm.budget_table(causal_only)) is None
    assert cvm.verdicts({"objectives": causal_only}) == []
    assert cvm.verdicts({}) == []  # prefix_eval never ran: no table at all


def test_incomplete_rows_are_left_out():
    rows = _objectives((2.4, 2.2), (3.0, 2.9))
    rows.loc[(rows.objective == "masked") & (rows.steps == 200), "status"] = "failed"
    table = cvm.budget_table(rows)
    assert len(table) == 3  # the failed budget keeps only its causal row
    (v,) = cvm.verdicts({"objectives": rows})
    assert v.claim == "C8" and v.verdict == "supported" and "at 1 budgets" in v.measured
    assert v.rule == cvm.RULE.text and f"{cvm.RULE.matched:.0%}" in v.rule


def test_section_draws_the_figure(tmp_path):
    tables = {"objectives": _objectives((2.4, 2.2, 2.0), (3.0, 2.9, 2.8))}
    md = cvm.section(tables, Figures(tmp_path, {"transformer": "attention"}))
    assert (tmp_path / "causal_vs_masked.png").stat().st_size > 1000
    assert "(causal_vs_masked.png)" in md
    assert "encoder on 15% masked tokens" in md  # 154 / 1024 targets per pass, as measured
    empty = cvm.section({}, Figures(tmp_path, {}))
    assert "No completed prefix_eval" in empty


def test_bench_jobs():
    for profile in ("smoke", "cpu", "gpu"):
        (job,) = cvm.BENCH[profile]
        assert job.name == "causal_vs_masked" and job.module == "seqbench.measure"
        assert job.args[:3] == ["-m", "what=prefix_eval", "+experiment=causal_vs_masked"]
