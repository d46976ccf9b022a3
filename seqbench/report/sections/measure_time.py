"""Time vs length (study time_vs_length): wall-clock of forward and train step against T.

Figures: median seconds per call (IQR bars) against T on log-log axes, forward and full
training step, at fixed batch and at fixed tokens per batch; recurrent models on the fused
kernel (solid) and the unrolled loop (dashed), labelled. Table: log-log slopes of time vs T.
Claim C4's wall-clock side ("Transformers train much faster") is judged here.
"""

import pandas as pd

from seqbench.measure.analysis import (
    RECURRENT,
    fmt,
    length_ticks,
    loglog_slope,
    only_complete,
    value_at,
)
from seqbench.report import Claim
from seqbench.report.plot import color, figure, md_table, save

ORDER = 22
TITLE = "Wall-clock vs sequence length: forward and training step (C4)"
STUDY = "time_vs_length"


def _table(tables):
    df = only_complete(tables, "timing", STUDY)
    if df.empty or "median_s" not in df:
        return pd.DataFrame()
    return df[pd.to_numeric(df.median_s, errors="coerce").notna()].copy()


def _label(model, impl):
    return f"{model} ({impl})" if impl not in ("-", None) and pd.notna(impl) else model


def render(tables, out) -> str:
    df = _table(tables)
    if df.empty:
        return "_No completed time_vs_length runs._"
    hw = ", ".join(
        sorted({f"{r.device}, {int(r.threads)} thread(s), {r.dtype}" for r in df.itertuples()})
    )
    parts = [
        f"Measured with `torch.utils.benchmark.Timer` on {hw}: median per call, bars "
        "span the inter-quartile range. Solid: fused kernel (cuDNN/oneDNN) or the "
        "Transformer; dashed: the same recurrent model's unrolled per-step loop."
    ]
    for step, name in (
        ("train_step", "time_vs_length_train"),
        ("forward", "time_vs_length_forward"),
    ):
        d = df[df.step == step]
        if d.empty:
            continue
        modes = [m for m in ("fixed_batch", "fixed_tokens") if m in set(d["mode"])]
        fig, axes = figure(ncols=len(modes), width=4.8)
        for ax, mode in zip(axes, modes):
            for (m, impl), g in d[d["mode"] == mode].groupby(["model", "impl"]):
                g = g.sort_values("T")
                ax.errorbar(
                    g["T"],
                    g.median_s,
                    yerr=g.iqr_s / 2,
                    marker=".",
                    capsize=2,
                    ls="--" if impl == "unrolled" else "-",
                    color=color(m),
                    label=_label(m, impl),
                )
            sel = d[d["mode"] == mode]
            size = (
                f"~{int(sel.tokens.max())} tokens/batch"
                if mode == "fixed_tokens"
                else f"batch {int(sel.batch_size.max())}"
            )
            ax.set(
                xscale="log",
                yscale="log",
                xlabel="sequence length T",
                ylabel="seconds per call",
                title=f"{step.replace('_', ' ')}, {size}",
            )
            length_ticks(ax, d["T"])
        axes[0].legend(fontsize=7)
        parts.append(save(fig, out, name))
    parts.append(_slopes(df))
    parts.append(_reading(df))
    return "\n\n".join(p for p in parts if p)


def _slope_rows(df):
    rows = []
    for (m, impl, mode, step), g in df.groupby(["model", "impl", "mode", "step"]):
        rows.append(
            {
                "model": m,
                "path": impl,
                "mode": mode,
                "step": step,
                "T range": f"{int(g['T'].min())}-{int(g['T'].max())}",
                "slope": loglog_slope(g["T"], g.median_s),
                "slope (upper half of T)": loglog_slope(
                    g["T"][g["T"] >= g["T"].median()], g.median_s[g["T"] >= g["T"].median()]
                ),
            }
        )
    return pd.DataFrame(rows)


