"""Drift of free-running generation (C11): next-word training scores each step on the true
prefix; generation feeds the model its own. Two questions, one verdict each.

Table ``drift`` (seqbench/measure/drift.py): every family trained on samples of a language
known exactly (data=source), then held-out prefixes continued four ways: the true
continuation (teacher-forced, what training scores), the model's own greedy or sampled
tokens, and a second continuation drawn from the source itself (the noise floor).

- leaves the training distribution: the total variation between the source contexts a
  model's continuations visit and those the true continuation visits (``context_tv``), above
  LEAVE_RULE.factor x the floor's upper bound (the same distance for the source's own second
  continuation, the same size) or below it. Greedy text may leave while sampled text stays.
- errors compound: the gap g(k) = KL_free(k) - KL_teacher(k) (the next-token error on the
  model's own prefix minus on the true one, same positions, same model) grows from the first
  third of the continuation (k >= 2) to the last by more than COMPOUND_RULE.scale x the
  model's own teacher-forced KL (or less): a bar scaled to each model, so the same growth
  compounds for a model that learned the source closely and not for one that did not.

Control: a model must have learned the source, teacher-forced KL <= RULE.learned x the KL of
a uniform guess; a model that did not cannot say whether its own outputs lead it astray and
is left out of both verdicts (named, with its KL, in the measured text). Intervals are over
seeds. The report hands this module the rows of one training setting (each row records its
``train.budget`` and ``train.lr_step``): the stability column reads the same verdicts on the
full profile's models trained 4x longer and at the calibrated rate's grid neighbours.
"""

import math
from typing import NamedTuple

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from seqbench.report.axes import axis_label, key_entry
from seqbench.report.markdown import md_table
from seqbench.report.stats import Estimate, estimate, fmt
from seqbench.report.verdict import Rule, Verdict
from seqbench.studies._common import complete, study_of

TITLE = "Drift of free-running generation (C11)"
ORDER = 95
DECIDES = ("C11",)
STUDY = study_of(__name__)
FREE = ("greedy", "sampled")
REFERENCE = "source"  # the source's own second continuation: the context distance's floor
CONTROL = (
    "teacher-forced KL from the truth <= {learned:.0%} of a uniform guess's (the model "
    "learned the source)"
)
LEAVE_RULE = Rule(
    "per model passing its control (" + CONTROL + ") and free decoding: the total variation "
    "between the source contexts its continuations visit and those the true continuation of "
    "the same prefixes visits, against the noise floor (the same distance for a second "
    "continuation drawn from the source, the same size), intervals over seeds: leaves if "
    "above {factor:g}x the floor's upper bound, stays if below it. supported if every cell "
    "leaves, not supported if every cell stays, nuanced if both occur, inconclusive otherwise",
    learned=0.25,
    factor=2,
)
COMPOUND_RULE = Rule(
    "per model passing its control and free decoding: growth of the gap KL(own prefix) - "
    "KL(true prefix) from the first {third} (k >= 2) to the last {third} of the continuation, "
    "as a multiple of the model's own teacher-forced KL, interval over seeds: compounds if "
    "above {scale:g}, does not if below {scale:g}; read per family. supported if every cell "
    "compounds, not supported if none does, nuanced if both occur, inconclusive otherwise",
    third="1/3",
    scale=0.5,
)
WORDS = {  # a cell's sign in each verdict's words
    "leaves": {1: "leaves", -1: "stays", 0: "unclear"},
    "compounds": {1: "compounds", -1: "does not", 0: "unclear"},
}


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


def teacher_kl(df: pd.DataFrame) -> pd.Series:
    """(model, seed) -> the teacher-forced KL over the continuation: how close each run came
    to the truth on the true prefix, the scale of its compounding bar."""
    return df[df.decoding == "teacher"].groupby(["model", "seed"]).kl.mean()


