"""Information path length (C5): gradient influence of the input at t - d against d.

Table ``influence`` (seqbench/measure/influence.py): the batch-averaged norm of
d log p(target at t) / d e_{t-d} against d, per model and seed, untrained (what the
architecture alone passes back) and trained on lag_recall to a criterion (what the model
learned to use). Two readings, one test (``fading``): untrained, a model's *fade* is its mean
influence at d <= RULE.near over the farthest 1/RULE.far of the distances (at the longest T
measured); trained, it is the same near mean over the influence at the task's recall
distance, where the value it must use sits. The fade's 95% interval over seeds (on a log
scale) decides: >= RULE.decay fades, below it is flat, across it cannot tell. A trained model
that did not reach its criterion is left out of the trained reading and named. The scan
family (minGRU, minLSTM) is drawn and tabled but does not enter the rule.
"""

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from seqbench.report.analysis import ratio
from seqbench.report.axes import axis_label, log_axis
from seqbench.report.markdown import md_table
from seqbench.report.stats import estimate, fmt
from seqbench.report.verdict import Rule, Verdict
from seqbench.studies import job_setting
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
    "a model *fades* when its mean influence at d <= {near} over the influence far back "
    "(untrained: the farthest 1/{far} of distances at the longest T, the architecture; trained "
    "to its criterion: at the task's recall distance, what it learned to use) has a 95% "
    "interval over seeds >= {decay:g}x, is *flat* when the interval is < {decay:g}x. Supported "
    "if every recurrent model fades untrained and every trained one still fades while "
    "attention is flat in both; nuanced if training removes a recurrent model's fading; not "
    "supported if a recurrent model is flat untrained or attention fades; inconclusive if an "
    "interval straddles {decay:g}x or a family has no trained model that reached its "
    "criterion (those that did not are left out and named); the trained models' task "
    "accuracy is read " + TEST_RULE + ", inconclusive where it was not measured; a trained "
    "model that missed its criterion is named censored, not failing, where " + CENSORING,
    long_enough=LONG_ENOUGH,
    decay=10.0,
    near=4,
    far=4,
)
REACHED = 0.25  # a distance counts when at least this share of the batch's examples reach it
LOG_MAX = float(np.log10(np.finfo(float).max))  # a far gradient that underflows to 0: 1e308
# the CPU profile trains three models at a short cell (the cost of training to a criterion
# with three seeds); the GPU profile trains every model at the untrained job's length
# what the profiles train (profiles.yaml; the CPU's cell is path_length.yaml's own)
CPU_TRAINED = {
    "models": job_setting(__name__, "cpu", "model", job=f"{STUDY}_trained"),
    "seq_len": 16,
    "distance": 8,
}
GPU_CELL = {k: int(job_setting(__name__, "gpu", f"data.{k}")) for k in ("seq_len", "distance")}


def influence_table(tables) -> pd.DataFrame:
    """The complete influence rows at d >= 1, ``trained`` as a bool, a ``seed`` column."""
    df = complete(tables.get("influence"), STUDY)
    if df.empty:
        return df
    # rows.csv writes the bool as text: True / False (or 1 / 0 from older runs)
    df["trained"] = df.trained.astype(str).str.lower().isin(["true", "1", "1.0"])
    if "seed" not in df:
        df["seed"] = 0
    for c in ("steps_to_criterion", "criterion", "lr", "val_acc"):
        if c not in df:
            df[c] = np.nan
    return with_censoring(df[df.d >= 1], tables)  # d = 0 is the scored position itself


def with_censoring(df: pd.DataFrame, tables) -> pd.DataFrame:
    """Each trained row with its training run's ``censored`` (stopped at its cap while
    improving or at chance) and ``cap`` (train.steps), matched on (model, seed, T, distance)
    among the study's complete training runs; untrained rows are never censored."""
    keys = ["model", "seed", "T", "distance"]
    train = complete(tables.get("runs"), STUDY)
    if train.empty or not {"data.seq_len", "data.distance", "train.steps"} <= set(train):
        return df.assign(censored=False, cap=np.nan)
    train = train.assign(T=train["data.seq_len"].astype(float), cap=train["train.steps"],
                         distance=train["data.distance"].astype(float),
                         censored=censored(train))  # fmt: skip
    train = train.drop_duplicates(keys, keep="last")[[*keys, "censored", "cap"]]
    df = df.drop(columns=["censored", "cap"], errors="ignore")
    df = df.assign(T=df["T"].astype(float), distance=df.distance.astype(float))
    df = df.merge(train, on=keys, how="left")
    return df.assign(censored=df.censored.eq(True) & df.trained)


def _near(g) -> pd.DataFrame:
    return g[g.d <= RULE.near]


