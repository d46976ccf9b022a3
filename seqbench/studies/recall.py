"""Recall versus distance (C5): lag_recall accuracy against the key-query distance d.

The lecture: in an RNN information from word a reaches word b only by surviving |b - a| state
updates, while attention has a direct edge. ``lag_recall`` isolates exactly that: one value to
carry over d distractor tokens. A distance counts as *solved* by a model when its mean
held-out accuracy over seeds reaches RULE.solved; a model's *reach* is the longest d such that
every measured distance up to d is solved (0 when even the shortest is not). The attention
family is compared with the recurrences (families ``recurrent`` and ``scan``).
"""

import pandas as pd
from matplotlib.ticker import NullFormatter

from seqbench.report.plot import md_table
from seqbench.studies import Rule, Verdict, complete, in_family, train

TITLE = "Recall versus distance (C5)"
ORDER = 30
DECIDES = ("C5",)
ATTENTION, RECURRENCES = ("attention",), ("recurrent", "scan")
RULE = Rule(
    "reach = longest d with mean accuracy >= {solved:.0%} at every d up to it; supported if "
    "the attention model's reach is >= {ratio}x every recurrent model's, not supported if "
    "some recurrent model reaches as far, nuanced between",
    solved=0.9,
    ratio=4,
)
_SWEEP = "hydra.sweeper.params.data='{distance:4,seq_len:12},{distance:16,seq_len:24}'"
BENCH = {
    "smoke": [
        train(
            "recall",
            "-m",
            "+experiment=recall",
            _SWEEP,
            "seed=0",
            "train.steps=10",
            "train.eval_batches=2",
        ),
    ],
    "cpu": [
        train(
            "recall",
            "-m",
            "+experiment=recall",
            "seed=0,1",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
        ),
        train(
            "recall_scan",
            "-m",
            "+experiment=recall",
            "model=mingru,minlstm",
            "seed=0",
            "hydra.sweeper.params.data='{distance:4,seq_len:12},{distance:16,seq_len:24},"
            "{distance:64,seq_len:72}'",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
        ),
    ],
    "gpu": [
        train(
            "recall",
            "-m",
            "+experiment=recall",
            "model=rnn,lstm,gru,transformer,mingru,minlstm",
            "model.size=s",
            "train.steps=1000",
            "train.batch_size=32",
            "train.threads=2",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=4",
            "hydra.sweeper.params.data='{distance:16,seq_len:24},{distance:64,seq_len:72},"
            "{distance:256,seq_len:264},{distance:1024,seq_len:1032}'",
        ),
    ],
}


def accuracy_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation and seed count of held-out accuracy per (model, distance)."""
    ok = complete(runs, "recall")
    if ok.empty:
        return pd.DataFrame()
    ok = ok[ok.task == "lagrecall"].rename(columns={"data.distance": "distance"})
    return (
        ok.groupby(["model", "family", "distance"])
        .agg(acc=("val_acc", "mean"), acc_std=("val_acc", "std"), seeds=("seed", "nunique"))
        .reset_index()
    )


def reach(acc: pd.DataFrame) -> dict:
    """Longest distance up to which every measured distance is solved, per model."""
    out = {}
    for model, g in acc.groupby("model"):
        best = 0
        g = g.sort_values("distance")
        for d, a in zip(g.distance, g.acc):
            if a < RULE.solved:
                break
            best = int(d)
        out[model] = best
    return out


def verdict(acc: pd.DataFrame) -> tuple[str, str] | None:
    """(verdict, measured) from the accuracy table; None without an attention model and at
    least one recurrent model, or when no model solves any distance (uninformative)."""
    r = reach(acc)
    attention = {m: r[m] for m in in_family(acc, *ATTENTION)}
    recurrent = {m: r[m] for m in in_family(acc, *RECURRENCES)}
    if not attention or not recurrent:
        return None
    tr, best_rec = min(attention.values()), max(recurrent.values())
    if tr == 0 and best_rec == 0:
        return None  # nothing solved even the shortest distance: the budget decides nothing
    longest = acc.distance.max()
    at_longest = acc[acc.distance == longest].set_index("model")
    measured = (
        f"reach (longest d solved at >= {RULE.solved:.0%}): "
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
    if tr >= RULE.ratio * best_rec:
        return "supported", measured
    return "nuanced", measured


def _std(v) -> str:
    return "nan" if pd.isna(v) else f"{v:.2f}"


def verdicts(tables) -> list[Verdict]:
    acc = accuracy_table(tables["runs"])
    result = verdict(acc) if not acc.empty else None
    if result is None:
        return []
    v, measured = result
    return [Verdict("C5", "recall (lag_recall vs distance)", measured, RULE, v)]


def section(tables, figs) -> str:
    acc = accuracy_table(tables["runs"])
    if acc.empty:
        return "_No completed runs of the recall study yet._"
    fig, axes = figs.figure(width=6.0)
    ax = axes[0]
    for model, g in acc.groupby("model"):
        g = g.sort_values("distance")
        ax.errorbar(
            g.distance,
            g.acc,
            yerr=g.acc_std.fillna(0),
            label=model,
            color=figs.color(model),
            marker="o",
            capsize=3,
        )
    ax.axhline(RULE.solved, color="k", lw=0.6, ls=":")
    ax.set(
        xscale="log",
        xlabel="distance d between the pair and its query",
        ylabel="held-out accuracy",
        ylim=(0, 1.05),
        title="lag_recall",
    )
    distances = sorted(acc.distance.unique())
    ax.set_xticks(distances, [str(int(d)) for d in distances])
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
            f"The dotted line is the {RULE.solved:.0%} bar for *solved*.",
            figs.save(fig, "recall_vs_distance"),
            md_table(wide),
            f"Reach (longest d with every distance up to it solved): {reaches}.",
        ]
    )