def per_seed(g: pd.DataFrame, scale: pd.Series | None = None) -> pd.DataFrame:
    """Per (model, family, decoding, seed): the mean gap over the last third (``late``), its
    growth from the first third (``growth``), and that growth over ``scale`` (model, seed)
    (``relative``: the teacher-forced KL)."""
    rows = []
    for (m, f, d, s), c in g.groupby(["model", "family", "decoding", "seed"]):
        early, late = windows(int(c.k.max()))
        lo, hi = c[c.k.isin(early)].gap.mean(), c[c.k.isin(late)].gap.mean()
        by = scale.get((m, s), np.nan) if scale is not None else np.nan
        rows.append({"model": m, "family": f, "decoding": d, "seed": s, "late": hi,
                     "growth": hi - lo, "relative": (hi - lo) / by})  # fmt: skip
    return pd.DataFrame(rows)


class Control(NamedTuple):
    kl: Estimate  # teacher-forced KL over seeds
    uniform: float  # a uniform guess's KL from the truth
    ok: bool  # learned the source


def controls(df: pd.DataFrame) -> dict[str, Control]:
    """model -> its control: teacher-forced KL over seeds against a uniform guess's."""
    out = {}
    kl = teacher_kl(df)
    for m, g in df[df.decoding == "teacher"].groupby("model"):
        uniform = float((np.log(g.vocab_size) - g.entropy_true).mean())  # KL(p || uniform)
        e = estimate(kl[m].values)
        out[m] = Control(e, uniform, bool(e.mean <= LEAVE_RULE.learned * uniform))
    return out


# --- cells: one per (model, free decoding) ----------------------------------------------------
class Cell(NamedTuple):
    family: str
    model: str
    decoding: str
    value: Estimate  # over seeds
    bar: float  # the threshold the interval is read against
    sign: int  # +1 above the bar, -1 below, 0 straddling or missing


def cell_sign(e, threshold=0.0) -> int:
    """+1 interval above the threshold, -1 below it, 0 when it straddles it (or is missing)."""
    if not all(math.isfinite(x) for x in (e.lo, e.hi, threshold)):
        return 0
    return 1 if e.lo > threshold else -1 if e.hi < threshold else 0


def context_tv(df: pd.DataFrame) -> dict[tuple[str, str, str], Estimate]:
    """(family, model, decoding) -> its context TV over seeds (one value per run)."""
    if "context_tv" not in df:  # rows from before the distance was measured
        df = df.assign(context_tv=np.nan)
    tv = df.groupby(["family", "model", "decoding", "seed"]).context_tv.first()
    return {
        key: estimate(c.values, bounds=(0, 1))
        for key, c in tv.groupby(level=["family", "model", "decoding"])
    }


def leave_cells(df: pd.DataFrame) -> list[Cell]:
    """Context distance of each model's continuations against LEAVE_RULE.factor x the upper
    bound of its own runs' floor (the source's second continuation, same seeds)."""
    tv, none = context_tv(df), estimate([])
    cells = []
    for (f, m, d), e in tv.items():
        if d in FREE:
            bar = LEAVE_RULE.factor * tv.get((f, m, REFERENCE), none).hi
            cells.append(Cell(f, m, d, e, bar, cell_sign(e, bar)))
    return cells


def compound_cells(df: pd.DataFrame) -> list[Cell]:
    """Growth of the KL gap over each run's own teacher-forced KL, against COMPOUND_RULE.scale."""
    seeds = per_seed(gaps(df), teacher_kl(df))
    cells = []
    for (f, m, d), c in seeds.groupby(["family", "model", "decoding"]) if len(seeds) else ():
        e = estimate(c.relative.values)
        cells.append(Cell(f, m, d, e, COMPOUND_RULE.scale, cell_sign(e, COMPOUND_RULE.scale)))
    return cells


# --- verdicts ----------------------------------------------------------------------------------
def combine(signs: list[int]) -> str:
    if not signs:
        return "inconclusive"
    if all(s == 1 for s in signs):
        return "supported"
    if all(s == -1 for s in signs):
        return "not supported"
    return "nuanced" if 1 in signs and -1 in signs else "inconclusive"


def floor_text(c: Cell) -> str:
    return f"floor upper bound {fmt(c.bar / LEAVE_RULE.factor)}"


def bar_text(c: Cell) -> str:
    return f"bar {c.bar:g}"


QUESTIONS = {  # question -> (its cells, what their figure is, how a cell states its bar)
    "leaves": (leave_cells, "context TV from the true continuation's", floor_text),
    "compounds": (compound_cells, "growth of the KL gap / own teacher-forced KL", bar_text),
}


