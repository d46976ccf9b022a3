"""Harness overhead, FLOP/s and MFU (python -m seqbench.perf), and the parallel-scan recurrences.

Tables ``perf`` and ``mfu`` come from seqbench.perf; the scan figure and claim C3* read the
tracer's ``span`` rows of minGRU/minLSTM on their scan path (Feng et al. 2024), next to the
per-step recurrences and the Transformer.

    MFU = (matmul FLOPs of one training step, forward + backward, torch.utils.flop_counter)
          / (median step time) / peak FLOP/s
"""

import numpy as np
from matplotlib.patches import Patch

from seqbench.report import Claim
from seqbench.report.collect import complete
from seqbench.report.plot import color, figure, md_table, save

ORDER = 60
TITLE = "Harness overhead, FLOP/s and MFU; parallel-scan recurrences"
SCAN_MODELS = ("mingru", "minlstm")
GOAL = 0.95
HATCHES = ("", "//", "..", "xx")


def _rows(tables, name):
    df = tables.get(name)
    return complete(df) if df is not None and not df.empty else None


def render(tables, out) -> str:
    parts = [
        _overhead(_rows(tables, "perf"), out),
        _mfu(_rows(tables, "mfu"), out),
        _scan(_scan_rows(tables), out),
    ]
    parts = [p for p in parts if p]
    return "\n\n".join(parts) if parts else "_No seqbench.perf runs and no scan-path traces._"


# --- overhead ----------------------------------------------------------------------------------
def _overhead(df, out) -> str:
    if df is None:
        return ""
    show = df.assign(
        ratio=[
            f"{m:.3f} [{a:.3f}, {b:.3f}]"
            for m, a, b in zip(df.ratio_median, df.ratio_q25, df.ratio_q75)
        ],
        goal_met=np.where(df.ratio_median >= GOAL, "yes", "no"),
    )
    cols = [
        "comparison",
        "device",
        "threads",
        "seq_len",
        "batch_size",
        "steps_per_block",
        "repeats",
        "seqbench_tokens_per_s",
        "bare_tokens_per_s",
        "ratio",
        "ratio_iqr",
        "overhead_us_per_step",
        "goal_met",
        "loss_diff",
    ]
    fig, axes = figure(width=6.0)
    ax = axes[0]
    labels = [f"{r.comparison}\n{r.device}" for r in df.itertuples()]
    ax.errorbar(
        range(len(df)),
        df.ratio_median,
        yerr=[df.ratio_median - df.ratio_q25, df.ratio_q75 - df.ratio_median],
        fmt="o",
        capsize=4,
    )
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.axhline(GOAL, color="tab:red", ls="--", lw=0.8, label=f"goal {GOAL}")
    ax.set_xticks(range(len(df)), labels, fontsize=7, rotation=20)
    ax.set(ylabel="tokens/s: seqbench / bare loop", title="harness overhead (median, IQR)")
    ax.legend(fontsize=8)
    return (
        "**Harness overhead.** Throughput of seqbench against the loop a user would write "
        "instead (same shapes, same weights, same optimiser and schedule), timed in one "
        "process as interleaved blocks; `ratio` = tokens/s(seqbench) / tokens/s(bare), "
        "median over the A/B pairs with [q25, q75]; `ratio_iqr` = q75 - q25. The goal is "
        f"a median ratio >= {GOAL} (overhead <= 5%). `loss_diff` = |seqbench loss - bare "
        "loss| after the last timed step: 0 means both sides computed the same thing. "
        "`overhead_us_per_step` = median over pairs of (seqbench - bare block time) / steps: "
        "the fixed cost the harness adds to every step, which the `_tiny` rows (launch-bound "
        "shapes, as a GPU sees small models) show undiluted. "
        "`train_loop` compares the whole `train()` (validation, run directory, logging, "
        "evaluation and checkpoint cadence, progress bar, final weights) with a bare loop "
        "of as many steps over the same batches, so evaluation work counts as overhead "
        "there (experiments/harness_overhead/README.md).\n\n"
        + md_table(df.assign(**show)[cols])
        + "\n\n"
        + save(fig, out, "perf_overhead")
    )


