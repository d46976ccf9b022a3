"""Data efficiency (C7): held-out loss against the number of unique training sequences N.

Every family trains for the same number of steps on a pool of N unique text windows
(``data.n_train``; the pool repeats as often as the budget needs), N over several orders of
magnitude. The lecture: Transformers impose less structure, so they need more data before
they do useful work; LSTMs can do very well but take longer to train. Measured:

- the *gap* g(N) = loss_transformer(N) - min over recurrent models loss(N); where g changes
  sign the curves cross. "Needs more data" means g(N_min) > 0 and g shrinks as N grows.
- *steps to threshold* at the largest N, from the eval rows of the ``curves`` table: the
  first evaluated step at which a model's held-out loss is <= tau, one threshold for all
  families: tau = L + 0.1 (ln V - L), with L the worst family's best loss and ln V the loss
  of a uniform guess. Every family gets below tau (its best loss is <= L < tau), and the
  slack keeps the worst family from being timed at the exact step of its best loss.
"""

import math

import numpy as np
import pandas as pd

from seqbench.report import Claim
from seqbench.report.collect import complete
from seqbench.report.plot import color, figure, md_table, save

ORDER = 45
TITLE = "Data efficiency (C7)"
STUDY = "data_efficiency"
ATTENTION = "transformer"
SLOW = "lstm"  # the lecture names the LSTM as the one that takes longer to train
SLACK = 0.1  # tau sits this share of the way from the worst family's best loss to ln V


def loss_table(runs: pd.DataFrame) -> pd.DataFrame:
    ok = complete(runs, STUDY)
    if ok.empty or ok.n_train.isna().all():
        return pd.DataFrame()
    ok = ok[ok.n_train.notna()]
    return (
        ok.groupby(["model", "n_train"])
        .agg(loss=("val_loss", "mean"), loss_std=("val_loss", "std"), seeds=("seed", "nunique"))
        .reset_index()
    )


def gaps(table: pd.DataFrame) -> pd.Series:
    """g(N) = transformer loss - best recurrent loss, indexed by N."""
    wide = table.pivot(index="n_train", columns="model", values="loss").sort_index()
    rec = [m for m in wide.columns if m != ATTENTION]
    return (wide[ATTENTION] - wide[rec].min(axis=1)).dropna()


def crossings(g: pd.Series) -> list[str]:
    """Between which N the sign of the gap changes (a gap of exactly 0 is a touch, skipped)."""
    g = g[g != 0]
    out, ns, s = [], list(g.index), np.sign(g.values)
    for i in range(1, len(ns)):
        if s[i] != s[i - 1]:
            out.append(f"{int(ns[i - 1])}–{int(ns[i])}")
    return out


def steps_to_threshold(curves: pd.DataFrame, runs: pd.DataFrame) -> tuple[dict, float] | None:
    """First eval step where each model's val_loss <= threshold, at the largest N."""
    ok = complete(runs, STUDY)
    if ok.empty or curves.empty:
        return None
    biggest = ok[ok.n_train == ok.n_train.max()]
    c = curves[curves.run.isin(biggest.run) & curves.val_loss.notna()]
    if c.empty:
        return None
    mean = c.groupby(["model", "step"]).val_loss.mean().reset_index()
    worst_best = float(mean.groupby("model").val_loss.min().max())
    uniform = math.log(float(biggest.vocab_size.iloc[0]))
    threshold = worst_best + SLACK * max(uniform - worst_best, 0.0)
    out = {}
    for model, g in mean.groupby("model"):
        hit = g[g.val_loss <= threshold + 1e-12]
        out[model] = int(hit.step.min()) if len(hit) else None
    return out, threshold


def verdict(table: pd.DataFrame, steps: dict | None) -> tuple[str, str] | None:
    if table.empty or ATTENTION not in set(table.model) or table.model.nunique() < 2:
        return None
    g = gaps(table)
    if len(g) < 2:
        return None
    hungry = bool(g.iloc[0] > 0 and g.iloc[-1] < g.iloc[0])
    slow = None
    if steps and SLOW in steps and ATTENTION in steps:
        slow = (
            steps[SLOW] is not None
            and steps[ATTENTION] is not None
            and (steps[SLOW] > steps[ATTENTION])
        )
    cross = crossings(g)
    measured = (
        f"gap transformer - best recurrent: {g.iloc[0]:+.3f} nats at N={int(g.index[0])}"
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


def render(tables, out) -> str:
    table = loss_table(tables["runs"])
    if table.empty:
        return "_No completed runs of the data-efficiency study yet._"
    fig, axes = figure(ncols=2, width=4.8)
    for model, g in table.groupby("model"):
        axes[0].errorbar(
            g.n_train,
            g.loss,
            yerr=g.loss_std.fillna(0),
            marker="o",
            label=model,
            color=color(model),
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
    st = steps_to_threshold(tables["curves"], tables["runs"])
    ok = complete(tables["runs"], STUDY)
    biggest = ok[ok.n_train == ok.n_train.max()]
    c = tables["curves"]
    c = c[c.run.isin(biggest.run) & c.val_loss.notna()] if not c.empty else c
    for model, g in c.groupby("model") if not c.empty else []:
        m = g.groupby("step").val_loss.mean()
        axes[1].plot(m.index, m.values, label=model, color=color(model))
    if st:
        axes[1].axhline(st[1], color="k", lw=0.6, ls=":")
    axes[1].set(xlabel="step", ylabel="held-out loss", title=f"N={int(ok.n_train.max())}")
    parts.append(save(fig, out, "data_efficiency"))
    wide = table.pivot(index="n_train", columns="model", values="loss").reset_index()
    parts.append(md_table(wide.round(3)))
    if st:
        parts.append(
            f"Steps to reach held-out loss tau = {st[1]:.3f} (the worst family's best "
            f"plus {SLACK:.0%} of its distance to ln V) at the largest N: "
            + ", ".join(f"{m} {s if s is not None else 'never'}" for m, s in sorted(st[0].items()))
            + "."
        )
    return "\n\n".join(parts)


def claims(tables) -> list[Claim]:
    table = loss_table(tables["runs"])
    st = steps_to_threshold(tables["curves"], tables["runs"])
    result = verdict(table, st[0] if st else None)
    if result is None:
        return []
    v, measured = result
    return [
        Claim(
            "C7",
            "data_efficiency (text, N unique windows)",
            measured,
            "two parts: (a) the Transformer needs more data: its loss minus the best "
            "recurrent model's is > 0 at the smallest N and smaller at the largest N; "
            "(b) the LSTM takes more steps than the Transformer to reach tau = worst "
            f"family's best loss + {SLACK:.0%} of its gap to ln V, at the largest N. "
            "supported if both hold, not supported if neither, nuanced if one",
            v,
        )
    ]
