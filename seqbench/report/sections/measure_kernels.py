"""Kernels per decoding step (study kernels, table kernels): what one sequential step costs.

Figure: ops (CPU) or kernels (GPU) per generated token for each model, eager and, on CUDA,
replayed from a CUDA graph, with the seconds per token beside it. The table adds launches
per step (CUDA) and microseconds per op: when that is a few microseconds, the step is
launch-bound, the floor a sequential step cannot go below without fusing or graphing.
"""

import numpy as np
import pandas as pd

from seqbench.measure.analysis import only_complete
from seqbench.report.plot import color, figure, md_table, save

ORDER = 25
TITLE = "Kernels per decoding step: the cost floor of a sequential step"
STUDY = "kernels"
HATCH = {"eager": "", "cuda_graph": "//"}


def _table(tables) -> pd.DataFrame:
    df = only_complete(tables, "kernels", STUDY)
    if df.empty or "ops_per_step" not in df:
        return pd.DataFrame()
    df = df.assign(
        measured=pd.to_numeric(df.s_per_step, errors="coerce").notna(),
        count=np.where(
            df.device.astype(str).str.startswith("cuda"), df.kernels_per_step, df.ops_per_step
        ),
    )
    return df


def render(tables, out) -> str:
    df = _table(tables)
    if df.empty:
        return "_No completed kernels runs._"
    done, skipped = df[df.measured], df[~df.measured]
    if done.empty:
        return "_No kernels row was measured._"
    labels = list(dict.fromkeys(f"{r.model}\n{r.impl}" for r in done.itertuples()))
    fig, axes = figure(ncols=2, width=max(5.0, 0.6 * len(labels)), height=4.0)
    paths = list(dict.fromkeys(done.path))
    w = 0.8 / len(paths)
    for i, path in enumerate(paths):
        d = done[done.path == path].assign(label=lambda x: x.model + "\n" + x.impl.astype(str))
        d = d.set_index("label").reindex(labels)
        x = np.arange(len(labels)) + i * w
        bars = dict(color=[color(m) for m in d.model], hatch=HATCH.get(path, ""), label=path)
        axes[0].bar(x, d["count"], w, edgecolor="white", **bars)
        axes[1].bar(x, d.s_per_step * 1e6, w, edgecolor="white", **bars)
    ticks = np.arange(len(labels)) + w * (len(paths) - 1) / 2
    for ax in axes:
        ax.set_xticks(ticks, labels, fontsize=7, rotation=45, ha="right")
    on = ", ".join(sorted({f"{r.device}, {int(r.threads)} thread(s)" for r in done.itertuples()}))
    axes[0].set(ylabel="kernels (GPU) / ops (CPU) per token", title=f"one decoding step, {on}")
    axes[1].set(ylabel="microseconds per token", title="time of that step (median)")
    if len(paths) > 1:
        axes[0].legend(fontsize=8)
    show = done.assign(us_per_step=done.s_per_step * 1e6, iqr_us=done.iqr_s_per_step * 1e6)
    cols = [
        "model",
        "impl",
        "path",
        "device",
        "threads",
        "dtype",
        "context",
        "batch_size",
        "ops_per_step",
        "kernels_per_step",
        "launches_per_step",
        "us_per_step",
        "iqr_us",
        "us_per_op",
    ]
    lightest = done.loc[done.s_per_step.idxmin()]
    heaviest = done.loc[done["count"].idxmax()]
    text = (
        "One greedy decoding step (batch "
        f"{int(done.batch_size.iloc[0])}, after a {int(done.context.iloc[0])}-token prompt), "
        "profiled with `torch.profiler` (seqbench/measure/kernels.py). `ops_per_step`: ATen "
        "operators the CPU dispatched that run a kernel of their own (views, allocation and "
        "composites that only call other ops are not counted); on CUDA, `kernels_per_step` "
        "counts what ran on the GPU and `launches_per_step` the runtime launch calls. "
        "`us_per_op` = time per token / that count: a few microseconds means the step is "
        "dominated by dispatch and launch, not arithmetic. Here the fastest step is "
        f"{lightest.model}'s ({lightest.s_per_step * 1e6:.0f} us, "
        f"{lightest['count']:.0f} ops) and the longest chain {heaviest.model}'s "
        f"({heaviest['count']:.0f} ops, {heaviest.s_per_step * 1e6:.0f} us)."
    )
    if not skipped.empty:
        notes = sorted({f"{r.model} {r.path}: {r.note}" for r in skipped.itertuples()})
        if len(notes) > 3:
            reasons = sorted(set(skipped.note.astype(str)))
            notes = [
                f"{len(skipped)} rows ({', '.join(sorted(set(skipped.path)))}): "
                + "; ".join(reasons)
            ]
        text += "\n\nNot measured: " + "; ".join(notes) + "."
    return (
        text
        + "\n\n"
        + md_table(show[cols].dropna(axis=1, how="all"))
        + "\n\n"
        + save(fig, out, "measure_kernels")
    )
