"""The core study (C1): every verdict on synthetic text runs, best-of-grid, the section, jobs."""

import matplotlib
import pandas as pd
import pytest

from seqbench.report import baselines
from seqbench.report.plot import Figures
from seqbench.studies import core, study_jobs
from tests import ngram_rows
from tests.conftest import FAMILY

matplotlib.use("Agg")

SEEDS = (0, 1, 2)
BIGRAM = 2.7  # the count bigram's loss on the runs' held-out windows: the C1 bar
LEVELS = {1: 3.0, 2: BIGRAM, 3: 2.3}


def _text_runs(losses: dict, unigram=3.0, seeds=SEEDS, lr=1e-2, levels=LEVELS):
    """Complete core text runs, one per (model, seed); losses: model -> loss or per-seed;
    with the count n-grams' ``levels`` on their windows (None: not measured)."""
    rows = []
    for m, loss in losses.items():
        for i, s in enumerate(seeds):
            rows.append(
                {"run": f"{m}{s}-{lr}", "study": "core", "status": "complete", "task": "text",
                 "model": m, "family": FAMILY[m], "seed": s, "lr": lr,
                 "val_loss": loss[i] if isinstance(loss, tuple) else loss + 0.01 * i,
                 "val_acc": 0.5, "unigram_xent": unigram, "train.steps": 200}
            )  # fmt: skip
    ngram = ngram_rows.table("core", levels) if levels else pd.DataFrame()
    return {"runs": pd.DataFrame(rows), "ngram": ngram}


def _verdict(tables):
    (v,) = core.verdicts(tables)
    assert v.claim == "C1" and v.rule == core.RULE.text
    return v


FOUR = {"rnn": 2.0, "lstm": 2.1, "gru": 2.2, "transformer": 1.9}


def test_c1_supported_when_every_interval_is_below_the_bar():
    v = _verdict(_text_runs(FOUR))
    assert v.verdict == "supported"
    assert "lstm 2.11 [" in v.measured and "3 seeds" in v.measured  # the interval: stats
    assert "count bigram 2.70, trigram 2.30 nats (same windows); bar: count bigram 2.70" in (
        v.measured
    )


def test_c1_not_supported_when_a_model_interval_lies_above_the_bar():
    v = _verdict(_text_runs(FOUR | {"lstm": BIGRAM + 0.2}))
    assert v.verdict == "not supported"


def test_c1_inconclusive_when_an_interval_straddles_the_bar():
    bar = BIGRAM  # one seed above, two below: the interval contains the bar
    v = _verdict(_text_runs(FOUR | {"lstm": (bar - 0.2, bar - 0.1, bar + 0.3)}))
    assert v.verdict == "inconclusive"


def test_c1_inconclusive_with_one_seed_or_too_few_models():
    assert _verdict(_text_runs(FOUR, seeds=(0,))).verdict == "inconclusive"  # no interval
    few = {"rnn": 2.0, "gru": 2.2, "transformer": 1.9}  # all below the bar, but only three
    assert len(few) < core.RULE.min_models
    assert _verdict(_text_runs(few)).verdict == "inconclusive"
    assert _verdict(_text_runs(FOUR | {"mingru": 2.0})).verdict == "supported"
    # one seed cannot support, but a single run far above the bar still has no interval:
    # it is not evidence against either
    assert _verdict(_text_runs(FOUR | {"lstm": 2.95}, seeds=(0,))).verdict == "inconclusive"


def test_c1_verdict_survives_a_dropped_seed():
    runs = _text_runs(FOUR)["runs"]
    fewer = _text_runs(FOUR)["ngram"]
    assert _verdict({"runs": runs[runs.seed != 1], "ngram": fewer}).verdict == "supported"


def test_c1_not_measured_without_complete_core_text_runs():
    runs = _text_runs({"rnn": 2.0, "transformer": 1.9})["runs"]
    assert core.verdicts({"runs": runs.assign(task="copy")}) == []
    assert core.verdicts({"runs": runs.assign(status="failed")}) == []
    assert core.verdicts({"runs": runs.assign(study="recall")}) == []
    assert core.verdicts({"runs": pd.DataFrame()}) == []


