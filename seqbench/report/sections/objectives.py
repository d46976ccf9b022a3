"""Causal versus masked objective at equal counted compute (C8).

Rows of the ``objectives`` table (seqbench/measure/objectives.py, ``what=prefix_eval``): for
each step budget, the same Transformer trained causally and as a 15%-masked bidirectional
encoder on the same text; training FLOPs counted with FlopCounterMode; the exact number of
supervised targets per pass; and both models' held-out loss at predicting the next word from
the prefix alone (the masked model fills a [MASK] placed right after the prefix).
"""

import pandas as pd
from matplotlib.ticker import NullFormatter

from seqbench.report import Claim
from seqbench.report.plot import figure, md_table, save

ORDER = 50
TITLE = "Causal versus masked objective (C8)"
COLORS = {"causal": "tab:blue", "masked": "tab:purple"}
MATCHED = 0.05  # compute counts as equal when the FLOPs differ by less than this fraction


def budget_table(objectives: pd.DataFrame | None) -> pd.DataFrame:
    """One row per (objective, steps): mean prefix loss over prefix lengths and the counts."""
    if objectives is None or objectives.empty:
        return pd.DataFrame()
    ok = objectives[objectives.status == "complete"] if "status" in objectives else objectives
    if ok.empty:
        return pd.DataFrame()
    return (
        ok.groupby(["objective", "steps"])
        .agg(
            train_flops=("train_flops", "mean"),
            prefix_loss=("prefix_loss", "mean"),
            prefix_acc=("prefix_acc", "mean"),
            targets_per_pass=("targets_per_pass", "mean"),
            tokens_per_pass=("tokens_per_pass", "mean"),
            val_loss=("val_loss", "mean"),
        )
        .reset_index()
    )


def verdict(table: pd.DataFrame) -> tuple[str, str] | None:
    wide = table.pivot(
        index="steps",
        columns="objective",
        values=["prefix_loss", "train_flops", "targets_per_pass"],
    ).dropna()
    if wide.empty or "causal" not in wide.prefix_loss or "masked" not in wide.prefix_loss:
        return None
    causal, masked = wide.prefix_loss.causal, wide.prefix_loss.masked
    flops_gap = (wide.train_flops.masked / wide.train_flops.causal - 1).abs().max()
    ratio = (wide.targets_per_pass.causal / wide.targets_per_pass.masked).mean()
    wins = int((causal < masked).sum())
    measured = (
        "next-word-from-prefix loss causal vs masked: "
        + ", ".join(f"{c:.2f} vs {m:.2f}" for c, m in zip(causal, masked))
        + f" at {len(wide)} budgets "
        f"(up to {wide.train_flops.causal.max():.2e} FLOPs, matched within "
        f"{flops_gap:.1%}); supervised targets per pass causal/masked = {ratio:.1f}x"
    )
    if flops_gap > MATCHED:
        return "nuanced", measured + " (compute not matched)"
    if wins == len(wide):
        return "supported", measured
    if wins == 0:
        return "not supported", measured
    return "nuanced", measured


def render(tables, out) -> str:
    table = budget_table(tables.get("objectives"))
    if table.empty:
        return "_No completed prefix_eval measurements yet._"
    fig, axes = figure(ncols=2, width=4.6)
    for obj, g in table.groupby("objective"):
        g = g.sort_values("train_flops")
        axes[0].plot(g.train_flops, g.prefix_loss, marker="o", label=obj, color=COLORS.get(obj))
    axes[0].set(
        xscale="log",
        xlabel="training FLOPs (counted)",
        ylabel="next-word loss from the prefix",
        title="held-out, mean over prefixes",
    )
    axes[0].xaxis.set_minor_formatter(NullFormatter())  # 3x10^11, 4x10^11 ... would overlap
    axes[0].legend(fontsize=8)
    rows = tables["objectives"]
    largest = rows[rows.steps == rows.steps.max()]
    for obj, g in largest.groupby("objective"):
        g = g.sort_values("prefix_len")
        axes[1].plot(g.prefix_len, g.prefix_loss, marker="o", label=obj, color=COLORS.get(obj))
    axes[1].set(
        xscale="log",
        xlabel="prefix length p",
        ylabel="loss of x_{p+1}",
        title=f"largest budget ({int(rows.steps.max())} steps)",
    )
    lengths = sorted(largest.prefix_len.unique())
    axes[1].set_xticks(lengths, [str(int(p)) for p in lengths])
    axes[1].xaxis.set_minor_formatter(NullFormatter())
    return "\n\n".join(
        [
            "The same Transformer trained causally (next token at every position) and as a "
            "bidirectional encoder on 15% masked tokens, same text, same steps and batch. "
            "`train_flops` = steps x FLOPs of one training step's forward + backward counted by "
            "`FlopCounterMode`; `targets_per_pass` = exact scored positions per training batch; "
            "`prefix_loss` = held-out loss of the next word given only the prefix.",
            save(fig, out, "causal_vs_masked"),
            md_table(table.round(4), ".4g"),
        ]
    )


def claims(tables) -> list[Claim]:
    table = budget_table(tables.get("objectives"))
    result = verdict(table) if not table.empty else None
    if result is None:
        return []
    v, measured = result
    return [
        Claim(
            "C8",
            "causal_vs_masked (text, counted FLOPs)",
            measured,
            "supported if the causal model's next-word-from-prefix loss is lower than the "
            "masked model's at every compute budget (FLOPs matched within "
            f"{MATCHED:.0%}), not supported if it is never lower, nuanced otherwise",
            v,
        )
    ]
