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

from seqbench.report.plot import md_table
from seqbench.studies import Rule, Verdict, complete, measure, train

TITLE = "Positional encodings and order (C6)"
ORDER = 40
DECIDES = ("C6",)
RULE = Rule(
    "not supported if the bidirectional no-PE model is not equivariant (error >= "
    "{equivariant:g}) or positions add nothing (order degree >= {adds_nothing:g}); nuanced if "
    "it is a bag of words but the causal no-PE model still learns order (degree > "
    "{learns_order}, its error > {broken:g}); supported otherwise; no verdict unless some "
    "encoding beats chance on copy by >= {learned_copy}",
    equivariant=1e-5,  # max |f(Px) - P f(x)| below this: permutation-equivariant
    adds_nothing=1.0,  # order degree 1: the no-PE model copies as well as the best encoding
    learns_order=0.1,  # order degree above this: the causal no-PE model learned order
    broken=1e-3,  # equivariance error above this: clearly not equivariant
    learned_copy=0.2,  # below this over chance nothing learned copy: nothing to compare to
)
POS_COLORS = {
    "none": "tab:gray",
    "sinusoidal": "tab:blue",
    "learned": "tab:orange",
    "rope": "tab:green",
}
BENCH = {
    "smoke": [
        train(
            "posenc_copy",
            "-m",
            "+experiment=posenc_copy",
            "model.pos=none,sinusoidal",
            "seed=0",
            "train.steps=10",
            "train.eval_batches=2",
        ),
        measure(
            "posenc_order",
            "what=order",
            "+experiment=posenc_copy",
            "what.positions=[none,sinusoidal]",
            "train.steps=10",
            "train.eval_batches=2",
        ),
    ],
    "cpu": [
        train(
            "posenc_copy",
            "-m",
            "+experiment=posenc_copy",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
        ),
        train(
            "posenc_recall",
            "-m",
            "+experiment=posenc_recall",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
        ),
        # the trained causal models are the posenc_copy runs above, reused by content key
        measure("posenc_order", "what=order", "+experiment=posenc_copy"),
    ],
    "gpu": [
        train(
            "posenc_copy",
            "-m",
            "+experiment=posenc_copy",
            "model.size=s",
            "data.seq_len=64",
            "train.steps=1000",
            "seed=0,1,2",
            "train.threads=2",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=4",
        ),
        train(
            "posenc_recall",
            "-m",
            "+experiment=posenc_recall",
            "model.size=s",
            "data.distance=128",
            "data.seq_len=136",
            "train.steps=1000",
            "seed=0,1,2",
            "train.threads=2",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=4",
        ),
        measure(
            "posenc_order",
            "what=order",
            "+experiment=posenc_copy",
            "model.size=s",
            "data.seq_len=64",
            "train.steps=1000",
            "train.threads=2",
        ),
    ],
}
# what the section shows of the order table
ORDER_COLUMNS = "task pos causal state equivariance_error probe_r2 val_acc seq_len".split()


def accuracy_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and seed count of held-out accuracy per (task, positional encoding)."""
    ok = complete(runs, "posenc")
    if ok.empty:
        return pd.DataFrame()
    return (
        ok.rename(columns={"model.pos": "pos"})
        .groupby(["task", "pos"])
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
    model with positions learned copy (best - chance < RULE.learned_copy)."""
    copy = acc[acc.task == "copy"].set_index("pos")
    if "none" not in copy.index or len(copy) < 2:
        return None
    chance = 1 / (float(copy.vocab_size.iloc[0]) - 1)  # segment tokens: [1, vocab), 0 delimits
    best = copy.drop("none").acc.max()
    if best - chance < RULE.learned_copy:
        return None
    return float((copy.acc["none"] - chance) / (best - chance))


def order_checks(order: pd.DataFrame | None) -> dict:
    """Equivariance errors of the no-PE models (untrained) and the probes' R^2. The order
    rows are read whatever study wrote them, as the measurement is one per task."""
    ok = complete(order)
    if ok.empty:
        return {}
    none = ok[ok.pos == "none"]
    causal = none.causal.astype(str).str.lower() == "true"  # rows.csv writes True / False

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
    bag = checks["bidir_error"] < RULE.equivariant
    if not bag or degree >= RULE.adds_nothing:  # attention sees order alone, or PE adds nothing
        return "not supported", measured
    if degree > RULE.learns_order and checks["causal_error"] > RULE.broken:
        return "nuanced", measured
    return "supported", measured


def verdicts(tables) -> list[Verdict]:
    result = verdict(accuracy_table(tables["runs"]), order_checks(tables.get("order")))
    if result is None:
        return []
    v, measured = result
    return [Verdict("C6", "posenc (copy, lag_recall) + order checks", measured, RULE, v)]


def section(tables, figs) -> str:
    acc = accuracy_table(tables["runs"])
    parts = _accuracy(acc, figs) if not acc.empty else []
    order = tables.get("order")
    if order is not None and not order.empty:
        cols = [c for c in ORDER_COLUMNS if c in order]
        parts += [
            "Permutation checks and position probes (`order` measurement): "
            "`equivariance_error` = max over random permutations P of max |f(Px) - P f(x)| "
            "on the logits; `probe_r2` = held-out R^2 of a linear probe for the absolute "
            "position from the final hidden states.",
            md_table(order[cols], ".3g"),
        ]
    checks = order_checks(order)
    if checks.get("bidir_error") is not None:
        err = checks["bidir_error"]
        text = (
            f"Bidirectional without positions: error {err:.1e} "
            f"({'equivariant' if err < RULE.equivariant else 'NOT equivariant'} at "
            f"{RULE.equivariant:g})"
        )
        if checks.get("causal_error") is not None:
            text += f"; causal without positions: {checks['causal_error']:.1e}"
        parts.append(text + ".")
    return "\n\n".join(parts) or "_No completed runs of the posenc study or order checks yet._"


def _accuracy(acc: pd.DataFrame, figs) -> list[str]:
    """The accuracy figure (one panel per task, one bar per encoding), its table and the
    order degree."""
    tasks = sorted(acc.task.unique())
    fig, axes = figs.figure(ncols=len(tasks), width=4.0)
    for ax, task in zip(axes, tasks):
        g = acc[acc.task == task]
        ax.bar(
            g.pos,
            g.acc,
            yerr=g.acc_std.fillna(0),
            color=[POS_COLORS.get(p, "tab:gray") for p in g.pos],  # colour = encoding
        )
        ax.set(title=task, ylabel="held-out accuracy", ylim=(0, 1.05))
    parts = [
        "Held-out accuracy of the same causal Transformer with each positional "
        "encoding (mean ± std over seeds).",
        figs.save(fig, "posenc_accuracy"),
        md_table(acc.round(3)),
    ]
    degree = order_degree(acc)
    if degree is not None:
        parts.append(
            f"Order degree of the causal model without positions on copy: "
            f"**{degree:.2f}** (0 = bag of words, 1 = as good as with positions)."
        )
    return parts
