"""Information path length (C5): gradient influence of the input at t - d against d.

Table ``influence`` (seqbench/measure/influence.py): the norm of d log p(answer at t) /
d e_{t-d}, averaged over test sequences no stopping rule saw, per model, seed and recall
distance D of lag_recall, untrained (what the architecture alone passes back) and trained at
that D to a criterion (what the model learned to use). Both states are read alike, at the same
cells: a model's *fade* at D is its mean influence at d <= RULE.near over its influence at
d = D, where the value the answer needs sits, and the fade's 95% interval over seeds (log
scale) calls it: >= RULE.decay fades, below it flat, across it cannot tell. A trained model
that fails its task counts as fading (the value never reached the answer), shown with its
test accuracy; one censored at its cap is undecided. The verdict compares the recurrent family
with attention cell by cell (``kind``); any other family is named with what the rule would
say of it.
"""

import textwrap
from typing import NamedTuple

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from seqbench.report.analysis import ratio
from seqbench.report.axes import axis_label, log_axis
from seqbench.report.markdown import md_table
from seqbench.report.stats import Estimate, estimate, fmt
from seqbench.report.verdict import Rule, Verdict
from seqbench.studies._common import (
    ATTENTION_VS_RECURRENCE,
    CENSORING,
    LONG_ENOUGH,
    TEST_RULE,
    censored,
    censored_note,
    complete,
    in_family,
    long_enough,
    needs_test,
    on_test_set,
    study_of,
    unnamed_text,
    with_test,
)

TITLE = "Information path length: gradient influence vs distance (C5)"
ORDER = 26
DECIDES = ("C5",)
STUDY = study_of(__name__)
COMPARES = ("attention", "recurrent")  # scan and any other family: named, not compared
RULE = Rule(
    "at each recall distance D a model's *fade* is its mean influence at d <= {near} over its "
    "influence at d = D (where the value the answer needs sits), read untrained (the "
    "architecture) and trained at D to its criterion (what it learned to use), both on test "
    "sequences; it *fades* when the fade's 95% interval over seeds lies at or above "
    "{decay:g}x, is *flat* when it lies below, and cannot tell across. A trained model whose "
    "every seed failed its task counts as fading, its test accuracy shown; one with some "
    "seeds failing fades only if its solved seeds' fades do. Not supported if at some D "
    "attention fades where a recurrent model is flat; else supported if at some D every "
    "recurrent model fades while attention is flat; else inconclusive if a D cannot tell; "
    "nuanced if at some D only some recurrent models fade where attention is flat, or the "
    "trained recurrences are flat at a D where their untrained architecture fades (training "
    "removes the fading); not supported otherwise (no D separates the families). Task "
    "accuracy is read " + TEST_RULE + ", inconclusive where it was not measured; " + CENSORING,
    long_enough=LONG_ENOUGH,
    decay=10.0,
    near=4,
)
LOG_MAX = float(np.log10(np.finfo(float).max))  # a far gradient that underflows to 0: 1e308
CALLS = ("fades", "flat", "cannot tell")
KINDS = {  # what one recall distance shows of the two families, trained (``kind``)
    "for": "every recurrent model fades, attention is flat",
    "inverse": "attention fades where a recurrent model is flat",
    "partial": "some recurrent models fade, attention is flat",
    "neither": "neither family fades",
    "both": "both families fade",
    "undecided": "cannot tell",
}


class Call(NamedTuple):
    """One model's reading at one recall distance and state."""

    word: str  # one of CALLS
    estimate: Estimate  # log10 fade over the seeds it rests on
    text: str  # how the measured column and the table show it


# --- the rows: influence per run, with its training run's outcome ---------------------------
def influence_table(tables) -> pd.DataFrame:
    """The complete influence rows at d >= 1, ``trained`` as a bool, each trained row with
    its training run's outcome (``with_training``)."""
    df = complete(tables.get("influence"), STUDY)
    if df.empty:
        return df
    # rows.csv writes the bool as text: True / False (or 1 / 0 from older runs)
    df["trained"] = df.trained.astype(str).str.lower().isin(["true", "1", "1.0"])
    if "seed" not in df:
        df["seed"] = 0
    for c in ("steps_to_criterion", "criterion", "lr", "train_run"):
        if c not in df:
            df[c] = np.nan
    return with_training(df[df.d >= 1], trained_runs(tables))  # d = 0: the query itself


