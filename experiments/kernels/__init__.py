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

from seqbench.report.axes import axis_label
from seqbench.report.hardware import hardware_note
from seqbench.report.markdown import md_table
from seqbench.report.plot import LINESTYLES
from seqbench.report.verdict import Verdict
from seqbench.studies._common import complete, study_of

TITLE = "Kernels per decoding step: the cost floor of a sequential step"
ORDER = 25
DECIDES = ()
STUDY = study_of(__name__)
LOOPS = {impl for impl, ls in LINESTYLES.items() if ls == "--"}  # per-step paths: hatched
NOTES_SHOWN = 3  # more skipped rows than this are summarised by reason
COLUMNS = [
    "model", "impl", "path", "device", "threads", "dtype", "context", "batch_size",
    "ops_per_step", "kernels_per_step", "launches_per_step", "us_per_step", "iqr_us", "us_per_op",
]  # fmt: skip


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
    """Count and time per token: one bar group per model (named under it), one bar per
    execution path in the model's colour, plain for the fast path (fused kernel, scan,
    attention) and hatched for the per-step loop, as the line styles of every other figure;
    a CUDA-graph replay paler than its eager bar."""
    done = done.assign(loop=[str(i) in LOOPS for i in done.impl])
    models = sorted(set(done.model))  # name order, as every other figure
    fig, axes = figs.figure(ncols=2, width=max(4.6, 0.9 * len(models)), height=3.8)
    groups = done.groupby(["model"]).apply(lambda g: list(g.sort_values(["loop", "path"]).index))
    w = 0.8 / max(len(v) for v in groups)
    x = {}
    for j, m in enumerate(models):
        for k, i in enumerate(groups[m]):
            x[i] = j + (k - (len(groups[m]) - 1) / 2) * w
    for (loop, path), d in done.groupby(["loop", "path"]):
        bars = dict(color=[figs.color(m) for m in d.model], hatch="///" if loop else "",
                    edgecolor="white", alpha=1.0 if path == "eager" else 0.55,
                    label=f"{'per-step loop' if loop else 'fast path'}, {path}")  # fmt: skip
        xs = [x[i] for i in d.index]
        axes[0].bar(xs, d["count"], w, **bars)
        us = d.s_per_step * 1e6
        half = d.iqr_s_per_step * 1e6 / 2 if "iqr_s_per_step" in d else 0 * us  # each side
        err = [np.minimum(half, us), half]  # a time is never below 0
        axes[1].bar(xs, us, w, yerr=np.nan_to_num(err), capsize=2, **bars)
    for ax in axes:
        ax.set_xticks(range(len(models)), models, fontsize=8)
        for tick, m in zip(ax.get_xticklabels(), models):
            tick.set_color(figs.color(m))
        ax.set_xlabel("model")
    cuda = done.device.astype(str).str.startswith("cuda")
    counted = " / ".join(w for w, any_ in (("GPU kernels", cuda.any()), ("CPU ops", (~cuda).any()))
                         if any_)  # fmt: skip
    axes[0].set_ylabel(axis_label(f"{counted} per token", "count"))
    axes[0].set_title("ops (kernels) one step runs", fontsize=9)
    axes[1].set_ylabel(axis_label("time per token", "µs"))
    axes[1].set_title("time of that step (median, bars: IQR)", fontsize=9)
    prompt = ", ".join(str(int(c)) for c in sorted(set(done.context)))
    batch = ", ".join(str(int(b)) for b in sorted(set(done.batch_size)))
    figs.claim_title(fig, text=f"one greedy decoding step after a {prompt}-token prompt, batch "
                     f"{batch}")  # fmt: skip
    paths = list(dict.fromkeys(zip(done.sort_values("loop").loop, done.path)))
    keys = [Patch(facecolor="0.6", edgecolor="white", hatch="///" if loop else "",
                  alpha=1.0 if path == "eager" else 0.55) for loop, path in paths]  # fmt: skip
    impls = {k: "/".join(sorted(set(done[done.loop == k].impl.astype(str)) - {"-"}))
             for k in (False, True)}  # fmt: skip
    kind = {False: f"fast path ({impls[False] or 'one path'})", True: f"loop ({impls[True]})"}
    words = [f"{kind[loop]}, {path}" for loop, path in paths]
    fig.legend(keys, words, loc="outside right upper", fontsize=7, frameon=False)
    return figs.save(fig, "kernels", hardware=hardware_note(done))
