"""Core study: every model on copy and character-level text (and lag_recall on the GPU).

Claim C1 (one objective trains every model) is judged on the text runs: learning from
context under the next-word objective means ending below what counting one token of context
does, the add-k count bigram fitted on the same training split and scored on the same
windows (``seqbench.measure.ngram``, rows ``ngram`` of this study), with the whole 95%
interval over seeds (``seqbench.report.stats``) below it. A multiple of the unigram was the
old bar: a bigram passes 0.9 x unigram easily (issue 22). Without the n-gram rows the
verdict is inconclusive (``baselines.NOT_MEASURED``), never the old bar.

The validation windows chose each model's lr, so C1 reads the test split (issue 22 item 3):
each run's ``test_loss`` (``what=test_set``, job ``core_text_test``) against the count
models on the same test windows (ngram rows ``scope=test`` of the runs' data seeds). A run
without its test figure makes the verdict inconclusive and says so: it never falls back to
validation. Only the censoring rule's "steps to the bar" reads the validation curve (the
training-time record), against the count bigram on the validation windows.

Protocol (issue 11): each family its literature's initialisation (in the models); a learning
rate chosen by data, on the CPU calibrated once per model and task on a short control run
(``train.lr_grid``, ``train.lr_control``) and reused by every seed, on the GPU swept in every
cell with the best of the grid kept (``best_of_grid``, Zoology's selection); three seeds per
text cell. The same text runs are C5's CPU evidence (studies/text_positions.py says so).
"""

import numpy as np
import pandas as pd

from seqbench.config import param_table
from seqbench.report import baselines
from seqbench.report.axes import UNIT_RANGE, clipped_yerr, log_axis, reference
from seqbench.report.hardware import hardware_note
from seqbench.report.markdown import md_table
from seqbench.report.stats import estimate, fmt
from seqbench.report.verdict import Rule, Verdict
from seqbench.studies._common import (
    CENSORING,
    LONG_ENOUGH,
    TEST_RULE,
    best_of_grid,
    censored,
    censored_note,
    censored_text,
    complete,
    long_enough,
    lr_table,
    size_rank,
    study_of,
    with_test,
)

TITLE = "Core study: one harness, six models, three tasks"
ORDER = 10
DECIDES = ("C1",)
STUDY = study_of(__name__)
RULE = Rule(
    "supported if every model (>= {min_models}) ends with its text loss on the test split "
    "(windows neither training nor the lr choice saw), 95% interval over seeds, below the "
    "loss of the add-k count {bar} fitted on the same training split and scored on the same "
    "test windows (the count trigram shown beside it); not supported if some model's "
    "interval lies above it; inconclusive otherwise (an interval straddles the bar, one seed "
    "gives no interval, too few models, a run's test set or the count baselines were not "
    "measured); " + CENSORING + " (here: a censored model above the bar is undecided; "
    "solved: test loss below the bar; the steps it needed: the first evaluation of its "
    "validation curve below the count {bar}'s level on the validation windows)",
    long_enough=LONG_ENOUGH,
    bar="bigram",
    min_models=4,
)
BAR_ORDER = 2  # the count model of RULE.bar
TEST_JOB = "core_text_test"  # the bench job that scores the text runs on the test split
LONG_TEST_JOB = "core_text_long_test"  # the same for the full profile's 4x runs
NGRAM_JOB = "core_ngram"  # the count models on the validation and test windows
VOCAB = 64  # the parameter table is built at this vocabulary (embeddings are not counted)


# --- C1 ------------------------------------------------------------------------------------
def _label(r) -> str:
    # data.distance is a column whenever any run has it (recall runs), NaN for copy and text
    dist = r.get("data.distance")
    return f"{r.task} d={int(dist)}" if pd.notna(dist) else f"{r.task}"


