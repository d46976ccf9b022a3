"""Data efficiency (C7): held-out loss against the number of unique training windows N.

Every family trains on a pool of N unique text windows (``data.n_train``), N over several
orders of magnitude and never above the draws of the step cap (steps x batch: a larger pool
would be the same experiment as an unlimited stream). Each run stops early once
``train.patience`` evaluations pass without a new best held-out loss, and is scored by its
best held-out loss (the early-stopping estimate: a small pool is not charged for the
over-fitting after its best step). Three seeds per cell; 95% intervals over seeds.

The lecture: Transformers impose less structure, so they need more data before they do
useful work; LSTMs can do very well but take longer to train. Measured:

- (a) the gap g(N) = attention loss(N) - best recurrent or scan loss(N) (the recurrence with
  the lowest mean at that N), with its interval. "Needs more data": g > 0 at the smallest N
  and the gap at the largest N below it (intervals disjoint); refuted by g < 0 at the
  smallest N or a gap that grows.
- (b) steps to reach tau at the largest N, one threshold for every family and anchored on
  none, below what counting does: tau = best + RULE.frac x (trigram - best), ``best`` the
  lowest mean best loss of any model, ``trigram`` the add-k count trigram's loss on the same
  held-out windows, fitted on the same pool (``seqbench.measure.ngram``). Where no model's
  best gets below the trigram there is no such tau: (b) is inconclusive and says so. A run
  that never gets there counts as the budget it had (a lower bound). "LSTMs take longer":
  LSTM minus attention steps > 0.

Control: at the largest N every model's best loss must lie below the count bigram's (same
pool, same windows); a model that fails it cannot speak to either part (inconclusive).
Without this study's n-gram rows the verdict is inconclusive (``baselines.NOT_MEASURED``).
"""

import pandas as pd
from matplotlib.transforms import offset_copy

from seqbench.report import baselines
from seqbench.report.axes import clipped_yerr, key_entry, log_axis
from seqbench.report.markdown import md_table
from seqbench.report.stats import difference, estimate, fmt
from seqbench.report.verdict import Rule, Verdict
from seqbench.studies._common import (
    ATTENTION_VS_RECURRENCE,
    best_of_grid,
    complete,
    in_family,
    lr_table,
    study_of,
    unnamed_text,
)

TITLE = "Data efficiency (C7)"
ORDER = 45
DECIDES = ("C7",)
STUDY = study_of(__name__)
ATTENTION, RECURRENCES = ("attention",), ("recurrent", "scan")
COMPARES = ATTENTION + RECURRENCES  # a model of any other family is named, not compared
# part (b) is about the LSTM because the lecture's claim names it ("LSTMs take longer to
# train"); it is looked up among the recurrent family's models, never assumed present
SLOW = "lstm"
RULE = Rule(
    "(a) the Transformer needs more data: its best held-out loss minus the best recurrent or "
    "scan model's is > 0 at the smallest N and lower at the largest N (95% intervals over "
    "seeds, disjoint); (b) the LSTM takes more steps than the Transformer to reach "
    "tau = best + {frac} x (trigram - best) at the largest N, a threshold below the add-k "
    "count trigram on the same pool and held-out windows (difference interval above 0; no "
    "tau where no model gets below the trigram). Control: every model below the count "
    "{learned} at the largest N. supported if both hold, not supported if both are refuted, "
    "nuanced if one holds and one is refuted, inconclusive otherwise (an interval includes 0, "
    "no tau, a model failed the control, or the count baselines were not measured)",
    frac=0.5,
    learned="bigram",
)
BIGRAM, TRIGRAM = 2, 3  # the orders of the control (RULE.learned) and of tau's anchor


def study_runs(tables) -> pd.DataFrame:
    """Complete runs with a pool (``n_train``), N <= their draws, each with ``best`` (its best
    held-out loss, from its curve where there is one), the best lr of a swept grid only."""
    ok = complete(tables["runs"], STUDY)
    if ok.empty or "data.n_train" not in ok or ok["data.n_train"].isna().all():
        return pd.DataFrame()
    ok = ok[ok["data.n_train"].notna()]
    ok = ok[ok["data.n_train"] <= ok["train.steps"] * ok["train.batch_size"]]
    curves = tables.get("curves")
    best = ok.get("best_val_loss", ok.val_loss).astype(float)
    if curves is not None and not curves.empty and "val_loss" in curves:
        # from the curve: the half-budget check cuts curves, and the best must follow
        seen = curves[curves.run.isin(ok.run)].groupby("run").val_loss.min()
        best = ok.run.map(seen).fillna(best)
    ok = ok.assign(n_train=ok["data.n_train"].astype(int), best=best.values)
    return best_of_grid(ok, ["n_train"], metric="best")


