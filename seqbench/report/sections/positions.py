"""Loss by position in the context (C5; Kaplan et al. 2020, Fig. 7).

The harness writes, at every run's final evaluation, the mean held-out loss at each token
index t of the context window (``positions`` table). On text a model that uses long context
keeps lowering its loss as t grows; Kaplan et al. found an LSTM's curve flat after ~100
tokens while a Transformer's kept falling. Measured here as the *late gain*: mean loss over
the second quarter of the window minus mean loss over the last quarter (nats; > 0 means the
model still profits from context that far back).

Runs used: complete text runs that saw unrestricted data (``n_train`` null, or the largest
pool of their study), grouped by (study, seq_len); the verdict reads the group with the
longest context that has a Transformer and a recurrent model.
"""

import pandas as pd

from seqbench.report import Claim
from seqbench.report.collect import complete
from seqbench.report.plot import color, figure, md_table, save

ORDER = 34
TITLE = "Loss by position in the context (C5, Kaplan Fig. 7)"
ATTENTION = "transformer"


def position_curves(tables) -> pd.DataFrame:
    """Mean held-out loss per (study, seq_len, model, position) over seeds."""
    runs, pos = complete(tables["runs"]), tables.get("positions", pd.DataFrame())
    if runs.empty or pos.empty:
        return pd.DataFrame()
    text = runs[(runs.task == "text") & (runs.get("causal", True) != False)]  # noqa: E712
    if text.empty:
        return pd.DataFrame()
    most = text.n_train.fillna(float("inf"))
    keep = most == most.groupby(text.study).transform("max")
    text = text[keep]
    merged = pos.merge(text[["run", "study", "seq_len", "model"]], on="run")
    families = merged.groupby(["study", "seq_len"]).model.transform("nunique")
    merged = merged[families >= 2]  # a comparison needs two families (not C8's lone Transformer)
    return (
        merged.groupby(["study", "seq_len", "model", "position"])
        .agg(loss=("loss", "mean"), seeds=("run", "nunique"))
        .reset_index()
    )


def late_gain(curve: pd.DataFrame) -> float:
    """Mean loss over positions [T/4, T/2) minus mean loss over [3T/4, T)."""
    T = int(curve.position.max()) + 1
    second = curve[(curve.position >= T // 4) & (curve.position < T // 2)].loss.mean()
    last = curve[curve.position >= 3 * T // 4].loss.mean()
    return float(second - last)


def verdict(curves: pd.DataFrame) -> tuple[str, str, str] | None:
    """(verdict, measured, group) on the longest-context group with both kinds of model."""
    groups = []
    for (study, T), g in curves.groupby(["study", "seq_len"]):
        models = set(g.model)
        if ATTENTION in models and len(models) > 1:
            groups.append((T, study, g))
    if not groups:
        return None
    T, study, g = max(groups, key=lambda x: x[0])
    gains = {m: late_gain(c) for m, c in g.groupby("model")}
    rec = {m: v for m, v in gains.items() if m != ATTENTION}
    measured = (
        f"late gain (loss at t in [T/4, T/2) minus [3T/4, T), T={int(T)}): "
        + ", ".join(f"{m} {v:+.3f}" for m, v in sorted(gains.items()))
        + " nats"
    )
    tr = gains[ATTENTION]
    if tr > max(rec.values()):
        return "supported", measured, f"{study}, T={int(T)}"
    if tr < min(rec.values()):
        return "not supported", measured, f"{study}, T={int(T)}"
    return "nuanced", measured, f"{study}, T={int(T)}"


def render(tables, out) -> str:
    curves = position_curves(tables)
    if curves.empty:
        return "_No completed text runs with a position_loss.csv yet._"
    groups = list(curves.groupby(["study", "seq_len"]))
    fig, axes = figure(ncols=len(groups), width=4.5)
    rows = []
    for ax, ((study, T), g) in zip(axes, groups):
        for model, c in g.groupby("model"):
            ax.plot(c.position + 1, c.loss, label=model, color=color(model))
            rows.append(
                {
                    "study": study,
                    "seq_len": int(T),
                    "model": model,
                    "loss_first": float(c.loss.iloc[0]),
                    "loss_last_quarter": float(c[c.position >= 3 * int(T) // 4].loss.mean()),
                    "late_gain": late_gain(c),
                    "seeds": int(c.seeds.max()),
                }
            )
        ax.set(
            xscale="log",
            xlabel="token index t in the context",
            ylabel="held-out loss",
            title=f"{study} (T={int(T)})",
        )
    axes[0].legend(fontsize=8)
    return "\n\n".join(
        [
            "Mean held-out loss at each position of the context window (final evaluation, mean "
            "over seeds; log x axis as in Kaplan et al. 2020 Fig. 7). `late_gain` = mean loss over "
            "the second quarter of the window minus the last quarter: how much the model still "
            "gains from context that far back.",
            save(fig, out, "loss_by_position"),
            md_table(pd.DataFrame(rows).round(4)),
        ]
    )


def claims(tables) -> list[Claim]:
    curves = position_curves(tables)
    result = verdict(curves) if not curves.empty else None
    if result is None:
        return []
    v, measured, group = result
    return [
        Claim(
            "C5",
            f"loss by position ({group})",
            measured,
            "supported if the Transformer's late gain exceeds every recurrent model's, "
            "not supported if it is below every one, nuanced between",
            v,
        )
    ]
