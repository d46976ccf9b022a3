"""Generation cost (C2, C9): per-token latency and state memory against context length.

seqbench.measure.decode_cost prefills a random prompt of c tokens, then times greedy
generation (seqbench.generate) three ways: ``state`` (one token per step with the carried
state: a recurrence's hidden state, attention's KV cache), ``recompute`` (the whole prefix
re-run every step) and ``teacher_forced`` (one forward over the c known tokens, training's
situation), and records the bytes of the state after the prompt. C2: generation is the
sequential, expensive part; C9: at inference the Transformer's training advantage narrows,
its decoding speed ratio over the LSTM against its training ratio (study time_vs_length).
C2's ratio (teacher-forced against stepwise, per token) is decided wherever it is measured;
C9 compares speeds on parallel hardware, so rows timed off CUDA keep their figures with the
verdict ``not measured on <device>``. Timings have no seeds (medians with IQRs over timed
blocks): the stability column says n/a.
"""

import math

import pandas as pd

from seqbench.report.analysis import loglog_slope, ratio, value_at
from seqbench.report.axes import axis_label, iqr_band, key_entry, log_axis, reference
from seqbench.report.hardware import hardware_note, stamp
from seqbench.report.plot import SPARE_LINESTYLES
from seqbench.report.stats import fmt
from seqbench.report.verdict import Rule, Verdict
from seqbench.studies import profile_settings
from seqbench.studies._common import (
    TIMED,
    block_ratio,
    blocks_disagree,
    complete,
    family_of,
    honest,
    in_family,
    median_iqr,
    not_parallel,
    study_of,
)

TITLE = "Generation cost: per-token latency and state memory vs context (C2, C9)"
ORDER = 24
DECIDES = ("C2", "C9")
STUDY = study_of(__name__)
# the one place that says this study reads another's runs: C9 pairs its decoding speeds with
# time_vs_length's training-step timings (the stability column perturbs those runs too)
READS = ("time_vs_length",)
(TIMING_STUDY,) = READS
# C9 is the lecture's comparison with the LSTM by name, on its fastest (fused) path: picked
# by family and name here and nowhere else
LSTM = {"family": "recurrent", "model": "lstm", "impl": "fused"}
_C2 = (
    "supported if the attention model processes a known sequence (the longest context every "
    "model decoded) in one forward >= {factor}x faster per token than it generates the tokens "
    "one at a time with its KV cache; not supported otherwise"
)
C2_RULE = Rule(_C2, factor=5)
_C9 = (
    "supported if the attention model trains faster than the fused LSTM (time_vs_length "
    "{step} at {mode}; speed ratio > {faster:g}) and its decoding speed ratio (KV cache vs "
    "state, same length) is nearer parity (|log ratio| smaller) than its training ratio; "
    "nuanced if it does not train faster on this hardware (no gap to narrow); not supported "
    "otherwise"
)
C9_RULE = Rule(_C9, step="train_step", mode="fixed_batch", faster=1)
STYLE = {"state": "-", "recompute": "--", "teacher_forced": ":"}  # line style per mode
# what each profile passes beyond the experiment file (the section says so), from
# profiles.yaml: never typed beside the values
CPU_CUT = (
    f"{profile_settings(__name__, 'cpu')}; "
    f"the GPU profile passes {profile_settings(__name__, 'gpu')}"
)


def _table(tables) -> pd.DataFrame:
    df = complete(tables.get("decode"), STUDY)
    if df.empty or "s_per_token" not in df:
        return pd.DataFrame()
    return df[pd.to_numeric(df.s_per_token, errors="coerce").notna()].copy()


def _mode_label(model, mode, family):
    if mode == "state":  # attention carries a KV cache, every other family a state
        return f"{model} ({'KV cache' if family.get(model) == 'attention' else 'state'})"
    return f"{model} ({mode.replace('_', ' ')})"