def gaps(runs: pd.DataFrame) -> dict:
    """N -> (attention model, best recurrence, Estimate of their difference in best loss)."""
    out = {}
    for n, g in runs.groupby("n_train"):
        attention, recurrent = in_family(g, *ATTENTION), in_family(g, *RECURRENCES)
        if not attention or not recurrent:
            continue
        mean = g.groupby("model").best.mean()
        a, r = mean[attention].idxmin(), mean[recurrent].idxmin()
        out[n] = (a, r, difference(g[g.model == a].best, g[g.model == r].best))
    return dict(sorted(out.items()))


def count_levels(tables, runs: pd.DataFrame) -> dict:
    """order -> the count n-gram's loss at the largest N, fitted on that pool and scored on
    the runs' held-out windows (this study's ngram rows); {} without them."""
    big = runs[runs.n_train == runs.n_train.max()] if not runs.empty else runs
    settings = baselines.settings_of(big, n_train=True)
    if big.empty or settings is None:
        return {}
    return baselines.levels(baselines.rows_for(tables, STUDY, **settings))


def threshold(runs: pd.DataFrame, trigram: float | None) -> float | None:
    """tau at the largest N: RULE.frac of the way from the best mean loss up to the count
    trigram; None without the trigram or when no model's best is below it."""
    big = runs[runs.n_train == runs.n_train.max()]
    if big.empty or trigram is None:
        return None
    best = float(big.groupby("model").best.mean().min())
    return best + RULE.frac * (trigram - best) if best < trigram else None


def steps_to(runs: pd.DataFrame, curves: pd.DataFrame, tau: float) -> pd.DataFrame:
    """Per run at the largest N: the first evaluated step with val_loss <= tau; a run that
    never got there counts as the most steps any run of the cell was given (censored)."""
    big = runs[runs.n_train == runs.n_train.max()]
    c = curves[curves.run.isin(big.run)].dropna(subset=["val_loss"])
    budget = float(c.step.max()) if not c.empty else float("nan")
    hit = c[c.val_loss <= tau].groupby("run").step.min()
    steps = big.run.map(hit).astype(float)
    return big.assign(steps=steps.fillna(budget), censored=steps.isna())


def verdict(tables) -> tuple[str, str] | None:
    """(verdict, measured); None without an attention model and a recurrence at two N."""
    runs = study_runs(tables)
    g = gaps(runs) if not runs.empty else {}
    if len(g) < 2:
        return None
    (n0, (a0, r0, g0)), (n1, (_, r1, g1)) = list(g.items())[0], list(g.items())[-1]
    measured = (
        f"gap {a0} - best recurrence ({r0}) {fmt(g0)} nats at N={n0}, ({r1}) {fmt(g1)} at N={n1}"
    )
    hungry = None  # part (a): True holds, False refuted, None undecided
    if g0.sign > 0 and g1.hi < g0.lo:
        hungry = True
    elif g0.sign < 0 or g1.lo > g0.hi:
        hungry = False
    big, levels = runs[runs.n_train == n1], count_levels(tables, runs)
    if BIGRAM not in levels or TRIGRAM not in levels:
        return "inconclusive", measured + f" ({_seeds(runs)}); {baselines.NOT_MEASURED}"
    measured += f"; at N={n1} {baselines.said(levels)}"
    failed = [m for m, x in big.groupby("model") if not estimate(x.best).below(levels[BIGRAM])]
    slow, tau, curves = None, threshold(runs, levels[TRIGRAM]), tables.get("curves")
    if tau is None:
        measured += "; (b) no model's best loss is below the count trigram: no tau"
    elif curves is not None and not curves.empty:
        s = steps_to(runs, curves, tau)
        timed = [m for m in (SLOW, *in_family(s, *ATTENTION)) if m in set(s.model)]
        if SLOW in in_family(s, "recurrent") and len(timed) > 1:
            a = min(timed[1:], key=lambda m: s[s.model == m].steps.mean())
            d = difference(s[s.model == SLOW].steps, s[s.model == a].steps)
            slow = {1: True, -1: False}.get(d.sign)
            measured += f"; steps to tau={tau:.2f} at N={n1}: {SLOW} - {a} {fmt(d)}"
            if s[s.model.isin([SLOW, a])].censored.all():  # both at the budget: undecided
                slow, measured = None, measured + " (neither reaches tau: both censored)"
    measured += f" ({_seeds(runs)})"
    if failed:
        return "inconclusive", measured + f"; control (count {RULE.learned}) not met: " + (
            ", ".join(failed)
        )
    if hungry is None or slow is None:
        return "inconclusive", measured
    if hungry and slow:
        return "supported", measured
    if not hungry and not slow:
        return "not supported", measured
    return "nuanced", measured


