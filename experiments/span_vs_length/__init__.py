"""Span vs length (C3, C4, C3*): parallel step counts traced from the real aten dataflow.

seqbench.measure.span traces every model at lengths T and depths L: work, and span (the
longest chain of ops each waiting on the one before). The lecture: a recurrence's span grows
with T, stacked layers forming a diagonal wavefront of about T + L - 1 steps, not T x L (C3);
an attention layer is one parallel step at any length (C4). Beyond it (C3*): the ``scan``
family (minGRU/minLSTM, Feng et al. 2024) gates on the input alone, so ``impl=scan`` runs the
recurrence as a parallel scan whose span should grow as log T. The counts are deterministic
(no seeds, no training): the verdicts carry ``n/a`` in the stability column.
"""

import numpy as np
import pandas as pd

from seqbench.report.analysis import loglog_slope, ratio, value_at
from seqbench.report.axes import axis_label, dodge, key_entry, log_axis
from seqbench.report.markdown import md_table
from seqbench.report.plot import series_label
from seqbench.report.stats import fmt
from seqbench.report.verdict import Rule, Verdict
from seqbench.studies._common import complete, in_family, study_of, unnamed_text

TITLE = "Parallel step count: span vs sequence length (C3, C4, C3*)"
ORDER = 20
DECIDES = ("C3", "C4", "C3*")
CLAIMS = {"C3*": "a recurrence with input-only gates runs as a parallel scan: span ~ log T"}
STUDY = study_of(__name__)
DETERMINISTIC = "n/a (deterministic: traced op counts, no seeds or training)"
T_LO = 64  # T_lo: the shortest shared length >= this; T_hi: the longest shared length
_C3 = (
    "T_lo = the shortest shared T >= {t_lo}, T_hi = the longest; supported if span(T_hi)/"
    "span(T_lo) >= {linear:g} x T_hi/T_lo for every recurrent model and depth, and the "
    "deepest stack's span at T_hi is < {wavefront}x the shallowest's (wavefront T + L - 1, "
    "not T x L); nuanced if only the growth holds; not supported otherwise"
)
C3_RULE = Rule(_C3, t_lo=T_LO, linear=0.5, wavefront=1.5)
_C4 = (
    "supported if the attention model's forward span at T_hi is <= {flat}x its span at "
    "T_lo (T_lo = the shortest shared T >= {t_lo}) at every depth; not supported otherwise"
)
C4_RULE = Rule(_C4, t_lo=T_LO, flat=1.1)
_SCAN = (
    "supported if every series of every scan-family model on its scan path (each depth and "
    "pass, >= {lengths} lengths spanning >= {spread}x) grows by a constant amount per doubling "
    "of T (max/min increment <= {even}: span = a + b log2 T) with span(T_max)/span(T_min) <= "
    "{log_share:g} x T_max/T_min; not supported if any grows >= {linear_share:g} x as fast as "
    "T; nuanced otherwise"
)
SCAN_RULE = Rule(_SCAN, lengths=3, spread=8, even=1.5, log_share=0.25, linear_share=0.5)
PANELS = (  # the parallelism figure: (column, y label, title)
    ("parallelism", "ops at once (ops, work/span)", "forward: ops that could overlap"),
    (
        "flops_per_step",
        "FLOPs per step (FLOPs, work/span)",
        "forward: FLOPs per dependent step",
    ),
)
SERIES = ["model", "impl", "n_layers", "pass"]  # one traced series
COLS = ["work_ops", "span_ops", "parallelism", "work_flops", "attention_flops", "flops_per_step"]


def _table(tables) -> pd.DataFrame:
    """Medians over repeats per (series, T), with FLOPs per dependent step added."""
    df = complete(tables.get("span"), STUDY)
    if df.empty:  # the columns, no rows: every step below reads an empty table the same way
        return pd.DataFrame(columns=SERIES + ["family", "T"] + COLS)
    df = df.assign(flops_per_step=df.work_flops / df.span_ops)
    return df.groupby(SERIES + ["family", "T"], dropna=False)[COLS].median().reset_index()


def _lo_hi(fwd):
    """(T_lo, T_hi, shared) over the lengths every model was traced at (``shared``, sorted):
    T_lo = T_LO or the shortest shared T above it, T_hi = the longest; None without two."""
    ts = sorted(set.intersection(*[set(g["T"]) for _, g in fwd.groupby("model")] or [set()]))
    if len(ts) < 2:
        return None, None, ts
    return next((t for t in ts[:-1] if t >= T_LO), ts[0]), ts[-1], ts


