"""Harness overhead, FLOP/s and MFU (python -m seqbench.perf +experiment=harness_overhead).

Table ``perf``: seqbench's training step and train() against the bare PyTorch loop a user
would write instead, as paired throughput ratios (seqbench/perf/overhead.py). Table ``mfu``:

    MFU = (matmul FLOPs of one training step, forward + backward, torch.utils.flop_counter)
          / (median step time) / peak FLOP/s

This study tests the harness, not the lecture: it decides no claim. Both tables were written
under study ``perf`` before the study had its own name, so they are read whatever the study.
"""

import numpy as np
from matplotlib.patches import Patch

from seqbench.perf.mfu import NOMINAL_BF16
from seqbench.perf.overhead import GOAL
from seqbench.report.plot import md_table
from seqbench.studies import Verdict, complete, perf

TITLE = "Harness overhead, FLOP/s and MFU"
ORDER = 60
DECIDES = ()
HATCHES = ("", "//", "..", "xx")  # one per length in the MFU bars
BENCH = {
    "smoke": [
        perf(
            "harness_overhead",
            "+experiment=harness_overhead",
            "overhead.seq_len=32",
            "overhead.batch_size=8",
            "overhead.steps=2",
            "overhead.repeats=3",
            "overhead.warmup=1",
            "overhead.tiny.steps=10",
            "train_loop.steps=20",
            "train_loop.repeats=2",
            "train_loop.warmup=0",
            "mfu.seq_lens=[32]",
            "mfu.tokens_per_batch=256",
            "mfu.steps=1",
            "mfu.repeats=2",
            "mfu.peak_matmul_n=256",
        ),
    ],
    "cpu": [
        perf("harness_overhead", "+experiment=harness_overhead"),  # conf/perf.yaml as it stands
    ],
    "gpu": [
        perf(
            "harness_overhead",
            "+experiment=harness_overhead",
            "device=cuda",
            "threads=null",
            "size=s",
            "overhead.seq_len=256",
            "overhead.batch_size=64",
            "overhead.steps=10",
            "overhead.repeats=15",
            "mfu.peak_matmul_n=8192",
            "mfu.seq_lens=[512,2048,8192]",
            "mfu.tokens_per_batch=65536",
            "mfu.steps=2",
            "mfu.repeats=5",
        ),
        # the overhead again with torch.compile on both sides
        perf(
            "harness_overhead_compile",
            "+experiment=harness_overhead",
            "device=cuda",
            "threads=null",
            "size=s",
            "compile=true",
            "tables=[perf]",
            "train_loop.models=[]",
            "overhead.seq_len=256",
            "overhead.batch_size=64",
            "overhead.steps=10",
            "overhead.repeats=15",
            "overhead.warmup=3",
        ),
    ],
}
OVERHEAD_COLUMNS = (
    "comparison device threads seq_len batch_size steps_per_block repeats seqbench_tokens_per_s"
    " bare_tokens_per_s ratio ratio_iqr overhead_us_per_step goal_met loss_diff"
).split()
MFU_COLUMNS = (
    "model impl flops_counted_on device dtype threads seq_len batch_size gflops_per_step"
    " step_ms step_ms_iqr achieved_tflops peak_tflops mfu_measured mfu_nominal"
).split()


def verdicts(tables) -> list[Verdict]:
    return []  # the harness is not a lecture claim; the section states the goal and the ratios


def section(tables, figs) -> str:
    parts = [
        _overhead(complete(tables.get("perf")), figs),
        _mfu(complete(tables.get("mfu")), figs),
    ]
    parts = [p for p in parts if p]
    return "\n\n".join(parts) if parts else "_No seqbench.perf runs._"


# --- overhead ----------------------------------------------------------------------------------
def _overhead(df, figs) -> str:
    if df.empty:
        return ""
    show = df.assign(
        ratio=[
            f"{m:.3f} [{a:.3f}, {b:.3f}]"
            for m, a, b in zip(df.ratio_median, df.ratio_q25, df.ratio_q75)
        ],
        goal_met=np.where(df.ratio_median >= GOAL, "yes", "no"),
    )
    fig, axes = figs.figure(width=6.0)
    ax = axes[0]
    labels = [f"{r.comparison}\n{r.device}" for r in df.itertuples()]
    ax.errorbar(
        range(len(df)),
        df.ratio_median,
        yerr=[df.ratio_median - df.ratio_q25, df.ratio_q75 - df.ratio_median],
        fmt="o",
        capsize=4,
    )
    ax.axhline(1.0, color="gray", lw=0.8)  # as fast as the bare loop
    ax.axhline(GOAL, color="tab:red", ls="--", lw=0.8, label=f"goal {GOAL}")
    ax.set_xticks(range(len(df)), labels, fontsize=7, rotation=20)
    ax.set(ylabel="tokens/s: seqbench / bare loop", title="harness overhead (median, IQR)")
    ax.legend(fontsize=8)
    return (
        "**Harness overhead.** Throughput of seqbench against the loop a user would write "
        "instead (same shapes, same weights, same optimiser and schedule), timed in one "
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
        + figs.save(fig, "perf_overhead")
    )


# --- FLOP/s and MFU ------------------------------------------------------------------------------
def _nominal() -> str:
    """'H100/H200 989, A100 312': the nominal peaks seqbench.perf.mfu knows, in TFLOP/s."""
    by_peak: dict[float, list[str]] = {}
    for name, peak in NOMINAL_BF16.items():
        by_peak.setdefault(peak, []).append(name)
    return ", ".join(f"{'/'.join(n)} {p / 1e12:.0f}" for p, n in by_peak.items())


def _mfu_figure(df, figs) -> str:
    """One panel per device: bars of MFU (measured peak) per model, colour = model, hatch =
    length."""
    devices = sorted(df.device.astype(str).unique())
    fig, axes = figs.figure(ncols=len(devices), width=6.5)
    for ax, device in zip(axes, devices):
        d = df[df.device.astype(str) == device]
        lengths, models = sorted(d.seq_len.unique()), list(dict.fromkeys(d.model))
        w = 0.8 / max(1, len(lengths))  # the bars of one model share 0.8 of its slot
        for i, T in enumerate(lengths):
            g = d[d.seq_len == T].groupby("model").mfu_measured.median().reindex(models)
            ax.bar(
                np.arange(len(models)) + i * w,
                g * 100,
                w,
                color=[figs.color(m) for m in models],
                hatch=HATCHES[i % len(HATCHES)],
                edgecolor="white",
                label=f"T={T}",
            )
        ax.set_xticks(np.arange(len(models)) + w * (len(lengths) - 1) / 2, models, fontsize=8)
        ax.set(ylabel="MFU vs measured peak (%)", title=f"model FLOPs utilisation, {device}")
        handles = [  # the colours are the models': the legend explains the hatches only
            Patch(
                facecolor="lightgray",
                edgecolor="white",
                hatch=HATCHES[i % len(HATCHES)],
                label=f"T={T}",
            )
            for i, T in enumerate(lengths)
        ]
        ax.legend(handles=handles, fontsize=8)
    return figs.save(fig, "perf_mfu")


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