def _per_token(g, c) -> str:
    """'1.2 ms (IQR 0.05)': seconds per token at context c, median and IQR."""
    return median_iqr(g, "context", c, "s_per_token", "iqr_s_per_token")


def _largest_common(df, mode):
    sets = [set(g.context) for _, g in df[df["mode"] == mode].groupby("model")]
    common = set.intersection(*sets) if sets else set()
    return max(common) if common else None


def _c2_ratios(df):
    """Per model at the largest context all share: teacher-forced / stepwise tokens per s."""
    c = _largest_common(df[df["mode"].isin(["state", "teacher_forced"])], "state")
    if c is None:
        return None, {}
    out = {}
    for m, g in df.groupby("model"):
        tf = value_at(g[g["mode"] == "teacher_forced"], "context", c, "tokens_per_s")
        st = value_at(g[g["mode"] == "state"], "context", c, "tokens_per_s")
        out[m] = ratio(tf, st)
    return c, out


def _c9(df, tables, attention):
    """(T, training speed attention/LSTM, decoding speed ratio, rows used) at the longest
    length both were timed at; None without the fused LSTM's and attention's rows."""
    timing = complete(tables.get("timing"), TIMING_STUDY)
    lstm_decoded = LSTM["model"] in in_family(df, LSTM["family"])
    if timing.empty or "median_s" not in timing or not lstm_decoded:
        return None
    tr = timing[(timing["mode"] == C9_RULE.mode) & (timing.step == C9_RULE.step)]
    tr = tr[pd.to_numeric(tr.median_s, errors="coerce").notna()]
    lstm_t = tr[(tr.model == LSTM["model"]) & (tr.impl == LSTM["impl"])]
    att_t = tr[tr.model == attention]
    dec = df[df["mode"] == "state"]
    lstm_d, att_d = dec[dec.model == LSTM["model"]], dec[dec.model == attention]
    shared = set(lstm_t["T"]) & set(att_t["T"]) & set(lstm_d.context) & set(att_d.context)
    if not shared:
        return None
    T = max(shared)
    train = ratio(value_at(lstm_t, "T", T, "median_s"), value_at(att_t, "T", T, "median_s"))
    decode = ratio(value_at(att_d, "context", T, "tokens_per_s"),
                   value_at(lstm_d, "context", T, "tokens_per_s"))  # fmt: skip
    return T, train, decode, (pd.concat([lstm_t, att_t]), pd.concat([lstm_d, att_d]))


PER_TOKEN = "block_{}_s_per_token"  # the decode rows' group medians


def _c2_blocks(df, attention, c) -> str:
    """C2's ratio for each attention model as its timed groups allow (state time / teacher-
    forced time per token = teacher-forced / stepwise speed), against the rule's factor."""

    def rows(m, mode):
        return df[(df.model == m) & (df["mode"] == mode)]

    ranges = {a: block_ratio(rows(a, "state"), rows(a, "teacher_forced"), "context", c,
                             PER_TOKEN) for a in attention}  # fmt: skip
    return blocks_disagree(ranges, C2_RULE.factor)


def _log_span(lo, hi) -> tuple[float, float]:
    """Smallest and largest |log r| for r in [lo, hi]: 0 when the range holds parity."""
    a, b = abs(math.log(lo)), abs(math.log(hi))
    return (0.0 if lo <= 1 <= hi else min(a, b)), max(a, b)


def _c9_blocks(T, train_rows, decode_rows, attention) -> str:
    """'blocks disagree: ...' when C9's deciding comparisons flip between timed groups: the
    training ratio crossing the rule's line, or decoding nearer parity than training in some
    groups and not in others."""

    def one(rows, m):
        return rows[rows.model == m]

    lstm = LSTM["model"]
    train = block_ratio(one(train_rows, lstm), one(train_rows, attention), "T", T)
    decode = block_ratio(one(decode_rows, lstm), one(decode_rows, attention), "context", T,
                         PER_TOKEN)  # fmt: skip
    if not all(math.isfinite(v) and v > 0 for v in (*train, *decode)):
        return ""  # rows without groups (older runs) or a broken timing: nothing to compare
    (d_lo, d_hi), (t_lo, t_hi) = _log_span(*decode), _log_span(*train)
    crosses = bool(blocks_disagree({"training": train}, C9_RULE.faster))
    if not crosses and (d_hi < t_lo or d_lo >= t_hi):  # every group reads the same way
        return ""
    return (f"blocks disagree: decoding {fmt(decode[0], 2)}-{fmt(decode[1], 2)}, "
            f"training {fmt(train[0], 2)}-{fmt(train[1], 2)}")  # fmt: skip


