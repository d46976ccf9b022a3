"""Harness overhead, FLOP/s and MFU (python -m seqbench.perf +experiment=harness_overhead).

Table ``perf``: seqbench's training step and train() against the bare PyTorch loop a careful
user would write instead (fused optimiser), as paired throughput ratios
(seqbench/perf/overhead.py), and at pytorch/examples' word_language_model shapes against both
that careful loop and the example's own step (seqbench/perf/peer.py). Table ``startup``: CPU
seconds of ``--help``, a refused value and a 1-step run beyond importing torch
(seqbench/perf/startup.py). Table ``mfu``:

    MFU = (matmul FLOPs of one training step, forward + backward, torch.utils.flop_counter)
          / (median step time) / peak FLOP/s

This study tests the harness, not the lecture: it decides no claim. Both tables were written
under study ``perf`` before the study had its own name, so they are read whatever the study.
"""

import re

import numpy as np
import pandas as pd
from matplotlib.patches import Patch

from seqbench.perf.mfu import NOMINAL_BF16
from seqbench.perf.overhead import GOAL, PEER_GOAL
from seqbench.perf.startup import STARTUP_GOAL
from seqbench.report.axes import iqr_band, reference
from seqbench.report.hardware import hardware_note
from seqbench.report.markdown import md_table
from seqbench.report.verdict import Verdict
from seqbench.studies._common import complete

TITLE = "Harness overhead, start-up, FLOP/s and MFU"
ORDER = 60
DECIDES = ()
HATCHES = ("", "//", "..", "xx")  # one per length in the MFU bars
OVERHEAD_COLUMNS = (
    "comparison device threads seq_len batch_size steps_per_block repeats seqbench_tokens_per_s"
    " bare_tokens_per_s ratio ratio_iqr overhead_us_per_step goal_met loss_diff"
).split()
PEER_COLUMNS = (
    "model device threads seq_len batch_size repeats seqbench_tokens_per_s"
    " careful_tokens_per_s examples_tokens_per_s vs_careful vs_examples goals_met"
).split()
STARTUP_COLUMNS = (
    "command cpu_s beyond_torch_s imports_dynamo returncode repeats goal_met argv"
).split()
MFU_COLUMNS = (
    "model impl flops_counted_on device dtype threads seq_len batch_size gflops_per_step"
    " step_ms step_ms_iqr achieved_tflops peak_tflops mfu_measured mfu_nominal"
).split()


def verdicts(tables) -> list[Verdict]:
    return []  # the harness is not a lecture claim; the section states the goal and the ratios


def goal_met(r) -> str:
    """'yes' / 'no' from the median ratio, or 'blocks disagree: 0.93-0.97' when the medians
    of the row's groups of A/B pairs lie on both sides of the goal: the answer changed while
    it was measured (rows from before the groups were recorded read yes / no)."""
    lo, hi = getattr(r, "ratio_block_min", np.nan), getattr(r, "ratio_block_max", np.nan)
    if lo < GOAL <= hi:
        return f"blocks disagree: {lo:.3f}-{hi:.3f}"
    return "yes" if r.ratio_median >= GOAL else "no"


def section(tables, figs) -> str:
    perf = complete(tables.get("perf"))
    peer = perf[perf.comparison.str.contains("_peer_")] if not perf.empty else perf
    parts = [
        _overhead(perf.drop(peer.index) if not perf.empty else perf, figs),
        _peer(peer),
        _startup(complete(tables.get("startup"))),
        _mfu(complete(tables.get("mfu")), figs),
    ]
    parts = [p for p in parts if p]
    return "\n\n".join(parts) if parts else "_No seqbench.perf runs._"


