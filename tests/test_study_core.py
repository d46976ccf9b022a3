"""The core study (C1): every verdict on synthetic text runs, best-of-grid, the section, jobs.
C1 reads each run's test loss (table test_set) against the count models on the same test
windows (ngram rows scope=test); the validation figures only chose the lr."""

import matplotlib
import pandas as pd
import pytest

from seqbench.report import baselines
from seqbench.report.plot import Figures
from seqbench.studies import core, study_jobs
from tests import ngram_rows
from tests.conftest import FAMILY, measured_test_set

matplotlib.use("Agg")

SEEDS = (0, 1, 2)
BIGRAM = 2.7  # the count bigram's loss on the runs' held-out windows: the C1 bar
LEVELS = {1: 3.0, 2: BIGRAM, 3: 2.3}


def _loss(loss, i: int) -> float:
    return loss[i] if isinstance(loss, tuple) else loss + 0.01 * i


def _text_runs(losses: dict, unigram=3.0, seeds=SEEDS, lr=1e-2, levels=LEVELS, val=None,
               val_levels=None, tested=True):  # fmt: skip
    """Complete core text runs, one per (model, seed), with their test figures (table
    test_set; ``tested``: False, or the runs to keep there); losses: model -> test loss or
    per-seed; ``val``: model -> validation loss where it differs. The count n-grams'
    ``levels`` on the test windows of each seed, ``val_levels`` (default: the same) on the
    validation windows (None: not measured)."""
    rows = []
    for m, loss in losses.items():
        for i, s in enumerate(seeds):
            rows.append(
                {"run": f"{m}{s}-{lr}", "study": "core", "status": "complete", "task": "text",
                 "model": m, "family": FAMILY[m], "seed": s, "lr": lr,
                 "test_loss": _loss(loss, i), "test_acc": 0.5,
                 "val_loss": _loss((val or {}).get(m, loss), i),
                 "val_acc": 0.5, "unigram_xent": unigram, "train.steps": 200}
            )  # fmt: skip
    runs = pd.DataFrame(rows)
    kept = runs if tested is True else runs[runs.run.isin(tested or ())]
    ngram = pd.DataFrame()
    if levels:
        ngram = pd.concat([ngram_rows.table("core", val_levels or levels),
                           count_test_rows(levels, seeds)])  # fmt: skip
    return {"runs": runs.drop(columns=["test_loss", "test_acc"]), "ngram": ngram,
            "test_set": measured_test_set(kept)}  # fmt: skip


def count_test_rows(levels: dict, seeds=SEEDS, shift=0.0) -> pd.DataFrame:
    """ngram rows scope=test: per order the count model's loss on data seed s's test windows
    (sample = s), ``shift * s`` above its level."""
    rows = [{"model": ngram_rows.ORDERS[o], "family": "count", "order": o, "sample": s,
             "scope": "test", "test_loss": lv + shift * s, "seq_len": 256, "eval_batches": 32,
             "batch_size": 8} for o, lv in levels.items() for s in seeds]  # fmt: skip
    df = pd.DataFrame(rows)
    return df.assign(study="core", status="complete", run=df.model + "-core", task="text")


def _verdict(tables):
    (v,) = core.verdicts(tables)
    assert v.claim == "C1" and v.rule == core.RULE.text
    return v


FOUR = {"rnn": 2.0, "lstm": 2.1, "gru": 2.2, "transformer": 1.9}