def trained_runs(tables) -> pd.DataFrame:
    """The study's complete training runs with their test accuracy (_common.with_test)."""
    ok = complete(tables.get("runs"), STUDY)
    return with_test(ok, tables, STUDY) if not ok.empty else ok


OUTCOME = ("censored", "cap", "test_acc", "test_sequences")


def with_training(df: pd.DataFrame, train: pd.DataFrame) -> pd.DataFrame:
    """Each trained row with its training run's ``censored`` (stopped at its cap while
    improving or at chance), ``cap`` (train.steps: the report's collect makes it the step cap,
    train.budget included)
    and ``test_acc``, joined by the run's name (``train_run``). Untrained rows, and rows
    whose training run is not among ``train``, are never censored and have no accuracy."""
    df = df.drop(columns=list(OUTCOME), errors="ignore")
    if train.empty or "train.steps" not in train:
        return df.assign(censored=False, **{c: np.nan for c in OUTCOME[1:]})
    cap = pd.to_numeric(train["train.steps"], errors="coerce")
    by_run = train.assign(censored=censored(train), cap=cap)
    by_run = by_run.drop_duplicates("run", keep="last").set_index("run")
    df = df.assign(**{c: df.train_run.map(by_run[c]) for c in OUTCOME})
    return df.assign(censored=df.censored.eq(True) & df.trained)


def fade(g: pd.DataFrame) -> float:
    """One run's mean influence at d = 1..near over its influence at the recall distance D
    (nan where either is missing): how much more weakly the value reaches the answer than
    the nearest inputs do."""
    near, at = g[g.d <= RULE.near].grad_norm, g[g.d == g.distance].grad_norm
    return ratio(near.mean(), at.mean()) if len(near) and len(at) else float("nan")


def runs(df: pd.DataFrame) -> pd.DataFrame:
    """One row per measured run and state: model, family, seed, T, recall distance, its fade,
    and (trained) whether it reached its criterion, was censored, its cap, steps, lr and
    test accuracy."""
    rows = []
    for (_, trained, *_), g in df.groupby(["run", "trained", "seed", "distance", "T"]):
        first = g.iloc[0]
        rows.append({
            "model": first.model, "family": first.family, "seed": first.seed,
            "trained": trained, "T": int(first["T"]), "distance": int(first.distance),
            "fade": fade(g),
            "learned": bool(trained and pd.notna(first.criterion)
                            and pd.notna(first.steps_to_criterion)),
            "censored": bool(first.censored), "cap": first.cap, "criterion": first.criterion,
            "steps_to_criterion": first.steps_to_criterion, "lr": first.lr,
            "test_acc": first.test_acc, "test_sequences": first.test_sequences,
        })  # fmt: skip
    return pd.DataFrame(rows)


# --- calls: one model at one recall distance ------------------------------------------------
def _log_fade(values) -> np.ndarray:
    """log10 of fades; an infinite fade (the far gradient underflowed to 0) counts as 1e308."""
    v = np.log10(np.asarray(values, dtype=float))
    return np.where(np.isposinf(v), LOG_MAX, v)


def fading(values) -> tuple[str, Estimate]:
    """('fades' | 'flat' | 'cannot tell', the Estimate of log10 fade over seeds)."""
    e = estimate(_log_fade(values))
    threshold = np.log10(RULE.decay)
    if e.n >= 2 and e.lo >= threshold:
        return "fades", e
    if e.n >= 2 and e.hi < threshold:
        return "flat", e
    return "cannot tell", e


def untrained_call(g: pd.DataFrame) -> Call:
    word, e = fading(g.fade)
    return Call(word, e, _ratio_text(e))


