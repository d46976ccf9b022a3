"""Recall versus distance (C5): lag_recall accuracy against the key-query distance d.

The lecture: in an RNN information from word a reaches word b only by surviving |b - a| state
updates, while attention has a direct edge. ``lag_recall`` isolates exactly that: one value to
carry over d distractor tokens. A distance counts as *solved* by a model when its mean
held-out accuracy over seeds is >= 90%; a model's *reach* is the longest d such that every
measured distance up to d is solved (0 when even the shortest is not).
"""

import pandas as pd
from matplotlib.ticker import NullFormatter

from seqbench.report import Claim
from seqbench.report.collect import complete
from seqbench.report.plot import color, figure, md_table, save

ORDER = 30
TITLE = "Recall versus distance (C5)"
STUDY = "recall"
SOLVED = 0.9
REACH_RATIO = 4  # the Transformer must reach this many times further than any recurrent model
ATTENTION = "transformer"


def accuracy_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation and seed count of held-out accuracy per (model, distance)."""
    ok = complete(runs, STUDY)
    if ok.empty:
        return pd.DataFrame()
    ok = ok[ok.task == "lagrecall"]
    return (
        ok.groupby(["model", "distance"])
        .agg(acc=("val_acc", "mean"), acc_std=("val_acc", "std"), seeds=("seed", "nunique"))
        .reset_index()
    )


def reach(acc: pd.DataFrame) -> dict:
    """Longest distance up to which every measured distance is solved, per model."""
    out = {}
    for model, g in acc.groupby("model"):
        best = 0
        for d, a in zip(g.sort_values("distance").distance, g.sort_values("distance").acc):
            if a < SOLVED:
                break
            best = int(d)
        out[model] = best
    return out


def verdict(acc: pd.DataFrame) -> tuple[str, str] | None:
    """(verdict, measured) from the accuracy table; None without a Transformer and at least
    one recurrent model, or when no model solves any distance (an uninformative budget)."""
    r = reach(acc)
    recurrent = {m: v for m, v in r.items() if m != ATTENTION}
    if ATTENTION not in r or not recurrent:
        return None
    tr, best_rec = r[ATTENTION], max(recurrent.values())
    if tr == 0 and best_rec == 0:
        return None  # nothing solved even the shortest distance: the budget decides nothing
    longest = acc.distance.max()
    at_longest = acc[acc.distance == longest].set_index("model")
    measured = (
        "reach (longest d solved at >= 90%): "
        + ", ".join(f"{m} {v}" for m, v in sorted(r.items()))
        + f"; accuracy at d={int(longest)}: "
        + ", ".join(
            f"{m} {at_longest.acc[m]:.2f}±{_std(at_longest.acc_std[m])}"
            for m in sorted(r)
            if m in at_longest.index
        )
        + f" ({int(acc.seeds.min())}+ seeds)"
    )
    if tr <= best_rec:
        return "not supported", measured
    if tr >= REACH_RATIO * best_rec:
        return "supported", measured
    return "nuanced", measured


def _std(v) -> str:
    return "nan" if pd.isna(v) else f"{v:.2f}"


def render(tables, out) -> str:
    acc = accuracy_table(tables["runs"])
    if acc.empty:
        return "_No completed runs of the recall study yet._"
    fig, axes = figure(width=6.0)
    ax = axes[0]
    for model, g in acc.groupby("model"):
        g = g.sort_values("distance")
        ax.errorbar(
            g.distance,
            g.acc,
            yerr=g.acc_std.fillna(0),
            label=model,
            color=color(model),
            marker="o",
            capsize=3,
        )
    ax.axhline(SOLVED, color="k", lw=0.6, ls=":")
    ax.set(
        xscale="log",
        xlabel="distance d between the pair and its query",
        ylabel="held-out accuracy",
        ylim=(0, 1.05),
        title="lag_recall",
    )
    ax.set_xticks(
        sorted(acc.distance.unique()), [str(int(d)) for d in sorted(acc.distance.unique())]
    )
    ax.xaxis.set_minor_formatter(NullFormatter())  # only the measured distances are labelled
    ax.legend(fontsize=8)
    wide = (
        acc.assign(cell=[f"{a:.2f}±{_std(s)}" for a, s in zip(acc.acc, acc.acc_std)])
        .pivot(index="distance", columns="model", values="cell")
        .reset_index()
    )
    reaches = ", ".join(f"{m}: {v}" for m, v in sorted(reach(acc).items()))
    return "\n\n".join(
        [
            "Held-out accuracy on `lag_recall` against the distance d (mean ± standard deviation "
            f"over {int(acc.seeds.min())}–{int(acc.seeds.max())} seeds; every model has the same "
            "size preset, steps, batch and data order; seq_len = d + 8). Chance is 1/n_keys. "
            "The dotted line is the 90% bar for *solved*.",
            save(fig, out, "recall_vs_distance"),
            md_table(wide),
            f"Reach (longest d with every distance up to it solved): {reaches}.",
        ]
    )


def claims(tables) -> list[Claim]:
    acc = accuracy_table(tables["runs"])
    result = verdict(acc) if not acc.empty else None
    if result is None:
        return []
    v, measured = result
    return [
        Claim(
            "C5",
            "recall (lag_recall vs distance)",
            measured,
            f"reach = longest d with mean accuracy >= {SOLVED:.0%} at every d up to it; "
            f"supported if the Transformer's reach is >= {REACH_RATIO}x every recurrent "
            "model's, not supported if some recurrent model reaches as far, nuanced "
            "between",
            v,
        )
    ]