def verdicts(tables) -> list[Verdict]:
    df = _table(tables)
    if df.empty:
        return []
    out, attention = [], in_family(df, "attention")
    c, ratios = _c2_ratios(df)
    if attention and set(attention) <= set(ratios):
        # C2 is the lecture's GPT argument: teacher forcing computes every position at once.
        # A recurrence stays sequential over a known sequence too (C3), so the other
        # families' ratios are reported beside the verdict, not judged by it.
        ok = all(ratios[a] >= C2_RULE.factor for a in attention)
        mine = ", ".join(f"{a} {fmt(ratios[a], 3)}×" for a in attention)
        others = [f"{m} {fmt(r, 3)}×" for m, r in ratios.items() if m not in attention]
        rows = df[df.model.isin(attention) & df["mode"].isin(["state", "teacher_forced"])]
        per_token = ", ".join(
            f"{m} {mode.replace('_', ' ')} {_per_token(g, c)}"
            for (m, mode), g in rows.groupby(["model", "mode"])
        )
        measured = (
            f"teacher-forced / stepwise tokens per second at context {c}: {mine} (other "
            f"families, for comparison: {', '.join(others) or 'none'}); per token, median "
            f"(IQR): {per_token}"
        )
        verdict = "supported" if ok else "not supported"
        verdict, measured = honest(verdict, measured, _c2_blocks(df, attention, c))
        out.append(Verdict("C2", STUDY, measured, C2_RULE, verdict, stamp(rows), TIMED))
    for a in attention:
        c9 = _c9(df, tables, a)
        if c9 is None:
            continue
        T, train, decode, (train_rows, decode_rows) = c9
        closer = abs(math.log(decode)) < abs(math.log(train))  # nearer parity than training
        verdict = "supported" if closer else "not supported"
        verdict = "nuanced" if train <= C9_RULE.faster else verdict  # no training gap to narrow
        measured = (
            f"{a}/{LSTM['model']} ({LSTM['impl']}) speed at T={T}: training {fmt(train, 3)}×, "
            f"decoding (KV cache vs state) {fmt(decode, 3)}×; training step, median (IQR): "
            + ", ".join(f"{m} {median_iqr(g, 'T', T)}" for m, g in train_rows.groupby("model"))
            + "; per decoded token: "
            + ", ".join(f"{m} {_per_token(g, T)}" for m, g in decode_rows.groupby("model"))
        )
        elsewhere = not_parallel(pd.concat([train_rows, decode_rows]))
        if elsewhere:  # the gap between families on one CPU thread is not the claim's gap
            verdict = f"not measured on {elsewhere}"
        note = _c9_blocks(T, train_rows, decode_rows, a)
        verdict, measured = honest(verdict, measured, note)
        hw = f"training {stamp(train_rows)}; decoding {stamp(decode_rows)}"
        experiment = f"{STUDY} + {TIMING_STUDY}"
        out.append(Verdict("C9", experiment, measured, C9_RULE, verdict, hw, TIMED))
    return out


