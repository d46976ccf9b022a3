"""Kernels per decoding step: what one sequential step costs (no lecture claim of its own).

seqbench.measure.kernels profiles greedy decoding after a short prompt with torch.profiler:
ops (CPU) or kernels (GPU) per generated token for every model, eager and, on CUDA, replayed
from a CUDA graph, with the seconds per token beside it. The table adds launches per step
(CUDA) and microseconds per op: when that is a few microseconds, the step is launch-bound,
the floor a sequential step cannot go below without fusing or graphing. It explains the
decoding cost C2 and C9 measure (decode_cost) rather than deciding a claim itself. Counts are
exact; times are medians with their inter-quartile range (no seeds).
"""

import numpy as np
import pandas as pd
from matplotlib.patches import Patch

from seqbench.report.plot import axis_label, md_table, series_label
from seqbench.studies import Verdict, complete, measure

TITLE = "Kernels per decoding step: the cost floor of a sequential step"
ORDER = 25
DECIDES = ()
STUDY = "kernels"
HATCH = {"eager": "", "cuda_graph": "//"}  # one hatch per profiled path
NOTES_SHOWN = 3  # more skipped rows than this are summarised by reason
COLUMNS = [
    "model", "impl", "path", "device", "threads", "dtype", "context", "batch_size",
    "ops_per_step", "kernels_per_step", "launches_per_step", "us_per_step", "iqr_us", "us_per_op",
]  # fmt: skip
# every execution path of every model; timing jobs run alone (no joblib)
_RECURRENT = ("model=rnn,lstm,gru,transformer", "what.impls=[fused,unrolled]")
_SCAN = ("model=mingru,minlstm", "what.impls=[scan,sequential]")
_SMOKE = ("train.threads=1", "what.context=16", "what.steps=4", "what.min_run_time=0.01",
          "what.min_blocks=3")  # fmt: skip
_GPU = ("model.size=s", "train.threads=null")
_RUN = ("-m", "+experiment=kernels")
BENCH = {
    "smoke": [measure(STUDY, *_RUN, *_RECURRENT, *_SMOKE),
              measure(f"{STUDY}_scan", *_RUN, *_SCAN, *_SMOKE)],
    "cpu": [measure(STUDY, *_RUN, *_RECURRENT, "train.threads=1"),
            measure(f"{STUDY}_scan", *_RUN, *_SCAN, "train.threads=1")],
    "gpu": [measure(STUDY, *_RUN, *_RECURRENT, *_GPU, cap_s=15, rank=3),
            measure(f"{STUDY}_scan", *_RUN, *_SCAN, *_GPU, cap_s=15, rank=3)],
}  # fmt: skip


def _table(tables) -> pd.DataFrame:
    """The complete rows, each with ``count`` (kernels on CUDA, ops elsewhere) and
    ``measured`` (False for a path that was skipped, with its note)."""
    df = complete(tables.get("kernels"), STUDY)
    if df.empty or "ops_per_step" not in df:
        return pd.DataFrame()
    cuda = df.device.astype(str).str.startswith("cuda")
    return df.assign(
        measured=pd.to_numeric(df.s_per_step, errors="coerce").notna(),
        count=np.where(cuda, df.kernels_per_step, df.ops_per_step),
    )


def verdicts(tables) -> list[Verdict]:
    return []  # decides no claim: the step's cost floor explains C2 and C9's numbers


def section(tables, figs) -> str:
    df = _table(tables)
    if df.empty:
        return "_No completed kernels runs._"
    done, skipped = df[df.measured], df[~df.measured]
    if done.empty:
        return "_No kernels row was measured._"
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
        text += f"\n\nNot measured: {_skipped(skipped)}."
    show = done.assign(us_per_step=done.s_per_step * 1e6, iqr_us=done.iqr_s_per_step * 1e6)
    table = md_table(show[COLUMNS].dropna(axis=1, how="all"))
    return f"{text}\n\n{table}\n\n{_figure(done, figs)}"


def _skipped(skipped) -> str:
    """Why rows were not measured: one note per row, or, with many, one line per reason."""
    notes = sorted({f"{r.model} {r.path}: {r.note}" for r in skipped.itertuples()})
    if len(notes) <= NOTES_SHOWN:
        return "; ".join(notes)
    paths, reasons = sorted(set(skipped.path)), sorted(set(skipped.note.astype(str)))
    return f"{len(skipped)} rows ({', '.join(paths)}): " + "; ".join(reasons)


def _figure(done, figs) -> str:
    """Count and time per token, one bar group per (model, impl), one bar per path; the
    bars take their model's colour (named under them), hatches tell the paths apart."""
    done = done.assign(label=[series_label(r.model, r.impl) for r in done.itertuples()])
    labels = list(dict.fromkeys(done.label))
    fig, axes = figs.figure(ncols=2, width=max(5.0, 0.5 * len(labels)), height=4.0)
    paths = list(dict.fromkeys(done.path))
    w = 0.8 / len(paths)
    for i, path in enumerate(paths):
        d = done[done.path == path].set_index("label").reindex(labels)
        x = np.arange(len(labels)) + i * w
        colors = [figs.color(m) for m in d.model]  # a model this path lacks: NaN, no bar
        bars = dict(color=colors, hatch=HATCH.get(path, ""), label=path, edgecolor="white")
        axes[0].bar(x, d["count"], w, **bars)
        iqr = d.iqr_s_per_step * 1e6 / 2 if "iqr_s_per_step" in d else None  # half each side
        axes[1].bar(x, d.s_per_step * 1e6, w, yerr=iqr, capsize=2, **bars)
    ticks = np.arange(len(labels)) + w * (len(paths) - 1) / 2
    for ax in axes:
        ax.set_xticks(ticks, labels, fontsize=7, rotation=40, ha="right", rotation_mode="anchor")
        ax.set_xlabel("model and execution path")
    on = ", ".join(sorted({f"{r.device}, {int(r.threads)} thread(s)" for r in done.itertuples()}))
    cuda = done.device.astype(str).str.startswith("cuda")
    counted = " / ".join(w for w, any_ in (("GPU kernels", cuda.any()), ("CPU ops", (~cuda).any()))
                         if any_)  # fmt: skip
    axes[0].set(ylabel=f"{counted} per token", title=f"one decoding step, {on}")
    axes[1].set(ylabel=axis_label("time per token", "µs"),
                title="time of that step (median, IQR bars)")  # fmt: skip
    if len(paths) > 1:  # the hatches, on gray: the colours are the models' own
        fig.legend(handles=[Patch(facecolor="lightgray", edgecolor="white", hatch=HATCH.get(p, ""),
                                  label=p) for p in paths],
                   loc="outside right upper", fontsize=8, frameon=False, title="path")  # fmt: skip
    return figs.save(fig, "measure_kernels")
