"""Time vs length (C4, wall-clock): a forward pass and a training step against T.

seqbench.measure.timing times every model's forward (no grad) and full training step with
torch.utils.benchmark (median, IQR), at a fixed batch and at fixed tokens per batch. Each
family runs on both of its execution paths, as separate rows: the recurrent family on the
fused cuDNN/oneDNN kernel and the unrolled per-step loop (experiment time_vs_length), the
scan family on its parallel scan and its sequential loop (time_vs_length_scan). C4's
wall-clock side ("Transformers train much faster") compares the attention model's training
step with every recurrent model's, at fixed tokens and the longest T they all share. The claim
is about parallel hardware: rows timed anywhere but on CUDA keep their figures and ratios in
the claims table and the section, with the verdict ``not measured on <device>``. Timings have
no seeds: a point is a median over timed blocks with its inter-quartile range, so the
stability column says n/a.
"""

import pandas as pd

from seqbench.report.analysis import loglog_slope, ratio, value_at
from seqbench.report.axes import axis_label, iqr_band, log_axis
from seqbench.report.hardware import hardware_note, stamp
from seqbench.report.markdown import md_table
from seqbench.report.stats import fmt
from seqbench.report.verdict import Rule, Verdict
from seqbench.studies import profile_settings
from seqbench.studies._common import (
    ATTENTION_VS_RECURRENCE,
    PARALLEL,
    TIMED,
    block_ratio,
    blocks_disagree,
    complete,
    honest,
    in_family,
    median_iqr,
    not_parallel,
    study_of,
    unnamed_text,
)

TITLE = "Wall-clock vs sequence length: forward and training step (C4)"
ORDER = 22
DECIDES = ("C4",)
STUDY = study_of(__name__)
PATHS = {"recurrent": ("fused", "unrolled"), "scan": ("scan", "sequential")}  # fast, per-step
_RULE = (
    "supported if the attention model's {step} ({mode}, at the longest T every compared "
    "series shares) is faster (recurrent time / attention time > {faster:g}) than every "
    "recurrent model's *fused* kernel; nuanced if it beats only the unrolled loops; not "
    "supported otherwise"
)
RULE = Rule(_RULE, step="train_step", mode="fixed_tokens", faster=1)
FIGURES = (("train_step", "time_vs_length_train"), ("forward", "time_vs_length_forward"))


# what each profile passes beyond the experiment file (the section says so), from
# profiles.yaml: never typed beside the values
CPU_CUT = (
    f"{profile_settings(__name__, 'cpu')}; "
    f"the GPU profile passes {profile_settings(__name__, 'gpu')}"
)


def _table(tables) -> pd.DataFrame:
    """The complete, timed rows (a series that stopped growing T logs its skipped points
    with a note and no time)."""
    df = complete(tables.get("timing"), STUDY)
    if df.empty or "median_s" not in df:
        return pd.DataFrame()
    return df[pd.to_numeric(df.median_s, errors="coerce").notna()].copy()


def _label(model, impl):
    return f"{model} ({impl})" if impl not in ("-", None) and pd.notna(impl) else model


def _rows(df, model, impl, mode=RULE.mode, step=RULE.step):
    return df[(df.model == model) & (df.impl == impl) & (df["mode"] == mode) & (df.step == step)]


def _compare(df) -> dict:
    """path -> (T, {(recurrent, attention): recurrent time / attention time}, rows used), at
    the rule's mode and step and the longest T every compared series shares (> 1: attention
    faster); a path is left out when one of its recurrent models has no such series."""
    att = {(m, i): _rows(df, m, i) for m, i in df[["model", "impl"]].drop_duplicates().values
           if m in in_family(df, "attention")}  # fmt: skip
    att = {k: g for k, g in att.items() if not g.empty}
    out = {}
    for path in PATHS["recurrent"]:
        rec = [m for m in in_family(df, "recurrent") if ((df.model == m) & (df.impl == path)).any()]
        series = {m: _rows(df, m, path) for m in rec}
        if not att or not rec:
            continue
        shared = set.intersection(*[set(g["T"]) for g in [*att.values(), *series.values()]])
        if not shared:
            continue
        T = max(shared)
        ratios = {
            (m, a): ratio(value_at(g, "T", T, "median_s"), value_at(ga, "T", T, "median_s"))
            for m, g in series.items()
            for (a, _), ga in att.items()
        }
        out[path] = (T, ratios, pd.concat([*att.values(), *series.values()]))
    return out