def section(tables, figs) -> str:
    df = _table(tables)
    if df.empty:
        return "_No completed decode_cost runs._"
    hw = ", ".join(sorted({f"{r.device}, {int(r.threads)} thread(s), batch {int(r.batch_size)}"
                           for r in df.itertuples()}))  # fmt: skip
    return "\n\n".join(p for p in [
        f"Greedy decoding with `seqbench.generate` on {hw}; median seconds per token (IQR "
        "bands). Solid: one token per step with the carried state (KV cache for attention); "
        "dashed: the whole prefix recomputed every step; dotted: the teacher-forced forward "
        "over the same context (training's situation, per token). Middle: how many times "
        "faster per token the teacher-forced forward is than stepwise decoding (C2's ratio, "
        "its threshold dashed).",
        _where(df, tables),
        _figure(df, figs),
        _reading(df, tables),
    ] if p)  # fmt: skip


def _where(df, tables) -> str:
    """Which claim these figures decide on this hardware, and what the CPU profile cuts."""
    timing = complete(tables.get("timing"), TIMING_STUDY)
    rows = pd.concat([df, timing]) if not timing.empty and "device" in timing else df
    elsewhere = not_parallel(rows)
    if not elsewhere:
        return ""
    return (
        f"Timed on {elsewhere}: C2 (the per-token ratio of a known sequence to generated "
        "tokens) is decided here; C9 compares families' speeds on parallel hardware, so the "
        f"claims table shows its figures with the verdict `not measured on {elsewhere}`. What "
        f"the CPU profile passes: {CPU_CUT}."
    )


def _figure(df, figs) -> str:
    """Top: seconds per token against context, one panel per family on shared axes (colour =
    model, line style = how the token is produced); bottom: teacher forcing's speed-up over
    stepwise decoding with C2's threshold, and the bytes of the carried state."""
    families = sorted(df.family.dropna().unique()) if "family" in df else []
    ncols = max(2, len(families))
    fig, axes = figs.figure(ncols=ncols, nrows=2, width=3.4, height=2.8)
    new = sorted(set(df["mode"]) - set(STYLE))  # a mode added since: a style of its own
    spare = [ls for ls in SPARE_LINESTYLES if ls not in STYLE.values()]
    style = STYLE | {m: spare[i % len(spare)] for i, m in enumerate(new)}
    modes = [m for m in style if m in set(df["mode"])]
    family = family_of(df)
    top = list(axes[:ncols])
    for ax, fam in zip(top, families):
        for (m, mode), g in df[df.family == fam].groupby(["model", "mode"]):
            g = g.sort_values("context")
            lo, hi = iqr_band(g.s_per_token, g.iqr_s_per_token)  # the IQR around the median
            figs.line(ax, g.context, g.s_per_token, lo, hi, model=m, ls=style[mode],
                      marker=".", label=_mode_label(m, mode, family))  # fmt: skip
        ax.set_title(f"{fam}: time per token", fontsize=9)
        ax.set(xlabel=axis_label("context length", "tokens"))
    for ax in top[1 : len(families)]:  # one scale for every family's latency
        ax.sharey(top[0])
    for ax in top[len(families) :]:
        ax.set_visible(False)
    top[0].set_ylabel(axis_label("time per token", "s"))
    speed, state = axes[ncols], axes[ncols + 1]
    for ax in axes[ncols + 2 :]:
        ax.set_visible(False)
    _speedup_panel(speed, df, figs)
    _state_panel(state, df, figs)
    shown = [ax for ax in axes if ax.get_visible()]
    for ax in shown:
        log_axis(ax, "x", ticks=df.context)
        log_axis(ax, "y")
    figs.label_ends(state)  # after the log axes: the labels sit at the lines' final heights
    words = {"state": "one token per step, state / KV cache", "recompute": "prefix recomputed "
             "every step", "teacher_forced": "teacher-forced forward"}  # fmt: skip
    keys = [key_entry(words.get(m, m.replace("_", " ")), ls=style[m]) for m in modes]
    keys.append(key_entry("band: IQR over repeats (log-symmetric)", lw=6, alpha=0.25))
    figs.legend(fig, key=True, extra=keys, into=axes[ncols + 2] if ncols > 2 else None)
    return figs.save(fig, "decode_cost_latency", decides=DECIDES, hardware=hardware_note(df))