# --- FLOP/s and MFU ------------------------------------------------------------------------------
def _mfu(df, out) -> str:
    if df is None:
        return ""
    show = df.assign(
        gflops_per_step=df.flops_per_step / 1e9,
        achieved_tflops=df.flops_per_s / 1e12,
        peak_tflops=df.peak_measured_flops_per_s / 1e12,
        step_ms=df.step_s_median * 1e3,
        step_ms_iqr=df.step_s_iqr * 1e3,
    )
    cols = [
        "model",
        "impl",
        "flops_counted_on",
        "device",
        "dtype",
        "threads",
        "seq_len",
        "batch_size",
        "gflops_per_step",
        "step_ms",
        "step_ms_iqr",
        "achieved_tflops",
        "peak_tflops",
        "mfu_measured",
        "mfu_nominal",
    ]
    how = "; ".join(sorted(set(df.peak_measured_how.astype(str))))
    devices = sorted(df.device.astype(str).unique())
    fig, axes = figure(ncols=len(devices), width=6.5)
    for ax, device in zip(axes, devices):
        d = df[df.device.astype(str) == device]
        lengths, models = sorted(d.seq_len.unique()), list(dict.fromkeys(d.model))
        w = 0.8 / max(1, len(lengths))
        for i, T in enumerate(lengths):  # colour = model, hatch = length
            g = d[d.seq_len == T].groupby("model").mfu_measured.median().reindex(models)
            ax.bar(
                np.arange(len(models)) + i * w,
                g * 100,
                w,
                color=[color(m) for m in models],
                hatch=HATCHES[i % len(HATCHES)],
                edgecolor="white",
                label=f"T={T}",
            )
        ax.set_xticks(np.arange(len(models)) + w * (len(lengths) - 1) / 2, models, fontsize=8)
        ax.set(ylabel="MFU vs measured peak (%)", title=f"model FLOPs utilisation, {device}")
        handles = [
            Patch(facecolor="lightgray", edgecolor="white", hatch=HATCHES[i % 4], label=f"T={T}")
            for i, T in enumerate(lengths)
        ]
        ax.legend(handles=handles, fontsize=8)
    return (
        "**FLOP/s and MFU** (Chowdhery et al. 2022, App. B). FLOPs per step = matmul FLOPs "
        "of forward + backward counted by `torch.utils.flop_counter` (element-wise ops "
        "count 0; causal attention counted in full; fused RNN kernels are opaque to the "
        "counter, so recurrent models are counted on their `unrolled` path, "
        "`flops_counted_on`). Achieved FLOP/s = FLOPs per step / median step time of "
        "seqbench's training step. **MFU = achieved FLOP/s / peak FLOP/s**, with the peak "
        f"(a) measured in the same run ({how}) -> `mfu_measured`, and (b) the nominal dense "
        "bf16 peak where the device is known (H100/H200 989, A100 312 TFLOP/s) -> "
        "`mfu_nominal` (empty on CPU).\n\n"
        + md_table(show[cols])
        + "\n\n"
        + save(fig, out, "perf_mfu")
    )


# --- the parallel scan ---------------------------------------------------------------------------
def _scan_rows(tables):
    span = _rows(tables, "span")
    if span is None or not {"T", "span_ops", "impl", "model"} <= set(span.columns):
        return None
    keep = span[span.model.isin(SCAN_MODELS) & (span.impl == "scan")]
    return span if not keep.empty else None


def _series(span):
    """One span-vs-T series per (model, impl, depth, pass), medians over repeats."""
    keys = [k for k in ("model", "impl", "n_layers", "pass") if k in span.columns]
    med = span.groupby(keys + ["T"], dropna=False).span_ops.median().reset_index()
    return {
        k if isinstance(k, tuple) else (k,): g.sort_values("T")
        for k, g in med.groupby(keys, dropna=False)
    }