def test_best_of_grid_keeps_the_best_lr_per_model_and_cell():
    # a swept grid (the GPU profile): the lstm is best at 1e-2, the gru at 3e-3
    runs = pd.concat(
        [
            _text_runs({"lstm": 2.5, "gru": 2.0}, lr=3e-3)["runs"],
            _text_runs({"lstm": 2.0, "gru": 2.4}, lr=1e-2)["runs"],
        ]
    ).assign(setting="text")
    best = core.best_of_grid(runs, ["setting"])
    assert dict(best.groupby("model").lr.unique().map(list)) == {"gru": [3e-3], "lstm": [1e-2]}
    assert len(best) == 6  # three seeds each
    one = runs[runs.lr == 1e-2]
    assert core.best_of_grid(one, ["setting"]) is one  # one lr per cell: nothing to choose
    table = core.lr_table(runs, ["setting"]).set_index("model")
    assert table.loc["lstm", "lr"] == "0.01" and table.loc["gru", "lr"] == "0.003"
    assert table.loc["lstm", "how"] == "best of the swept grid (top of the grid)"
    assert _verdict({"runs": runs}).verdict == "inconclusive"  # two models < min_models


def test_lr_table_says_calibrated():
    runs = _text_runs(FOUR)["runs"].assign(setting="text")
    runs["train.lr_grid"] = [[3e-3, 1e-2, 3e-2]] * len(runs)
    table = core.lr_table(runs, ["setting"])
    assert set(table.how) == {"calibrated on the control"} and set(table.lr) == {"0.01"}
    edge = core.lr_table(runs.assign(lr=3e-2), ["setting"])
    assert set(edge.how) == {"calibrated on the control (top of the grid)"}
    assert set(table.grid) == {"0.003, 0.01, 0.03"}  # rates, never a list repr


def test_rule_sentence_is_made_from_its_thresholds():
    assert f"(>= {core.RULE.min_models})" in str(core.RULE)
    assert f"count {core.RULE.bar} fitted on the same training split" in str(core.RULE)


def test_bench_jobs_per_profile():
    assert set(study_jobs(core.__name__)) == {"smoke", "cpu", "full", "gpu"}
    names = {p: [j.name for j in jobs if j.entry == "train"]
             for p, jobs in study_jobs(core.__name__).items()}  # fmt: skip
    assert names["cpu"] == ["core_copy", "core_text"]  # lag_recall: the recall study's
    assert names["full"] == [*names["cpu"], "core_text_long"]  # the text cells at 4x
    (long,) = [j for j in study_jobs(core.__name__)["full"] if j.name == "core_text_long"]
    assert "train.budget=4" in long.args and long.rank > 9  # after every cpu job
    assert names["smoke"] == names["gpu"] == ["core_recall", "core_copy", "core_text"]
    for jobs in study_jobs(core.__name__).values():
        for j in jobs:
            if j.entry == "train":  # a long job trains its cpu job's experiment
                assert f"+experiment={j.name.removesuffix('_long')}" in j.args
        (ngram,) = [j for j in jobs if j.name == "core_ngram"]  # the C1 bar, every profile
        assert ngram.entry == "measure" and "what=ngram" in ngram.args
        assert "+experiment=core_text" in ngram.args and "seed=0" in ngram.args
    gpu = {j.name: j.args for j in study_jobs(core.__name__)["gpu"] if j.entry == "train"}
    grid = "train.lr=1.0e-3,3.0e-3,1.0e-2"  # the GPU sweeps it in every cell
    assert "seed=0,1,2" in gpu["core_copy"] and all(grid in args for args in gpu.values())
    assert "train.lr_grid=null" in gpu["core_text"]  # swept in every cell instead


