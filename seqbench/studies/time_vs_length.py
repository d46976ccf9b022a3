"""Time vs length (C4, wall-clock): a forward pass and a training step against T.

seqbench.measure.timing times every model's forward (no grad) and full training step with
torch.utils.benchmark (median, IQR), at a fixed batch and at fixed tokens per batch. Each
family runs on both of its execution paths, as separate rows: the recurrent family on the
fused cuDNN/oneDNN kernel and the unrolled per-step loop (experiment time_vs_length), the
scan family on its parallel scan and its sequential loop (time_vs_length_scan). C4's
wall-clock side ("Transformers train much faster") compares the attention model's training
step with every recurrent model's, at fixed tokens and the longest T they all share.
"""

import pandas as pd

from seqbench.report.analysis import fmt, length_ticks, loglog_slope, ratio, value_at
from seqbench.report.plot import md_table
from seqbench.studies import Rule, Verdict, complete, in_family, measure

TITLE = "Wall-clock vs sequence length: forward and training step (C4)"
ORDER = 22
DECIDES = ("C4",)
STUDY = "time_vs_length"
PATHS = {"recurrent": ("fused", "unrolled"), "scan": ("scan", "sequential")}  # fast, per-step
_RULE = (
    "supported if the attention model's {step} ({mode}, at the longest T every compared "
    "series shares) is faster (recurrent time / attention time > {faster:g}) than every "
    "recurrent model's *fused* kernel; nuanced if it beats only the unrolled loops; not "
    "supported otherwise"
)
RULE = Rule(_RULE, step="train_step", mode="fixed_tokens", faster=1)
FIGURES = (("train_step", "time_vs_length_train"), ("forward", "time_vs_length_forward"))


def _pair(head, lengths, rest, scan_lengths=None) -> list:
    """The timing job and its scan-family twin, same settings. Timing jobs run alone: the
    basic launcher, one process, never joblib."""
    return [
        measure(STUDY, "-m", "+experiment=time_vs_length", *head, lengths, *rest),
        measure(f"{STUDY}_scan", "-m", "+experiment=time_vs_length_scan", *head,
                scan_lengths or lengths, *rest),
    ]  # fmt: skip


BENCH = {
    "smoke": _pair(["train.threads=1"], "what.lengths=[32,64]", [
        "what.modes=[fixed_batch]", "what.batch_size=2", "what.min_run_time=0.01",
        "what.min_blocks=3"]),
    "cpu": _pair(["train.threads=1"], "what.lengths=[32,64,128,256,512,1024,2048]", [
        "what.unrolled_max_len=256", "what.tokens_per_batch=4096", "what.min_run_time=0.1",
        "what.max_call_s=1.0"], scan_lengths="what.lengths=[32,64,128,256,512,1024]"),
    "gpu": _pair(["model.size=s", "train.threads=null"],
                 "what.lengths=[64,128,256,512,1024,2048,4096,8192]", [
        "what.unrolled_max_len=1024", "what.tokens_per_batch=16384", "what.batch_size=8",
        "what.min_run_time=0.1", "what.max_call_s=1.0"]),
}  # fmt: skip


def _table(tables) -> pd.DataFrame:
    """The complete, timed rows (a series that stopped growing T logs its skipped points
    with a note and no time)."""
    df = complete(tables.get("timing"), STUDY)
    if df.empty or "median_s" not in df:
        return pd.DataFrame()
    return df[pd.to_numeric(df.median_s, errors="coerce").notna()].copy()


def _label(model, impl):
    return f"{model} ({impl})" if impl not in ("-", None) and pd.notna(impl) else model


def _hardware(rows) -> str:
    """Where the rows were measured: 'cpu, 1 thread(s)'."""
    return ", ".join(sorted({f"{r.device}, {int(r.threads)} thread(s)" for r in rows.itertuples()}))


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


def verdicts(tables) -> list[Verdict]:
    df = _table(tables)
    comp = _compare(df) if not df.empty else {}
    fused_path, unrolled_path = PATHS["recurrent"]
    if fused_path not in comp:
        return []
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
    return [Verdict("C4", STUDY, measured, RULE, verdict, hardware=_hardware(rows))]


def section(tables, figs) -> str:
    df = _table(tables)
    if df.empty:
        return "_No completed time_vs_length runs._"
    hw = ", ".join(
        sorted({f"{r.device}, {int(r.threads)} thread(s), {r.dtype}" for r in df.itertuples()})
    )
    parts = [
        f"Measured with `torch.utils.benchmark.Timer` on {hw}: median per call, bars span the "
        "inter-quartile range. Solid: the fused kernel (cuDNN/oneDNN), the parallel scan or "
        "the Transformer; dashed: the same model's per-step loop (unrolled or sequential)."
    ]
    for step, name in FIGURES:
        if not df[df.step == step].empty:
            parts.append(_figure(df[df.step == step], step, name, figs))
    parts += [_slopes(df), _reading(df)]
    return "\n\n".join(p for p in parts if p)


def _figure(d, step, name, figs) -> str:
    """Seconds per call against T, one panel per batching mode."""
    per_step = {slow for _, slow in PATHS.values()}  # the Python loops over time: dashed
    modes = [m for m in ("fixed_batch", "fixed_tokens") if m in set(d["mode"])]
    fig, axes = figs.figure(ncols=len(modes), width=4.8)
    for ax, mode in zip(axes, modes):
        sel = d[d["mode"] == mode]
        for (m, impl), g in sel.groupby(["model", "impl"]):
            g = g.sort_values("T")
            ax.errorbar(g["T"], g.median_s, yerr=g.iqr_s / 2, marker=".", capsize=2,
                        ls="--" if impl in per_step else "-", color=figs.color(m),
                        label=_label(m, impl))  # fmt: skip
        size = (
            f"~{int(sel.tokens.max())} tokens/batch"
            if mode == "fixed_tokens"
            else f"batch {int(sel.batch_size.max())}"
        )
        ax.set(xscale="log", yscale="log", xlabel="sequence length T", ylabel="seconds per call")
        ax.set_title(f"{step.replace('_', ' ')}, {size}")
        length_ticks(ax, d["T"])
    axes[0].legend(fontsize=7)
    return figs.save(fig, name)


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