def trained_call(g: pd.DataFrame, slowest) -> Call:
    """One model's trained seeds at one cell. A seed that missed its criterion fails the
    task unless it is censored with a cap under LONG_ENOUGH x ``slowest`` (the steps the
    slowest model that solved the cell needed): then the model cannot tell. Every seed
    failing: the value never reached the answer, so it fades. Some failing: it fades only
    if its solved seeds' fades do (a failure cannot make it flat)."""
    solved, failed = g[g.learned], g[~g.learned]
    cap = short_cap(g, slowest)
    if cap is not None:
        note = censored_note(f"{len(solved)}/{len(g)} solved", cap, slowest)
        return Call("cannot tell", estimate([]), note)
    word, e = fading(solved.fade)
    if solved.empty:
        return Call("fades", e, f"fails the task, {accuracy(g)}")
    if failed.empty:
        return Call(word, e, _ratio_text(e))
    text = f"{_ratio_text(e)} over the {len(solved)}/{len(g)} seeds that solved it"
    return Call(word if word == "fades" else "cannot tell", e,
                f"{text}, the others failed ({accuracy(failed)})")  # fmt: skip


NOT_TRAINED = Call("cannot tell", estimate([]), "not trained")


def accuracy(g: pd.DataFrame) -> str:
    """'test accuracy 0.07 [0.05, 0.09]' over the seeds of ``g``, or that it is missing."""
    acc = g.test_acc.dropna()
    if acc.empty:
        return "test accuracy not measured"
    return f"test accuracy {fmt(estimate(acc, bounds=(0.0, 1.0)), 2)}"


def slowest_solver(t: pd.DataFrame) -> float:
    """The most steps to the criterion among the models that solved the cell (every seed
    reached it); nan when none did."""
    solved = t.groupby("model").learned.transform("all").astype(bool)
    return t[solved].steps_to_criterion.max()


def cells(r: pd.DataFrame) -> dict[int, dict[str, dict[str, Call]]]:
    """recall distance -> {"untrained": {model: Call}, "trained": {model: Call}}, each
    distance read at its longest T; a model measured there only untrained cannot tell what
    training would make of it (NOT_TRAINED), so a profile that trains fewer models never
    reads as if the others had passed."""
    out = {}
    for D, cell in r.groupby("distance"):
        cell = cell[cell["T"] == cell["T"].max()]
        t, u = cell[cell.trained], cell[~cell.trained]
        slowest = slowest_solver(t)
        out[int(D)] = {
            "untrained": {m: untrained_call(g) for m, g in u.groupby("model")},
            "trained": {m: NOT_TRAINED for m in u.model.unique()}
            | {m: trained_call(g, slowest) for m, g in t.groupby("model")},
        }
    return out


def unlearned(t: pd.DataFrame) -> dict[str, str]:
    """One cell's trained models that missed the criterion in some seed: model -> 'k/n' seeds
    that reached it, with ': censored at <cap> steps (< 4 x <slowest>)' where a censored seed's
    cap is too short to call it failing."""
    slowest, out = slowest_solver(t), {}
    for m, g in t.groupby("model"):
        if g.learned.all():
            continue
        out[m] = f"{int(g.learned.sum())}/{len(g)}"
        cap = short_cap(g, slowest)
        if cap is not None:
            out[m] = censored_note(out[m], cap, slowest)
    return out


def short_cap(g: pd.DataFrame, slowest) -> float | None:
    """The cap of ``g``'s censored seeds that missed the criterion, where it is too short
    (< LONG_ENOUGH x ``slowest``) to call them failing; None where no seed is held open."""
    short = g[~g.learned & g.censored]
    if short.empty or long_enough(short.cap.max(), slowest):
        return None
    return short.cap.max()


# --- the verdict: the two families compared at each recall distance -------------------------
def kind(attention: list[str], recurrent: list[str]) -> str:
    """What one recall distance shows (a key of KINDS), from the trained calls of the
    attention and the recurrent models there."""
    if "fades" in attention and "flat" in recurrent:
        return "inverse"
    if not attention or not recurrent or "cannot tell" in [*attention, *recurrent]:
        return "undecided"
    if "fades" in attention:
        return "both"  # attention fades, and so does every recurrent model
    if all(w == "fades" for w in recurrent):
        return "for"
    return "partial" if "fades" in recurrent else "neither"