def decay(g: pd.DataFrame) -> float:
    """Untrained fade of one run: mean influence at d = 1..near over the mean across the
    farthest 1/far of the distances that at least REACHED of the batch reaches (nan with
    fewer than 2 x near such distances)."""
    g = g[g.examples >= g.examples.max() * REACHED].sort_values("d")
    if len(g) < 2 * RULE.near:
        return float("nan")
    far = g[g.d >= g.d.max() - (g.d.max() - 1) / RULE.far]
    return ratio(_near(g).grad_norm.mean(), far.grad_norm.mean())


def decay_to_value(g: pd.DataFrame) -> float:
    """Trained fade of one run: mean influence at d = 1..near over the influence at the
    task's recall distance (the value the answer must come from)."""
    at = g[g.d == g.distance].grad_norm
    if at.empty or _near(g).empty:
        return float("nan")
    return ratio(_near(g).grad_norm.mean(), at.mean())


def runs(df: pd.DataFrame) -> pd.DataFrame:
    """One row per measured run and state: model, family, seed, T, distance, its fade, and
    (trained) whether it reached its criterion, its steps to it and its lr."""
    rows = []
    for (_, trained), g in df.groupby(["run", "trained"]):
        first = g.iloc[0]
        rows.append({
            "model": first.model, "family": first.family, "seed": first.seed,
            "trained": trained, "T": int(first["T"]), "distance": first.distance,
            "fade": decay_to_value(g) if trained else decay(g),
            "learned": bool(trained and pd.notna(first.criterion)
                            and pd.notna(first.steps_to_criterion)),
            "criterion": first.criterion if trained else None,
            "steps_to_criterion": first.steps_to_criterion, "lr": first.lr,
            "censored": bool(first.censored), "cap": first.cap,
        })  # fmt: skip
    return pd.DataFrame(rows)


def _log_fade(values) -> np.ndarray:
    """log10 of fades; an infinite fade (the far gradient underflowed to 0) counts as 1e308."""
    v = np.log10(np.asarray(values, dtype=float))
    return np.where(np.isposinf(v), LOG_MAX, v)


CALLS = ("fades", "flat", "cannot tell")


def fading(values) -> tuple[str, object]:
    """('fades' | 'flat' | 'cannot tell', the Estimate of log10 fade over seeds)."""
    e = estimate(_log_fade(values))
    threshold = np.log10(RULE.decay)
    if e.n >= 2 and e.lo >= threshold:
        return "fades", e
    if e.n >= 2 and e.hi < threshold:
        return "flat", e
    return "cannot tell", e


def reading(r: pd.DataFrame, trained: bool) -> dict:
    """model -> (call, Estimate, cell rows) for one state, at its longest T; trained models
    only over the runs that reached their criterion, and only when every run did."""
    sel = r[r.trained == trained]
    if sel.empty:
        return {}
    sel = sel[sel["T"] == sel["T"].max()]
    out = {}
    for m, g in sel.groupby("model"):
        if trained and not g.learned.all():
            continue  # did not learn the task: what it uses says nothing about the claim
        out[m] = (*fading(g.fade), g)
    return out


def unlearned(r: pd.DataFrame) -> dict:
    """Trained models left out: model -> 'k/n' seeds that reached the criterion, and where a
    seed that did not is censored with a cap too short to call it failing, ': censored at
    <cap> steps (< 4 x <steps of the slowest model that learned the task>)'."""
    t = r[r.trained]
    if t.empty:
        return {}
    t = t[t["T"] == t["T"].max()]
    learned = t.groupby("model").learned.all()
    slowest = t[t.model.map(learned)].steps_to_criterion.max()  # nan when none learned
    out = {}
    for m, g in t[~t.model.map(learned)].groupby("model"):
        out[m] = f"{int(g.learned.sum())}/{len(g)}"
        short = g[~g.learned & g.censored]
        if len(short) and not long_enough(short.cap.max(), slowest):
            out[m] = censored_note(out[m], short.cap.max(), slowest)
    return out


def _exp10(x: float) -> float:
    return float("inf") if x >= LOG_MAX else float(10.0**x)


def _ratio_text(e) -> str:
    """Geometric mean fade with its interval: '790 [505, 846]'."""
    if e.n == 0:
        return "n/a"
    mean = fmt(_exp10(e.mean), 3)
    if not np.isfinite(e.lo):
        return mean
    return f"{mean} [{fmt(_exp10(e.lo), 3)}, {fmt(_exp10(e.hi), 3)}]"


