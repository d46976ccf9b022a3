"""Loss by position (C5, Kaplan Fig. 7): late gain, verdict, the runs it reads, the figure."""

import matplotlib
import pandas as pd
import pytest

from seqbench.report.plot import Figures
from seqbench.studies import text_positions as tp

matplotlib.use("Agg")

FAMILY = {
    "rnn": "recurrent",
    "lstm": "recurrent",
    "gru": "recurrent",
    "transformer": "attention",
    "mingru": "scan",
    "bow": "baseline",
}


def _curves(slopes, T=64, study="s"):
    """Position curves loss(t) = 3 - k t / T: slope k is the late gain times 2."""
    rows = [
        {"study": study, "seq_len": T, "model": m, "family": FAMILY[m], "position": t,
         "loss": 3 - k * t / T, "seeds": 1}
        for m, k in slopes.items()
        for t in range(T)
    ]  # fmt: skip
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    "slopes,expected",
    [
        ({"transformer": 1.0, "lstm": 0.2, "gru": 0.5}, "supported"),
        ({"transformer": 0.4, "lstm": 0.2, "gru": 0.5}, "nuanced"),
        ({"transformer": 0.1, "lstm": 0.2, "rnn": 0.5}, "not supported"),
        ({"transformer": 0.4, "lstm": 0.2, "mingru": 0.5}, "nuanced"),  # scans count
    ],
)
def test_position_verdicts(slopes, expected):
    v, measured, group = tp.verdict(_curves(slopes))
    assert v == expected and group == "s, T=64" and "transformer +" in measured


def test_late_gain_is_the_second_minus_last_quarter():
    curve = _curves({"lstm": 1.0})
    assert tp.late_gain(curve) == pytest.approx(0.5, abs=0.02)  # slope 1 over T, T/2 apart


def test_no_verdict_without_attention_and_a_recurrence():
    assert tp.verdict(_curves({"lstm": 1.0, "gru": 0.5})) is None
    assert tp.verdict(_curves({"transformer": 1.0, "bow": 0.0})) is None  # a baseline only


def test_verdict_reads_the_longest_context_with_both_kinds():
    curves = pd.concat(
        [
            _curves({"transformer": 0.1, "lstm": 0.5}, T=64, study="core"),
            _curves({"transformer": 1.0, "lstm": 0.2}, T=512, study="text_positions"),
            _curves({"lstm": 0.1, "gru": 0.2}, T=1024, study="other"),  # no attention model
        ]
    )
    v, _, group = tp.verdict(curves)
    assert (v, group) == ("supported", "text_positions, T=512")


def _tables(T=32):
    """Run-like tables: two text studies plus a masked encoder and a small data pool."""
    runs, pos = [], []

    def add(run, study, model, n_train=None, causal=None, slope=1.0):
        runs.append(
            {"run": run, "study": study, "status": "complete", "task": "text", "model": model,
             "family": FAMILY[model], "data.seq_len": T, "data.n_train": n_train,
             "model.causal": causal}
        )  # fmt: skip
        pos.extend({"run": run, "position": t, "loss": 3 - slope * t / T, "count": 8}
                   for t in range(T))  # fmt: skip

    add("core-tr", "core", "transformer", causal=True, slope=1.0)
    add("core-lstm", "core", "lstm", slope=0.2)
    add("core-mingru", "core", "mingru", slope=0.4)
    add("de-tr-big", "data_efficiency", "transformer", n_train=1000, causal=True, slope=0.1)
    add("de-lstm-big", "data_efficiency", "lstm", n_train=1000, slope=0.5)
    add("de-tr-small", "data_efficiency", "transformer", n_train=10, causal=True, slope=9.0)
    add("cvm-masked", "causal_vs_masked", "transformer", causal=False, slope=9.0)
    add("cvm-causal", "causal_vs_masked", "transformer", causal=True, slope=9.0)
    return {"runs": pd.DataFrame(runs), "positions": pd.DataFrame(pos)}


def test_position_curves_pick_the_runs():
    curves = tp.position_curves(_tables())
    groups = {s: sorted(g.model.unique()) for s, g in curves.groupby("study")}
    # causal_vs_masked: its masked encoder is dropped, its lone Transformer compares nothing;
    # data_efficiency: only the largest pool
    assert groups == {"core": ["lstm", "mingru", "transformer"], "data_efficiency": ["lstm",
                      "transformer"]}  # fmt: skip
    de = curves[curves.study == "data_efficiency"]
    assert tp.late_gain(de[de.model == "transformer"]) < 0.1  # the n_train=10 run is not in it
    assert set(curves.family) == {"attention", "recurrent", "scan"}


def test_verdicts_from_tables():
    (v,) = tp.verdicts(_tables())
    # both groups have T=32: the first study in name order decides (core)
    assert v.claim == "C5" and v.experiment == "loss by position (core, T=32)"
    assert v.verdict == "supported" and v.rule == tp.RULE.text
    assert tp.verdicts({"runs": pd.DataFrame(), "positions": pd.DataFrame()}) == []


def test_section_draws_the_figure(tmp_path):
    md = tp.section(_tables(), Figures(tmp_path, FAMILY))
    assert (tmp_path / "loss_by_position.png").stat().st_size > 1000
    assert "(loss_by_position.png)" in md and "late_gain" in md
    empty = tp.section({"runs": pd.DataFrame(), "positions": pd.DataFrame()}, Figures(tmp_path, {}))
    assert "No completed text runs" in empty


def test_bench_has_only_a_gpu_job():
    assert tp.BENCH["smoke"] == [] and tp.BENCH["cpu"] == []
    (job,) = tp.BENCH["gpu"]
    assert job.name == "text_positions" and "+experiment=text_positions" in job.args