def decide(kinds: dict[int, str], read: dict, recurrent: list[str]) -> str:
    """The verdict from each distance's kind (the order of RULE's sentence); where no
    distance separates the families, the untrained recurrences at the distances where
    neither fades say whether training removed a fading architecture."""
    found = set(kinds.values())
    if "inverse" in found:
        return "not supported"
    if "for" in found:
        return "supported"
    if "undecided" in found or not found:
        return "inconclusive"
    if "partial" in found:
        return "nuanced"
    untrained = {
        read[D]["untrained"][m].word
        for D, k in kinds.items()
        if k == "neither"
        for m in recurrent
        if m in read[D]["untrained"]
    }
    if "fades" in untrained:
        return "nuanced"
    return "inconclusive" if "cannot tell" in untrained else "not supported"


def verdict(df: pd.DataFrame) -> tuple[str, str] | None:
    """(verdict, measured); None without rows of both compared families."""
    r = runs(df)
    rec, att = in_family(df, "recurrent"), in_family(df, "attention")
    if r.empty or not rec or not att:
        return None
    read = cells(r)

    def words(calls, models):
        return [calls[m].word for m in models if m in calls]

    kinds = {D: kind(words(c["trained"], att), words(c["trained"], rec)) for D, c in read.items()}
    v = decide(kinds, read, rec)
    measured = _measured(read, kinds, [*rec, *att], r)
    return v, measured + unnamed_text(df, COMPARES, ATTENTION_VS_RECURRENCE, verdict)


def _measured(read, kinds, compared, r) -> str:
    def said(calls):
        shown = [f"{m} {calls[m].text} ({calls[m].word})" for m in compared if m in calls]
        return ", ".join(shown) or "none"

    parts = [
        f"D={D}: {KINDS[kinds[D]]} (trained: {said(c['trained'])}; untrained: "
        f"{said(c['untrained'])})"
        for D, c in sorted(read.items())
    ]
    seeds = "/".join(
        str(n) for n in sorted(set(r.groupby(["model", "trained", "distance"]).seed.nunique()))
    )
    T = "/".join(str(t) for t in sorted(r["T"].unique()))
    return (
        f"fade = near / at the recall distance D (T={T}): " + "; ".join(parts) + f" ({seeds} seeds)"
    )


def verdicts(tables) -> list[Verdict]:
    df = influence_table(tables)
    result = verdict(df) if not df.empty else None
    if result is None:
        return []
    v, measured = result
    trained = runs(df).query("trained")
    if not trained.empty:  # a trained model's accuracy must come from the test set
        v, measured = needs_test(trained, v, measured)
    return [Verdict("C5", STUDY, measured, RULE, v)]


# --- the section: figure, table, reading ------------------------------------------------------
def section(tables, figs) -> str:
    df = influence_table(tables)
    if df.empty:
        return "_No completed path_length runs._"
    r = runs(df)
    read = cells(r)
    examples = int(df[df.d == 1].examples.max())
    trained = r[r.trained]
    parts = [
        "Gradient of the log-probability of the answer at the query position t with respect "
        f"to the input embedding at t - d, its norm averaged over {examples} test sequences "
        "no stopping rule saw. Each column is one recall distance D (dashed: where the value "
        "sits); the top row is the untrained model, the bottom the model trained at that D to "
        "the criterion (the learning rate calibrated once per model on the control distance, "
        "`train.lr_control`, and reused by every seed and distance). Lines are means over "
        "seeds, bands their 95% t interval.",
        _figure(df, r, figs),
        md_table(_summary(r, read)),
        f"Task accuracy {on_test_set(trained)}." if not trained.empty else "",
        _reading(read, r),
    ]
    return "\n\n".join(p for p in parts if p)