def verdict(df: pd.DataFrame) -> tuple[str, str] | None:
    """(verdict, measured); None without untrained rows of both families."""
    r = runs(df)
    if r.empty:
        return None
    rec_models, att_models = in_family(df, "recurrent"), in_family(df, "attention")
    base, trained = reading(r, False), reading(r, True)
    rec = {m: base[m] for m in rec_models if m in base}
    att = {m: base[m] for m in att_models if m in base}
    if not rec or not att:
        return None
    rec_t = {m: trained[m] for m in rec_models if m in trained}
    att_t = {m: trained[m] for m in att_models if m in trained}
    refuted = any(c == "flat" for c, _, _ in rec.values()) or any(
        c == "fades" for c, _, _ in [*att.values(), *att_t.values()]
    )
    used = [*rec.values(), *att.values(), *rec_t.values(), *att_t.values()]
    if refuted:
        v = "not supported"
    elif any(c == "cannot tell" for c, _, _ in used) or not rec_t or not att_t:
        v = "inconclusive"
    elif all(c == "fades" for c, _, _ in rec_t.values()):
        v = "supported"
    else:
        v = "nuanced"
    measured = _measured(r, {**rec, **att}, {**rec_t, **att_t})
    return v, measured + unnamed_text(df, COMPARES, ATTENTION_VS_RECURRENCE, verdict)


def _measured(r, base, trained) -> str:
    def said(reading):
        return ", ".join(f"{m} {_ratio_text(e)} ({c})" for m, (c, e, _) in sorted(reading.items()))

    seeds = sorted({int(g.seed.nunique()) for _, _, g in [*base.values(), *trained.values()]})
    T = int(next(iter(base.values()))[2]["T"].iloc[0])
    text = f"untrained near/far influence at T={T}: {said(base)}"
    t = r[r.trained]
    if trained:
        cell = next(iter(trained.values()))[2]
        text += (
            f"; trained (T={int(cell['T'].iloc[0])}, d={fmt(cell.distance.iloc[0])}) near / at "
            f"the recall distance: {said(trained)}"
        )
    elif t.empty:
        text += "; no trained models"
    failed = unlearned(r)
    if failed:
        crit = t.criterion.dropna()
        what = f" {crit.iloc[0]}" if len(crit) else " a criterion"
        text += (
            "; left out, seeds that reached"
            + what
            + ": "
            + ", ".join(f"{m} {k}" for m, k in sorted(failed.items()))
        )
    return text + f" ({'/'.join(map(str, seeds))} seeds)"


def trained_runs(tables) -> pd.DataFrame:
    """The study's complete training runs (the trained models the influence rows read),
    with their test accuracy (_common.with_test): the task accuracy this study reports."""
    ok = complete(tables.get("runs"), STUDY)
    return with_test(ok, tables, STUDY) if not ok.empty else ok


def accuracy_on_test(trained: pd.DataFrame) -> str:
    """'gru 0.98 [0.97, 0.99], ...': test accuracy per trained model ('' if none)."""
    if trained.empty or trained.test_acc.isna().all():
        return ""
    return ", ".join(
        f"{m} {fmt(estimate(g.test_acc, bounds=(0.0, 1.0)), 2)}"
        for m, g in trained.groupby("model")
    )


def verdicts(tables) -> list[Verdict]:
    df = influence_table(tables)
    result = verdict(df) if not df.empty else None
    if result is None:
        return []
    trained = trained_runs(tables) if df.trained.any() else pd.DataFrame()
    acc = accuracy_on_test(trained)
    v, measured = result[0], result[1] + (f"; test accuracy, trained: {acc}" if acc else "")
    if not trained.empty:
        v, measured = needs_test(trained, v, measured)
    return [Verdict("C5", STUDY, measured, RULE, v)]


def section(tables, figs) -> str:
    df = influence_table(tables)
    if df.empty:
        return "_No completed path_length runs._"
    r = runs(df)
    parts = [
        "Gradient of the log-probability of the target at the scored position t with "
        "respect to the input embedding at t - d, norm averaged over a held-out batch; lines "
        "are means over seeds, bands their 95% t interval (the dashed line: the "
        "task's distance between the value and the query). Trained models were trained to "
        "the criterion with the learning rate calibrated once per model on the control "
        "distance (`train.lr_control`) and reused by every seed. CPU profile cut: only "
        f"{CPU_TRAINED['models'].replace(',', ', ')} are trained, at T={CPU_TRAINED['seq_len']}, "
        f"d={CPU_TRAINED['distance']} (the GPU profile trains every model at "
        f"T={GPU_CELL['seq_len']}, d={GPU_CELL['distance']}).",
        _figure(df, figs),
        md_table(_summary(r)),
        _test_sentence(tables),
        _reading(r),
    ]
    return "\n\n".join(p for p in parts if p)