def core_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Complete core runs, each with its ``setting`` (task, and distance where there is one),
    the best learning rate of a swept grid only."""
    ok = complete(runs, STUDY)
    if ok.empty:
        return ok
    ok = ok.assign(setting=ok.apply(_label, axis=1))
    return best_of_grid(ok, ["setting"])


def text_losses(text: pd.DataFrame, column: str = "test_loss") -> dict:
    """model -> Estimate over seeds of the final loss in ``column`` (test_loss: on the test
    split, the figure C1 reads; val_loss: on the validation windows, which chose the lr)."""
    return {m: estimate(g[column]) for m, g in text.groupby("model")}


def data_seeds(text: pd.DataFrame) -> set:
    """The data seeds of the runs (data.seed, which follows seed): their test windows."""
    seeds = text["data.seed"] if "data.seed" in text else text.seed
    return set(pd.to_numeric(seeds.fillna(text.seed), errors="coerce").astype(int))


def count_levels(tables, text: pd.DataFrame, scope: str = "test") -> dict:
    """order -> the count n-gram's loss on the windows these text runs were scored on (this
    study's ngram rows with the runs' T, eval batches and batch): ``scope="test"``, the test
    windows of the runs' data seeds, averaged over them ({} unless every seed has its rows);
    ``scope="windows"``, the validation windows the harness evaluated; {} without."""
    settings = baselines.settings_of(text)
    if text.empty or settings is None:
        return {}
    rows = baselines.rows_for(tables, STUDY, **settings)
    if scope == "test" and not rows.empty and "scope" in rows:
        test = rows[rows.scope == "test"]
        seeds = data_seeds(text)
        if "sample" not in test or not seeds <= set(pd.to_numeric(test["sample"])):
            return {}  # another seed's windows are not the same test windows
        rows = test[test["sample"].isin(seeds)]
    return baselines.levels(rows, scope=scope)


def said_test(levels: dict) -> str:
    """'count bigram 2.36, trigram 1.85 nats (same test windows)', or that the count
    baselines were not measured there (and the job that measures them)."""
    shown = [f"{baselines.order_name(o)} {levels[o]:.2f}" for o in (BAR_ORDER, 3) if o in levels]
    if not shown:
        return f"{baselines.NOT_MEASURED} on the test windows (job {NGRAM_JOB})"
    return f"count {', '.join(shown)} nats (same test windows)"


def test_job(text: pd.DataFrame) -> str:
    """The bench job that measures these runs' test set (the 4x runs have their own)."""
    budget = pd.to_numeric(text.get("train.budget", pd.Series(1.0, text.index)), errors="coerce")
    return LONG_TEST_JOB if (budget.fillna(1) > 1).any() else TEST_JOB


def not_tested(text: pd.DataFrame) -> str:
    """'test set not measured for 5 of 18 runs (job core_text_test)'; '' when every run has
    its test loss."""
    missing = text.test_loss.isna() if "test_loss" in text else pd.Series(True, text.index)
    if not missing.any():
        return ""
    return (
        f"test set not measured for {int(missing.sum())} of {len(text)} runs "
        f"(job {test_job(text[missing])})"
    )


def verdict(
    text: pd.DataFrame, levels: dict, curves=None, val_levels=None
) -> tuple[str, str] | None:
    """(verdict, measured) from complete core text runs with their test figures (with_test)
    and the count models' levels on the same test windows (``count_levels``); ``val_levels``
    (the levels on the validation windows) only time the validation curves of the censoring
    rule. None without runs."""
    if text.empty:
        return None
    missing = not_tested(text)
    if missing:  # never the validation loss in its place
        return "inconclusive", f"{missing}; {said_test(levels)}"
    losses = text_losses(text)
    measured = (
        "test loss "
        + ", ".join(f"{m} {fmt(e)}" for m, e in losses.items())
        + f" nats ({_seeds(text)}); {said_test(levels)}"
    )
    if BAR_ORDER not in levels:
        return "inconclusive", measured
    bar = levels[BAR_ORDER]
    measured += f"; bar: count {RULE.bar} {bar:.2f}"
    val_bar = (val_levels or {}).get(BAR_ORDER, float("nan"))  # nan: never reached
    open_ = unsettled(text, losses, bar, curves, val_bar)
    measured += censored_text(list(open_.values()))
    # a nan interval (one seed) is never above; a censored model above may still get below
    if any(e.lo > bar for m, e in losses.items() if m not in open_):
        return "not supported", measured
    if len(losses) >= RULE.min_models and all(e.below(bar) for e in losses.values()):
        return "supported", measured
    return "inconclusive", measured


