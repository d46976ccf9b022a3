"""Causal versus masked objective at equal counted compute (C8).

Rows of the ``objectives`` table (seqbench/measure/objectives.py, ``what=prefix_eval``): for
each step budget and seed, the same Transformer trained causally and as a masked
bidirectional encoder on the same text; training FLOPs counted by ``seqbench.flops``; the
exact number of supervised targets per pass; both models' held-out loss at predicting the
next word from the prefix alone (the masked model fills a [MASK] placed right after the
prefix); and each model's held-out loss on its own objective (``own_loss``: in distribution).

Verdict per budget on the difference masked - causal of the prefix loss (mean over prefix
lengths per seed; 95% interval over seeds). Controls: the FLOPs of the two objectives match
within RULE.matched, and at every budget compared each model's own held-out loss lies below
the add-k count bigram's loss on the same held-out windows (``seqbench.measure.ngram``: a
masked model that has not beaten counting one token of context has not left the unigram
plateau, and cannot tell the objectives apart). A budget where one does not is left out and
named; with none left the verdict is inconclusive and says why. Without the n-gram rows:
inconclusive, said so. The steps of a row are its training run's (``train_run``: the runs
table's cap, x train.budget), so the full profile's 4x rows count their own steps.

Reported on the test split (issue 22): the validation split chose each objective's lr, so the
verdict reads only rows with ``split=test`` (prefix_eval's default: the first 1,024 test
windows of each seed's data) against the count bigram on the same test windows (the ngram
rows' ``scope=test``). Rows of the validation split alone never decide: the verdict is
inconclusive and names the job that measures the test split.
"""

import pandas as pd

from seqbench.data import TEST_SEQUENCES
from seqbench.report import baselines
from seqbench.report.axes import clipped_yerr, key_entry, log_axis, reference
from seqbench.report.markdown import md_table
from seqbench.report.stats import difference, estimate, fmt
from seqbench.report.verdict import Rule, Verdict
from seqbench.studies._common import best_of_grid, complete, study_of

TITLE = "Causal versus masked objective (C8)"
ORDER = 50
DECIDES = ("C8",)
STUDY = study_of(__name__)
RULE = Rule(
    "read on the test split (validation chose the lr): supported if the causal model's "
    "next-word-from-prefix loss is lower than the masked model's at every compute budget "
    "compared (95% interval of masked - causal over seeds "
    "above 0; FLOPs matched within {matched:.0%}), not supported if it is higher at every "
    "one, nuanced if lower at some and higher at others. A budget is compared only where "
    "both models' own held-out loss (each on its own objective) lies below the add-k count "
    "{learned}'s on the same held-out windows (the control); a budget that fails it is left "
    "out and named. inconclusive if an interval includes 0, the FLOPs differ more, no budget "
    "passes the control, or the test split or the count baselines were not measured",
    matched=0.05,  # compute counts as equal when the FLOPs differ by less than this fraction
    learned="bigram",  # the control: beats counting one token of context, on its own objective
)
BIGRAM = 2  # the order of RULE.learned
OBJECTIVES = ("causal", "masked")
REPORTED = "test"  # the split the verdict reads (prefix_eval's what.split)
JOBS = f"job {STUDY}, and {STUDY}_long in the full profile"  # what measures it


def rows_of(objectives: pd.DataFrame | None, split: str = REPORTED) -> pd.DataFrame:
    """The complete prefix_eval rows of ``split``; rows written before what.split existed
    were read on validation."""
    ok = complete(objectives)
    if ok.empty:
        return ok
    read_on = ok.split.fillna("val") if "split" in ok else pd.Series("val", ok.index)
    return ok[read_on == split]


