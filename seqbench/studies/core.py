"""Core study: every model on lag_recall (short and long distance), copy and text.

Figures: loss vs step, loss vs wall-clock seconds, final accuracy per model and task. Tables:
final metrics (mean and spread over seeds) and the parameter counts of every size preset.
Claim C1 (one objective trains every model) is judged here, on the text runs: a model that
ignores its context can do no better than the unigram cross-entropy of the text, so learning
from context under the next-word objective means ending clearly below it (RULE.below x it).
"""

import pandas as pd

from seqbench.config import param_table
from seqbench.report.plot import md_table
from seqbench.studies import Rule, Verdict, complete, train

TITLE = "Core study: one harness, six models, three tasks"
ORDER = 10
DECIDES = ("C1",)
RULE = Rule(
    "supported if every model (>= {min_models}) trained by the one harness ends below "
    "{below} x the unigram cross-entropy (the best context-free loss) on every run",
    below=0.9,
    min_models=4,
)
VOCAB = 64  # the parameter table is built at this vocabulary (embeddings are not counted)
EXPERIMENTS = ("core_recall", "core_copy", "core_text")
_SMOKE = ("train.steps=30", "train.eval_every=30", "train.eval_batches=2", "seed=0")
_CPU = ("hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
_GPU = {  # size s, longer training, three seeds (each job's extra overrides after these)
    "core_recall": ("data.distance=8,48,256", "data.seq_len=320"),
    "core_copy": (),
    "core_text": ("data.seq_len=256",),
}
BENCH = {
    "smoke": [train(e, "-m", f"+experiment={e}", *_SMOKE) for e in EXPERIMENTS],
    "cpu": [train(e, "-m", f"+experiment={e}", *_CPU) for e in EXPERIMENTS],
    "gpu": [
        train(e, "-m", f"+experiment={e}", "model.size=s", "train.steps=3000",
              "train.threads=null", *_GPU[e], "seed=0,1,2")
        for e in EXPERIMENTS
    ],
}  # fmt: skip


def _label(r) -> str:
    # data.distance is a column whenever any run has it (recall runs), NaN for copy and text;
    # absent altogether when no run of the table has the key
    dist = r.get("data.distance")
    return f"{r.task} d={int(dist)}" if pd.notna(dist) else f"{r.task}"


def core_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Complete core runs, each with its ``setting`` (task, and distance where there is one)."""
    ok = complete(runs, "core")
    if ok.empty:
        return ok
    return ok.assign(setting=ok.apply(_label, axis=1))


def verdict(text: pd.DataFrame) -> tuple[str, str] | None:
    """(verdict, measured) from complete core text runs; None without any."""
    if text.empty:
        return None
    unigram = text.unigram_xent.astype(float)
    beats = text.val_loss < RULE.below * unigram  # per run: every seed must clear the bar
    models = sorted(text.model.unique())
    measured = (
        "held-out loss "
        + ", ".join(f"{m}: {text[text.model == m].val_loss.mean():.2f} nats" for m in models)
        + f"; unigram cross-entropy {unigram.mean():.2f} nats"
    )
    ok = bool(beats.all()) and len(models) >= RULE.min_models
    return ("supported" if ok else "not supported"), measured


def verdicts(tables) -> list[Verdict]:
    runs = complete(tables["runs"], "core")
    result = verdict(runs[runs.task == "text"] if not runs.empty else runs)
    if result is None:
        return []
    v, measured = result
    return [Verdict("C1", "core (text)", measured, RULE, v)]


def params_section() -> str:
    df = pd.DataFrame(param_table(VOCAB))
    df = df[df.family != "baseline"]  # the bag-of-words floor is not one of the compared models
    wide = df.pivot(index="size", columns="model", values="params_non_embedding")
    spread = (wide.max(axis=1) / wide.min(axis=1) - 1) * 100
    wide = wide.assign(**{"max/min - 1 (%)": spread.round(1)}).reset_index()
    return (
        "Non-embedding parameters per size preset (computed by building every "
        f"`conf/model` file; vocabulary {VOCAB}), so every comparison is between models of "
        "matched size:\n\n" + md_table(wide, floatfmt=".4g")
    )


def section(tables, figs) -> str:
    parts = [params_section()]
    runs = core_runs(tables["runs"])
    if runs.empty:
        return "\n\n".join(parts + ["_The core study has no completed runs yet._"])
    final = (
        runs.groupby(["setting", "model"])
        .agg(
            val_acc=("val_acc", "mean"),
            acc_std=("val_acc", "std"),
            val_loss=("val_loss", "mean"),
            seeds=("seed", "nunique"),
            params_non_embedding=("params_non_embedding", "first"),
            wall_s=("wall_s", "median"),
        )
        .reset_index()
    )
    parts.append(
        "Final held-out metrics (mean over seeds; `acc_std` is the standard deviation "
        "across seeds, empty with one seed). Accuracy is over scored positions only."
    )
    parts.append(md_table(final.round(4)))
    parts.append(_curves(tables["curves"], runs, figs))
    parts.append(_accuracy_bars(final, figs))
    return "\n\n".join(p for p in parts if p)


def _curves(curves, runs, figs) -> str:
    if curves.empty:
        return ""
    c = curves[curves.run.isin(runs.run)].merge(runs[["run", "setting"]], on="run")
    if c.empty:
        return ""
    settings = sorted(c.setting.unique())
    md = []
    for x, xlabel, name in (
        ("step", "training step", "core_loss_vs_step"),
        ("wall_s", "wall-clock seconds", "core_loss_vs_time"),
    ):
        fig, axes = figs.figure(ncols=len(settings), width=4.0)
        for ax, s in zip(axes, settings):
            for model, g in c[c.setting == s].groupby("model"):
                mean = g.groupby("step")[[x, "train_loss"]].mean()  # over seeds, per step
                ax.plot(mean[x], mean.train_loss, label=model, color=figs.color(model))
            ax.set(title=s, xlabel=xlabel, ylabel="train loss", yscale="log")
        axes[0].legend(fontsize=8)
        md.append(figs.save(fig, name))
    return (
        "Training loss against steps and against wall-clock seconds (mean over seeds). "
        "Same data order, optimiser and step budget for every model; the wall-clock panel "
        "shows what each step costs on this hardware (recurrent models on their fused "
        "kernel).\n\n" + "\n\n".join(md)
    )


def _accuracy_bars(final, figs) -> str:
    settings = sorted(final.setting.unique())
    models = sorted(final.model.unique())
    fig, axes = figs.figure(width=max(5.0, 1.2 * len(settings)))
    ax, w = axes[0], 0.8 / max(1, len(models))  # one group of bars per setting
    for i, m in enumerate(models):
        g = final[final.model == m].set_index("setting").reindex(settings)
        ax.bar(
            [k + i * w for k in range(len(settings))],
            g.val_acc,
            w,
            yerr=g.acc_std.fillna(0),
            label=m,
            color=figs.color(m),
        )
    ax.set_xticks([k + 0.4 - w / 2 for k in range(len(settings))], settings, fontsize=8)
    ax.set(ylabel="held-out accuracy", ylim=(0, 1.05))
    ax.legend(fontsize=8)
    return figs.save(fig, "core_final_accuracy")
