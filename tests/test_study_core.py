"""The core study (C1): its verdict on synthetic text runs, its section's figures, its jobs."""

import matplotlib
import pandas as pd

from seqbench.report.plot import Figures
from seqbench.studies import core

matplotlib.use("Agg")

FAMILY = {
    "rnn": "recurrent",
    "lstm": "recurrent",
    "gru": "recurrent",
    "transformer": "attention",
    "mingru": "scan",
}


def _text_runs(losses: dict, unigram=3.0, seeds=(0,)):
    """Complete core text runs, one per (model, seed); losses: model -> loss (or per seed)."""
    rows = []
    for m, loss in losses.items():
        for i, s in enumerate(seeds):
            rows.append(
                {
                    "run": f"{m}{s}",
                    "study": "core",
                    "status": "complete",
                    "task": "text",
                    "model": m,
                    "family": FAMILY[m],
                    "seed": s,
                    "val_loss": loss[i] if isinstance(loss, tuple) else loss,
                    "unigram_xent": unigram,
                }
            )
    return {"runs": pd.DataFrame(rows)}


def _verdict(tables):
    (v,) = core.verdicts(tables)
    assert v.claim == "C1" and v.rule == core.RULE.text
    return v


def test_c1_supported_when_every_model_beats_the_unigram_bar():
    v = _verdict(_text_runs({"rnn": 2.0, "lstm": 2.1, "gru": 2.2, "transformer": 1.9}))
    assert v.verdict == "supported"
    assert "lstm: 2.10 nats" in v.measured and "unigram cross-entropy 3.00 nats" in v.measured


def test_c1_not_supported_when_one_model_stays_near_the_unigram_loss():
    bar = core.RULE.below * 3.0  # 2.7 nats: a loss of 2.9 is not clearly below the unigram
    v = _verdict(_text_runs({"rnn": 2.0, "lstm": bar + 0.2, "gru": 2.2, "transformer": 1.9}))
    assert v.verdict == "not supported"


def test_c1_not_supported_when_one_seed_misses_the_bar():
    runs = _text_runs(
        {"rnn": 2.0, "lstm": (2.0, 2.95), "gru": 2.2, "transformer": 1.9}, seeds=(0, 1)
    )
    assert _verdict(runs).verdict == "not supported"  # every run counts, not the mean


def test_c1_needs_enough_models():
    few = {"rnn": 2.0, "gru": 2.2, "transformer": 1.9}  # all below the bar, but only three
    assert len(few) < core.RULE.min_models
    assert _verdict(_text_runs(few)).verdict == "not supported"
    five = {"rnn": 2.0, "lstm": 2.1, "gru": 2.2, "transformer": 1.9, "mingru": 2.0}
    assert _verdict(_text_runs(five)).verdict == "supported"


def test_c1_not_measured_without_complete_core_text_runs():
    tables = _text_runs({"rnn": 2.0, "transformer": 1.9})
    assert core.verdicts({"runs": tables["runs"].assign(task="copy")}) == []
    assert core.verdicts({"runs": tables["runs"].assign(status="failed")}) == []
    assert core.verdicts({"runs": tables["runs"].assign(study="recall")}) == []
    assert core.verdicts({"runs": pd.DataFrame()}) == []


def test_rule_sentence_is_made_from_its_thresholds():
    assert f"(>= {core.RULE.min_models})" in str(core.RULE)
    assert f"{core.RULE.below} x the unigram" in str(core.RULE)


def test_bench_jobs_per_profile():
    assert set(core.BENCH) == {"smoke", "cpu", "gpu"}
    for profile, jobs in core.BENCH.items():
        assert [j.name for j in jobs] == ["core_recall", "core_copy", "core_text"], profile
        for j in jobs:
            assert j.module == "seqbench.train" and f"+experiment={j.name}" in j.args
    gpu = {j.name: j.args for j in core.BENCH["gpu"]}
    assert "seed=0,1,2" in gpu["core_copy"]  # one override: three seeds
    assert "data.distance=8,48,256" in gpu["core_recall"]


def _section_tables():
    settings = [("lagrecall", 8), ("lagrecall", 48), ("copy", None), ("text", None)]
    runs, curves = [], []
    for model in ("gru", "transformer", "mingru"):
        for task, d in settings:
            for seed in (0, 1):
                run = f"{model}-{task}-{d}-{seed}"
                runs.append(
                    {
                        "run": run,
                        "study": "core",
                        "status": "complete",
                        "model": model,
                        "family": FAMILY[model],
                        "task": task,
                        "data.distance": d,
                        "seed": seed,
                        "val_acc": 0.8 if model == "transformer" else 0.5,
                        "val_loss": 1.5,
                        "unigram_xent": 3.0,
                        "params_non_embedding": 100_000,
                        "wall_s": 10.0,
                    }
                )
                for step in (10, 20, 30):
                    curves.append(
                        {
                            "run": run,
                            "model": model,
                            "step": step,
                            "wall_s": step / 3,
                            "train_loss": 3.0 / step,
                        }
                    )
    return {"runs": pd.DataFrame(runs), "curves": pd.DataFrame(curves)}


def test_section_draws_its_figures(tmp_path):
    tables = _section_tables()
    figs = Figures(tmp_path, FAMILY)
    md = core.section(tables, figs)
    for name in ("core_loss_vs_step", "core_loss_vs_time", "core_final_accuracy"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
        assert f"({name}.png)" in md
    assert "lagrecall d=48" in md and "| copy |" in md
    params = md.split("\n\n")[1]  # the parameter table: every compared model, no baseline
    assert "transformer" in params and "bow" not in params
    assert [v.verdict for v in core.verdicts(tables)] == ["not supported"]  # 3 models < 4


def test_section_without_runs_still_lists_parameters(tmp_path):
    md = core.section({"runs": pd.DataFrame(), "curves": pd.DataFrame()}, Figures(tmp_path, {}))
    assert "no completed runs" in md and "max/min - 1 (%)" in md
    assert not list(tmp_path.glob("*.png"))


def test_section_without_curves_draws_only_the_bars(tmp_path):
    tables = _section_tables() | {"curves": pd.DataFrame()}
    core.section(tables, Figures(tmp_path, FAMILY))
    assert [p.name for p in tmp_path.glob("*.png")] == ["core_final_accuracy.png"]