# --- overhead ----------------------------------------------------------------------------------
def _overhead(df, figs) -> str:
    if df.empty:
        return ""
    show = df.assign(
        ratio=[_ratio(r) for r in df.itertuples()],
        goal_met=[goal_met(r) for r in df.itertuples()],
    )
    fig = _overhead_figure(df, figs)
    return (
        "**Harness overhead.** Throughput of seqbench against the loop a careful user would "
        "write instead (same shapes, same weights, same optimiser and schedule, the "
        "optimiser's fused kernel on CPU and CUDA), timed in one "
        "process as interleaved blocks; `ratio` = tokens/s(seqbench) / tokens/s(bare), "
        "median over the A/B pairs with [q25, q75]; `ratio_iqr` = q75 - q25. The goal is "
        f"a median ratio >= {GOAL} (overhead <= {1 - GOAL:.0%}). `loss_diff` = |seqbench loss "
        "- bare loss| after the last timed step: 0 means both sides computed the same thing. "
        "`overhead_us_per_step` = median over pairs of (seqbench - bare block time) / steps: "
        "the fixed cost the harness adds to every step, which the `_tiny` rows (launch-bound "
        "shapes, as a GPU sees small models) show undiluted. "
        "`train_loop` compares the whole `train()` (validation, run directory, logging, "
        "evaluation and checkpoint cadence, progress bar, final weights) with a bare loop "
        "of as many steps over the same batches, so evaluation work counts as overhead "
        "there (experiments/harness_overhead/README.md).\n\n"
        + md_table(show[OVERHEAD_COLUMNS])
        + "\n\n"
        + figs.save(fig, "harness_overhead", hardware=hardware_note(df))
    )


def _overhead_figure(df, figs):
    """Median throughput ratio per comparison with its IQR over the A/B pairs, comparisons
    named in words down the y axis (no rotated identifiers), the goal and parity drawn."""
    fig, axes = figs.figure(width=6.4, height=1.8 + 0.35 * len(df))
    ax, y = axes[0], np.arange(len(df))[::-1]  # the first comparison on top
    ax.errorbar(df.ratio_median, y, fmt="o", capsize=3, color="0.2",
                xerr=[df.ratio_median - df.ratio_q25, df.ratio_q75 - df.ratio_median],
                label="median over A/B pairs; bars: IQR (not a 95% interval)")  # fmt: skip
    reference(ax, 1.0, "as fast as the bare loop", axis="x", kind="chance")
    reference(ax, GOAL, f"goal {GOAL:g}", axis="x", kind="threshold")
    ax.set_yticks(y, [_comparison(r) for r in df.itertuples()], fontsize=7)
    ax.set(ylabel="comparison", xlabel="tokens per second, seqbench / bare loop (ratio)")
    figs.claim_title(fig, text="harness overhead: seqbench against a bare training loop")
    ax.set_ylim(-0.6, len(df) + 1.4)  # an empty band on top for the reference lines' labels
    ax.margins(x=0.15)
    figs.legend(fig, loc="outside lower center")
    return fig


def _comparison(r) -> str:
    """'lstm, one step, tiny (d=8), cpu' for 'lstm_step_tiny_d8': a comparison in words."""
    words = {"step": "one training step", "loop": "whole train()", "peer": "vs peer loop"}
    parts = str(r.comparison).removeprefix(f"{r.model}_").split("_")
    said = [words.get(p, p) for p in parts if p not in ("train", "tiny") and not
            re.fullmatch(r"d\d+", p)]  # fmt: skip
    said += [f"tiny (d={p[1:]})" for p in parts if re.fullmatch(r"d\d+", p)]
    return f"{r.model}, {', '.join(said)}, {r.device}"


def _ratio(r) -> str:
    return f"{r.ratio_median:.3f} [{r.ratio_q25:.3f}, {r.ratio_q75:.3f}]"


