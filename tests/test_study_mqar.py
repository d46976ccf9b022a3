"""Study mqar (C5, Zoology): the cell rule on synthetic accuracy tables (every verdict
reachable, families not names), the accuracy table from run rows, and the section."""

import matplotlib
import pandas as pd
import pytest

from seqbench.report.plot import Figures
from seqbench.studies import mqar as study

matplotlib.use("Agg")

FAMILIES = {"lstm": "recurrent", "gru": "recurrent", "transformer": "attention", "mingru": "scan"}
CELLS = ((64, 32), (64, 64), (128, 32), (128, 64))  # (seq_len, d_model)


def _acc(transformer_acc, rec_acc, rec="lstm"):
    rows = [
        {
            "setting": f"T={t}, kv={t // 16}",
            "seq_len": t,
            "d_model": d,
            "model": m,
            "family": FAMILIES[m],
            "acc": a,
            "acc_std": 0.0,
            "chance": 1 / 32,
        }
        for t, d in CELLS
        for m, a in (("transformer", transformer_acc[(t, d)]), (rec, rec_acc))
    ]
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    "tr,expected",
    [
        ({(64, 32): 1, (64, 64): 1, (128, 32): 1, (128, 64): 1}, "supported"),
        ({(64, 32): 1, (64, 64): 1, (128, 32): 0.6, (128, 64): 0.6}, "nuanced"),
        ({(64, 32): 0.6, (64, 64): 0.6, (128, 32): 0.6, (128, 64): 0.6}, "not supported"),
    ],
)
def test_verdicts(tr, expected):
    v, measured = study.verdict(_acc(tr, 0.62))
    assert v == expected and "transformer ahead in" in measured


def test_a_scan_model_is_a_recurrence():
    tr = dict.fromkeys(CELLS, 1.0)
    assert study.verdict(_acc(tr, 0.62, rec="mingru"))[0] == "supported"
    assert study.verdict(_acc(dict.fromkeys(CELLS, 0.6), 0.62, rec="mingru"))[0] == "not supported"


def test_unlearned_cells_give_no_verdict():
    low = dict.fromkeys(CELLS, 0.1)  # < 4 x chance 1/32
    assert study.verdict(_acc(low, 0.05)) is None
    started = dict.fromkeys(CELLS, 0.2)  # >= 4 x chance: informative, and attention leads
    assert study.verdict(_acc(started, 0.05))[0] == "supported"


def test_no_verdict_without_both_families():
    only_attention = _acc(dict.fromkeys(CELLS, 1.0), 0.1)
    only_attention = only_attention[only_attention.family == "attention"]
    assert study.verdict(only_attention) is None
    only_rec = _acc(dict.fromkeys(CELLS, 1.0), 0.9)
    assert study.verdict(only_rec[only_rec.family == "recurrent"]) is None


def test_rule_sentence_carries_the_thresholds():
    text = study.RULE.text
    assert ">= 80%" in text and "<= 20%" in text and "> 0.05" in text and ">= 4x" in text


def _runs(acc_of):
    """Run rows as collect() writes them: dotted config columns, hp_* as built."""
    return pd.DataFrame(
        [
            {
                "run": f"{m}-{t}-{d}",
                "study": "mqar",
                "status": "complete",
                "model": m,
                "family": FAMILIES[m],
                "task": "mqar",
                "data.seq_len": t,
                "data.num_kv_pairs": t // 16,
                "model.d_model": d,
                "hp_d_model": d,
                "seed": 0,
                "val_acc": acc_of(m, t, d),
                "params_non_embedding": 1000 * d,
                "vocab_size": 64,
            }
            for m in ("transformer", "gru", "mingru")
            for t, d in CELLS
        ]
    )


def test_accuracy_table_from_runs():
    acc = study.accuracy_table(_runs(lambda m, t, d: 0.9 if m == "transformer" else 0.3))
    assert set(acc.setting) == {"T=64, kv=4", "T=128, kv=8"}
    assert (acc.chance == 2 / 64).all() and sorted(acc.d_model.unique()) == [32, 64]
    assert study.accuracy_table(pd.DataFrame()).empty


def test_section_and_verdicts_from_runs(tmp_path):
    tables = {"runs": _runs(lambda m, t, d: 0.9 if m == "transformer" else 0.3)}
    md = study.section(tables, Figures(tmp_path, FAMILIES))
    assert "![mqar_accuracy_vs_width](mqar_accuracy_vs_width.png)" in md
    assert (tmp_path / "mqar_accuracy_vs_width.png").exists()
    assert "| T=64, kv=4 | gru | 32 |" in md
    (v,) = study.verdicts(tables)
    assert v.claim == "C5" and v.verdict == "supported" and v.rule == study.RULE.text
    empty = {"runs": pd.DataFrame()}
    assert study.verdicts(empty) == [] and "No completed runs" in study.section(empty, None)


def test_bench_jobs():
    names = {p: [j.name for j in jobs] for p, jobs in study.BENCH.items()}
    assert names == {"smoke": ["mqar"], "cpu": ["mqar", "mqar_scan"], "gpu": ["mqar"]}
    for jobs in study.BENCH.values():
        for job in jobs:
            assert job.module == "seqbench.train" and job.args[:2] == ["-m", "+experiment=mqar"]
    assert "model=mingru,minlstm" in study.BENCH["cpu"][1].args