def _names(ratios) -> str:
    """'lstm 0.25, gru 3.6' (against one attention model) or 'lstm/transformer 0.25, ...'."""
    one = len({a for _, a in ratios}) == 1
    return ", ".join(f"{m if one else f'{m}/{a}'} {fmt(r, 2)}" for (m, a), r in ratios.items())


def _block_ranges(df, path, T, ratios) -> dict:
    """{'lstm (fused)': (lo, hi)}: each ratio of ``_compare`` as its groups allow."""
    att = df[(df["mode"] == RULE.mode) & (df.step == RULE.step)]
    one = len({a for _, a in ratios}) == 1  # one attention model: name the recurrent side
    return {_label(m, path) + ("" if one else f"/{a}"):
            block_ratio(_rows(df, m, path), att[att.model == a], "T", T)
            for m, a in ratios}  # fmt: skip


COMPARES = ("attention", "recurrent")  # the scan family and any other: named, not compared


def verdicts(tables) -> list[Verdict]:
    df = _table(tables)
    v = _c4(df)
    if v is None:
        return []
    v.measured += unnamed_text(df, COMPARES, ATTENTION_VS_RECURRENCE, _c4)
    return [v]


def _c4(df) -> Verdict | None:
    """C4 on the timed rows of the named families; None without a fused comparison."""
    comp = _compare(df) if not df.empty else {}
    fused_path, unrolled_path = PATHS["recurrent"]
    if fused_path not in comp:
        return None
    T, fused, rows = comp[fused_path]
    T_u, unrolled, _ = comp.get(unrolled_path, (None, {}, None))
    beats_fused = all(r > RULE.faster for r in fused.values())
    beats_unrolled = bool(unrolled) and all(r > RULE.faster for r in unrolled.values())
    verdict = "supported" if beats_fused else "nuanced" if beats_unrolled else "not supported"
    att = "/".join(in_family(df, "attention"))
    devices = ", ".join(sorted({str(d) for d in df.device}))
    measured = (
        f"recurrent/{att} {RULE.step} time (> {RULE.faster:g}: {att} faster), {RULE.mode}, "
        f"{devices}: {fused_path} at T={T}: {_names(fused)}"
    )
    if unrolled:
        measured += f"; {unrolled_path} at T={T_u}: {_names(unrolled)}"
    measured += f"; median (IQR) at T={T}: " + ", ".join(
        f"{_label(m, i)} {median_iqr(g, 'T', T)}" for (m, i), g in rows.groupby(["model", "impl"])
    )
    elsewhere = not_parallel(rows)
    if elsewhere:  # one CPU thread measures the absence of parallel hardware, not the claim
        verdict = f"not measured on {elsewhere}"
    deciding = _block_ranges(df, fused_path, T, fused)  # the unrolled loops decide if it loses
    if not beats_fused and unrolled:
        deciding |= _block_ranges(df, unrolled_path, T_u, unrolled)
    verdict, measured = honest(verdict, measured, blocks_disagree(deciding, RULE.faster))
    return Verdict("C4", STUDY, measured, RULE, verdict, stamp(rows), TIMED)