def _section_tables():
    settings = [("lagrecall", 8), ("copy", None), ("text", None)]
    runs, curves = [], []
    for model in ("gru", "transformer", "mingru"):
        for task, d in settings:
            for seed in SEEDS:
                run = f"{model}-{task}-{d}-{seed}"
                runs.append(
                    {"run": run, "study": "core", "status": "complete", "model": model,
                     "family": FAMILY[model], "task": task, "data.distance": d, "seed": seed,
                     "val_acc": (0.8 if model == "transformer" else 0.5) + 0.01 * seed,
                     "val_loss": 1.5 + 0.01 * seed, "unigram_xent": 3.0, "lr": 1e-2,
                     "train.steps": 30, "data.seq_len": 256, "train.batch_size": 8,
                     "train.lr_control.train.steps": 10.0 if task == "text" else None,
                     "train.lr_grid": [1e-3, 1e-2] if task == "text" else None,
                     "params_non_embedding": 100_000, "wall_s": 10.0}
                )  # fmt: skip
                for step in (10, 20, 30):
                    curves.append({"run": run, "model": model, "step": step, "wall_s": step / 3,
                                   "train_loss": 3.0 / step + 0.01 * seed})  # fmt: skip
    return {"runs": pd.DataFrame(runs), "curves": pd.DataFrame(curves)}


def test_section_draws_its_figures(tmp_path):
    tables = _section_tables()
    figs = Figures(tmp_path, FAMILY)
    md = core.section(tables, figs)
    for name in ("core_c1_text", "core_loss_vs_step", "core_loss_vs_time", "core_final_accuracy"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
        assert f"({name}.png)" in md
    assert figs.deciding == {"C1": ["core_c1_text.png"]}
    assert "| lagrecall d=8 | gru | 1.51 [" in md  # intervals in the table
    assert "control (train.steps=10" in md  # the calibration, read from the runs
    params = md.split("\n\n")[1]  # the parameter table: every compared model, no baseline
    assert "transformer" in params and "bow" not in params
    assert [v.verdict for v in core.verdicts(tables)] == ["inconclusive"]  # 3 models < 4


def test_section_states_what_the_profile_cut(tmp_path):
    tables = _section_tables()
    runs = tables["runs"]
    cut = runs[(runs.task != "lagrecall") & ~((runs.task == "copy") & (runs.seed > 0))]
    md = core.section({"runs": cut, "curves": tables["curves"]}, Figures(tmp_path, FAMILY))
    assert "lag_recall is not run in this profile" in md and "Copy keeps one seed" in md
    full = core.section(tables, Figures(tmp_path, FAMILY))
    assert "lag_recall is not run" not in full and "Copy keeps one seed" not in full
    swept = {"runs": runs.assign(**{"train.lr_grid": None}), "curves": tables["curves"]}
    assert "on the control (" not in core.section(swept, Figures(tmp_path, FAMILY))


def test_section_without_runs_still_lists_parameters(tmp_path):
    md = core.section({"runs": pd.DataFrame(), "curves": pd.DataFrame()}, Figures(tmp_path, {}))
    assert "no completed runs" in md and "max/min - 1 (%)" in md
    assert not list(tmp_path.glob("*.png"))


@pytest.mark.parametrize("curves", [pd.DataFrame(), None])
def test_section_without_curves_draws_no_curve_figure(tmp_path, curves):
    tables = _section_tables() | {"curves": curves}
    core.section(tables, Figures(tmp_path, FAMILY))
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        "core_c1_text.png",
        "core_final_accuracy.png",
    ]


def test_c1_is_inconclusive_without_the_count_baselines_never_the_old_bar():
    v = _verdict(_text_runs(FOUR, levels=None))  # every model far below 0.9 x unigram
    assert v.verdict == "inconclusive" and baselines.NOT_MEASURED in v.measured


def test_c1_bar_is_the_count_bigram_not_a_multiple_of_the_unigram():
    # below 0.9 x unigram (2.7) but not below the bigram: the old bar passed it, the new fails
    v = _verdict(_text_runs(FOUR | {"lstm": 2.45}, levels={1: 3.0, 2: 2.38, 3: 1.84}))
    assert v.verdict == "not supported" and "bar: count bigram 2.38" in v.measured
    assert _verdict(_text_runs(FOUR, levels={2: 2.38})).verdict == "supported"


def test_c1_figure_draws_the_count_bigram_and_trigram(tmp_path):
    seen = []
    figs = Figures(tmp_path, FAMILY, on_save=lambda f, name: seen.append((name, f)))
    core.section(_text_runs(FOUR) | {"curves": None}, figs)
    (fig,) = [f for name, f in seen if name == "core_c1_text"]
    labels = [ln.get_label() for ln in fig.axes[0].get_lines()]
    assert "C1 bar: count bigram 2.70" in labels and "count trigram 2.30" in labels
