"""Drift of free-running generation (C11): next-word training scores each step on the true
prefix; generation feeds the model its own. Does it drift off the training distribution?

Table ``drift`` (seqbench/measure/drift.py): every family trained on samples of a language
known exactly (data=source), then, at each position k of a continuation of held-out prefixes,
KL(truth || model) given the prefix the model is on: the true continuation (teacher-forced,
what training scores) or the model's own greedy or sampled tokens. Per seed the gap
g(k) = KL_free(k) - KL_teacher(k) compares the two at the same positions (g(1) = 0: the same
true prefix), and intervals are taken over seeds. Read in thirds of the continuation:

- drift: the mean gap over the last third, > 0 (interval above 0) or not (below 0);
- compounding: the gap's growth from the first third (k >= 2) to the last, by more than
  RULE.grow nats (interval above it) or less (interval below it).

Control: a model must have learned the source, teacher-forced KL <= RULE.learned x the KL of
a uniform guess; a model that did not cannot say whether its own outputs lead it astray and
is left out of both verdicts (said in the measured text).
"""

import math

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from seqbench.report.axes import axis_label, key_entry
from seqbench.report.markdown import md_table
from seqbench.report.stats import estimate, fmt
from seqbench.report.verdict import Rule, Verdict
from seqbench.studies._common import complete, study_of

TITLE = "Drift of free-running generation (C11)"
ORDER = 95
DECIDES = ("C11",)
STUDY = study_of(__name__)
FREE = ("greedy", "sampled")
CONTROL = (
    "teacher-forced KL from the truth <= {learned:.0%} of a uniform guess's (the model "
    "learned the source)"
)
DRIFT_RULE = Rule(
    "per model passing its control (" + CONTROL + ") and decoding: the gap KL(own prefix) - "
    "KL(true prefix) at the same positions, mean over the last {third} of the continuation, "
    "interval over seeds: drifts if above 0, holds if below 0. supported if every cell drifts, "
    "not supported if every cell holds, nuanced if both occur, inconclusive otherwise",
    learned=0.25,
    third="1/3",
)
COMPOUND_RULE = Rule(
    "per model passing its control and decoding: growth of the gap from the first {third} "
    "(k >= 2) to the last {third} of the continuation, interval over seeds: compounds if "
    "above {grow:g} nats, does not if below {grow:g}. supported if every cell compounds, not "
    "supported if none does, nuanced if both occur, inconclusive otherwise",
    third="1/3",
    grow=0.01,
)


# --- tables -----------------------------------------------------------------------------------
def drift_rows(tables) -> pd.DataFrame:
    return complete(tables.get("drift"), STUDY)


def gaps(df: pd.DataFrame, metric: str = "kl") -> pd.DataFrame:
    """One row per (model, family, seed, decoding, k): the free-running ``metric`` minus the
    teacher-forced one at the same position, the same model and the same prefixes."""
    if df.empty:
        return pd.DataFrame()
    keys = ["model", "family", "seed", "k"]
    teacher = df[df.decoding == "teacher"].set_index(keys)[metric]
    free = df[df.decoding.isin(FREE)]
    out = free[[*keys, "decoding", metric]].copy()
    out["gap"] = free[metric].values - teacher.reindex(free.set_index(keys).index).values
    return out.dropna(subset=["gap"])