def section(tables, figs) -> str:
    df = _table(tables)
    if df.empty:
        return "_No completed time_vs_length runs._"
    hw = ", ".join(
        sorted({f"{r.device}, {int(r.threads)} thread(s), {r.dtype}" for r in df.itertuples()})
    )
    parts = [
        f"Measured with `torch.utils.benchmark.Timer` on {hw}: median per call, bands span the "
        "inter-quartile range. Solid: the fused kernel (cuDNN/oneDNN), the parallel scan or "
        "the Transformer; dashed: the same model's per-step loop (unrolled or sequential)."
    ]
    elsewhere = not_parallel(df)
    if elsewhere:
        parts.append(
            f"Timed on {elsewhere}, not on {PARALLEL}: C4's wall-clock side is a claim about "
            "parallel hardware, so the claims table shows these figures with the verdict "
            f"`not measured on {elsewhere}`; the GPU profile decides it. What the CPU profile "
            f"passes: {CPU_CUT}."
        )
    for step, name in FIGURES:
        if not df[df.step == step].empty:
            parts.append(_figure(df[df.step == step], step, name, figs))
    parts += [_compared(df), _slopes(df), _reading(df)]
    return "\n\n".join(p for p in parts if p)


def _figure(d, step, name, figs) -> str:
    """Seconds per call against T: one row per batching mode, one panel per family (a few
    lines each, named at their ends), shared axes along a row. Colour = model, line style =
    path (solid the fused kernel, the scan or attention; dashed the per-step loop), the IQR
    as a band around the median (log-symmetric: ``iqr_band``)."""
    modes = [m for m in ("fixed_batch", "fixed_tokens") if m in set(d["mode"])]
    families = sorted(d.family.dropna().unique())
    fig, axes = figs.figure(ncols=len(families), nrows=len(modes), width=3.2, height=2.7,
                            sharex=True, sharey="row")  # fmt: skip
    panels = iter(axes)
    for row, mode in enumerate(modes):
        sel = d[d["mode"] == mode]
        size = (f"~{int(sel.tokens.max())} tokens/batch" if mode == "fixed_tokens"
                else f"batch {int(sel.batch_size.max())}")  # fmt: skip
        for col, fam in enumerate(families):
            ax = next(panels)
            for (m, impl), g in sel[sel.family == fam].groupby(["model", "impl"]):
                g = g.sort_values("T")
                lo, hi = iqr_band(g.median_s, g.iqr_s)  # the IQR around the median
                figs.line(ax, g["T"], g.median_s, lo, hi, model=m, impl=impl, marker=".")
            ax.set_title(f"{fam}, {size}", fontsize=8)
            if row == len(modes) - 1:
                ax.set_xlabel(axis_label("sequence length T", "tokens"))
            if col == 0:
                ax.set_ylabel(axis_label(f"{step.replace('_', ' ')} time", "s"))
            log_axis(ax, "x", ticks=d["T"])
            log_axis(ax, "y")
    for ax in axes:  # once every panel of a shared row is drawn: the limits are final
        figs.label_ends(ax)
    short = _stops_early(d)
    if short:
        fig.supxlabel(short, fontsize=7, color="0.3")
    if step != RULE.step:  # the figure no verdict reads still says what it shows
        figs.claim_title(fig, text=f"{step.replace('_', ' ')} time per call against T")
    note = hardware_note(d)
    elsewhere = not_parallel(d)
    if elsewhere:
        note += f"; the claim is about {PARALLEL}: not measured on {elsewhere}"
    # C4's wall-clock rule reads the training step at fixed tokens
    return figs.save(fig, name, decides=DECIDES if step == RULE.step else (), hardware=note)


def _stops_early(d) -> str:
    """'mingru (sequential), minlstm (sequential) timed to T=64 only (the profile skips longer
    per-step loops)': series that end before the others, so no line seems to break off."""
    top = d["T"].max()
    ends = d.groupby(["model", "impl"])["T"].max()
    short = ends[ends < top]
    if short.empty:
        return ""
    names = ", ".join(_label(m, i) for m, i in short.index)
    T = ", ".join(str(int(t)) for t in sorted(set(short)))
    return f"{names}: timed to T={T} only (the profile skips longer per-step loops)"