def by_family(cells: list[Cell], words: dict, what) -> str:
    """'recurrent: lstm greedy 0.5 [0.4, 0.6] (<what>) leaves, ...; scan: ...': every
    family named, each cell with its figure, its bar and its reading."""
    parts = []
    for f in sorted({c.family for c in cells}):
        said = [
            f"{c.model} {c.decoding} {fmt(c.value)} ({what(c)}) {words[c.sign]}"
            for c in cells
            if c.family == f
        ]
        parts.append(f"{f}: " + ", ".join(said))
    return "; ".join(parts)


def verdict(df: pd.DataFrame, question: str) -> tuple[str, str] | None:
    """(verdict, measured) for ``question`` = "leaves" or "compounds" on one setting's rows;
    None without teacher-forced and free rows."""
    if df.empty or gaps(df).empty:
        return None
    ctrl = controls(df)
    cells_of, what, bar = QUESTIONS[question]
    cells = cells_of(df)
    kept = [c for c in cells if ctrl[c.model].ok]
    n = int(df.seed.nunique())
    learned = ", ".join(f"{m} {fmt(c.kl)}" for m, c in sorted(ctrl.items()))
    measured = (
        f"{what}: {by_family(kept, WORDS[question], bar) or 'no model passed its control'} "
        f"({n} seed{'s' if n != 1 else ''}); teacher-forced KL from the truth (nats): {learned}"
    )
    failed = sorted({(c.family, c.model) for c in cells if not ctrl[c.model].ok})
    if failed:
        measured += "; failed the control (left out): " + ", ".join(
            f"{m} ({f}) teacher-forced KL {fmt(ctrl[m].kl)} vs uniform {ctrl[m].uniform:.2f}"
            for f, m in failed
        )
    return combine([c.sign for c in kept]), measured


EXPERIMENTS = {  # question -> (rule, the claims table's experiment column)
    "leaves": (LEAVE_RULE, "drift (contexts visited)"),
    "compounds": (COMPOUND_RULE, "drift (KL gap growth)"),
}


def verdicts(tables) -> list[Verdict]:
    df = drift_rows(tables)
    out = []
    for question, (rule, experiment) in EXPERIMENTS.items():
        result = verdict(df, question)
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
        "Shaded (top row): the first and last third of the continuation, the windows whose "
        "difference is the compounding verdict's growth.",
        _figure(df, figs),
        "Per model: the teacher-forced KL it reached (the scale of its "
        "compounding bar), the total variation between the source contexts its continuations "
        "visit and the true continuation's (context TV) beside the floor two source samples "
        "leave, and the KL gap's growth over its own teacher-forced KL.",
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
                    label="first third of k",
                )
                ax.axvspan(late[0] - 0.5, late[-1] + 0.5, color="0.85", lw=0, zorder=0,
                           label="last third of k (growth: its gap minus the first's)")  # fmt: skip
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
    ctrl, tv = controls(df), context_tv(df)
    leave = {(c.model, c.decoding): c for c in leave_cells(df)}
    grow = {(c.model, c.decoding): c for c in compound_cells(df)}
    late = per_seed(gaps(df))
    rows = []
    for m, c in sorted(ctrl.items()):
        runs = df[df.model == m]
        lr, steps = runs.lr.dropna(), runs.train_steps.dropna()
        floor = next((e for k, e in tv.items() if k[1:] == (m, REFERENCE)), estimate([]))
        row = {"model": m, "steps": int(steps.max()) if len(steps) else "-",
               "lr": f"{lr.iloc[0]:g}" if len(lr) else "-", "teacher-forced KL": fmt(c.kl),
               "control": "pass" if c.ok else "fail", "context TV floor": fmt(floor)}  # fmt: skip
        for d in FREE:
            for name, cells, question in (("context TV", leave, "leaves"),
                                          ("growth / KL", grow, "compounds")):  # fmt: skip
                x = cells.get((m, d))
                row[f"{d}: {name}"] = f"{fmt(x.value)} {WORDS[question][x.sign]}" if x else "-"
            g = late[(late.model == m) & (late.decoding == d)] if len(late) else late
            row[f"{d}: late KL gap"] = fmt(estimate(g.late.values)) if len(g) else "-"
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