def trained_steps(ok: pd.DataFrame, runs: pd.DataFrame | None) -> pd.DataFrame:
    """``ok`` with ``steps`` and ``train_flops`` of the steps its training run (``train_run``)
    had: prefix_eval records the experiment's train.steps, but the harness multiplies them by
    train.budget (the full profile's 4x rows), and the runs table's cap says so."""
    if runs is None or runs.empty or "train_run" not in ok or "flops_per_step" not in ok:
        return ok
    cap = runs.drop_duplicates("run").set_index("run")["train.steps"]
    steps = pd.to_numeric(ok.train_run.map(cap), errors="coerce").fillna(ok.steps)
    return ok.assign(steps=steps, train_flops=ok.flops_per_step * steps)


def seed_table(objectives: pd.DataFrame | None, runs=None, split=REPORTED) -> pd.DataFrame:
    """One row per (objective, steps, seed) of ``split``: prefix loss averaged over prefix
    lengths, the model's own held-out loss, its counted FLOPs and targets. Where the lr was
    swept (the GPU profile), the lr with the lowest mean prefix loss per (objective, steps) is
    kept."""
    ok = rows_of(objectives, split)  # every prefix_eval row, whichever study ran it
    if ok.empty:
        return ok
    ok = trained_steps(ok, runs)
    if "seed" not in ok:
        ok = ok.assign(seed=0)
    if "own_loss" not in ok:  # rows written before the in-distribution evaluation
        ok = ok.assign(own_loss=ok.get("val_loss"))
    if "lr" not in ok:
        ok = ok.assign(lr=float("nan"))
    agg = {c: (c, "mean") for c in ("train_flops", "prefix_loss", "prefix_acc", "own_loss",
                                    "targets_per_pass", "tokens_per_pass", "unigram_xent")
           if c in ok}  # fmt: skip
    per_seed = ok.groupby(["objective", "steps", "seed", "lr"], dropna=False).agg(**agg)
    per_seed = per_seed.reset_index().assign(model=lambda d: d.objective)  # one "model" each
    return best_of_grid(per_seed, ["steps"], metric="prefix_loss").drop(columns="model")


def budget_table(per_seed: pd.DataFrame) -> pd.DataFrame:
    """One row per (objective, steps): every figure as mean [95% interval] over seeds."""
    rows = []
    for (obj, steps), g in per_seed.groupby(["objective", "steps"]):
        row = {"objective": obj, "steps": int(steps), "seeds": g.seed.nunique(),
               "train_flops": float(g.train_flops.mean())}  # fmt: skip
        for c in ("prefix_loss", "prefix_acc", "own_loss"):
            if c in g:
                row[c] = fmt(estimate(g[c]))
        if "lr" in g:
            row["lr"] = ", ".join(f"{v:g}" for v in sorted(g.lr.dropna().unique()))
        if "targets_per_pass" in g:
            row["targets_per_pass"] = float(g.targets_per_pass.mean())
        rows.append(row)
    return pd.DataFrame(rows)


def count_levels(tables, split=REPORTED) -> dict:
    """order -> the count n-gram's loss on the windows ``own_loss`` scored: this study's
    ngram rows of that split (test: ``scope=test``, averaged over the data seeds) whose
    windows x T equal the causal model's scored tokens (own_n); {} without."""
    rows, ok = baselines.rows_for(tables, STUDY), rows_of(tables.get("objectives"), split)
    if rows.empty or ok.empty or "own_n" not in ok:
        return {}
    scored = set(ok[ok.objective == "causal"].own_n.dropna().astype(int))
    same = rows[(rows.windows * rows.seq_len).astype(int).isin(scored)]
    return baselines.levels(same, scope="test" if split == "test" else "windows")


def control(by: dict, budgets: list, bar: float) -> dict:
    """steps -> 'masked 2.98 [2.96, 3.0]' for each budget where an objective's own held-out
    loss is not below the count bigram's ``bar`` (its interval over seeds): a model that has
    not beaten counting one token of context there cannot tell the objectives apart."""
    out = {}
    for s in budgets:
        own = {o: estimate(by[o, s].own_loss) for o in OBJECTIVES}
        failed = [f"{o} {fmt(e)}" for o, e in own.items() if not e.below(bar)]
        if failed:
            out[s] = ", ".join(failed)
    return out