def _compared(df) -> str:
    """The rule's cells: median and IQR of every compared series at the T it compares."""
    rows = []
    for path, (T, _, used) in _compare(df).items():
        for (m, impl), g in used.groupby(["model", "impl"]):
            row = g[g["T"] == T].iloc[0]
            rows.append({"compared path": path, "model": m, "impl": impl, "T": T,
                         "median_s": row.median_s, "iqr_s": row.iqr_s})  # fmt: skip
    if not rows:
        return ""
    return (
        f"The rule's cells ({RULE.step}, {RULE.mode}): median seconds per call and their "
        "inter-quartile range at the longest length every compared series shares:\n\n"
        + md_table(pd.DataFrame(rows), floatfmt=".3g")
    )


def _slope_rows(df) -> pd.DataFrame:
    rows = []
    for (m, impl, mode, step), g in df.groupby(["model", "impl", "mode", "step"]):
        upper = g["T"] >= g["T"].median()
        rows.append({
            "model": m, "path": impl, "mode": mode, "step": step,
            "T range": f"{int(g['T'].min())}-{int(g['T'].max())}",
            "slope": loglog_slope(g["T"], g.median_s),
            "slope (upper half of T)": loglog_slope(g["T"][upper], g.median_s[upper]),
        })  # fmt: skip
    return pd.DataFrame(rows)


def _slopes(df) -> str:
    return (
        "Log-log slope k of time ∝ T^k (least squares over the T range; the last column "
        "fits only the longer half, where fixed costs matter less):\n\n"
        + md_table(_slope_rows(df), floatfmt=".2f")
    )


def _loop_cost(df) -> dict:
    """family -> {model: (T, per-step loop time / fast path time)} at the rule's mode and
    step, at the longest T both paths of that model share."""
    out = {}
    for family, (fast, slow) in PATHS.items():
        for m in in_family(df, family):
            a, b = _rows(df, m, slow), _rows(df, m, fast)
            shared = set(a["T"]) & set(b["T"])
            if shared:
                T = max(shared)
                r = ratio(value_at(a, "T", T, "median_s"), value_at(b, "T", T, "median_s"))
                out.setdefault(family, {})[m] = (T, r)
    return out


def _reading(df) -> str:
    s = _slope_rows(df)
    said = []
    for mode in ("fixed_batch", "fixed_tokens"):
        sel = s[(s["mode"] == mode) & (s.step == "train_step")]
        if not sel.empty:
            ks = [f"{fmt(r.slope, 2)} for {_label(r.model, r.path)}" for r in sel.itertuples()]
            ks = ", ".join(ks)
            said.append(f"at {mode.replace('_', ' ')} the train step grows as T^k with k = {ks}")
    if not said:
        return ""
    first = "; ".join(said)
    text = f"**Reading.** {first[0].upper()}{first[1:]}."
    vs = [
        f"against the {path} recurrent path at T={T}, their {RULE.step} takes "
        + ", ".join(f"{fmt(r, 2)}× ({m})" for (m, _), r in ratios.items())
        + " the attention model's time"
        for path, (T, ratios, _) in _compare(df).items()
    ]
    mode = RULE.mode.replace("_", " ")
    if vs:
        text += f" At {mode}, {'; '.join(vs)} (above {RULE.faster:g}: attention is faster)."
    for family, costs in _loop_cost(df).items():
        fast, slow = PATHS[family]
        each = ", ".join(f"{fmt(r, 2)}× ({m}, T={T})" for m, (T, r) in costs.items())
        text += f" At {mode}, the {slow} loop's {RULE.step} takes {each} the {fast} path's time."
        if family == "recurrent" and all(r > RULE.faster for _, r in costs.values()):
            text += (
                " It pays one small kernel per time step and layer, the sequential cost of C3 "
                "made visible; the fused kernel hides the same recurrence inside one call."
            )
    return text