def unsettled(text: pd.DataFrame, losses: dict, bar: float, curves, val_bar=None) -> dict:
    """model -> why, for each model above the (test) bar with a censored run (stopped at its
    cap while improving or at chance) and a cap shorter than LONG_ENOUGH x the steps the
    slowest model below the bar took to get there: its validation curve's first evaluation
    below ``val_bar``, the bar's level on the validation windows (None: ``bar`` is already
    on them), by ``steps_to``; none below, or a nan level: never long enough."""
    below = text[text.model.isin([m for m, e in losses.items() if e.below(bar)])]
    slowest = steps_to(curves, below, bar if val_bar is None else val_bar)
    out = {}
    for m, g in text.groupby("model"):
        cap = g["train.steps"].max()
        if losses[m].lo > bar and censored(g).any() and not long_enough(cap, slowest):
            out[m] = censored_note(m, cap, slowest)
    return out


def steps_to(curves, runs: pd.DataFrame, bar: float) -> float:
    """The most steps any of ``runs`` needed to a validation loss below ``bar`` (its first
    evaluation there, read from the validation curve: the only record of when, and the data
    that also chose the lr); nan without curves or such an evaluation."""
    if curves is None or curves.empty or runs.empty or "val_loss" not in curves:
        return float("nan")
    c = curves[curves.run.isin(runs.run)].dropna(subset=["val_loss"])
    first = c[c.val_loss < bar].groupby("run").step.min()
    return float(first.max()) if len(first) else float("nan")


def _seeds(runs: pd.DataFrame) -> str:
    """'3 seeds', or '2-3 seeds' when the models' counts differ."""
    n = runs.groupby("model").seed.nunique()
    lo, hi = int(n.min()), int(n.max())
    return f"{lo} seed{'s' * (hi > 1)}" if lo == hi else f"{lo}-{hi} seeds"


def text_runs(tables) -> pd.DataFrame:
    """The complete core text runs with their test figures (_common.with_test)."""
    runs = core_runs(tables["runs"])
    text = runs[runs.task == "text"] if not runs.empty else runs
    return with_test(text, tables, STUDY)


def verdicts(tables) -> list[Verdict]:
    text = text_runs(tables)
    val_levels = count_levels(tables, text, scope="windows")
    result = verdict(text, count_levels(tables, text), tables.get("curves"), val_levels)
    if result is None:
        return []
    v, measured = result
    return [Verdict("C1", f"{STUDY} (text)", measured, RULE, v)]


# --- the section ---------------------------------------------------------------------------
def params_section() -> str:
    df = pd.DataFrame(param_table(VOCAB))
    df = df[df.family != "baseline"]  # the bag-of-words floor is not one of the compared models
    wide = df.pivot(index="size", columns="model", values="params_non_embedding")
    wide = wide.loc[sorted(wide.index, key=size_rank)]  # 5xs ... l, not alphabetical
    spread = (wide.max(axis=1) / wide.min(axis=1) - 1) * 100
    wide = wide.assign(**{"max/min - 1 (%)": spread.round(1)}).reset_index()
    return (
        "Non-embedding parameters per size preset (computed by building every "
        f"`conf/model` file; vocabulary {VOCAB}), so every comparison is between models of "
        "matched size:\n\n" + md_table(wide, floatfmt=".4g")
    )