def decide(diffs: dict) -> str:
    """The verdict from the signs of masked - causal at the budgets compared."""
    signs = [d.sign for d in diffs.values()]
    if 0 in signs:
        return "inconclusive"
    if all(s > 0 for s in signs):
        return "supported"
    return "not supported" if all(s < 0 for s in signs) else "nuanced"


def verdict(per_seed: pd.DataFrame, levels: dict) -> tuple[str, str] | None:
    """(verdict, measured) over the budgets both objectives measured and both passed the
    control at (against the count models' ``levels``); None without both objectives."""
    if per_seed.empty or set(OBJECTIVES) - set(per_seed.objective):
        return None
    budgets = sorted(set.intersection(*(set(g.steps) for _, g in per_seed.groupby("objective"))))
    if not budgets:
        return None
    by = {(o, s): g for (o, s), g in per_seed.groupby(["objective", "steps"])}
    bar = levels.get(BIGRAM)
    left = control(by, budgets, bar) if bar is not None else {}
    compared = [s for s in budgets if s not in left]
    diffs = {s: difference(by["masked", s].prefix_loss, by["causal", s].prefix_loss)
             for s in compared}  # fmt: skip
    flops = {o: per_seed[per_seed.objective == o].groupby("steps").train_flops.mean()
             for o in OBJECTIVES}  # fmt: skip
    flops_gap = float((flops["masked"][budgets] / flops["causal"][budgets] - 1).abs().max())
    ratio = (
        per_seed[per_seed.objective == "causal"].targets_per_pass.mean()
        / per_seed[per_seed.objective == "masked"].targets_per_pass.mean()
    )
    seeds = int(per_seed.groupby(["objective", "steps"]).seed.nunique().min())
    measured = (
        "next-word-from-prefix loss masked - causal: "
        + (", ".join(f"{fmt(d)} nats at {s:g} steps" for s, d in diffs.items()) or "-")
        + f" ({seeds} seed{'s' * (seeds > 1)}; up to "
        f"{flops['causal'][budgets].max():.2e} FLOPs, matched within {flops_gap:.1%}); "
        f"supervised targets per pass causal/masked = {ratio:.1f}x"
    )
    measured += "".join(
        f"; {s:g} steps left out, own held-out loss not below the count {RULE.learned}: {who}"
        for s, who in left.items()
    )
    if compared:
        top = compared[-1]
        measured += f"; own held-out loss at {top:g} steps " + ", ".join(
            f"{o} {fmt(estimate(by[o, top].own_loss))}" for o in OBJECTIVES
        )
    measured += f"; {baselines.said(levels)}"
    if flops_gap > RULE.matched:
        return "inconclusive", measured + " (compute not matched)"
    if bar is None:
        return "inconclusive", measured
    if not compared:
        return "inconclusive", measured + (
            f"; no budget where both objectives beat the count {RULE.learned} on their own "
            "objective (the control): none compared"
        )
    return decide(diffs), measured


def verdicts_of(tables) -> tuple[str, str] | None:
    """``verdict`` of the tables' test-split objectives rows (at their training runs' steps)
    and this study's n-gram rows on the same test windows. Rows of the validation split
    alone: inconclusive, naming the job that measures the test split (never a silent
    fallback; the validation figures follow, labelled)."""
    objectives, runs = tables.get("objectives"), tables.get("runs")
    tested = seed_table(objectives, runs)
    result = verdict(tested, count_levels(tables))
    if result is not None:
        missing = untested(seed_table(objectives, runs, "val"), tested)
        if not missing:
            return result
        return "inconclusive", f"test split not measured at {missing} ({JOBS}); {result[1]}"
    on_val = verdict(seed_table(objectives, runs, "val"), count_levels(tables, "val"))
    if on_val is None:
        return None
    return "inconclusive", (
        f"test split not measured ({JOBS}: what=prefix_eval what.split=test); "
        f"on the validation split, which chose the lr: {on_val[1]}"
    )