def test_c1_supported_when_every_interval_is_below_the_bar():
    v = _verdict(_text_runs(FOUR))
    assert v.verdict == "supported"
    assert "lstm 2.11 [" in v.measured and "3 seeds" in v.measured  # the interval: stats
    assert v.measured.startswith("test loss ")
    assert "count bigram 2.70, trigram 2.30 nats (same test windows); bar: count bigram 2.70" in (
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
    tables = _text_runs(FOUR)
    runs = tables["runs"]
    assert _verdict(tables | {"runs": runs[runs.seed != 1]}).verdict == "supported"


def test_c1_not_measured_without_complete_core_text_runs():
    runs = _text_runs({"rnn": 2.0, "transformer": 1.9})["runs"]
    assert core.verdicts({"runs": runs.assign(task="copy")}) == []
    assert core.verdicts({"runs": runs.assign(status="failed")}) == []
    assert core.verdicts({"runs": runs.assign(study="recall")}) == []
    assert core.verdicts({"runs": pd.DataFrame()}) == []


def test_best_of_grid_keeps_the_best_lr_per_model_and_cell():
    # a swept grid (the GPU profile): the lstm is best at 1e-2, the gru at 3e-3
    low, high = (
        _text_runs({"lstm": 2.5, "gru": 2.0}, lr=3e-3),
        _text_runs({"lstm": 2.0, "gru": 2.4}, lr=1e-2),
    )
    runs = pd.concat([low["runs"], high["runs"]]).assign(setting="text")
    best = core.best_of_grid(runs, ["setting"])
    assert dict(best.groupby("model").lr.unique().map(list)) == {"gru": [3e-3], "lstm": [1e-2]}
    assert len(best) == 6  # three seeds each
    one = runs[runs.lr == 1e-2]
    assert core.best_of_grid(one, ["setting"]) is one  # one lr per cell: nothing to choose
    table = core.lr_table(runs, ["setting"]).set_index("model")
    assert table.loc["lstm", "lr"] == "0.01" and table.loc["gru", "lr"] == "0.003"
    assert table.loc["lstm", "how"] == "best of the swept grid (top of the grid)"
    test_set = pd.concat([low["test_set"], high["test_set"]])
    tables = {"runs": runs, "test_set": test_set, "ngram": low["ngram"]}
    assert _verdict(tables).verdict == "inconclusive"  # two models < min_models


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


@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu", "full"])
def test_every_text_training_job_is_followed_by_its_test_set_job(profile):
    # C1 reads test losses: each text training job's runs are scored on the test split by a
    # measure job with the same sweep (so it finds the same runs by content key), right after
    jobs = study_jobs(core.__name__)[profile]
    names = [j.name for j in jobs]
    for name in ("core_text", "core_text_long"):
        if name not in names:
            continue
        train = jobs[names.index(name)]
        test = jobs[names.index(name) + 1]
        assert test.name == f"{name}_test" and test.entry == "measure"
        assert test.args == [train.args[0], "what=test_set", *train.args[1:]]
        assert test.rank == train.rank
    assert core.TEST_JOB in names and core.NGRAM_JOB in names  # the jobs a verdict names
    assert (core.LONG_TEST_JOB in names) == (profile == "full")


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
    runs = pd.DataFrame(runs)
    scored = runs.assign(test_acc=runs.val_acc - 0.02, test_loss=runs.val_loss + 0.1)
    return {"runs": runs, "curves": pd.DataFrame(curves), "test_set": measured_test_set(scored)}


def test_section_draws_its_figures(tmp_path):
    tables = _section_tables()
    figs = Figures(tmp_path, FAMILY)
    md = core.section(tables, figs)
    for name in ("core_c1_text", "core_loss_vs_step", "core_loss_vs_time", "core_final_accuracy"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
        assert f"({name}.png)" in md
    assert figs.deciding == {"C1": ["core_c1_text.png"]}
    assert "| lagrecall d=8 | gru | 1.61 [" in md  # test loss first, with its interval
    assert "| test_loss | test_acc | val_loss (selection) | val_acc (selection) |" in md
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


# --- C1 reads the test split (issue 22 item 3) ----------------------------------------------
VAL_LEVELS = {1: 3.1, 2: 2.9, 3: 2.5}  # the count models on the validation windows


def test_c1_follows_the_test_loss_where_validation_says_otherwise():
    # validation: every model below its bar; test: the lstm above the test bar
    below_on_val = _text_runs(FOUR | {"lstm": BIGRAM + 0.2}, val=FOUR, val_levels=VAL_LEVELS)
    v = _verdict(below_on_val)
    assert v.verdict == "not supported" and f"lstm {BIGRAM + 0.21:.2f} [" in v.measured
    # validation: the lstm above every bar; test: all four below the test bar
    above_on_val = _text_runs(FOUR, val=FOUR | {"lstm": 3.5}, val_levels=VAL_LEVELS)
    v = _verdict(above_on_val)
    assert v.verdict == "supported" and "bar: count bigram 2.70" in v.measured
    assert "2.90" not in v.measured and "3.51" not in v.measured  # no validation figure


def test_c1_without_a_test_figure_is_inconclusive_and_names_the_job():
    tables = _text_runs(FOUR)
    one_short = list(tables["test_set"].train_run[1:])
    v = _verdict(_text_runs(FOUR, tested=one_short))
    assert v.verdict == "inconclusive"
    assert v.measured.startswith("test set not measured for 1 of 12 runs (job core_text_test)")
    v = _verdict(_text_runs(FOUR, tested=False))
    assert "test set not measured for 12 of 12 runs (job core_text_test)" in v.measured
    assert "2.11" not in v.measured  # never the validation loss in its place
    # the full profile's 4x runs have their own test job
    longer = tables | {"runs": tables["runs"].assign(**{"train.budget": 4}), "test_set": None}
    assert "(job core_text_long_test)" in _verdict(longer).measured


def test_c1_is_inconclusive_without_count_levels_on_the_test_windows():
    tables = _text_runs(FOUR)
    val_only = tables["ngram"][tables["ngram"].scope != "test"]
    v = _verdict(tables | {"ngram": val_only})  # validation levels alone decide nothing
    assert v.verdict == "inconclusive"
    assert f"{baselines.NOT_MEASURED} on the test windows (job core_ngram)" in v.measured


def test_c1_bar_is_the_count_bigram_on_the_runs_own_data_seeds():
    # data seed s's test windows score the bigram at 2.7 + 0.1 s: the bar averages the seeds
    # the runs were drawn with, and is not measured when one of them has no rows
    tables = _text_runs(FOUR) | {"ngram": count_test_rows(LEVELS, SEEDS, shift=0.1)}
    assert "bar: count bigram 2.80" in _verdict(tables).measured  # seeds 0, 1, 2
    runs = tables["runs"]
    two = tables | {"runs": runs[runs.seed != 2]}
    assert "bar: count bigram 2.75" in _verdict(two).measured  # seeds 0 and 1 only
    missing = tables | {"ngram": count_test_rows(LEVELS, (0, 1))}
    assert _verdict(missing).verdict == "inconclusive"
    assert baselines.NOT_MEASURED in _verdict(missing).measured


def _censored_lstm(cap: int, val_levels=VAL_LEVELS):
    """The lstm above the test bar and censored at ``cap`` steps; the other models' validation
    curves first go below the validation bigram (2.9) at step 50 and below the test bigram
    (2.7) at step 150."""
    tables = _text_runs(FOUR | {"lstm": BIGRAM + 0.2}, val_levels=val_levels)
    runs = tables["runs"]
    runs = runs.assign(censored=runs.model == "lstm", **{"train.steps": cap})
    curves = [{"run": r, "step": step, "val_loss": loss}
              for r in runs.run[runs.model != "lstm"]
              for step, loss in ((50, 2.85), (150, 2.6))]  # fmt: skip
    return tables | {"runs": runs, "curves": pd.DataFrame(curves)}


def test_c1_censoring_times_the_validation_curve_against_the_validation_level():
    # slowest solver: 50 steps on the validation curve to the validation bigram; a cap of 200
    # is >= 4 x 50, so the censored lstm fails (read against the test level: 150, undecided)
    assert _verdict(_censored_lstm(200)).verdict == "not supported"
    short = _verdict(_censored_lstm(150))
    assert short.verdict == "inconclusive" and "lstm: censored at 150 steps (< 4 x 50)" in (
        short.measured
    )
    # no validation level: no step count to compare with, so the censored model is undecided
    tables = _censored_lstm(200)
    no_val = tables | {"ngram": tables["ngram"][tables["ngram"].scope == "test"]}
    v = _verdict(no_val)
    assert v.verdict == "inconclusive" and "no model solved the cell" in v.measured
    assert "validation curve" in core.RULE.text


def test_c1_figure_draws_test_losses_and_names_the_split(tmp_path):
    seen = []
    figs = Figures(tmp_path, FAMILY, on_save=lambda f, name: seen.append((name, f)))
    tables = _text_runs(FOUR, val={m: loss + 0.5 for m, loss in FOUR.items()})
    md = core.section(tables | {"curves": None}, figs)
    (fig,) = [f for name, f in seen if name == "core_c1_text"]
    ax = fig.axes[0]
    dots = {c.get_label(): c.lines[0].get_ydata()[0] for c in ax.containers}
    assert dots["lstm"] == pytest.approx(2.11)  # the test mean (validation: 2.61)
    assert ax.get_ylabel() == "test loss (nats/token)" and "test split" in ax.get_title()
    assert "(same test windows)" in md


def test_section_without_test_rows_draws_no_c1_figure_and_says_why(tmp_path):
    tables = _text_runs(FOUR, tested=False) | {"curves": None}
    md = core.section(tables, Figures(tmp_path, FAMILY))
    assert "No C1 figure: test set not measured for 12 of 12 runs (job core_text_test)." in md
    assert not (tmp_path / "core_c1_text.png").exists()
    assert "| text | lstm | not measured | not measured | 2.11 [" in md  # validation, labelled