def _setup(runs: pd.DataFrame) -> str:
    """What was run, read from the runs: per setting T, steps, batch, seeds; what was cut."""
    lines = []
    for s, g in runs.groupby("setting"):
        steps = int(g["train.steps"].max()) if "train.steps" in g else "?"
        T = int(g["data.seq_len"].max()) if "data.seq_len" in g else "?"
        batch = int(g["train.batch_size"].max()) if "train.batch_size" in g else "?"
        lines.append(
            f"`{s}`: T = {T}, {steps} steps of batch {batch}, "
            f"{g.seed.nunique()} seed(s) per model, {g.model.nunique()} models"
        )
    text = "Runs of this report: " + "; ".join(lines) + "."
    settings = set(runs.setting)
    if not any(s.startswith("lagrecall") for s in settings):
        text += (
            " lag_recall is not run in this profile: the recall study measures it, with its "
            "control distance, criterion and three seeds (the GPU profile runs it here too)."
        )
    if "copy" in settings and runs[runs.setting == "copy"].seed.nunique() < 3:
        text += " Copy keeps one seed: no verdict reads it (it shows the harness on a second task)."
    cols = [c for c in runs if c.startswith("train.lr_control.")]  # flat() of the dict
    calibrated = runs["train.lr_grid"].notna() if "train.lr_grid" in runs else runs.run.isna()
    given = runs.loc[calibrated, cols].dropna(how="all") if cols else runs.iloc[0:0]
    if len(given):
        control = {
            c.removeprefix("train.lr_control."): v for c, v in given.iloc[0].dropna().items()
        }
        said = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in control.items())  # fmt: skip
        text += (
            " Where the table below says `calibrated on the control`, one short run per "
            f"learning rate of the grid on the control ({said}; seed 0) chose the lr once per "
            "model and task, and every seed of the cell reuses it."
        )
    return text


