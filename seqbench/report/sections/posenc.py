"""Positional encodings and order (C6).

Two kinds of evidence. (1) Training runs (study ``posenc``): the same Transformer with
``pos`` = none, sinusoidal, learned or rope on ``copy`` (reproduce a segment: order decides
everything) and ``lag_recall``. (2) The ``order`` measurement (seqbench/measure/order.py):
max |f(P x) - P f(x)| for random permutations P, which is ~0 for a bidirectional Transformer
without positions (a bag of words) and not for a causal one; and a linear probe's R^2 for the
absolute position read off the final hidden states (Haviv et al. 2022).

How much order a causal model without positions learns is the *order degree* on copy:
(acc_none - chance) / (acc_best_PE - chance), chance = 1/(vocab - 1): 0 = no better than a bag
of words could do, 1 = as good as with positional encodings.
"""

import pandas as pd

from seqbench.report import Claim
from seqbench.report.collect import complete
from seqbench.report.plot import figure, md_table, save

ORDER = 40
TITLE = "Positional encodings and order (C6)"
STUDY = "posenc"
EQUIVARIANT = 1e-5  # max |f(Px) - P f(x)| below this: permutation-equivariant
BROKEN = 1e-3  # above this: clearly not equivariant
LEARNS_ORDER = 0.1  # order degree above this: the causal no-PE model learned order
LEARNED_COPY = 0.2  # the best model with positions must beat chance by this on copy
POS_COLORS = {
    "none": "tab:gray",
    "sinusoidal": "tab:blue",
    "learned": "tab:orange",
    "rope": "tab:green",
}


def accuracy_table(runs: pd.DataFrame) -> pd.DataFrame:
    ok = complete(runs, STUDY)
    if ok.empty:
        return pd.DataFrame()
    return (
        ok.groupby(["task", "pos"])
        .agg(
            acc=("val_acc", "mean"),
            acc_std=("val_acc", "std"),
            seeds=("seed", "nunique"),
            vocab_size=("vocab_size", "first"),
        )
        .reset_index()
    )


def order_degree(acc: pd.DataFrame) -> float | None:
    """(acc_none - chance) / (best PE acc - chance) on copy; None if not measured, or if no
    model with positions learned copy (best - chance < LEARNED_COPY: nothing to compare to)."""
    copy = acc[acc.task == "copy"].set_index("pos")
    if "none" not in copy.index or len(copy) < 2:
        return None
    chance = 1 / (float(copy.vocab_size.iloc[0]) - 1)
    best = copy.drop("none").acc.max()
    if best - chance < LEARNED_COPY:
        return None
    return float((copy.acc["none"] - chance) / (best - chance))


def order_checks(order: pd.DataFrame) -> dict:
    """Equivariance errors of the untrained no-PE models and the probes' R^2."""
    if order is None or order.empty:
        return {}
    ok = order[order.status == "complete"] if "status" in order else order
    none = ok[ok.pos == "none"]
    causal = none.causal.astype(str).str.lower() == "true"

    def pick(mask, state, col):
        vals = none[mask & (none.state == state)][col]
        return float(vals.max()) if len(vals) else None

    return {
        "bidir_error": pick(~causal, "init", "equivariance_error"),
        "causal_error": pick(causal, "init", "equivariance_error"),
        "bidir_probe": pick(~causal, "init", "probe_r2"),
        "causal_probe_init": pick(causal, "init", "probe_r2"),
        "causal_probe_trained": pick(causal, "trained", "probe_r2"),
    }


def verdict(acc: pd.DataFrame, checks: dict) -> tuple[str, str] | None:
    degree = order_degree(acc) if not acc.empty else None
    if degree is None or checks.get("bidir_error") is None or checks.get("causal_error") is None:
        return None
    copy = acc[acc.task == "copy"].set_index("pos").acc
    probe = checks.get("causal_probe_trained")
    measured = (
        "permutation error max abs(f(Px) - P f(x)): bidirectional no-PE "
        f"{checks['bidir_error']:.1e}, causal no-PE {checks['causal_error']:.1e}; copy accuracy "
        + ", ".join(f"{p} {a:.2f}" for p, a in copy.items())
        + f"; order degree of causal no-PE {degree:.2f}"
        + (f"; position probe R^2 (trained causal no-PE) {probe:.2f}" if probe is not None else "")
    )
    bag = checks["bidir_error"] < EQUIVARIANT
    if not bag or degree >= 1.0:  # attention sees order by itself, or positions add nothing
        return "not supported", measured
    if degree > LEARNS_ORDER and checks["causal_error"] > BROKEN:
        return "nuanced", measured
    return "supported", measured


def render(tables, out) -> str:
    acc = accuracy_table(tables["runs"])
    checks = order_checks(tables.get("order"))
    parts = []
    if not acc.empty:
        tasks = sorted(acc.task.unique())
        fig, axes = figure(ncols=len(tasks), width=4.0)
        for ax, task in zip(axes, tasks):
            g = acc[acc.task == task]
            ax.bar(
                g.pos,
                g.acc,
                yerr=g.acc_std.fillna(0),
                color=[POS_COLORS.get(p, "tab:gray") for p in g.pos],
            )
            ax.set(title=task, ylabel="held-out accuracy", ylim=(0, 1.05))
        parts += [
            "Held-out accuracy of the same causal Transformer with each positional "
            "encoding (mean ± std over seeds).",
            save(fig, out, "posenc_accuracy"),
            md_table(acc.round(3)),
        ]
        degree = order_degree(acc)
        if degree is not None:
            parts.append(
                f"Order degree of the causal model without positions on copy: "
                f"**{degree:.2f}** (0 = bag of words, 1 = as good as with positions)."
            )
    order = tables.get("order")
    if order is not None and not order.empty:
        cols = [
            c
            for c in (
                "task",
                "pos",
                "causal",
                "state",
                "equivariance_error",
                "probe_r2",
                "val_acc",
                "seq_len",
            )
            if c in order
        ]
        parts += [
            "Permutation checks and position probes (`order` measurement): "
            "`equivariance_error` = max over random permutations P of max |f(Px) - P f(x)| "
            "on the logits; `probe_r2` = held-out R^2 of a linear probe for the absolute "
            "position from the final hidden states.",
            md_table(order[cols], ".3g"),
        ]
    if checks.get("bidir_error") is not None:
        parts.append(
            f"Bidirectional without positions: error {checks['bidir_error']:.1e} "
            f"({'equivariant' if checks['bidir_error'] < EQUIVARIANT else 'NOT equivariant'}"
            f" at {EQUIVARIANT:g}); causal without positions: "
            f"{checks['causal_error']:.1e}."
        )
    return "\n\n".join(parts) or "_No completed runs of the posenc study or order checks yet._"


def claims(tables) -> list[Claim]:
    result = verdict(accuracy_table(tables["runs"]), order_checks(tables.get("order")))
    if result is None:
        return []
    v, measured = result
    return [
        Claim(
            "C6",
            "posenc (copy, lag_recall) + order checks",
            measured,
            f"not supported if the bidirectional no-PE model is not equivariant (error >= "
            f"{EQUIVARIANT:g}) or positions add nothing (order degree >= 1); nuanced if it "
            f"is a bag of words but the causal no-PE model still learns order (degree > "
            f"{LEARNS_ORDER}, its error > {BROKEN:g}); supported otherwise",
            v,
        )
    ]