def windows(k_max: int) -> tuple[range, range]:
    """(first third from k = 2, last third) of a continuation of k_max tokens; k = 1 is left
    out of the first because its prefix is the true one for every decoding."""
    third = max(1, k_max // 3)
    return range(2, 2 + third), range(k_max - third + 1, k_max + 1)


def per_seed(g: pd.DataFrame) -> pd.DataFrame:
    """Per (model, family, decoding, seed): the mean gap over the last third (``late``) and
    its growth from the first third (``growth``)."""
    rows = []
    for (m, f, d, s), c in g.groupby(["model", "family", "decoding", "seed"]):
        early, late = windows(int(c.k.max()))
        lo, hi = c[c.k.isin(early)].gap.mean(), c[c.k.isin(late)].gap.mean()
        rows.append({"model": m, "family": f, "decoding": d, "seed": s, "late": hi,
                     "growth": hi - lo})  # fmt: skip
    return pd.DataFrame(rows)


def controls(df: pd.DataFrame) -> dict:
    """model -> (teacher-forced KL estimate over seeds, uniform guess's KL, passed?)."""
    t = df[df.decoding == "teacher"]
    out = {}
    for m, g in t.groupby("model"):
        kl = g.groupby("seed").kl.mean()
        uniform = float((np.log(g.vocab_size) - g.entropy_true).mean())  # KL(p || uniform)
        e = estimate(kl.values)
        out[m] = (e, uniform, bool(e.mean <= DRIFT_RULE.learned * uniform))
    return out


# --- verdicts ----------------------------------------------------------------------------------
def cell_sign(e, threshold=0.0) -> int:
    """+1 interval above the threshold, -1 below it, 0 when it straddles it (or is missing)."""
    if not (math.isfinite(e.lo) and math.isfinite(e.hi)):
        return 0
    return 1 if e.lo > threshold else -1 if e.hi < threshold else 0


def combine(signs: list[int]) -> str:
    if not signs:
        return "inconclusive"
    if all(s == 1 for s in signs):
        return "supported"
    if all(s == -1 for s in signs):
        return "not supported"
    return "nuanced" if 1 in signs and -1 in signs else "inconclusive"


def verdict(df: pd.DataFrame, stat: str) -> tuple[str, str] | None:
    """(verdict, measured) for ``stat`` = "late" (drift) or "growth" (compounding); None
    without free and teacher-forced rows."""
    g = gaps(df)
    if g.empty:
        return None
    threshold = 0.0 if stat == "late" else COMPOUND_RULE.grow
    ctrl = controls(df)
    failed = sorted(m for m, (_, _, ok) in ctrl.items() if not ok)
    seeds = per_seed(g)
    signs, said = [], []
    for (m, d), c in seeds.groupby(["model", "decoding"]):
        e = estimate(c[stat].values)
        if m in failed:
            continue
        signs.append(cell_sign(e, threshold))
        said.append(f"{m} {d} {fmt(e)}")
    n = int(seeds.seed.nunique())
    what = "late-third KL gap own - true prefix" if stat == "late" else "growth of the KL gap"
    cells = ", ".join(said) or "no model passed its control"
    measured = f"{what} (nats): {cells} ({n} seed{'s' if n != 1 else ''})"
    if failed:
        measured += "; failed the control (left out): " + ", ".join(
            f"{m} teacher-forced KL {fmt(ctrl[m][0])} vs uniform {ctrl[m][1]:.2f}" for m in failed
        )
    return combine(signs), measured


def verdicts(tables) -> list[Verdict]:
    df = drift_rows(tables)
    out = []
    for stat, rule, experiment in (
        ("late", DRIFT_RULE, "drift (source, free vs teacher-forced)"),
        ("growth", COMPOUND_RULE, "drift (source, compounding with k)"),
    ):
        result = verdict(df, stat) if not df.empty else None
        if result is not None:
            out.append(Verdict("C11", experiment, result[1], rule, result[0]))
    return out


# --- section -----------------------------------------------------------------------------------
def curve(g: pd.DataFrame) -> pd.DataFrame:
    """Per (model, decoding, k): mean gap over seeds and its interval."""
    rows = []
    for (m, d, k), c in g.groupby(["model", "decoding", "k"]):
        e = estimate(c.gap.values)
        rows.append({"model": m, "decoding": d, "k": k, "mean": e.mean, "lo": e.lo, "hi": e.hi})
    return pd.DataFrame(rows)


def section(tables, figs) -> str:
    df = drift_rows(tables)
    if df.empty:
        return "_No completed drift runs._"
    parts = [
        "Each model continues held-out prefixes of the source on its own (greedy, sampled); "
        "at every generated position k the truth scores the model's next-token distribution "
        "on the prefix it is on (KL) and the token it wrote (true log-likelihood), minus the "
        "same score on the true continuation at the same position (teacher-forced, what "
        "training optimises). Mean over seeds with 95% t intervals; 0 = no drift. "
        "Shaded (top row): the first and last third of the continuation, the windows the "
        "verdicts average the KL gap over.",
        _figure(df, figs),
        summary_table(df),
        _reading(df),
        _profile_note(df),
    ]
    return "\n\n".join(p for p in parts if p)


def _figure(df, figs) -> str:
    """Gap against generated position: a row per score (KL, the true log-loss of the written
    token), a column per decoding; the thirds the verdicts average over shaded (top row)."""
    fig, axes = figs.figure(ncols=2, nrows=2, width=4.6, height=3.2)
    early, late = windows(int(df.k.max()))
    for row, (metric, label, what) in enumerate(ROWS):
        c = curve(gaps(df, metric))
        for col, d in enumerate(FREE):
            ax = axes[2 * row + col]
            for m, s in c[c.decoding == d].groupby("model"):
                figs.line(ax, s.k, s["mean"], s.lo, s.hi, model=m)
            ax.axhline(0.0, color="0.15", ls="--", lw=0.9, zorder=1.5,
                       label="0: as on the true prefix (no drift)")  # fmt: skip
            if metric == "kl":  # the windows the verdicts average the KL gap over
                ax.axvspan(
                    early[0] - 0.5,
                    early[-1] + 0.5,
                    color="0.93",
                    lw=0,
                    zorder=0,
                    label="first third of k (compounding: its gap vs the last third's)",
                )
                ax.axvspan(late[0] - 0.5, late[-1] + 0.5, color="0.85", lw=0, zorder=0,
                           label="last third of k (drift: the mean gap here)")  # fmt: skip
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # k counts tokens
            ax.set(title=f"{what}\n{d} decoding",
                   xlabel=axis_label("generated position k", "tokens"),
                   ylabel=axis_label(label, "nats"))  # fmt: skip
            ax.title.set_fontsize(9)
    band = key_entry("bands: 95% interval over seeds", lw=6, alpha=0.25, color="0.5")
    figs.legend(fig, extra=[band], loc="outside lower center", ncols=3)
    return figs.save(fig, "drift_gap_vs_k", decides="C11")


ROWS = (  # (metric, axis label, row title)
    ("kl", "KL(truth ‖ model) gap", "KL to the truth"),
    ("nll_true", "-log p_true(written) gap", "true log-loss of the written token"),
)


def summary_table(df: pd.DataFrame) -> str:
    ctrl = controls(df)
    seeds = per_seed(gaps(df))
    nll = per_seed(gaps(df, "nll_true"))
    rows = []
    for m, (e, _, ok) in sorted(ctrl.items()):
        lr = df[df.model == m].lr.dropna()
        row = {"model": m, "lr (calibrated)": f"{lr.iloc[0]:g}" if len(lr) else "-",
               "teacher-forced KL": fmt(e), "control": "pass" if ok else "fail"}  # fmt: skip
        for d in FREE:
            c, n = seeds[(seeds.model == m) & (seeds.decoding == d)], nll[nll.model == m]
            row[f"{d}: late KL gap"] = fmt(estimate(c.late.values))
            row[f"{d}: growth"] = fmt(estimate(c.growth.values))
            row[f"{d}: late -log p gap"] = fmt(estimate(n[n.decoding == d].late.values))
        rows.append(row)
    return md_table(pd.DataFrame(rows))


def _reading(df: pd.DataFrame) -> str:
    """Which decodings and families differ, from the late-third gaps' intervals."""
    seeds = per_seed(gaps(df))
    text = []
    for d in FREE:
        fam = seeds[seeds.decoding == d].groupby("family").late
        ests = {f: estimate(v.values) for f, v in fam}
        ranked = sorted(ests, key=lambda f: ests[f].mean)
        if len(ranked) >= 2:
            lo, hi = ests[ranked[0]], ests[ranked[-1]]
            apart = lo.hi < hi.lo
            text.append(
                f"{d}: the {ranked[-1]} family's late gap {fmt(hi)} against the "
                f"{ranked[0]} family's {fmt(lo)}: "
                + ("the intervals do not overlap." if apart else "the intervals overlap.")
            )
    entropy = df.entropy_rate.dropna()
    if len(entropy):
        text.append(
            f"The source's entropy rate is {entropy.iloc[0]:.3f} nats per token; the learning "
            "rate of each model was calibrated on this same setting (seed 0, `train.lr_grid`)."
        )
    return "**Reading.** " + " ".join(text) if text else ""


def _profile_note(df: pd.DataFrame) -> str:
    """What was measured, from the rows, against what the GPU profile measures."""
    models = sorted(set(df.model))
    steps = sorted({int(v) for v in df.train_steps.dropna()})
    return (
        f"Measured: {', '.join(models)}, {int(df.k.max())} generated tokens after "
        f"{int(df.prefix_len.iloc[0])} true ones, {int(df.n.iloc[0])} prefixes, "
        f"{'/'.join(map(str, steps))} training steps. The CPU profile trains lstm, mingru and "
        "the transformer at 3xs; the GPU profile trains all six models at xs, 2000 steps on "
        "64-token sequences (56 generated tokens), 4096 prefixes."
    )
