"""Loss by position in the context (C5; Kaplan et al. 2020, Fig. 7).

The harness writes, at every run's final evaluation, the mean held-out loss at each token
index t of the context window (``positions`` table). On text a model that uses long context
keeps lowering its loss as t grows; Kaplan et al. found an LSTM's curve flat after ~100
tokens while a Transformer's kept falling. Measured here as the *late gain*: mean loss over
the second quarter of the window minus mean loss over the last quarter (nats; > 0 means the
model still profits from context that far back).

Runs used: complete causal text runs of any study that saw unrestricted data
(``data.n_train`` null, or the largest pool of their study), grouped by (study, seq_len); the
verdict reads the group with the longest context that has an attention model and a
recurrence (families ``recurrent`` and ``scan``).
"""

import pandas as pd

from seqbench.report.plot import md_table
from seqbench.studies import Rule, Verdict, complete, family_of, in_family, train

TITLE = "Loss by position in the context (C5, Kaplan Fig. 7)"
ORDER = 34
DECIDES = ("C5",)
ATTENTION, RECURRENCES = ("attention",), ("recurrent", "scan")
RULE = Rule(
    "supported if the attention model's late gain exceeds every recurrent model's, "
    "not supported if it is below every one, nuanced between",
)
BENCH = {
    # on the CPU this study costs nothing extra: the curves come from the core and
    # data_efficiency text runs (T = 64); the long context (T = 512) is the GPU profile's job
    "smoke": [],
    "cpu": [],
    "gpu": [
        train("text_positions", "-m", "+experiment=text_positions", "model.size=s",
              "train.steps=3000", "train.batch_size=32", "train.threads=2",
              "hydra/launcher=joblib", "hydra.launcher.n_jobs=4"),
    ],
}  # fmt: skip


def position_curves(tables) -> pd.DataFrame:
    """Mean held-out loss per (study, seq_len, model, position) over seeds."""
    runs, pos = complete(tables["runs"]), tables.get("positions", pd.DataFrame())
    if runs.empty or pos.empty:
        return pd.DataFrame()
    text = runs[runs.task == "text"]
    if "model.causal" in text:  # only models with a causal switch have the key at all
        text = text[text["model.causal"].ne(False)]  # C8's masked encoder sees both sides
    if text.empty:
        return pd.DataFrame()
    most = pd.to_numeric(text["data.n_train"]).fillna(float("inf"))  # null = unrestricted
    text = text[most == most.groupby(text.study).transform("max")]
    keys = text[["run", "study", "data.seq_len", "model"]].rename(
        columns={"data.seq_len": "seq_len"}
    )
    merged = pos.merge(keys, on="run")
    models = merged.groupby(["study", "seq_len"]).model.transform("nunique")
    merged = merged[models >= 2]  # a comparison needs two models (not C8's lone Transformer)
    return (
        merged.groupby(["study", "seq_len", "model", "position"])
        .agg(loss=("loss", "mean"), seeds=("run", "nunique"))
        .reset_index()
        .assign(family=lambda d: d.model.map(family_of(text)))  # for in_family()
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
        if in_family(g, *ATTENTION) and in_family(g, *RECURRENCES):
            groups.append((T, study, g))
    if not groups:
        return None
    T, study, g = max(groups, key=lambda x: x[0])  # ties: the first study in name order
    gains = {m: late_gain(c) for m, c in g.groupby("model")}
    attention = [gains[m] for m in in_family(g, *ATTENTION)]
    recurrent = [gains[m] for m in in_family(g, *RECURRENCES)]
    measured = (
        f"late gain (loss at t in [T/4, T/2) minus [3T/4, T), T={int(T)}): "
        + ", ".join(f"{m} {v:+.3f}" for m, v in sorted(gains.items()))
        + " nats"
    )
    group = f"{study}, T={int(T)}"
    if min(attention) > max(recurrent):
        return "supported", measured, group
    if max(attention) < min(recurrent):
        return "not supported", measured, group
    return "nuanced", measured, group


def verdicts(tables) -> list[Verdict]:
    curves = position_curves(tables)
    result = verdict(curves) if not curves.empty else None
    if result is None:
        return []
    v, measured, group = result
    return [Verdict("C5", f"loss by position ({group})", measured, RULE, v)]


def section(tables, figs) -> str:
    curves = position_curves(tables)
    if curves.empty:
        return "_No completed text runs with a position_loss.csv yet._"
    groups = list(curves.groupby(["study", "seq_len"]))
    fig, axes = figs.figure(ncols=len(groups), width=4.5)  # one panel per (study, T)
    rows = []
    for ax, ((study, T), g) in zip(axes, groups):
        for model, c in g.groupby("model"):
            ax.plot(c.position + 1, c.loss, label=model, color=figs.color(model))
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
            figs.save(fig, "loss_by_position"),
            md_table(pd.DataFrame(rows).round(4)),
        ]
    )