# --- at pytorch/examples' shapes -------------------------------------------------------------
def _peer(df) -> str:
    if df.empty:
        return ""
    rows = []
    for (model, device), g in df.groupby(["model", "device"], sort=True):
        by = {c.rsplit("_peer_", 1)[1]: r for c, r in zip(g.comparison, g.itertuples())}
        if not {"careful", "examples"} <= set(by):
            continue
        careful, examples = by["careful"], by["examples"]
        met = (careful.ratio_median >= GOAL) + (examples.ratio_median >= PEER_GOAL)
        rows.append(
            {
                "model": model,
                "device": device,
                "threads": careful.threads,
                "seq_len": careful.seq_len,
                "batch_size": careful.batch_size,
                "repeats": careful.repeats,
                "seqbench_tokens_per_s": round(careful.seqbench_tokens_per_s),
                "careful_tokens_per_s": round(careful.bare_tokens_per_s),
                "examples_tokens_per_s": round(examples.bare_tokens_per_s),
                "vs_careful": _ratio(careful),
                "vs_examples": _ratio(examples),
                "goals_met": f"{int(met)}/2",
            }
        )
    if not rows:
        return ""
    return (
        "**At pytorch/examples' word_language_model shapes** (its defaults: embedding = hidden "
        "= 200, 2 layers, bptt 35, batch 20, SGD at lr 20, clip 0.25, dropout 0.2; the "
        "Transformer with 2 heads and a feed-forward width of 200), on the stdlib corpus with "
        "the whitespace tokenizer and every token type in the vocabulary. Three sides timed in "
        "one interleave, each reading the next window of the stream every step: seqbench "
        "(`data.stream=true train.optimizer=sgd`, state carried), the careful bare loop (fused "
        "SGD) and a faithful re-implementation of the example's step (seqbench/perf/"
        f"examples.py). `vs_careful` (goal >= {GOAL}) and `vs_examples` (goal >= {PEER_GOAL}) "
        "are tokens/s(seqbench) / tokens/s(other), median [q25, q75] over the repeats.\n\n"
        + md_table(pd.DataFrame(rows)[PEER_COLUMNS])
    )


# --- start-up -----------------------------------------------------------------------------------
def _startup(df) -> str:
    if df.empty:
        return ""
    show = df.assign(
        cpu_s=[
            f"{m:.2f} [{a:.2f}, {b:.2f}]"
            for m, a, b in zip(df.cpu_s_median, df.cpu_s_q25, df.cpu_s_q75)
        ],
        beyond_torch_s=df.beyond_torch_s.round(2),
        goal_met=[
            "-" if pd.isna(g) else ("yes" if b <= g else "no")
            for b, g in zip(df.beyond_torch_s, df.goal)
        ],
    )
    answered = show[show.goal.notna()]
    said = "; ".join(
        f"`{r.command}` {r.beyond_torch_s:+.2f} s ({'within' if r.goal_met == 'yes' else 'over'} "
        f"{r.goal:g} s)"
        for r in answered.itertuples()
    )
    return (
        "**Start-up.** CPU seconds (user + system) of fresh `python` processes, median "
        "[q25, q75] over the repeats, and `beyond_torch_s` = that minus the median of "
        '`python -c "import torch"` measured alongside (the floor any PyTorch program pays). '
        f"Goal for the answers that do no work: at most {STARTUP_GOAL:g} s beyond torch"
        + (f"; measured: {said}." if said else ".")
        + " `imports_dynamo`: whether `torch._dynamo` was imported (seqbench imports it only "
        "for train.compile=true; torch.optim imports it when the first optimiser is built, so "
        "any run that trains pays it).\n\n" + md_table(show[STARTUP_COLUMNS])
    )


# --- FLOP/s and MFU ------------------------------------------------------------------------------
def _nominal() -> str:
    """'H100/H200 989, A100 312': the nominal peaks seqbench.perf.mfu knows, in TFLOP/s."""
    by_peak: dict[float, list[str]] = {}
    for name, peak in NOMINAL_BF16.items():
        by_peak.setdefault(peak, []).append(name)
    return ", ".join(f"{'/'.join(n)} {p / 1e12:.0f}" for p, n in by_peak.items())


