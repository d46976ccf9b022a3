"""Information path length (study path_length): gradient influence versus distance (C5).

Figure: the batch-averaged norm of d log p(target at t) / d e_{t-d} against d, for each model
untrained (what the architecture alone passes back) and trained on lag_recall (what the
model learned to use; the dotted line marks the task's recall distance). Claim C5 is judged
on how fast the influence decays with distance.
"""

import numpy as np
import pandas as pd

from seqbench.measure.analysis import RECURRENT, fmt, only_complete, ratio
from seqbench.report import Claim
from seqbench.report.plot import color, figure, save

ORDER = 26
TITLE = "Information path length: gradient influence vs distance (C5)"
STUDY = "path_length"
NEAR = 4  # d = 1..NEAR is "near"
DECAY = 10.0  # C5: a recurrence loses at least this factor from near to far, attention less


def _table(tables):
    df = only_complete(tables, "influence", STUDY)
    if df.empty:
        return df
    df["trained"] = df.trained.astype(str).str.lower().isin(["true", "1", "1.0"])
    df = df[df.d >= 1]
    return (
        df.groupby(["model", "trained", "d"])
        .agg(
            grad_norm=("grad_norm", "mean"),
            examples=("examples", "sum"),
            distance=("distance", "first"),
            val_acc=("val_acc", "mean"),
        )
        .reset_index()
    )


def decay(g: pd.DataFrame) -> float:
    """Mean influence at d = 1..NEAR over mean influence across the farthest quarter of the
    distances that at least a quarter of the batch reaches."""
    g = g[g.examples >= g.examples.max() / 4].sort_values("d")
    if len(g) < 2 * NEAR:
        return float("nan")
    far = g[g.d >= g.d.max() - (g.d.max() - 1) / 4]
    return ratio(g[g.d <= NEAR].grad_norm.mean(), far.grad_norm.mean())


def render(tables, out) -> str:
    df = _table(tables)
    if df.empty:
        return "_No completed path_length runs._"
    fig, axes = figure(ncols=2, width=4.8)
    for ax, trained in zip(axes, (False, True)):
        sub = df[df.trained == trained]
        for m, g in sub.groupby("model"):
            acc = g.val_acc.iloc[0]
            label = m + (f" (acc {acc:.2f})" if trained and pd.notna(acc) else "")
            ax.plot(g.d, g.grad_norm, color=color(m), label=label)
        dist = sub.distance.dropna()
        if len(dist):
            ax.axvline(float(dist.iloc[0]), ls=":", color="gray")
        ax.set(
            yscale="log",
            xlabel="distance d = t - s",
            ylabel="‖∂ log p(y_t) / ∂ e_s‖",
            title="trained on the task" if trained else "untrained",
        )
        ax.legend(fontsize=7)
    parts = [
        "Gradient of the log-probability of the target at the scored position t with "
        "respect to the input embedding at t - d, norm averaged over a held-out batch "
        "(the dotted line: the task's distance between the value and the query).",
        save(fig, out, "influence_vs_distance"),
        _reading(df),
    ]
    return "\n\n".join(parts)


def _decays(df):
    return {(m, tr): decay(g) for (m, tr), g in df.groupby(["model", "trained"])}


def _reading(df) -> str:
    d = _decays(df)
    said = [
        f"{m} {'trained' if tr else 'untrained'} ×{fmt(v, 3)}"
        for (m, tr), v in sorted(d.items())
        if not np.isnan(v)
    ]
    peaks = []
    for m, g in df[df.trained].groupby("model"):
        dist = g.distance.dropna()
        if not len(dist):
            continue
        at = g[g.d == int(dist.iloc[0])].grad_norm
        rest = g[(g.d > int(dist.iloc[0]) + 2) | (g.d < int(dist.iloc[0]) - 2)].grad_norm
        if len(at) and len(rest):
            acc = g.val_acc.iloc[0]
            peaks.append(
                f"{m} ×{fmt(ratio(at.iloc[0], rest.median()), 3)} (held-out accuracy {fmt(acc, 2)})"
            )
    text = (
        f"**Reading.** Influence falls from near (d <= {NEAR}) to far (the farthest quarter "
        f"of distances) by a factor of: {', '.join(said)} (∞: the far gradient underflows "
        "to 0)."
    )
    if peaks:
        text += (
            " After training, the influence at the task's recall distance relative to "
            "the median elsewhere is " + ", ".join(peaks) + ". A peak there means the "
            "model has learned a path from the value it must recall to the answer."
        )
    return text


def claims(tables) -> list:
    df = _table(tables)
    if df.empty:
        return []
    d = {k: v for k, v in _decays(df).items() if not k[1]}  # untrained: the architecture
    rec = {m: v for (m, _), v in d.items() if m in RECURRENT and not np.isnan(v)}
    tf = d.get(("transformer", False), float("nan"))
    if not rec or np.isnan(tf):
        return []
    ok = all(v >= DECAY for v in rec.values()) and tf < DECAY
    return [
        Claim(
            "C5",
            "path_length",
            "untrained near/far influence ratio: "
            + ", ".join(f"{m} {fmt(v, 3)}" for m, v in sorted(rec.items()))
            + f", transformer {fmt(tf, 3)}",
            f"supported if, untrained, every recurrent model's gradient influence falls "
            f">= {DECAY:g}x from d <= {NEAR} to the farthest quarter of distances and the "
            f"Transformer's falls < {DECAY:g}x",
            "supported" if ok else "not supported",
        )
    ]