def _seeds(runs: pd.DataFrame) -> str:
    n = int(runs.groupby(["model", "n_train"]).seed.nunique().min())
    return f"{n} seed{'s' * (n > 1)}"


def verdicts(tables) -> list[Verdict]:
    result = verdict(tables)
    if result is None:
        return []
    v, measured = result
    measured += unnamed_text(study_runs(tables), COMPARES, ATTENTION_VS_RECURRENCE,
                             lambda runs: verdict(tables | {"runs": runs}))  # fmt: skip
    return [Verdict("C7", f"{STUDY} (text, N unique windows)", measured, RULE, v)]


def _profile(runs: pd.DataFrame) -> str:
    """What these runs are, read from them: models, T, pool sizes, cap, seeds."""
    lens = sorted(runs["data.seq_len"].dropna().unique()) if "data.seq_len" in runs else []
    T = ", ".join(str(int(t)) for t in lens) or "?"
    ns = ", ".join(f"{n:,}" for n in sorted(runs.n_train.unique()))
    return (
        f"These runs: {', '.join(sorted(runs.model.unique()))} at T = {T}, N = {ns} (the "
        f"verdict reads the smallest and the largest), a cap of {int(runs['train.steps'].max())} "
        f"steps, {_seeds(runs)} per cell."
    )


def section(tables, figs) -> str:
    runs = study_runs(tables)
    if runs.empty:
        return "_No completed runs of the data-efficiency study yet._"
    figure, rows = _figure(runs, tables, figs)
    result = verdict(tables)
    parts = [
        "Best held-out loss (early stopping) against the number of unique training windows N "
        "(mean and 95% interval over seeds); right: held-out loss against step at the largest "
        "N, with the threshold tau of part (b) and each model's mean steps to it marked on it. "
        "Every run has the same step cap and batch (N <= steps x batch); `train.patience` "
        "stops a run without a new best. "
        + _profile(runs)
        + " The GPU profile: size s, T = 256, N = 300, 3,000, 30,000, the lr swept in every "
        "cell. "
        + (f"Measured: {result[1]}." if result else ""),
        figure,
        md_table(pd.DataFrame(rows).pivot(index="N", columns="model", values="best_val_loss")
                 .reset_index()),
        "Learning rate per model (calibrated once per model on the control, the largest pool, "
        "and reused by every N and seed on the CPU profile; swept in every cell on the GPU "
        "profile, best kept):\n\n" + md_table(lr_table(runs)),
    ]  # fmt: skip
    return "\n\n".join(parts)