def _speedup_panel(ax, df, figs):
    """Tokens per second teacher-forced over stepwise at every context both were timed at:
    C2's ratio, its threshold drawn (the attention family is judged, the rest compared)."""
    for m, g in df.groupby("model"):
        tf, st = (g[g["mode"] == mode].set_index("context").tokens_per_s
                  for mode in ("teacher_forced", "state"))  # fmt: skip
        r = (tf / st).dropna().sort_index()
        if len(r):
            figs.line(ax, r.index, r.values, model=m, marker=".")
    reference(ax, C2_RULE.factor, f"C2 threshold {C2_RULE.factor}x", kind="threshold")
    ax.set(xlabel=axis_label("context length", "tokens"), ylabel="teacher-forced / stepwise (x)")
    ax.set_title("teacher forcing's speed-up", fontsize=9)


def _state_panel(ax, df, figs):
    """Bytes of the state after the prompt. Models whose states are (nearly) the same size
    (an RNN's and an LSTM's: 1264 and 1280 B) draw lines that coincide: each model drawn
    thinner than the one before, so every colour shows, and each named at its end."""
    st = df[df["mode"] == "state"].dropna(subset=["state_bytes"])
    curves = {m: g.sort_values("context") for m, g in st.groupby("model")}
    for i, (m, g) in enumerate(curves.items()):
        figs.line(ax, g.context, g.state_bytes, model=m, marker=".", label=m,
                  lw=1.2 + 2.4 * (len(curves) - 1 - i) / max(1, len(curves) - 1))  # fmt: skip
    ax.set(xlabel=axis_label("context length", "tokens"), ylabel=axis_label("state", "bytes"))
    ax.set_title("state / KV cache after the prompt", fontsize=9)


def _reading(df, tables) -> str:
    family = family_of(df)
    said = [
        f"{_mode_label(m, mode, family)} T^{fmt(loglog_slope(g.context, g.s_per_token), 2)}"
        for (m, mode), g in df[df["mode"] != "teacher_forced"].groupby(["model", "mode"])
    ]
    text = "**Reading.** Seconds per generated token grow with context as " + ", ".join(said) + "."
    c, ratios = _c2_ratios(df)
    if c is not None:
        text += (
            f" At context {c}, the teacher-forced forward processes a known sequence "
            + ", ".join(f"{fmt(r, 3)}× ({m})" for m, r in ratios.items())
            + " as fast per token as generating it step by step."
        )
    text += _memory(df)
    for a in in_family(df, "attention"):
        c9 = _c9(df, tables, a)
        if c9:
            T, train, decode, _ = c9
            text += (
                f" At T={T}, {a} trains {fmt(train, 3)}× as fast as the fused LSTM "
                f"({TIMING_STUDY}, {C9_RULE.mode.replace('_', ' ')}) and decodes "
                f"{fmt(decode, 3)}× as fast."
            )
    return text


def _memory(df) -> str:
    """How each model's state grows with the prompt: fixed size, or by how much."""
    st = df[df["mode"] == "state"].dropna(subset=["state_bytes"])
    common = sorted(set.intersection(*[set(g.context) for _, g in st.groupby("model")] or [set()]))
    if len(common) < 2:
        return ""
    lo, hi = common[0], common[-1]  # the shortest and longest prompt every model decoded
    fixed, growing = [], []
    for m, g in st.groupby("model"):
        a, b = value_at(g, "context", lo, "state_bytes"), value_at(g, "context", hi, "state_bytes")
        if a == b:
            fixed.append(f"{m} ({b:,.0f} bytes)")
        else:
            growing.append(f"{m}'s grows ×{fmt(ratio(b, a))} to {b:,.0f} bytes")
    said = [f"the state of {', '.join(fixed)} stays the same size" if fixed else "", *growing]
    return f" From a {int(lo)}- to a {int(hi)}-token prompt, {'; '.join(s for s in said if s)}."