def _slopes(df) -> str:
    s = _slope_rows(df)
    return (
        "Log-log slope k of time ∝ T^k (least squares over the T range; the last column "
        "fits only the longer half, where fixed costs matter less):\n\n"
        + md_table(s, floatfmt=".2f")
    )


def _common_t(df, models_impls, mode, step):
    sets = []
    for m, impl in models_impls:
        g = df[(df.model == m) & (df.impl == impl) & (df["mode"] == mode) & (df.step == step)]
        sets.append(set(g["T"]))
    common = set.intersection(*sets) if sets else set()
    return max(common) if common else None


def _compare(df, mode="fixed_tokens", step="train_step"):
    """Transformer vs each recurrent model (fused and unrolled) at the longest shared T."""
    tf = df[(df.model == "transformer") & (df["mode"] == mode) & (df.step == step)]
    out = {}
    for impl in ("fused", "unrolled"):
        pairs = [("transformer", "-")] + [
            (m, impl) for m in RECURRENT if ((df.model == m) & (df.impl == impl)).any()
        ]
        if len(pairs) < 2 or tf.empty:
            continue
        T = _common_t(df, pairs, mode, step)
        if T is None:
            continue
        t_tf = value_at(tf, "T", T, "median_s")
        out[impl] = (
            T,
            {
                m: value_at(
                    df[(df.model == m) & (df.impl == i) & (df["mode"] == mode) & (df.step == step)],
                    "T",
                    T,
                    "median_s",
                )
                / t_tf
                for m, i in pairs[1:]
            },
        )
    return out


def _reading(df) -> str:
    s = _slope_rows(df)
    said = []
    for mode in ("fixed_batch", "fixed_tokens"):
        sel = s[(s["mode"] == mode) & (s.step == "train_step")]
        if sel.empty:
            continue
        said.append(
            f"at {mode.replace('_', ' ')} the train step grows as T^k with k = "
            + ", ".join(
                f"{fmt(r.slope, 2)} for {_label(r.model, r.path)}" for r in sel.itertuples()
            )
        )
    comp = _compare(df)
    vs = []
    for impl, (T, ratios) in comp.items():
        vs.append(
            f"against the {impl} recurrent path at T={T}, their train step takes "
            + ", ".join(f"{fmt(r, 2)}× ({m})" for m, r in ratios.items())
            + " the Transformer's time"
        )
    if not said:
        return ""
    first = "; ".join(said)
    return (
        "**Reading.** "
        + first[0].upper()
        + first[1:]
        + ". With tokens per batch fixed, "
        + "; ".join(vs)
        + " (ratios above 1: the Transformer is faster). The unrolled loop "
        "pays one small kernel per time step and layer, which is the sequential cost of "
        "C3 made visible; the fused kernel hides the same recurrence inside one call."
    )


def claims(tables) -> list:
    df = _table(tables)
    comp = _compare(df) if not df.empty else {}
    if "fused" not in comp:
        return []
    T, fused = comp["fused"]
    unrolled = comp.get("unrolled", (None, {}))
    beats_fused = all(r > 1 for r in fused.values())
    beats_unrolled = bool(unrolled[1]) and all(r > 1 for r in unrolled[1].values())
    verdict = "supported" if beats_fused else "nuanced" if beats_unrolled else "not supported"
    hw = ", ".join(sorted({str(d) for d in df.device}))
    measured = (
        f"recurrent/Transformer train-step time (> 1: Transformer faster), fixed tokens, "
        f"{hw}: fused at T={T}: " + ", ".join(f"{m} {fmt(r, 2)}" for m, r in fused.items())
    )
    if unrolled[1]:
        measured += f"; unrolled at T={unrolled[0]}: " + ", ".join(
            f"{m} {fmt(r, 2)}" for m, r in unrolled[1].items()
        )
    return [
        Claim(
            "C4",
            "time_vs_length",
            measured,
            "supported if the Transformer's training step (fixed tokens per batch, longest "
            "T all share) is faster than every recurrent model's *fused* kernel; "
            "nuanced if it beats only the unrolled loops; not supported otherwise",
            verdict,
        )
    ]