def _figure(runs, tables, figs) -> tuple[str, list]:
    """Left: best loss against N (a trend line only over three or more N); right: held-out
    loss against step at the largest N with tau and each model's steps to it (part (b))."""
    fig, axes = figs.figure(ncols=2, width=4.8)
    rows, ns = [], sorted(runs.n_train.unique())
    models = sorted(runs.model.unique())
    for i, (model, g) in enumerate(runs.groupby("model")):
        est = {n: estimate(x.best) for n, x in g.groupby("n_train")}
        e = list(est.values())
        mean = [x.mean for x in e]
        dodge = 1.08 ** (i - (len(models) - 1) / 2)  # side by side on the log axis
        yerr = clipped_yerr(mean, [x.lo for x in e], [x.hi for x in e])
        axes[0].errorbar([n * dodge for n in est], mean, yerr=yerr, marker="o", capsize=3,
                         color=figs.color(model), label=model,
                         ls="-" if len(ns) >= 3 else "none")  # fmt: skip
        rows += [
            {"model": model, "N": n, "best_val_loss": fmt(x), "seeds": x.n} for n, x in est.items()
        ]
    _count_lines(axes[0], runs, tables)
    log_axis(axes[0], "x", ticks=ns)
    axes[0].margins(x=0.15)
    axes[0].set(xlabel="unique training windows N (windows)",
                ylabel="best held-out loss (nats/token)",
                title=f"best held-out loss at {len(ns)} pool sizes")  # fmt: skip
    _steps_panel(axes[1], runs, tables, figs)
    keys = [key_entry("error bars: 95% interval over seeds", ls="", marker="|", ms=8)]
    if len(axes[1].containers):
        keys.append(key_entry("mean steps to tau (hollow: a seed never got there)", ls="",
                              marker="v", ms=7))  # fmt: skip
    figs.legend(fig, extra=keys)
    return figs.save(fig, "data_efficiency", "C7"), rows


def _count_lines(ax, runs, tables):
    """The count bigram's and trigram's loss at each N (fitted on that pool, scored on the
    same windows), gray, labelled at their right end: what counting reaches with that data."""
    for order, ls in ((BIGRAM, ":"), (TRIGRAM, "-.")):
        points = []
        for n, g in runs.groupby("n_train"):
            settings = baselines.settings_of(g, n_train=True)
            rows = baselines.rows_for(tables, STUDY, **settings) if settings else pd.DataFrame()
            level = baselines.levels(rows).get(order)
            if level is not None:
                points.append((n, level))
        if points:
            name = baselines.order_name(order)
            ax.plot(*zip(*points), color="0.45", ls=ls, lw=1.0, marker=".", label=f"_{name}")
            ax.annotate(f"count {name}", xy=points[-1], xytext=(3, 0), textcoords="offset points",
                        fontsize=7, color="0.35", va="center")  # fmt: skip


def _steps_panel(ax, runs, tables, figs):
    """Loss against step at the largest N, with the count bigram and trigram there; where
    tau is known, each model's mean steps to it (95% interval over seeds) marked on the tau
    line: the crossing part (b) reads."""
    levels, curves = count_levels(tables, runs), tables.get("curves")
    tau = threshold(runs, levels.get(TRIGRAM))
    baselines.draw(ax, levels)
    n1 = int(runs.n_train.max())
    c = pd.DataFrame()
    if curves is not None and not curves.empty:
        c = curves[curves.run.isin(runs[runs.n_train == n1].run)].dropna(subset=["val_loss"])
    for model, g in c.groupby("model"):
        by = g.groupby("step").val_loss
        e = [estimate(v) for _, v in by]
        figs.line(ax, list(by.groups), [x.mean for x in e], [x.lo for x in e],
                  [x.hi for x in e], model=model)  # fmt: skip
    if tau is not None and not c.empty:
        ax.axhline(tau, color="0.15", ls="--", lw=0.9, zorder=1.5,
                   label=f"tau = {tau:.2f} nats/token (part b)")  # fmt: skip
        s = steps_to(runs, curves, tau)
        k = s.model.nunique()
        for i, (model, g) in enumerate(s.groupby("model")):
            e = estimate(g.steps)
            xerr = clipped_yerr([e.mean], [e.lo], [e.hi])
            open_ = bool(g.censored.any())  # some seed never got there: a lower bound
            ax.errorbar(
                [e.mean],
                [tau],
                xerr=xerr,
                marker="v",
                ms=8,
                capsize=3,
                ls="none",
                color=figs.color(model),
                mfc="white" if open_ else figs.color(model),
                zorder=4,
                label=f"_{model} reaches tau",
                transform=offset_copy(
                    ax.transData, ax.figure, y=4 * (i - (k - 1) / 2), units="points"
                ),
            )  # models at one step side by side
    ax.set(xlabel="training step (steps)", ylabel="held-out loss (nats/token)",
           title=f"N = {n1}: steps to reach tau")  # fmt: skip