def _mfu_figure(df, figs) -> str:
    """One panel per device: bars of MFU against the measured peak per model (name order, as
    every other figure), colour = model, hatch = length; whiskers: the MFU at the step
    time's spread (median +- half the IQR, log-symmetric: ``iqr_band``); the measured peak
    (100%) drawn and valued."""
    devices = sorted(df.device.astype(str).unique())
    every = sorted(df.seq_len.unique())  # one hatch per length across the devices' panels
    hatch = {T: HATCHES[i % len(HATCHES)] for i, T in enumerate(every)}
    fig, axes = figs.figure(ncols=len(devices), width=6.5)
    for ax, device in zip(axes, devices):
        d = df[df.device.astype(str) == device]
        lengths, models = sorted(d.seq_len.unique()), sorted(set(d.model))
        w = 0.8 / max(1, len(lengths))  # the bars of one model share 0.8 of its slot
        for i, T in enumerate(lengths):
            g = d[d.seq_len == T].groupby("model").median(numeric_only=True).reindex(models)
            mfu = g.mfu_measured * 100
            fast, slow = iqr_band(g.step_s_median, g.step_s_iqr)  # never a step of <= 0 s
            err = [mfu - mfu * g.step_s_median / slow, mfu * g.step_s_median / fast - mfu]
            ax.bar(np.arange(len(models)) + i * w, mfu, w, yerr=np.nan_to_num(err), capsize=2,
                   color=[figs.color(m) for m in models], hatch=hatch[T], edgecolor="white",
                   label=f"T={T}")  # fmt: skip
        ax.set_xticks(np.arange(len(models)) + w * (len(lengths) - 1) / 2, models, fontsize=8)
        peak = d.peak_measured_flops_per_s.median() / 1e9
        reference(ax, 100.0, f"measured peak: {peak:.3g} GFLOP/s", kind="threshold")
        ax.set(xlabel="model", ylabel="MFU vs measured peak (%)")
        ax.set_title(device, fontsize=9)
        ax.margins(y=0.12)
    handles = [  # the colours are the models' (named below the bars): the key is the hatches
        Patch(facecolor="lightgray", edgecolor="white", hatch=h, label=f"T={T}")
        for T, h in hatch.items()
    ]
    fig.legend(handles=handles, title="sequence length\n(tokens)", loc="outside right upper",
               fontsize=8, title_fontsize=8, frameon=False)  # fmt: skip
    figs.claim_title(fig, text="model FLOPs utilisation (MFU) of seqbench's training step "
                     "against the peak measured on the same machine")  # fmt: skip
    how = "; ".join(sorted(set(df.peak_measured_how.astype(str))))
    fig.supxlabel(f"peak measured as {how}; whiskers: MFU over the step time's IQR",
                  fontsize=7, color="0.3")  # fmt: skip
    return figs.save(fig, "harness_overhead_mfu", hardware=hardware_note(df))


def _mfu(df, figs) -> str:
    if df.empty:
        return ""
    show = df.assign(
        gflops_per_step=df.flops_per_step / 1e9,
        achieved_tflops=df.flops_per_s / 1e12,
        peak_tflops=df.peak_measured_flops_per_s / 1e12,
        step_ms=df.step_s_median * 1e3,
        step_ms_iqr=df.step_s_iqr * 1e3,
    )
    how = "; ".join(sorted(set(df.peak_measured_how.astype(str))))
    return (
        "**FLOP/s and MFU** (Chowdhery et al. 2022, App. B). FLOPs per step = matmul FLOPs "
        "of forward + backward counted by `torch.utils.flop_counter` (element-wise ops "
        "count 0; causal attention counted in full; fused RNN kernels are opaque to the "
        "counter, so recurrent models are counted on their `unrolled` path, "
        "`flops_counted_on`). Achieved FLOP/s = FLOPs per step / median step time of "
        "seqbench's training step. **MFU = achieved FLOP/s / peak FLOP/s**, with the peak "
        f"(a) measured in the same run ({how}) -> `mfu_measured`, and (b) the nominal dense "
        f"bf16 peak where the device is known ({_nominal()} TFLOP/s) -> `mfu_nominal` "
        "(empty on CPU).\n\n" + md_table(show[MFU_COLUMNS]) + "\n\n" + _mfu_figure(df, figs)
    )