def _interval_table(runs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (s, m), g in runs.groupby(["setting", "model"]):
        tested = g.test_acc.notna().all()
        rows.append({"setting": s, "model": m,
                     "test_loss": fmt(estimate(g.test_loss)) if tested else "not measured",
                     "test_acc": fmt(estimate(g.test_acc, bounds=(0.0, 1.0)))
                     if tested else "not measured",
                     "val_loss (selection)": fmt(estimate(g.val_loss)),
                     "val_acc (selection)": fmt(estimate(g.val_acc, bounds=(0.0, 1.0))),
                     "seeds": g.seed.nunique(),
                     "lr": ", ".join(f"{v:g}" for v in sorted(g.lr.dropna().unique())),
                     "params_non_embedding": g.params_non_embedding.iloc[0]
                     if "params_non_embedding" in g else None,
                     "wall_s": float(g.wall_s.median()) if "wall_s" in g else None})  # fmt: skip
    return pd.DataFrame(rows)


def section(tables, figs) -> str:
    parts = [params_section()]
    runs = core_runs(tables["runs"])
    if runs.empty:
        return "\n\n".join(parts + ["_The core study has no completed runs yet._"])
    parts.append(_setup(runs))
    parts.append("Learning rate per model and setting:\n\n" + md_table(lr_table(runs, ["setting"])))
    parts.append(
        "Final metrics: mean over seeds with its 95% t interval (one seed: no interval). "
        f"Accuracy is over scored positions only; `test_loss`, `test_acc`: {TEST_RULE} "
        "(what=test_set; the figures C1 reads); `val_loss (selection)`, `val_acc "
        "(selection)`: on the validation windows, which chose the learning rate, shown for "
        "comparison; `wall_s` is the median run time."
    )
    parts.append(md_table(_interval_table(with_test(runs, tables, STUDY))))
    text = text_runs(tables)
    parts.append(_c1_figure(text, count_levels(tables, text), figs))
    parts.append(_curves(tables["curves"], runs, figs))
    parts.append(_accuracy_bars(runs, figs))
    return "\n\n".join(p for p in parts if p)


def _c1_figure(text: pd.DataFrame, levels: dict, figs) -> str:
    """One dot per model (the models are the x categories, named in their colours: no legend
    repeats them), its 95% interval over seeds of the test loss, the unigram floor and the
    count bigram (the C1 bar) and trigram on the same test windows. Runs without a test loss
    are left out and named; none with one: no figure, and the sentence says why."""
    if text.empty:
        return ""
    missing = not_tested(text)
    text = text.dropna(subset=["test_loss"]) if "test_loss" in text else text.iloc[0:0]
    if text.empty:
        return f"No C1 figure: {missing}."
    losses = text_losses(text)
    unigram, unigram_label = _unigram(text, levels)
    models = list(losses)
    fig, axes = figs.figure(width=5.5)
    ax = axes[0]
    for i, m in enumerate(models):
        e = losses[m]
        ax.errorbar([i], [e.mean], yerr=clipped_yerr([e.mean], [e.lo], [e.hi]), fmt="o",
                    capsize=4, color=figs.color(m), label=m)  # fmt: skip
    reference(ax, unigram, unigram_label, kind="chance")
    if BAR_ORDER in levels:
        reference(ax, levels[BAR_ORDER], f"C1 bar: count {RULE.bar} {levels[BAR_ORDER]:.2f}",
                  kind="threshold")  # fmt: skip
    baselines.draw(ax, levels, orders=(3,))  # the trigram beside the bar
    ax.set_xticks(range(len(models)), models, fontsize=8)
    for tick, m in zip(ax.get_xticklabels(), models):
        tick.set_color(figs.color(m))
    ax.set(xlabel="model", ylabel="test loss (nats/token)", xlim=(-0.6, len(models) - 0.4))
    top = max([unigram, *(e.hi if np.isfinite(e.hi) else e.mean for e in losses.values())])
    low = min([*levels.values(), *(e.lo if np.isfinite(e.lo) else e.mean for e in losses.values())])
    ax.set_ylim(min(ax.get_ylim()[0], low * 0.97), top * 1.06)
    ax.set_title(f"text, test split, {_budget(text)}", fontsize=9)
    span = np.diff(ax.get_ylim())[0]
    thin = sum(not np.isfinite(e.hi - e.lo) or e.hi - e.lo < 0.025 * span for e in losses.values())
    if thin:  # a reader must not take a missing bar for a missing interval
        ax.text(0.01, 0.01, f"bars: 95% interval over seeds; {thin} of {len(models)} narrower "
                "than the dot", transform=ax.transAxes, fontsize=7, color="0.3",
                va="bottom")  # fmt: skip
    return (
        "Test-split text loss at the end of training (windows neither training nor the lr "
        "choice saw), mean and 95% interval over seeds, against the unigram and the add-k "
        f"count bigram (the C1 bar) and trigram ({said_test(levels)})"
        + (f"; left out: {missing}" if missing else "")
        + ".\n\n"
        + figs.save(fig, "core_c1_text", "C1")
    )


def _unigram(text: pd.DataFrame, levels: dict) -> tuple[float, str]:
    """(level, label) of the unigram floor: the count unigram on the test windows, or where
    it was not measured the runs' unigram cross-entropy on the validation split, so named."""
    if 1 in levels:
        return levels[1], f"count unigram {levels[1]:.2f}"
    unigram = float(text.unigram_xent.astype(float).mean())
    return unigram, f"unigram {unigram:.2f} (validation split)"


def _budget(runs: pd.DataFrame) -> str:
    """'T=64, 400 steps, 3 seeds per model': what one cell of a figure trained on."""
    parts = []
    if "data.seq_len" in runs and runs["data.seq_len"].notna().any():
        parts.append(f"T={int(runs['data.seq_len'].max())}")
    if "train.steps" in runs and runs["train.steps"].notna().any():
        parts.append(f"{int(runs['train.steps'].max())} steps")
    return ", ".join([*parts, f"{_seeds(runs)} per model"])


def _curves(curves, runs, figs) -> str:
    if curves is None or curves.empty:
        return ""
    c = curves[curves.run.isin(runs.run)].merge(runs[["run", "setting"]], on="run")
    c = c.dropna(subset=["train_loss"])
    if c.empty:
        return ""
    settings = sorted(c.setting.unique())
    md = []
    for x, xlabel, name in (
        ("step", "training step (count)", "core_loss_vs_step"),
        ("wall_s", "wall-clock time (s)", "core_loss_vs_time"),
    ):
        fig, axes = figs.figure(ncols=len(settings), width=4.0)
        for ax, s in zip(axes, settings):
            for model, g in c[c.setting == s].groupby("model"):
                by = g.groupby("step")
                xs = by[x].mean()  # over seeds, per step
                est = [estimate(v) for _, v in by.train_loss]
                lo, hi = [e.lo for e in est], [e.hi for e in est]
                figs.line(ax, xs.values, [e.mean for e in est], lo, hi, model=model)
            log_axis(ax, "y")
            ax.set(xlabel=xlabel, ylabel="training loss (nats/token)")
            ax.set_title(f"{s}, {_budget(runs[runs.setting == s])}", fontsize=9)
            figs.label_ends(ax)  # at each line's end; lines that coincide get leader lines
        timed = x == "wall_s"  # a time means nothing without the machine it was taken on
        md.append(figs.save(fig, name, hardware=hardware_note(runs) if timed else None))
    return (
        "Training loss against steps and against wall-clock seconds (mean over seeds, band: "
        "95% interval). Same data order, optimiser and step budget for every model of a "
        "setting; the wall-clock panel shows what each step costs on this hardware.\n\n"
        + "\n\n".join(md)
    )


def _accuracy_bars(runs, figs) -> str:
    """Bars per task (the categories), one colour per model, the chance level 1/V over each
    group; a group with one seed says it has no interval."""
    settings = sorted(runs.setting.unique())
    models = sorted(runs.model.unique())
    fig, axes = figs.figure(width=max(6.0, 2.2 * len(settings)))
    ax, w = axes[0], 0.8 / max(1, len(models))  # one group of bars per setting
    for i, m in enumerate(models):
        est = [
            estimate(runs[(runs.model == m) & (runs.setting == s)].val_acc, bounds=(0.0, 1.0))
            for s in settings
        ]
        mean = np.array([e.mean for e in est])
        yerr = clipped_yerr(mean, [e.lo for e in est], [e.hi for e in est], UNIT_RANGE)
        ax.bar(np.arange(len(settings)) + i * w, np.nan_to_num(mean), w, yerr=yerr,
               label=m, color=figs.color(m), capsize=2)  # fmt: skip
    for j, s in enumerate(settings):
        g = runs[runs.setting == s]
        x0, x1 = j - w / 2, j + 0.8 - w / 2
        if "vocab_size" in g and g.vocab_size.notna().any():
            chance = 1 / float(g.vocab_size.max())
            ax.hlines(chance, x0, x1, color="0.3", ls=":", lw=1.2, zorder=3)
            ax.text(
                x0,
                chance,
                f"chance 1/V = {chance:.2g}",
                fontsize=7,
                color="0.2",
                va="bottom",
                zorder=4,
                bbox={"fc": "white", "ec": "none", "pad": 0.5},
            )
        if g.seed.nunique() < 2:
            ax.text((x0 + x1) / 2, 1.02, "1 seed: no interval", ha="center", fontsize=7,
                    color="0.3")  # fmt: skip
    ticks = [f"{s}\n{_budget(runs[runs.setting == s]).replace(', ', chr(10), 1)}"
             for s in settings]  # fmt: skip
    ax.set_xticks(np.arange(len(settings)) + 0.4 - w / 2, ticks, fontsize=7)
    ax.set(xlabel="task", ylabel="held-out accuracy", ylim=(0, 1.09), yticks=np.linspace(0, 1, 6))
    ax.set_title("Final held-out accuracy (no verdict reads it)", fontsize=9)
    figs.legend(fig)
    return (
        "Held-out accuracy per setting (bars: mean over seeds, whiskers: 95% interval; dotted: "
        "chance, one over the vocabulary).\n\n" + figs.save(fig, "core_final_accuracy")
    )