def _at(g, T, y="span_ops") -> float:
    return value_at(g, "T", T, y)


def _growth(fwd, models, lo, hi, y="span_ops", by=("model", "n_layers")) -> dict:
    """(model, depth) (or other ``by``) -> y(T_hi) / y(T_lo), medians over what ``by`` pools."""
    sel = fwd[fwd.model.isin(models)].groupby(list(by), dropna=False)
    return {key: ratio(_at(g, hi, y), _at(g, lo, y)) for key, g in sel}


def _per_step(fwd, models, lo, hi) -> dict:  # FLOPs available per dependent step, all depths
    return _growth(fwd, models, lo, hi, "flops_per_step", by=["model"])


def _depths(g) -> tuple:
    """(rows of the shallowest depth, rows of the deepest, shallowest L, deepest L)."""
    Ls = sorted(set(g.n_layers.dropna()))
    if not Ls:  # a model without layers (bag of words): all its rows are one depth
        return g, g, None, None
    return g[g.n_layers == Ls[0]], g[g.n_layers == Ls[-1]], Ls[0], Ls[-1]


def _stacking(fwd, models, hi) -> dict:
    """model -> span of its deepest stack / span of its shallowest, at T_hi (several depths)."""
    d = {m: _depths(fwd[fwd.model == m]) for m in models}
    return {m: ratio(_at(s, hi), _at(g, hi)) for m, (g, s, L0, L1) in d.items() if L0 != L1}


def _c3(fwd, lo, hi) -> Verdict | None:
    rec = _growth(fwd, in_family(fwd, "recurrent"), lo, hi)
    if not rec:
        return None
    need = C3_RULE.linear * hi / lo  # half of linear growth, for these lengths
    wave = _stacking(fwd, sorted({m for m, _ in rec}), hi)
    linear = all(v >= need for v in rec.values())
    wavefront = bool(wave) and all(v < C3_RULE.wavefront for v in wave.values())
    verdict = "supported" if linear and wavefront else "nuanced" if linear else "not supported"
    measured = (
        f"span(T={hi})/span(T={lo}) (rule: >= {need:g}): "
        + "; ".join(f"{m} L={L:g}: ×{fmt(v)}" for (m, L), v in sorted(rec.items()))
        + f"; deepest/shallowest span at T={hi}: "
        + ", ".join(f"{m} ×{fmt(v, 4)}" for m, v in wave.items())
    )
    return Verdict("C3", STUDY, measured, C3_RULE, verdict)


def _c4(fwd, lo, hi) -> Verdict | None:
    models = in_family(fwd, "attention")
    att = _growth(fwd, models, lo, hi)
    if not att:
        return None
    measured = (
        f"attention span(T={hi})/span(T={lo}): "
        + ", ".join(f"{m} L={L:g} ×{fmt(v)}" for (m, L), v in sorted(att.items()))
        + "; FLOPs per dependent step grow "  # all depths pooled, T_lo -> T_hi
        + ", ".join(f"{m} ×{fmt(v)}" for (m,), v in _per_step(fwd, models, lo, hi).items())
    )
    ok = all(v <= C4_RULE.flat for v in att.values())
    return Verdict("C4", STUDY, measured, C4_RULE, "supported" if ok else "not supported")


# each rule reads one family; a model of any other family is named in every verdict, with
# what that rule would say of it
COMPARES = ("recurrent", "attention", "scan")


def _named(v: Verdict | None, fwd, side: dict, judge) -> Verdict | None:
    if v is not None:
        v.measured += unnamed_text(fwd, COMPARES, side, judge)
    return v


def verdicts(tables) -> list[Verdict]:
    df = _table(tables)
    fwd = df[df["pass"] == "forward"]
    lo, hi, _ = _lo_hi(fwd)
    found = []
    if lo is not None:
        c3, c4 = (lambda t: _c3(t, lo, hi)), (lambda t: _c4(t, lo, hi))
        found = [_named(c3(fwd), fwd, {"a recurrence": "recurrent"}, c3),
                 _named(c4(fwd), fwd, {"attention": "attention"}, c4)]  # fmt: skip
    out = [v for v in found if v is not None] + [_scan_verdict(df)]
    for v in out:  # the report's leave-a-seed-out would drop every row of seed 0: not a check
        v.stability = DETERMINISTIC
    return out