def untested(on_val: pd.DataFrame, tested: pd.DataFrame) -> str:
    """'400 steps (masked)': the (budget, objective) cells measured on validation but not on
    the test split, a budget the verdict would otherwise leave out unsaid; '' when none."""
    gone = sorted(_cells(on_val) - _cells(tested))
    return ", ".join(f"{s:g} steps ({o})" for s, o in gone)


def _cells(per_seed: pd.DataFrame) -> set:
    return set(zip(per_seed.steps, per_seed.objective)) if not per_seed.empty else set()


def verdicts(tables) -> list[Verdict]:
    result = verdicts_of(tables)
    if result is None:
        return []
    v, measured = result
    return [Verdict("C8", f"{STUDY} (text, counted FLOPs)", measured, RULE, v)]


SPLIT_WORDS = {"test": "test", "val": "validation"}


def _split_sentence(split: str) -> str:
    """Which windows the figures below read, in the page's words."""
    if split == REPORTED:
        return (
            f"Read on the test split: the first {TEST_SEQUENCES:,} test windows of each seed's "
            "data (the windows `what=test_set` and the count models' test rows score); "
            "validation only chose each objective's learning rate."
        )
    return (
        f"**Test split not measured** ({JOBS}: what=prefix_eval what.split=test): the figures "
        "below read the validation split, which chose the learning rate, and decide nothing."
    )


def _masked_share(per_seed: pd.DataFrame) -> str:
    """'on 15% masked tokens', as the masked runs' targets per pass say; '' without them."""
    m = per_seed[per_seed.objective == "masked"]
    if m.empty or "tokens_per_pass" not in m:
        return ""
    share = (m.targets_per_pass / m.tokens_per_pass).mean()
    return f" on {share:.0%} masked tokens" if pd.notna(share) else ""


def _lr_how(rows: pd.DataFrame) -> str:
    """How each objective got its learning rate, read from the rows."""
    if "lr" not in rows or rows.lr.isna().all():
        return "one learning rate for both."
    swept = rows.groupby(["objective", "steps", "seed"]).lr.nunique().max() > 1
    if swept:
        return "the lr swept over a grid in every cell, the best per objective and budget kept."
    return (
        "each objective with its own learning rate, calibrated on a short control run (seed 0) "
        "and reused by every budget and seed."
    )


def _points(ax, figs, per_seed, x, y, ylabel):
    """One series per objective: mean of ``y`` over seeds with its interval as error bars,
    joined by a line only over three or more budgets (two points are no trend)."""
    scale, unit = _flop_unit(per_seed[x])
    for obj, g in per_seed.groupby("objective"):
        est = [(float(s[x].mean()) / scale, estimate(s[y])) for _, s in g.groupby("steps")]
        xs, es = [p for p, _ in est], [e for _, e in est]
        mean = [e.mean for e in es]
        ax.errorbar(xs, mean, yerr=clipped_yerr(mean, [e.lo for e in es], [e.hi for e in es]),
                    marker="o", capsize=3, color=figs.category(obj), label=obj,
                    ls="-" if len(xs) >= 3 else "none")  # fmt: skip
    log_axis(ax, "x")
    budgets = sorted(per_seed.groupby("steps")[x].mean() / scale)  # one tick per budget
    ax.set_xticks(budgets, [f"{v:.3g}" for v in budgets])
    ax.margins(x=0.15, y=0.12)  # room for the reference line's label under the title
    ax.set(xlabel=f"training compute, counted ({unit})", ylabel=ylabel)