def _figure(df, figs) -> str:
    states = [s for s in (False, True) if (df.trained == s).any()]
    fig, axes = figs.figure(ncols=len(states), width=4.6, height=3.8)
    every = sorted(df.model.unique())
    for ax, trained in zip(axes, states):
        sub = df[df.trained == trained]
        sub = sub[sub["T"] == sub["T"].max()]
        shown = sorted(sub.model.unique())
        for i, (m, g) in enumerate(sub.groupby("model")):
            curve = [(d, estimate(x.grad_norm)) for d, x in g.groupby("d")]
            d = [p for p, _ in curve]
            mean, lo, hi = ([getattr(e, k) for _, e in curve] for k in ("mean", "lo", "hi"))
            # markers on every few points, offset per model: lines that coincide stay apart
            step = max(2, len(d) // 6)
            figs.line(ax, d, mean, lo, hi, model=m, clip=(0, np.inf), marker=_mark(every, m),
                      markevery=(i % step, step), ms=4)  # fmt: skip
        _recall_distance(ax, int(sub.distance.iloc[0]))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # distances are whole tokens
        ax.set(xlabel=axis_label("distance d = t - s", "tokens"),
               ylabel="influence ‖∂ log p(y_t) / ∂ e_s‖\n(nats per embedding unit)",
               title=_state_title(sub, trained, int(df["T"].max())))  # fmt: skip
        log_axis(ax, "y", ticks=_decades(sub.grad_norm))
        missing = [m for m in every if m not in shown]
        if missing:  # the CPU profile trains fewer models: say which are not drawn
            ax.text(0.02, 0.02, "not trained here: " + ", ".join(missing), fontsize=7,
                    color="0.3", transform=ax.transAxes, va="bottom")  # fmt: skip
    figs.legend(fig)
    return figs.save(fig, "path_length_influence", decides=DECIDES)


def _state_title(sub, trained, longest) -> str:
    """'untrained, T=64' or 'trained to the criterion, T=16, d=8' (each panel its own T;
    a panel shorter than the longest T drawn says so)."""
    T = int(sub["T"].iloc[0])
    if not trained:
        return f"untrained, T={T}"
    shorter = " (a shorter cell)" if T < longest else ""
    return f"trained to the criterion\nT={T}, d={int(sub.distance.iloc[0])}{shorter}"


def _recall_distance(ax, distance):
    """The task's recall distance: one legend entry for every panel, its value beside it."""
    ax.axvline(distance, color="0.15", ls="--", lw=0.9, label="the task's recall distance")
    ax.annotate(f"d = {distance}", xy=(distance, 0.98), xycoords=("data", "axes fraction"),
                xytext=(3, 0), textcoords="offset points", fontsize=7, color="0.15",
                ha="left", va="top")  # fmt: skip


def _mark(models, m) -> str:
    """One marker per model in this figure (its colour alone may match a neighbour's)."""
    return "osD^vP*X"[sorted(models).index(m) % 8]


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


def _summary(r: pd.DataFrame) -> pd.DataFrame:
    """Per model and state: the fade with its interval, seeds, criterion and lr."""
    rows = []
    for (trained, T, m), g in r.groupby(["trained", "T", "model"]):
        e = fading(g.fade)[1]
        steps = g.steps_to_criterion.dropna()
        rows.append({
            "model": m, "state": "trained" if trained else "untrained", "T": T,
            "fade (near / far or at d)": _ratio_text(e), "seeds": len(g),
            "reached criterion": f"{int(g.learned.sum())}/{len(g)}" if trained else "",
            "steps to criterion (median)": fmt(float(steps.median())) if len(steps) else "",
            "lr": fmt(float(g.lr.median())) if trained and g.lr.notna().any() else "",
        })  # fmt: skip
    return pd.DataFrame(rows)


def _reading(r: pd.DataFrame) -> str:
    """Which models fade, by the rule's own test, in each state."""
    text = []
    for trained in (False, True):
        calls = reading(r, trained)
        if not calls:
            continue
        by = {c: [m for m, (call, _, _) in sorted(calls.items()) if call == c] for c in CALLS}
        by = {c: ms for c, ms in by.items() if ms}
        state = "trained to the criterion" if trained else "untrained"
        said = "; ".join(f"{c}: {', '.join(ms)}" for c, ms in by.items())
        text.append(f"{state.capitalize()} (threshold {RULE.decay:g}x): {said}.")
    failed = unlearned(r)
    if failed:
        text.append("Did not reach the criterion in every seed: " + ", ".join(
            f"{m} ({k})" for m, k in sorted(failed.items())) + ".")  # fmt: skip
    return "**Reading.** " + " ".join(text) if text else ""


def _test_sentence(tables) -> str:
    """The trained models' task accuracy on the test set, or why it is not shown."""
    trained = trained_runs(tables)
    if trained.empty:
        return ""
    said = accuracy_on_test(trained)
    if not said:
        return "Task accuracy of the trained models: test set not measured (what=test_set)."
    return f"Task accuracy of the trained models, {TEST_RULE}: {said}."
