"""Core study: every model on lag_recall (short and long distance), copy and text.

Figures: loss vs step, loss vs wall-clock seconds, final accuracy per model and task. Tables:
final metrics (mean and spread over seeds) and the parameter counts of every size preset.
Claim C1 (one objective trains every model) is judged here.
"""

import pandas as pd

from seqbench.config import param_table
from seqbench.report import Claim
from seqbench.report.collect import complete
from seqbench.report.plot import color, figure, md_table, save

ORDER = 10
TITLE = "Core study: one harness, six models, three tasks"
STUDY = "core"


def _label(r):
    dist = f" d={int(r.distance)}" if pd.notna(r.get("distance")) else ""
    return f"{r.task}{dist}"


def render(tables, out) -> str:
    parts = [_params_section()]
    runs = complete(tables["runs"], STUDY)
    if runs.empty:
        return "\n\n".join(parts + ["_The core study has no completed runs yet._"])
    runs = runs.assign(setting=runs.apply(_label, axis=1))
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
    parts.append(_curves(tables["curves"], runs, out))
    parts.append(_accuracy_bars(final, out))
    return "\n\n".join(parts)


def _params_section() -> str:
    df = pd.DataFrame(param_table())
    df = df[df.model != "bow"]
    wide = df.pivot(index="size", columns="model", values="params_non_embedding")
    spread = (wide.max(axis=1) / wide.min(axis=1) - 1) * 100
    wide = wide.assign(**{"max/min - 1 (%)": spread.round(1)}).reset_index()
    return (
        "Non-embedding parameters per size preset (computed by building every "
        "`conf/model` file; vocabulary 64), so every comparison is between models of "
        "matched size:\n\n" + md_table(wide, floatfmt=".4g")
    )


def _curves(curves, runs, out) -> str:
    if curves.empty:
        return ""
    c = curves[curves.run.isin(runs.run)].merge(runs[["run", "setting"]], on="run")
    settings = sorted(c.setting.unique())
    md = []
    for x, xlabel, name in (
        ("step", "training step", "core_loss_vs_step"),
        ("wall_s", "wall-clock seconds", "core_loss_vs_time"),
    ):
        fig, axes = figure(ncols=len(settings), width=4.0)
        for ax, s in zip(axes, settings):
            for model, g in c[c.setting == s].groupby("model"):
                mean = g.groupby("step")[[x, "train_loss"]].mean()
                ax.plot(mean[x], mean.train_loss, label=model, color=color(model))
            ax.set(title=s, xlabel=xlabel, ylabel="train loss", yscale="log")
        axes[0].legend(fontsize=8)
        md.append(save(fig, out, name))
    return (
        "Training loss against steps and against wall-clock seconds (mean over seeds). "
        "Same data order, optimiser and step budget for every model; the wall-clock panel "
        "shows what each step costs on this hardware (recurrent models on their fused "
        "kernel).\n\n" + "\n\n".join(md)
    )


def _accuracy_bars(final, out) -> str:
    settings = sorted(final.setting.unique())
    models = sorted(final.model.unique())
    fig, axes = figure(width=max(5.0, 1.2 * len(settings)))
    ax, w = axes[0], 0.8 / max(1, len(models))
    for i, m in enumerate(models):
        g = final[final.model == m].set_index("setting").reindex(settings)
        ax.bar(
            [k + i * w for k in range(len(settings))],
            g.val_acc,
            w,
            yerr=g.acc_std.fillna(0),
            label=m,
            color=color(m),
        )
    ax.set_xticks([k + 0.4 - w / 2 for k in range(len(settings))], settings, fontsize=8)
    ax.set(ylabel="held-out accuracy", ylim=(0, 1.05))
    ax.legend(fontsize=8)
    return save(fig, out, "core_final_accuracy")


def claims(tables) -> list[Claim]:
    runs = complete(tables["runs"], STUDY)
    text = runs[runs.task == "text"] if not runs.empty else runs
    if text.empty:
        return []
    # a model that ignores context reaches the unigram cross-entropy; learning from context
    # under the next-word objective means ending clearly below it
    beats = text.val_loss < 0.9 * text.unigram_xent.astype(float)
    families = sorted(text.model.unique())
    measured = ", ".join(f"{m}: {text[text.model == m].val_loss.mean():.2f} nats" for m in families)
    verdict = "supported" if beats.all() and len(families) >= 4 else "not supported"
    return [
        Claim(
            "C1",
            "core (text)",
            f"held-out loss {measured}",
            "supported if every model family (>= 4) trained by the one harness ends "
            "below 0.9 x the unigram cross-entropy (the best context-free loss, "
            f"here {text.unigram_xent.mean():.2f} nats)",
            verdict,
        )
    ]
