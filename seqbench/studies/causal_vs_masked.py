"""Causal versus masked objective at equal counted compute (C8).

Rows of the ``objectives`` table (seqbench/measure/objectives.py, ``what=prefix_eval``): for
each step budget, the same Transformer trained causally and as a masked bidirectional encoder
on the same text; training FLOPs counted by ``seqbench.flops``; the exact number of supervised
targets per pass; and both models' held-out loss at predicting the next word from the prefix
alone (the masked model fills a [MASK] placed right after the prefix).
"""

import pandas as pd
from matplotlib.ticker import NullFormatter

from seqbench.report.plot import md_table
from seqbench.studies import Rule, Verdict, complete, measure

TITLE = "Causal versus masked objective (C8)"
ORDER = 50
DECIDES = ("C8",)
RULE = Rule(
    "supported if the causal model's next-word-from-prefix loss is lower than the masked "
    "model's at every compute budget (FLOPs matched within {matched:.0%}), not supported if "
    "it is never lower, nuanced otherwise",
    matched=0.05,  # compute counts as equal when the FLOPs differ by less than this fraction
)
# both lines are the same Transformer, so the model palette cannot tell them apart: the two
# objectives get colours of their own
COLORS = {"causal": "tab:blue", "masked": "tab:purple"}
_RUN = ("-m", "what=prefix_eval", "+experiment=causal_vs_masked")
BENCH = {
    "smoke": [measure("causal_vs_masked", *_RUN, "train.steps=10,20", "what.eval_batches=1")],
    "cpu": [measure("causal_vs_masked", *_RUN, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")],
    "gpu": [
        measure("causal_vs_masked", *_RUN, "model.size=s", "data.seq_len=256",
                "train.steps=250,500,1000,2000,4000", "train.threads=2",
                "hydra/launcher=joblib", "hydra.launcher.n_jobs=4"),
    ],
}  # fmt: skip


def budget_table(objectives: pd.DataFrame | None) -> pd.DataFrame:
    """One row per (objective, steps): mean prefix loss over prefix lengths and the counts."""
    ok = complete(objectives)  # every prefix_eval row, whichever study ran it
    if ok.empty:
        return ok
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
    """(verdict, measured) over the budgets both objectives measured; None without both."""
    wide = table.pivot(
        index="steps",
        columns="objective",
        values=["prefix_loss", "train_flops", "targets_per_pass"],
    ).dropna()  # [budgets, (value, objective)]
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
    if flops_gap > RULE.matched:
        return "nuanced", measured + " (compute not matched)"
    if wins == len(wide):
        return "supported", measured
    if wins == 0:
        return "not supported", measured
    return "nuanced", measured


def verdicts(tables) -> list[Verdict]:
    table = budget_table(tables.get("objectives"))
    result = verdict(table) if not table.empty else None
    if result is None:
        return []
    v, measured = result
    return [Verdict("C8", "causal_vs_masked (text, counted FLOPs)", measured, RULE, v)]


def _masked_share(table: pd.DataFrame) -> str:
    """'on 15% masked tokens', as the masked runs' targets per pass say; '' without them."""
    m = table[table.objective == "masked"]
    share = (m.targets_per_pass / m.tokens_per_pass).mean()
    return f" on {share:.0%} masked tokens" if pd.notna(share) else ""


def section(tables, figs) -> str:
    table = budget_table(tables.get("objectives"))
    if table.empty:
        return "_No completed prefix_eval measurements yet._"
    fig, axes = figs.figure(ncols=2, width=4.6)  # left: loss vs FLOPs; right: vs prefix length
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
    rows = complete(tables["objectives"])
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
            f"bidirectional encoder{_masked_share(table)}, same text, same steps and batch. "
            "`train_flops` = steps x FLOPs of one training step's forward + backward counted by "
            "`FlopCounterMode` (`seqbench.flops`); `targets_per_pass` = exact scored positions "
            "per training batch; "
            "`prefix_loss` = held-out loss of the next word given only the prefix.",
            figs.save(fig, "causal_vs_masked"),
            md_table(table.round(4), ".4g"),
        ]
    )
