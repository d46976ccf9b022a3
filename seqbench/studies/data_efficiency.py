"""Data efficiency (C7): held-out loss against the number of unique training sequences N.

Every family trains for the same number of steps on a pool of N unique text windows
(``data.n_train``; the pool repeats as often as the budget needs), N over several orders of
magnitude. The lecture: Transformers impose less structure, so they need more data before
they do useful work; LSTMs can do very well but take longer to train. Measured:

- the *gap* g(N) = best attention loss(N) - best recurrence loss(N) (families ``recurrent``
  and ``scan``); where g changes sign the curves cross. "Needs more data" means g(N_min) > 0
  and g shrinks as N grows.
- *steps to threshold* at the largest N, from the eval rows of the ``curves`` table: the
  first evaluated step at which a model's held-out loss is <= tau, one threshold for all
  families: tau = L + RULE.slack (ln V - L), with L the worst family's best loss and ln V the
  loss of a uniform guess. Every family gets below tau (its best loss is <= L < tau), and the
  slack keeps the worst family from being timed at the exact step of its best loss.
"""

import math

import numpy as np
import pandas as pd

from seqbench.report.plot import md_table
from seqbench.studies import Rule, Verdict, complete, in_family, train

TITLE = "Data efficiency (C7)"
ORDER = 45
DECIDES = ("C7",)
ATTENTION, RECURRENCES = ("attention",), ("recurrent", "scan")
# part (b) is about the LSTM because the lecture's claim names it ("LSTMs take longer to
# train"); it is looked up among the recurrent family's models, never assumed present
SLOW = "lstm"
RULE = Rule(
    "two parts: (a) the Transformer needs more data: its loss minus the best recurrent or "
    "scan model's is > 0 at the smallest N and smaller at the largest N; (b) the LSTM takes more "
    "steps than the Transformer to reach tau = worst family's best loss + {slack:.0%} of its "
    "gap to ln V, at the largest N. supported if both hold, not supported if neither, "
    "nuanced if one",
    slack=0.1,
)
_GPU = (
    "model.size=s",
    "data.seq_len=256",
    "train.steps=2000",
    "train.eval_every=100",
    "train.threads=2",
    "hydra/launcher=joblib",
    "hydra.launcher.n_jobs=4",
)
BENCH = {
    "smoke": [
        train("data_efficiency", "-m", "+experiment=data_efficiency", "data.n_train=10,1000",
              "train.steps=10", "train.eval_every=5", "train.eval_batches=1"),
    ],
    "cpu": [
        train("data_efficiency", "-m", "+experiment=data_efficiency", "hydra/launcher=joblib",
              "hydra.launcher.n_jobs=2"),
    ],
    "gpu": [train("data_efficiency", "-m", "+experiment=data_efficiency", *_GPU)],
}  # fmt: skip


def _runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Complete runs of the study that had a pool size, with it as column ``n_train``."""
    ok = complete(runs, "data_efficiency")
    if ok.empty or "data.n_train" not in ok or ok["data.n_train"].isna().all():
        return pd.DataFrame()
    ok = ok[ok["data.n_train"].notna()]
    return ok.assign(n_train=ok["data.n_train"])


def loss_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation and seed count of final held-out loss per (model, N)."""
    ok = _runs(runs)
    if ok.empty:
        return ok
    return (
        ok.groupby(["model", "family", "n_train"])
        .agg(loss=("val_loss", "mean"), loss_std=("val_loss", "std"), seeds=("seed", "nunique"))
        .reset_index()
    )


def gaps(table: pd.DataFrame) -> pd.Series:
    """g(N) = best attention loss - best recurrence loss, indexed by N."""
    wide = table.pivot(index="n_train", columns="model", values="loss").sort_index()
    attention = wide[in_family(table, *ATTENTION)].min(axis=1)  # one model: its own curve
    recurrent = wide[in_family(table, *RECURRENCES)].min(axis=1)
    return (attention - recurrent).dropna()


def crossings(g: pd.Series) -> list[str]:
    """Between which N the sign of the gap changes (a gap of exactly 0 is a touch, skipped)."""
    g = g[g != 0]
    out, ns, s = [], list(g.index), np.sign(g.values)
    for i in range(1, len(ns)):
        if s[i] != s[i - 1]:
            out.append(f"{int(ns[i - 1])}–{int(ns[i])}")
    return out