def _figure(df, r, figs) -> str:
    distances = sorted(r.distance.unique())
    width = max(3.9, 9.0 / len(distances))  # room for the claim's title over one column
    fig, axes = figs.figure(
        ncols=len(distances), nrows=2, width=width, height=3.4, sharey="row"
    )  # one state's panels on one scale
    every = sorted(df.model.unique())
    for row, trained in enumerate((False, True)):
        for col, D in enumerate(distances):
            ax = axes[row * len(distances) + col]
            sub = df[(df.trained == trained) & (df.distance == D)]
            sub = sub[sub["T"] == sub["T"].max()]
            _panel(ax, sub, every, figs)
            lo, hi = _mean_range(df[df.trained == trained])
            ax.set_ylim(lo / 3, hi * 3)  # the lines decide the scale; wide bands are cut
            log_axis(ax, "y", ticks=_decades([lo, hi]))
            _recall_distance(ax, D)
            T = int(sub["T"].max()) if len(sub) else int(df["T"].max())
            ax.set(xlabel=axis_label("distance d = t - s", "tokens"),
                   title=f"{'trained at' if trained else 'untrained,'} D={D} (T={T})")  # fmt: skip
            if col == 0:
                ax.set_ylabel("influence ‖∂ log p(y_t) / ∂ e_s‖\n(nats per embedding unit)")
            if trained:
                _note(ax, every, sorted(sub.model.unique()), r[r.trained & (r.distance == D)])
    figs.legend(fig)
    return figs.save(fig, "path_length_influence", decides=DECIDES)