def _scan(span, out) -> str:
    if span is None:
        return ""
    fwd = span[span["pass"] == "forward"] if "pass" in span.columns else span
    depth = int(fwd.n_layers.mode().iloc[0]) if "n_layers" in fwd.columns else None
    if depth is not None:
        fwd = fwd[fwd.n_layers == depth]
    fig, axes = figure(width=5.5)
    ax = axes[0]
    for key, g in _series(fwd).items():
        model, impl = key[0], key[1]
        ax.plot(
            g["T"],
            g.span_ops,
            marker="o",
            ms=3,
            color=color(model),
            ls="-" if impl == "scan" else "--",
            label=f"{model} ({impl})",
        )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="sequence length T",
        ylabel="span (longest chain of aten ops)",
        title=f"forward span, {depth} layers" if depth else "forward span",
    )
    ax.legend(fontsize=7)
    return (
        "**Parallel-scan recurrences.** minGRU and minLSTM (Feng et al. 2024) have gates "
        "that read only the input, so the recurrence h_t = a_t h_(t-1) + b_t is an "
        "associative scan: on `impl=scan` it runs as ceil(log2 T) rounds of whole-tensor "
        "ops (Hillis-Steele, in log space, Heinsen 2023), on `impl=sequential` as a loop "
        "over t. Same parameters, equal outputs (tests/test_minrnn.py). Solid: scan path; "
        "dashed: traced per-step paths.\n\n" + save(fig, out, "perf_scan_span")
    )


def _growth(g):
    """(span(T_max)/span(T_min), T_max/T_min, increments of span per doubling of T)."""
    t, s = g["T"].to_numpy(float), g.span_ops.to_numpy(float)
    per_doubling = np.diff(s) / np.diff(np.log2(t))
    return s[-1] / s[0], t[-1] / t[0], per_doubling


def claims(tables) -> list:
    span = _scan_rows(tables)
    rule = (
        "supported if, for minGRU and minLSTM on their scan path (every depth and pass "
        "traced, >= 3 lengths spanning >= 8x), span grows by a constant amount per "
        "doubling of T (max/min increment <= 1.5: span = a + b log2 T) and "
        "span(T_max)/span(T_min) <= 1/4 of T_max/T_min; not supported if any grows >= 1/2 "
        "as fast as T; nuanced otherwise"
    )
    if span is None:
        return [Claim("C3*", "span_vs_length (scan path)", "-", rule, "not measured")]
    scan = span[span.model.isin(SCAN_MODELS) & (span.impl == "scan")]
    verdicts, measured = [], []
    for key, g in _series(scan).items():
        if g["T"].nunique() < 3 or g["T"].max() / g["T"].min() < 8:
            continue
        growth, length_ratio, inc = _growth(g)
        log_like = inc.min() > 0 and inc.max() / inc.min() <= 1.5
        if growth >= 0.5 * length_ratio:
            verdicts.append("not supported")
        elif log_like and growth <= 0.25 * length_ratio:
            verdicts.append("supported")
        else:
            verdicts.append("nuanced")
        measured.append(
            f"{'/'.join(str(k) for k in key)}: x{growth:.2f} for x{length_ratio:.0f} "
            f"T (+{inc.mean():.1f} ops per doubling)"
        )
    if not verdicts or not set(SCAN_MODELS) <= set(scan.model):
        return [
            Claim(
                "C3*",
                "span_vs_length (scan path)",
                "; ".join(measured) or "-",
                rule,
                "not measured",
            )
        ]
    # the weakest series decides: one linear series refutes, one unclean series makes nuanced
    verdict = next((v for v in ("not supported", "nuanced") if v in verdicts), "supported")
    contrast = _contrast(span)
    return [
        Claim(
            "C3*",
            "span_vs_length (scan path)",
            "; ".join(measured[:4]) + (" ..." if len(measured) > 4 else "") + contrast,
            rule,
            verdict,
        )
    ]


def _contrast(span) -> str:
    """The per-step recurrences' growth over the same lengths, for context."""
    other = span[~span.impl.isin(["scan"]) & span.model.isin(["lstm", "mingru", "minlstm"])]
    if "pass" in other.columns:
        other = other[other["pass"] == "forward"]
    out = []
    for key, g in _series(other).items():
        if g["T"].nunique() >= 2:
            growth, length_ratio, _ = _growth(g)
            out.append(f"{key[0]} ({key[1]}): x{growth:.1f}")
    return f"; per-step paths: {', '.join(sorted(set(out))[:3])}" if out else ""