def _flop_unit(values) -> tuple[float, str]:
    """(scale, unit) that writes the FLOP counts as plain numbers: 114 GFLOP, not 1.14e11."""
    top = float(pd.Series(values).max())
    for scale, unit in ((1e15, "PFLOP"), (1e12, "TFLOP"), (1e9, "GFLOP"), (1e6, "MFLOP")):
        if top >= scale:
            return scale, unit
    return 1.0, "FLOP"


def _figure(tables, per_seed, figs, split) -> str:
    fig, axes = figs.figure(ncols=3, width=4.2)
    loss = f"{SPLIT_WORDS[split]} loss (nats/token)"
    _points(axes[0], figs, per_seed, "train_flops", "prefix_loss", f"next-word {loss}")
    _points(axes[1], figs, per_seed, "train_flops", "own_loss", f"own objective, {loss}")
    levels = count_levels(tables, split)
    if BIGRAM in levels:
        reference(axes[1], levels[BIGRAM], f"control: count {RULE.learned} {levels[BIGRAM]:.2f}",
                  kind="threshold")  # fmt: skip
    baselines.draw(axes[1], levels, orders=(3,))  # the trigram beside the control
    rows = trained_steps(rows_of(tables["objectives"], split), tables.get("runs"))
    largest = rows[rows.steps == rows.steps.max()]
    for obj, g in largest.groupby("objective"):
        by = g.groupby("prefix_len").prefix_loss
        e = [estimate(v) for _, v in by]
        axes[2].errorbar(list(by.groups), [x.mean for x in e], marker="o", capsize=3,
                         yerr=clipped_yerr([x.mean for x in e], [x.lo for x in e],
                                           [x.hi for x in e]),
                         color=figs.category(obj), label=obj)  # fmt: skip
    log_axis(axes[2], "x", ticks=largest.prefix_len.unique())
    axes[2].set(xlabel="prefix length p (tokens)", ylabel=f"next-word {loss}")
    titles = ("generation use: next word from the prefix",
              "in distribution: each its own objective",
              f"largest budget ({int(rows.steps.max())} steps), by prefix")  # fmt: skip
    for ax, title in zip(axes, titles):
        ax.set_title(title, fontsize=9)
    seeds = int(per_seed.groupby(["objective", "steps"]).seed.nunique().min())
    figs.legend(fig, extra=[key_entry(f"error bars: 95% interval over {seeds} seeds", ls="",
                                      marker="|", ms=8)])  # fmt: skip
    return figs.save(fig, "causal_vs_masked", "C8")


def section(tables, figs) -> str:
    split = REPORTED
    per_seed = seed_table(tables.get("objectives"), tables.get("runs"))
    if per_seed.empty:  # validation rows only: drawn, and said to be what chose the lr
        split = "val"
        per_seed = seed_table(tables.get("objectives"), tables.get("runs"), split)
    if per_seed.empty:
        return "_No completed prefix_eval measurements yet._"
    return "\n\n".join(
        [
            _split_sentence(split),
            "The same Transformer trained causally (next token at every position) and as a "
            f"bidirectional encoder{_masked_share(per_seed)}, same text, same steps and batch, "
            + _lr_how(rows_of(tables["objectives"], split))
            + " `train_flops` = steps x FLOPs of "
            "one training step's forward + backward counted by `FlopCounterMode` "
            "(`seqbench.flops`); `targets_per_pass` = exact scored positions per training "
            f"batch; `prefix_loss` = {SPLIT_WORDS[split]} loss of the next word given only the "
            f"prefix (mean over prefix lengths); `own_loss` = {SPLIT_WORDS[split]} loss on the "
            "model's own "
            "objective (the masked model's in-distribution control). Mean and 95% interval "
            "over seeds. The CPU profile runs T = 64 at size xs and two budgets; the GPU "
            "profile size s, T = 256 and five budgets.",
            _figure(tables, per_seed, figs, split),
            md_table(budget_table(per_seed), ".4g"),
        ]
    )