def _largest_pool(tables) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs, their eval rows of the curves table) at the largest N."""
    ok, curves = _runs(tables["runs"]), tables["curves"]
    if ok.empty or curves.empty:
        return ok, pd.DataFrame()
    biggest = ok[ok.n_train == ok.n_train.max()]
    return biggest, curves[curves.run.isin(biggest.run) & curves.val_loss.notna()]


def steps_to_threshold(tables) -> tuple[dict, float] | None:
    """({model: first eval step with val_loss <= tau, or None}, tau) at the largest N."""
    biggest, c = _largest_pool(tables)
    if c.empty:
        return None
    mean = c.groupby(["model", "step"]).val_loss.mean().reset_index()  # over seeds
    worst_best = float(mean.groupby("model").val_loss.min().max())
    uniform = math.log(float(biggest.vocab_size.iloc[0]))  # loss of a uniform guess, ln V
    threshold = worst_best + RULE.slack * max(uniform - worst_best, 0.0)
    out = {}
    for model, g in mean.groupby("model"):
        hit = g[g.val_loss <= threshold + 1e-12]  # the worst family's own best counts as a hit
        out[model] = int(hit.step.min()) if len(hit) else None
    return out, threshold


def verdict(table: pd.DataFrame, steps: dict | None) -> tuple[str, str] | None:
    """(verdict, measured) from the loss table and the steps to tau; None without an
    attention model and a recurrence measured at two or more N."""
    if table.empty or not in_family(table, *ATTENTION) or not in_family(table, *RECURRENCES):
        return None
    g = gaps(table)
    if len(g) < 2:
        return None
    hungry = bool(g.iloc[0] > 0 and g.iloc[-1] < g.iloc[0])  # part (a)
    attention = in_family(table, *ATTENTION)
    timed = [SLOW, *attention]
    slow = None  # part (b): undecided without the LSTM's and the attention models' steps
    if steps and SLOW in in_family(table, "recurrent") and all(m in steps for m in timed):
        reached = None not in [steps[m] for m in timed]  # None: never got below tau
        slow = reached and steps[SLOW] > max(steps[m] for m in attention)
    cross = crossings(g)
    measured = (
        f"gap {'/'.join(attention)} - best of {'/'.join(in_family(table, *RECURRENCES))}: "
        f"{g.iloc[0]:+.3f} nats at N={int(g.index[0])}"
        f", {g.iloc[-1]:+.3f} at N={int(g.index[-1])}; crossing at N "
        f"{', '.join(cross) if cross else 'none'}"
    )
    if steps:
        measured += "; steps to threshold " + ", ".join(
            f"{m} {s if s is not None else '-'}" for m, s in sorted(steps.items())
        )
    parts = [hungry] + ([slow] if slow is not None else [])
    if all(parts):
        return "supported", measured
    if not any(parts):
        return "not supported", measured
    return "nuanced", measured


def verdicts(tables) -> list[Verdict]:
    table = loss_table(tables["runs"])
    st = steps_to_threshold(tables)
    result = verdict(table, st[0] if st else None)
    if result is None:
        return []
    v, measured = result
    return [Verdict("C7", "data_efficiency (text, N unique windows)", measured, RULE, v)]


def section(tables, figs) -> str:
    table = loss_table(tables["runs"])
    if table.empty:
        return "_No completed runs of the data-efficiency study yet._"
    fig, axes = figs.figure(ncols=2, width=4.8)  # left: loss vs N; right: loss vs step
    for model, g in table.groupby("model"):
        axes[0].errorbar(
            g.n_train,
            g.loss,
            yerr=g.loss_std.fillna(0),
            marker="o",
            label=model,
            color=figs.color(model),
            capsize=3,
        )
    axes[0].set(
        xscale="log",
        xlabel="unique training sequences N",
        ylabel="held-out loss",
        title="same step budget, N unique windows",
    )
    axes[0].legend(fontsize=8)
    parts = [
        "Final held-out loss against the number of unique training windows N (mean ± std "
        "over seeds); every run takes the same steps and batch, so small pools repeat."
    ]
    st = steps_to_threshold(tables)
    biggest, c = _largest_pool(tables)
    for model, g in c.groupby("model") if not c.empty else []:
        m = g.groupby("step").val_loss.mean()
        axes[1].plot(m.index, m.values, label=model, color=figs.color(model))
    if st:
        axes[1].axhline(st[1], color="k", lw=0.6, ls=":")
    axes[1].set(xlabel="step", ylabel="held-out loss", title=f"N={int(biggest.n_train.max())}")
    parts.append(figs.save(fig, "data_efficiency"))
    wide = table.pivot(index="n_train", columns="model", values="loss").reset_index()
    parts.append(md_table(wide.round(3)))
    if st:
        parts.append(
            f"Steps to reach held-out loss tau = {st[1]:.3f} (the worst family's best "
            f"plus {RULE.slack:.0%} of its distance to ln V) at the largest N: "
            + ", ".join(f"{m} {s if s is not None else 'never'}" for m, s in sorted(st[0].items()))
            + "."
        )
    return "\n\n".join(parts)