def _series(df) -> dict:  # (model, impl, depth, pass) -> that series' rows, sorted by T
    return {k: g.sort_values("T") for k, g in df.groupby(SERIES, dropna=False)}


def _doublings(g):
    """(span(T_max)/span(T_min), T_max/T_min, span added per doubling of T between points)."""
    t, s = g["T"].to_numpy(float), g.span_ops.to_numpy(float)
    return s[-1] / s[0], t[-1] / t[0], np.diff(s) / np.diff(np.log2(t))


def _scan_verdict(df) -> Verdict:
    r, models = SCAN_RULE, in_family(df, "scan")
    scan = df[df.model.isin(models) & (df.impl == "scan")]
    calls, measured = [], []
    for key, g in _series(scan).items():
        if g["T"].nunique() < r.lengths or g["T"].max() / g["T"].min() < r.spread:
            continue
        growth, longer, inc = _doublings(g)  # span ratio, length ratio, per-doubling steps
        log_like = inc.min() > 0 and inc.max() / inc.min() <= r.even  # span = a + b log2 T
        under = "supported" if log_like and growth <= r.log_share * longer else "nuanced"
        calls.append("not supported" if growth >= r.linear_share * longer else under)
        name = "/".join(str(k) for k in key) + f": x{growth:.2f}"
        measured.append(f"{name} for x{longer:.0f} T (+{inc.mean():.1f} ops per doubling)")
    experiment = f"{STUDY} (scan path)"
    if not calls or set(models) - set(scan.model):  # every scan model needs its scan path
        return Verdict("C3*", experiment, "; ".join(measured) or "-", r, "not measured")
    # the weakest series decides: one linear series refutes, one unclean series makes nuanced
    verdict = next((v for v in ("not supported", "nuanced") if v in calls), "supported")
    text = "; ".join(measured[:4]) + (" ..." if len(measured) > 4 else "") + _contrast(df)
    return Verdict("C3*", experiment, text, r, verdict)


def _contrast(df) -> str:
    """The per-step recurrences' growth over the same lengths (forward, shallowest depth)."""
    steps = df[df.model.isin(in_family(df, "recurrent", "scan")) & (df.impl != "scan")]
    shallowest = steps.groupby("model").n_layers.transform("min")  # per model
    steps = steps[(steps["pass"] == "forward") & (steps.n_layers == shallowest)]
    out = [f"{k[0]} ({k[1]}): x{_doublings(g)[0]:.1f}" for k, g in _series(steps).items()]
    return f"; per-step paths: {', '.join(out)}" if out else ""


def section(tables, figs) -> str:
    df = _table(tables)
    if df.empty:
        return "_No completed span_vs_length runs._"
    fwd = df[df["pass"] == "forward"]
    parts = [_figures(df, figs), _reading(fwd)]
    lo, hi, _ = _lo_hi(fwd)
    if lo is not None:
        rows = [
            {"model": m, "traced path": impl, "layers": L, f"span(T={lo})": _at(g, lo),
             f"span(T={hi})": _at(g, hi), "ratio": ratio(_at(g, hi), _at(g, lo)),
             "log-log slope": loglog_slope(g["T"], g.span_ops),
             f"work/span (ops) at T={hi}": _at(g, hi, "parallelism"),
             f"FLOPs/step at T={hi}": _at(g, hi, "flops_per_step")}
            for (m, impl, L), g in fwd.groupby(["model", "impl", "n_layers"], dropna=False)
        ]  # fmt: skip
        table = md_table(pd.DataFrame(rows))
        parts.append(f"Forward pass, per model and depth (spans in aten ops):\n\n{table}")
    parts.append(_scan_figure(df, figs))
    return "\n\n".join(p for p in parts if p)


BACKWARD = {"-": ":", "--": "-."}  # forward + backward: dotted for a fast path, else dash-dot


def _panel(ax, df, y, figs, backward=False):
    """One line per traced series: colour = model, line style = path (``BACKWARD``'s for the
    forward + backward pass), marker = depth; the depths' markers dodged sideways, for they
    coincide where depth adds little."""
    depths, models = sorted(df.n_layers.dropna().unique()), sorted(df.model.unique())
    for (m, impl, L), g in df.groupby(["model", "impl", "n_layers"], dropna=False):
        g = g.sort_values("T")
        style = figs.style(m, impl, L)
        if backward:
            style["ls"] = BACKWARD.get(style["ls"], style["ls"])
        # each model drawn thinner than the one before: where two coincide, both show
        style["lw"] = 1.2 * (1 + (len(models) - 1 - models.index(m)) / max(1, len(models) - 1))
        label = series_label(m, impl, L) + (" (forward + backward)" if backward else "")
        ax.plot(dodge(g["T"], depths.index(L), len(depths)), g[y], label=label, ms=4, **style)


