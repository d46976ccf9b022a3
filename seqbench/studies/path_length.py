"""Information path length (C5): gradient influence of the input at t - d against d.

Table ``influence`` (seqbench/measure/influence.py): the batch-averaged norm of
d log p(target at t) / d e_{t-d} against d, for each model untrained (what the architecture
alone passes back) and trained on lag_recall (what the model learned to use). Claim C5 is
judged on the untrained models: how much the influence *decays* from near (d <= RULE.near) to
far (the farthest 1/RULE.far of the distances), for the recurrent family against the
attention family. The scan family (minGRU, minLSTM) is drawn but does not enter the rule.
"""

import numpy as np
import pandas as pd

from seqbench.report.analysis import fmt, ratio
from seqbench.studies import Rule, Verdict, complete, in_family, measure

TITLE = "Information path length: gradient influence vs distance (C5)"
ORDER = 26
DECIDES = ("C5",)
RULE = Rule(
    "supported if, untrained, every recurrent model's gradient influence falls >= {decay:g}x "
    "from d <= {near} to the farthest 1/{far} of distances and every attention model's falls "
    "< {decay:g}x",
    decay=10.0,
    near=4,
    far=4,
)
REACHED = 0.25  # a distance counts when at least this share of the batch's examples reach it
PEAK_WINDOW = 2  # "elsewhere" for the peak at the recall distance: farther than this from it
BENCH = {
    "smoke": [
        measure(
            "path_length",
            "-m",
            "+experiment=path_length",
            "what.train_study=core",
            "data.distance=48",
            "train.steps=30",
            "train.eval_every=30",
            "train.eval_batches=2",
            "seed=0",
            "what.batch_size=16",
        ),
    ],
    "cpu": [
        # the trained models are the core study's lag_recall runs (distance 48, seed 0): same
        # training config, same content key, so nothing is trained twice
        measure(
            "path_length",
            "-m",
            "+experiment=path_length",
            "what.train_study=core",
            "data.distance=48",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
        ),
    ],
    "gpu": [
        measure(
            "path_length",
            "-m",
            "+experiment=path_length",
            "model.size=s",
            "train.steps=1000",
            "train.eval_every=500",
            "train.threads=null",
        ),
    ],
}


def influence_table(tables) -> pd.DataFrame:
    """Mean influence per (model, trained, d >= 1), with the examples that reach each d."""
    df = complete(tables.get("influence"), "path_length")
    if df.empty:
        return df
    # rows.csv writes the bool as text: True / False (or 1 / 0 from older runs)
    df["trained"] = df.trained.astype(str).str.lower().isin(["true", "1", "1.0"])
    df = df[df.d >= 1]  # d = 0 is the scored position itself
    return (
        df.groupby(["model", "family", "trained", "d"])
        .agg(
            grad_norm=("grad_norm", "mean"),
            examples=("examples", "sum"),
            distance=("distance", "first"),
            val_acc=("val_acc", "mean"),
        )
        .reset_index()
    )


def decay(g: pd.DataFrame) -> float:
    """Mean influence at d = 1..near over mean influence across the farthest 1/far of the
    distances that at least REACHED of the batch reaches (nan with fewer than 2 x near)."""
    g = g[g.examples >= g.examples.max() * REACHED].sort_values("d")
    if len(g) < 2 * RULE.near:
        return float("nan")
    far = g[g.d >= g.d.max() - (g.d.max() - 1) / RULE.far]
    return ratio(g[g.d <= RULE.near].grad_norm.mean(), far.grad_norm.mean())


def decays(df: pd.DataFrame) -> dict:
    """(model, trained) -> decay."""
    return {(m, tr): decay(g) for (m, tr), g in df.groupby(["model", "trained"])}


def verdict(df: pd.DataFrame) -> tuple[str, str] | None:
    """(verdict, measured) from the untrained decays; None without a finite decay for some
    recurrent model and for every attention model."""
    d = {m: v for (m, tr), v in decays(df).items() if not tr}  # untrained: the architecture
    rec = {m: d[m] for m in in_family(df, "recurrent") if m in d and not np.isnan(d[m])}
    att = {m: d.get(m, float("nan")) for m in in_family(df, "attention")}
    if not rec or not att or any(np.isnan(v) for v in att.values()):
        return None
    ok = all(v >= RULE.decay for v in rec.values()) and all(v < RULE.decay for v in att.values())
    measured = "untrained near/far influence ratio: " + ", ".join(
        f"{m} {fmt(v, 3)}" for m, v in [*sorted(rec.items()), *sorted(att.items())]
    )
    return ("supported" if ok else "not supported"), measured


def verdicts(tables) -> list[Verdict]:
    df = influence_table(tables)
    result = verdict(df) if not df.empty else None
    if result is None:
        return []
    v, measured = result
    return [Verdict("C5", "path_length", measured, RULE, v)]


def section(tables, figs) -> str:
    df = influence_table(tables)
    if df.empty:
        return "_No completed path_length runs._"
    fig, axes = figs.figure(ncols=2, width=4.8)
    for ax, trained in zip(axes, (False, True)):
        sub = df[df.trained == trained]
        for m, g in sub.groupby("model"):
            acc = g.val_acc.iloc[0]
            label = m + (f" (acc {acc:.2f})" if trained and pd.notna(acc) else "")
            ax.plot(g.d, g.grad_norm, color=figs.color(m), label=label)
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
        "(the dotted line: the task's distance between the value and the query; a peak there "
        "after training is a path the model built from the value it must recall to the "
        "answer).",
        figs.save(fig, "influence_vs_distance"),
        _reading(df),
    ]
    return "\n\n".join(p for p in parts if p)


def _peaks(df: pd.DataFrame) -> list[str]:
    """Trained influence at the recall distance over its median elsewhere, per model."""
    peaks = []
    for m, g in df[df.trained].groupby("model"):
        dist = g.distance.dropna()
        if not len(dist):
            continue
        at_d = int(dist.iloc[0])
        at = g[g.d == at_d].grad_norm
        rest = g[(g.d - at_d).abs() > PEAK_WINDOW].grad_norm
        if len(at) and len(rest):
            acc = g.val_acc.iloc[0]
            peaks.append(
                f"{m} ×{fmt(ratio(at.iloc[0], rest.median()), 3)} (held-out accuracy {fmt(acc, 2)})"
            )
    return peaks


def _reading(df: pd.DataFrame) -> str:
    d = {k: v for k, v in sorted(decays(df).items()) if not np.isnan(v)}
    said = [f"{m} {'trained' if tr else 'untrained'} ×{fmt(v, 3)}" for (m, tr), v in d.items()]
    peaks = _peaks(df)
    text = []
    if said:
        text.append(
            f"Influence falls from near (d <= {RULE.near}) to far (the farthest 1/{RULE.far} "
            f"of distances) by a factor of: {', '.join(said)}"
            + (
                " (∞: the far gradient underflows to 0)."
                if np.isinf(list(d.values())).any()
                else "."
            )
        )
    if peaks:
        text.append(
            "After training, the influence at the task's recall distance relative to the "
            "median elsewhere is " + ", ".join(peaks) + "."
        )
    return "**Reading.** " + " ".join(text) if text else ""
