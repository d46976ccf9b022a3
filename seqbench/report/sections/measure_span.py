"""Span vs length (study span_vs_length): parallel step counts traced from the real dataflow.

Figures: span (longest dependency chain, in aten ops) vs T on log-log axes for every model
and depth, and parallelism = work / span vs T. Claims C3 (recurrence is sequential, stacked
layers form a wavefront) and C4 (a Transformer layer is one parallel step at any length) are
judged here from the traced rows.
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

ORDER = 20
TITLE = "Parallel step count: span vs sequence length (C3, C4)"
STUDY = "span_vs_length"
STYLES = {1: ":", 2: "-", 4: "--"}


def _table(tables):
    df = only_complete(tables, "span", STUDY)
    if df.empty:
        return df
    df = df.assign(flops_per_step=df.work_flops / df.span_ops)  # FLOPs per dependent step
    return (
        df.groupby(["model", "impl", "n_layers", "pass", "T"], dropna=False)[
            [
                "work_ops",
                "span_ops",
                "parallelism",
                "work_flops",
                "attention_flops",
                "flops_per_step",
            ]
        ]
        .median()
        .reset_index()
    )


def _lo_hi(df):
    """T_lo = 64 (or the smallest T above it) and T_hi = the largest T every model has."""
    ts = sorted(set.intersection(*[set(g["T"]) for _, g in df.groupby("model")]))
    if len(ts) < 2:
        return None, None
    lo = next((t for t in ts if t >= 64), ts[0])
    return (lo, ts[-1]) if ts[-1] > lo else (ts[0], ts[-1])


def render(tables, out) -> str:
    df = _table(tables)
    if df.empty:
        return "_No completed span_vs_length runs._"
    fwd = df[df["pass"] == "forward"]
    parts = [_figures(df, out), _reading(fwd)]
    lo, hi = _lo_hi(fwd)
    if lo is not None:
        rows = []
        for (m, impl, L), g in fwd.groupby(["model", "impl", "n_layers"], dropna=False):
            s_lo, s_hi = value_at(g, "T", lo, "span_ops"), value_at(g, "T", hi, "span_ops")
            rows.append(
                {
                    "model": m,
                    "traced path": impl,
                    "layers": L,
                    f"span(T={lo})": s_lo,
                    f"span(T={hi})": s_hi,
                    "ratio": s_hi / s_lo,
                    "log-log slope": loglog_slope(g["T"], g.span_ops),
                    f"work/span (ops) at T={hi}": value_at(g, "T", hi, "parallelism"),
                    f"FLOPs/step at T={hi}": value_at(g, "T", hi, "flops_per_step"),
                }
            )
        parts.append(
            "Forward pass, per model and depth (spans in aten ops):\n\n"
            + md_table(pd.DataFrame(rows))
        )
    return "\n\n".join(parts)


def _panel(ax, df, y, ylabel, title):
    for (m, impl, L), g in df.groupby(["model", "impl", "n_layers"], dropna=False):
        label = f"{m}{' (' + impl + ')' if impl not in ('-', None) else ''} L={L:g}"
        ax.plot(g["T"], g[y], STYLES.get(L, "-."), marker=".", color=color(m), label=label)
    ax.set(xscale="log", yscale="log", xlabel="sequence length T", ylabel=ylabel, title=title)
    length_ticks(ax, df["T"])


def _figures(df, out) -> str:
    passes = [p for p in ("forward", "forward_backward") if p in set(df["pass"])]
    fig, axes = figure(ncols=len(passes), width=4.8)
    for ax, p in zip(axes, passes):
        _panel(
            ax,
            df[df["pass"] == p],
            "span_ops",
            "span (ops on the longest chain)",
            p.replace("_", " + "),
        )
    axes[0].legend(fontsize=6, ncol=2)
    md = [save(fig, out, "span_vs_length")]
    fwd = df[df["pass"] == "forward"]
    fig, axes = figure(ncols=2, width=4.8)
    _panel(axes[0], fwd, "parallelism", "work / span (ops)", "forward: ops that could overlap")
    _panel(
        axes[1],
        fwd,
        "flops_per_step",
        "work FLOPs / span (ops)",
        "forward: FLOPs per dependent step",
    )
    axes[1].legend(fontsize=6, ncol=2)
    md.append(save(fig, out, "parallelism_vs_length"))
    return (
        "Traced with `seqbench.measure.trace` (every aten op a node, edges from the ops "
        "that produced its inputs; views free). Recurrent models are traced on their "
        "unrolled path, the label says so. Line style: depth L (dotted 1, solid 2, dashed "
        "4). Parallelism is shown two ways: ops that could run at the same time "
        "(work/span in ops; a wide matmul over all positions is *one* op) and FLOPs "
        "available per dependent step (work FLOPs / span in ops), batch size 1.\n\n"
        + "\n\n".join(md)
    )


def _reading(fwd) -> str:
    lo, hi = _lo_hi(fwd)
    if lo is None:
        return ""
    said = []
    for m in sorted(set(fwd.model)):
        g = fwd[fwd.model == m]
        L = sorted(g.n_layers.dropna())
        L0 = L[0] if L else None
        g0 = g[g.n_layers == L0] if L0 is not None else g
        ratio = value_at(g0, "T", hi, "span_ops") / value_at(g0, "T", lo, "span_ops")
        text = f"{m} ×{fmt(ratio)}"
        if m in RECURRENT and len(set(L)) > 1:
            per_step = (
                value_at(g0, "T", hi, "span_ops") - value_at(g0, "T", hi // 2, "span_ops")
            ) / (hi - hi // 2)
            Lmax = max(L)
            extra = (
                value_at(g[g.n_layers == Lmax], "T", hi, "span_ops")
                - value_at(g0, "T", hi, "span_ops")
            ) / (Lmax - L0)
            text += (
                f" (one time step adds {fmt(per_step)} ops to the chain, one extra layer "
                f"adds {fmt(extra)})"
            )
        said.append(text)
    tf = fwd[fwd.model == "transformer"]
    att = ""
    if not tf.empty:
        a_hi, a_half = (
            value_at(tf, "T", hi, "attention_flops"),
            value_at(tf, "T", hi // 2, "attention_flops"),
        )
        att = (
            f" The Transformer's attention FLOPs grow ×{fmt(a_hi / a_half)} from T={hi // 2} "
            f"to T={hi} (quadratic work), while its span does not move."
        )
    return (
        f"**Reading.** From T={lo} to T={hi} (×{hi // lo} longer, shallowest depth) the "
        f"forward span grows: {'; '.join(said)}.{att} A recurrence's chain grows with "
        "every time step, and stacking layers adds a few ops per layer rather than "
        "multiplying the chain: the lecture's diagonal wavefront. Attention's chain depends "
        "only on depth, so the work available per dependent step grows with T."
    )


def claims(tables) -> list:
    df = _table(tables)
    if df.empty:
        return []
    fwd = df[df["pass"] == "forward"]
    lo, hi = _lo_hi(fwd)
    if lo is None:
        return []
    out = []

    def ratios(models):
        r = {}
        for (m, L), g in fwd[fwd.model.isin(models)].groupby(["model", "n_layers"], dropna=False):
            r[(m, L)] = value_at(g, "T", hi, "span_ops") / value_at(g, "T", lo, "span_ops")
        return r

    need = (hi / lo) / 2  # at least half of linear growth
    rec = ratios(RECURRENT)
    if rec:
        wave = {}
        for m in sorted({m for m, _ in rec}):
            g = fwd[fwd.model == m]
            Ls = sorted(g.n_layers.dropna())
            if len(set(Ls)) > 1:
                wave[m] = value_at(g[g.n_layers == max(Ls)], "T", hi, "span_ops") / value_at(
                    g[g.n_layers == min(Ls)], "T", hi, "span_ops"
                )
        linear = all(v >= need for v in rec.values())
        wavefront = bool(wave) and all(v < 1.5 for v in wave.values())
        verdict = (
            "supported" if linear and wavefront else ("nuanced" if linear else "not supported")
        )
        measured = "; ".join(f"{m} L={L:g}: ×{fmt(v)}" for (m, L), v in sorted(rec.items()))
        measured += (
            "; deepest/shallowest span at T="
            + str(hi)
            + ": "
            + ", ".join(f"{m} ×{fmt(v, 4)}" for m, v in wave.items())
        )
        out.append(
            Claim(
                "C3",
                "span_vs_length",
                f"span(T={hi})/span(T={lo}): {measured}",
                f"supported if span(T={hi})/span(T={lo}) >= {need:g} (half of linear) "
                "for every recurrent model and depth, and the deepest stack's span is "
                "< 1.5x the single layer's (wavefront T + L - 1, not T x L)",
                verdict,
            )
        )
    tf = ratios(["transformer"])
    if tf:
        ok = all(v <= 1.1 for v in tf.values())
        g = fwd[fwd.model == "transformer"]
        par = value_at(g, "T", hi, "flops_per_step") / value_at(g, "T", lo, "flops_per_step")
        out.append(
            Claim(
                "C4",
                "span_vs_length",
                "Transformer span(T="
                + str(hi)
                + ")/span(T="
                + str(lo)
                + "): "
                + ", ".join(f"L={L:g} ×{fmt(v)}" for (_, L), v in sorted(tf.items()))
                + f"; FLOPs per dependent step grow ×{fmt(par)}",
                f"supported if the Transformer's forward span at T={hi} is <= 1.1x "
                f"its span at T={lo} at every depth",
                "supported" if ok else "not supported",
            )
        )
    return out