def _grid(figs, n, ncols=3, sharey=True):
    """(fig, axes) of n panels, ``ncols`` a row, on shared axes, so a model's curves are
    never drawn over another's and the panels compare at a glance."""
    ncols = min(ncols, n)
    fig, axes = figs.figure(ncols=ncols, nrows=-(-n // ncols), width=3.1, height=2.5,
                            sharex=True, sharey=sharey)  # fmt: skip
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _frame(axes, T, ylabel, ncols):
    """Log axes, the x label under the bottom panels and the y label beside the left ones."""
    T = sorted(set(T))
    for i, ax in enumerate(axes):
        log_axis(ax, "x", ticks=T[:: -(-len(T) // 4)])  # four ticks fit a narrow panel
        log_axis(ax, "y", si=True)
        if i >= len(axes) - ncols:
            ax.set_xlabel(axis_label("sequence length T", "tokens"))
        if i % ncols == 0:
            ax.set_ylabel(ylabel)


def _figures(df, figs) -> str:
    fwd, both = df[df["pass"] == "forward"], df[df["pass"] == "forward_backward"]
    models = list(dict.fromkeys(fwd.sort_values(["family", "model"]).model))
    fig, axes = _grid(figs, len(models))
    for ax, m in zip(axes, models):
        _panel(ax, fwd[fwd.model == m], "span_ops", figs)
        _panel(ax, both[both.model == m], "span_ops", figs, backward=True)
        ax.set_title(m, fontsize=9)
    _frame(axes, fwd["T"], "span (ops, longest chain)", min(3, len(models)))
    extra = []
    if len(both):  # the backward pass's own line styles, and how far it was traced
        loops = {str(figs.linestyle(i)) == "--" for i in both.impl}
        extra = [key_entry(f"forward + backward{', per-step loop' * loop} (to T="
                           f"{int(both['T'].max())})", ls=BACKWARD["--" if loop else "-"])
                 for loop in sorted(loops)]  # fmt: skip
    figs.legend(fig, key=True, extra=extra)
    md = [figs.save(fig, "span_vs_length", decides=("C3", "C4"))]
    families = sorted(fwd.family.dropna().unique())
    fig, axes = _grid(figs, len(families) * len(PANELS), len(families), sharey="row")
    for row, (y, ylabel, _) in enumerate(PANELS):
        panels = axes[row * len(families) : (row + 1) * len(families)]
        for ax, f in zip(panels, families):
            _panel(ax, fwd[fwd.family == f], y, figs)
            ax.set_title(f"{f}: {', '.join(sorted(set(fwd[fwd.family == f].model)))}", fontsize=8)
        _frame(panels, fwd["T"], ylabel, len(families))
        for ax in panels if row < len(PANELS) - 1 else ():  # the x label once, at the bottom
            ax.set_xlabel("")
    figs.claim_title(fig, text="how much of the forward pass could run at once (work / span)")
    figs.legend(fig, key=True)
    md.append(figs.save(fig, "span_vs_length_parallelism"))
    return "\n\n".join([
        "Traced with `seqbench.measure.trace` (every aten op a node, edges from the ops that "
        "produced its inputs; views free), batch 1, recurrent models on their unrolled path. "
        "Colour: model; line style: execution path (solid: the Transformer or a parallel "
        "scan; dashed: a per-step loop; dotted and dash-dot: the same for the forward + "
        "backward pass); marker: depth "
        "L, the depths' markers moved sideways by a few percent where they coincide. One panel "
        "per model (per family below), all on the same axes. Parallelism: ops that could run "
        "at once (work/span in ops; a wide matmul is *one* op), and FLOPs per dependent "
        "step.", *md,
    ])  # fmt: skip


def _reading(fwd) -> str:
    """What the forward spans show: each conclusion by the verdicts' own test, never fixed."""
    lo, hi, shared = _lo_hi(fwd)
    if lo is None:
        return ""
    below = shared[-2]  # the shared length just under T_hi
    rec, said, layer_in_steps = in_family(fwd, "recurrent"), [], {}
    for m, g in fwd.groupby("model"):
        shallow, deep, L0, L1 = _depths(g)
        text = f"{m} ×{fmt(ratio(_at(shallow, hi), _at(shallow, lo)))}"
        if m in rec and L0 != L1:
            step = (_at(shallow, hi) - _at(shallow, below)) / (hi - below)  # ops per time step
            layer = (_at(deep, hi) - _at(shallow, hi)) / (L1 - L0)  # ops per extra layer
            layer_in_steps[m] = ratio(layer, step)
            text += f" (one time step adds {fmt(step)} ops to the chain, one layer {fmt(layer)})"
        said.append(text)
    head = f"From T={lo} to T={hi} (×{hi // lo} longer, shallowest depth) the forward span grows"
    out = [f"**Reading.** {head}: {'; '.join(said)}."]
    need = C3_RULE.linear * hi / lo  # C3's own growth test
    slow = sorted({m for (m, _), v in _growth(fwd, rec, lo, hi).items() if not v >= need})
    if rec:
        who = f"The chain of {', '.join(slow)} grows" if slow else "Every recurrent chain grows"
        out.append(f"{who} {'less than' if slow else 'at least'} {C3_RULE.linear:g}x as fast as T.")
    wave = _stacking(fwd, rec, hi)
    if wave:
        steps = ", ".join(f"{fmt(v)} ({m})" for m, v in layer_in_steps.items())
        front = all(v < C3_RULE.wavefront for v in wave.values())  # C3's own wavefront test
        shape = "the lecture's diagonal wavefront" if front else "stacked chains, no wavefront"
        out.append(f"One extra layer lengthens the chain as much as {steps} time steps: {shape}.")
    for m in in_family(fwd, "attention"):
        a_below, a_hi = (_at(fwd[fwd.model == m], t, "attention_flops") for t in (below, hi))
        k, grow = fmt(loglog_slope([below, hi], [a_below, a_hi]), 2), fmt(ratio(a_hi, a_below))
        span = (
            "its span does not move: its chain depends only on depth, so the FLOPs per "
            f"dependent step grow ×{fmt(_per_step(fwd, [m], lo, hi)[(m,)])} from T={lo} to {hi}"
            if all(v <= C4_RULE.flat for v in _growth(fwd, [m], lo, hi).values())  # C4's test
            else "its span grows with T too"
        )
        out.append(f"{m}'s attention FLOPs grow ×{grow} from T={below} to T={hi} (T^{k}); {span}.")
    return " ".join(out)


def _scan_figure(df, figs) -> str:
    """(a) The scan paths' forward span on log T and linear span: span ~ log T is a straight
    line there, a span ~ T bends up; (b) every traced path on log-log axes, the per-step loops
    (dashed) with slope 1 beside the scans."""
    scan = df.model.isin(in_family(df, "scan"))
    if df[scan & (df.impl == "scan")].empty:
        return ""
    fwd = df[df["pass"] == "forward"]
    depth = int(fwd.n_layers.mode().iloc[0])  # the depth most series were traced at
    at = fwd[fwd.n_layers == depth]
    fig, (ax, allax) = figs.figure(ncols=2, width=4.4)
    for (model, impl, _, _), g in _series(at).items():
        style = dict(label=series_label(model, impl), marker="o", ms=3) | figs.style(model, impl)
        if model in set(df[scan].model):
            ax.plot(g["T"], g.span_ops, **style)
        allax.plot(g["T"], g.span_ops, **style)
    ax.set(xlabel=axis_label("sequence length T", "tokens"), ylabel="span (ops, longest chain)")
    ax.set_ylim(bottom=0)
    ax.set_title("(a) scans: log T axis, linear span", fontsize=9)
    allax.set(xlabel=axis_label("sequence length T", "tokens"), ylabel="span (ops, longest chain)")
    allax.set_title("(b) every path, log-log", fontsize=9)
    for a in (ax, allax):
        log_axis(a, "x", ticks=at["T"])
    log_axis(allax, "y", si=True)
    figs.label_ends(ax)
    figs.legend(fig)
    return (
        "**Parallel-scan recurrences (C3\\*).** The scan family gates on the input alone, so "
        "h_t = a_t h_(t-1) + b_t is an associative scan: `impl=scan` runs ceil(log2 T) rounds of "
        "whole-tensor ops, `impl=sequential` a loop over t. Left: the scan paths on a log T "
        "axis, where a span ~ log T is a straight line; right: every traced path "
        f"({depth} layer{'' if depth == 1 else 's'}), solid: scan or attention, dashed: per-step "
        "loops.\n\n" + figs.save(fig, "span_vs_length_scan", decides="C3*")
    )