def _panel(ax, sub, every, figs):
    """One line per model: the geometric mean over seeds at each distance, its band the 95%
    t interval of log10 influence (the scale the fade is read on; a linear interval over a
    few seeds spanning decades would reach below zero)."""
    for i, (m, g) in enumerate(sub.groupby("model")):
        with np.errstate(divide="ignore"):  # a gradient of exactly 0 drops out (-inf)
            curve = [(d, estimate(np.log10(x.grad_norm))) for d, x in g.groupby("d")]
        d = [p for p, _ in curve]
        mean, lo, hi = ([10.0 ** getattr(e, k) for _, e in curve] for k in ("mean", "lo", "hi"))
        # markers on every few points, offset per model: lines that coincide stay apart
        step = max(2, len(d) // 6)
        figs.line(ax, d, mean, lo, hi, model=m, clip=(0, np.inf), marker=_mark(every, m),
                  markevery=(i % step, step), ms=4)  # fmt: skip
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # distances are whole tokens


def _note(ax, every, shown, t):
    """Under a trained panel: the models that missed the criterion there (seeds that reached
    it; censored: held open by a short cap) and those not trained at all, so a missing or
    sunken line is never read as a result."""
    slowest, missed = slowest_solver(t), []
    for m, g in t.groupby("model"):
        if not g.learned.all():
            held = " censored" if short_cap(g, slowest) is not None else ""
            missed.append(f"{m} {int(g.learned.sum())}/{len(g)}{held}")
    missing = [m for m in every if m not in shown]
    lines = [f"missed the criterion: {', '.join(missed)}" if missed else "",
             f"not trained here: {', '.join(missing)}" if missing else ""]  # fmt: skip
    text = "\n".join(textwrap.fill(line, 44) for line in lines if line)
    if text:
        ax.text(0.02, 0.02, text, fontsize=6.5, color="0.3", transform=ax.transAxes,
                va="bottom")  # fmt: skip


def _recall_distance(ax, distance):
    """The task's recall distance: one legend entry for every panel, its value beside it."""
    ax.axvline(distance, color="0.15", ls="--", lw=0.9, label="the task's recall distance")
    ax.annotate(f"D = {distance}", xy=(distance, 0.98), xycoords=("data", "axes fraction"),
                xytext=(3, 0), textcoords="offset points", fontsize=7, color="0.15",
                ha="left", va="top")  # fmt: skip


def _mark(models, m) -> str:
    """One marker per model in this figure (its colour alone may match a neighbour's)."""
    return "osD^vP*X"[sorted(models).index(m) % 8]


def _mean_range(rows: pd.DataFrame) -> tuple[float, float]:
    """The lowest and highest positive geometric mean over seeds that a panel draws."""
    with np.errstate(divide="ignore"):
        logs = rows.assign(log=np.log10(rows.grad_norm))
    logs = logs[np.isfinite(logs.log)]
    means = 10.0 ** logs.groupby(["model", "distance", "T", "d"]).log.mean()
    return (float(means.min()), float(means.max())) if len(means) else (0.1, 10.0)


def _decades(values) -> list[float]:
    """Every power of ten over the positive data (log_axis thins them): the ticks reach the
    smallest gradient, however many decades down it lies."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v) & (v > 0)]
    if not len(v):
        return [1.0]
    lo, hi = np.log10(v.min()), np.log10(v.max())
    inside = range(int(np.ceil(lo)), int(np.floor(hi)) + 1)  # decades the data spans
    ks = inside if len(inside) >= 2 else range(int(np.floor(lo)), int(np.ceil(hi)) + 1)
    return [10.0**k for k in ks]


def _exp10(x: float) -> float:
    return float("inf") if x >= LOG_MAX else float(10.0**x)


def _ratio_text(e) -> str:
    """Geometric mean fade with its interval: '790 [505, 846]'."""
    if e.n == 0:
        return "n/a"
    mean = fmt(_exp10(e.mean), 3)
    if not np.isfinite(e.lo) or e.mean >= LOG_MAX:  # every seed's far gradient was 0: '∞'
        return mean
    return f"{mean} [{fmt(_exp10(e.lo), 3)}, {fmt(_exp10(e.hi), 3)}]"


def _summary(r: pd.DataFrame, read: dict) -> pd.DataFrame:
    """Per recall distance and model: both fades with their calls, the training outcome."""
    rows = []
    for (D, m), g in r.groupby(["distance", "model"]):
        t = g[g.trained]
        untrained, trained = read[D]["untrained"].get(m), read[D]["trained"].get(m)
        steps = t.steps_to_criterion.dropna()
        rows.append({
            "D": D, "model": m,
            "untrained fade": f"{untrained.text} ({untrained.word})" if untrained else "",
            "trained fade": f"{trained.text} ({trained.word})" if len(t) else "not trained",
            "reached criterion": f"{int(t.learned.sum())}/{len(t)}" if len(t) else "",
            "steps to criterion (median)": fmt(float(steps.median())) if len(steps) else "",
            "test accuracy": accuracy(t).removeprefix("test accuracy ") if len(t) else "",
            "lr": fmt(float(t.lr.median())) if t.lr.notna().any() else "",
        })  # fmt: skip
    return pd.DataFrame(rows)


def _reading(read: dict, r: pd.DataFrame) -> str:
    """Which models fade at each distance, by the rule's own test, in each state, and what
    the distance shows of the two families."""
    fam = dict(zip(r.model, r.family))
    rec = sorted(m for m, f in fam.items() if f == "recurrent")
    att = sorted(m for m, f in fam.items() if f == "attention")
    text = []
    for D, c in sorted(read.items()):
        states = []
        for state in ("untrained", "trained"):
            by = {w: [m for m, call in sorted(c[state].items()) if call.word == w] for w in CALLS}
            said = "; ".join(f"{w}: {', '.join(ms)}" for w, ms in by.items() if ms)
            states.append(f"{state}, {said}" if said else f"{state}, none")
        trained = c["trained"]
        k = kind([trained[m].word for m in att if m in trained],
                 [trained[m].word for m in rec if m in trained])  # fmt: skip
        left = unlearned(r[r.trained & (r.distance == D)])
        missed = ", ".join(f"{m} {s}" for m, s in sorted(left.items()))
        text.append(f"At D={D} (bar {RULE.decay:g}x): " + " | ".join(states) + f"; so {KINDS[k]}"
                    + (f"; missed the criterion: {missed}" if missed else "") + ".")  # fmt: skip
    return "**Reading.** " + " ".join(text) if text else ""
