"""Data efficiency (C7): test loss against the number of unique training windows N.

Every family trains on a pool of N unique text windows (``data.n_train``), N over several
orders of magnitude and never above the draws of the step cap (steps x batch: a larger pool
would be the same experiment as an unlimited stream). Each run stops early once
``train.patience`` evaluations pass without a new best validation loss. What chose a run
(early stopping, the lr grid, the best recurrence at an N) reads the validation windows;
what is reported and decides reads the TEST split (issue 22): each run's ``test_loss``
(``what=test_set``, job ``data_efficiency_test``: the weights of its best validation loss,
which early stopping keeps as model.pt, on 1,024 test windows of its own data seed) and the
count n-grams' ``scope=test`` rows (fitted on that seed's pool, scored on the same test
windows). Three seeds per cell; 95% intervals over
seeds. A run without its test figure makes a verdict ``inconclusive`` and names the job.

The lecture: Transformers impose less structure, so they need more data before they do
useful work; LSTMs can do very well but take longer to train. Measured:

- (a) the gap g(N) = attention test loss(N) - best recurrent or scan test loss(N) (the
  recurrence with the lowest mean validation loss at that N), with its interval. "Needs more
  data": g > 0 at the smallest N and the gap at the largest N below it (intervals disjoint);
  refuted by g < 0 at the smallest N or a gap that grows. An N is read only where the step
  cap does not bind (every compared run's best validation step at most RULE.bound x the
  steps it ran, or early stopping ended it; a training-time check, so read on the validation
  curve): where it binds the loss is compute-limited, not data-limited, so that N is
  censored and named, never read (the full profile's 4x runs are where the largest N gets
  read).
- (b) time to reach tau at the largest N, one threshold for every family and anchored on
  none, below what counting does: tau = best + TIME_RULE.frac x (trigram - best), ``best``
  the lowest mean best validation loss of any model, ``trigram`` the add-k count trigram's
  loss on the same validation windows, fitted on the same pool (``seqbench.measure.ngram``):
  a threshold on the validation curve, a training-time curve. "Takes longer to train" is a
  claim about wall clock on parallel hardware: decided there (LSTM minus attention
  seconds), ``not measured on cpu`` elsewhere. Steps to tau stand beside it as sample
  efficiency; a difference within one evaluation interval is no difference. A run that never
  gets there counts as the budget it had (a lower bound).

Control: at the largest N every model's test loss must lie below the count bigram's on the
same test windows (fitted on the same pools); a model that fails it cannot speak to either
part (inconclusive). Without this study's n-gram rows both are inconclusive
(``baselines.NOT_MEASURED``).
"""

import pandas as pd
from matplotlib.transforms import offset_copy

from seqbench.report import baselines
from seqbench.report.axes import clipped_yerr, key_entry, log_axis
from seqbench.report.markdown import md_table
from seqbench.report.stability import BUDGET, setting
from seqbench.report.stats import difference, estimate, fmt
from seqbench.report.verdict import Rule, Verdict
from seqbench.studies._common import (
    ATTENTION_VS_RECURRENCE,
    PARALLEL,
    best_of_grid,
    complete,
    in_family,
    lr_table,
    not_parallel,
    study_of,
    unnamed_text,
    with_test,
)

TITLE = "Data efficiency (C7)"
ORDER = 45
DECIDES = ("C7",)
STUDY = study_of(__name__)
ATTENTION, RECURRENCES = ("attention",), ("recurrent", "scan")
COMPARES = ATTENTION + RECURRENCES  # a model of any other family is named, not compared
# part (b) is about the LSTM because the lecture's claim names it ("LSTMs take longer to
# train"); it is looked up among the recurrent family's models, never assumed present
SLOW = "lstm"
RULE = Rule(
    "(a) the Transformer needs more data: supported if its test loss minus that of the best "
    "recurrent or scan model (the lowest mean validation loss at that N) is > 0 at the "
    "smallest N and lower at the largest N read (test split, 95% intervals over seeds, "
    "disjoint), not supported if < 0 at the smallest N or the gap grows. An N is read only "
    "where its step cap does not bind, read on the validation curve: every compared run's "
    "best validation loss came at or before {bound} x the steps it ran, or early stopping "
    "ended it; an N where the cap binds is censored (compute-limited) and named. Control: "
    "every model's test loss below the count {learned}'s on the same test windows at the "
    "largest N. inconclusive otherwise (an interval includes 0, fewer than two N read, a "
    "model failed the control, a run's test set or the count baselines were not measured)",
    bound=0.75,
    learned="bigram",
)
TIME_RULE = Rule(
    "(b) the LSTM takes longer to train: at the largest N, the time to reach tau = best + "
    "{frac} x (trigram - best) on the validation curve (a training-time curve: best is the "
    "lowest mean best validation loss, trigram the add-k count trigram fitted on the same "
    "pool and scored on the same validation windows; no tau where no model gets below it; a "
    "run that never gets there counts as its budget). A claim about time on {parallel} "
    "hardware: LSTM minus Transformer wall clock to tau, 95% interval over seeds beyond one "
    "evaluation interval's time: supported above, not supported below, inconclusive within "
    "it or where a model failed the control of (a) or its test set was not measured; timed "
    "elsewhere it is `not measured on` that hardware. Steps to tau stand beside it as sample "
    "efficiency, where a difference within one evaluation interval is no difference",
    frac=0.5,
    parallel=PARALLEL,
)
BIGRAM, TRIGRAM = 2, 3  # the orders of the control (RULE.learned) and of tau's anchor


def study_runs(tables) -> pd.DataFrame:
    """Complete runs with a pool (``n_train``), N <= their draws, each with ``best`` (its best
    validation loss), ``best_step`` (where it came), ``end`` (its last evaluated step) and
    ``after`` (evaluations after its best), from its curve where there is one: the half-budget
    check cuts curves, and all four must follow; and ``test_loss`` (``with_test``: NaN where
    its test set was not measured). The best lr of a swept grid only, chosen on validation."""
    ok = complete(tables["runs"], STUDY)
    if ok.empty or "data.n_train" not in ok or ok["data.n_train"].isna().all():
        return pd.DataFrame()
    ok = ok[ok["data.n_train"].notna()]
    ok = ok[ok["data.n_train"] <= ok["train.steps"] * ok["train.batch_size"]]
    ok = with_test(ok, tables, STUDY)
    nan = pd.Series(float("nan"), ok.index)
    seen = {"best": ok.get("best_val_loss", ok.val_loss), "best_step": ok.get("best_step", nan),
            "end": ok.get("step", nan), "after": nan}  # fmt: skip
    curves = tables.get("curves")
    if curves is not None and not curves.empty and "val_loss" in curves:
        evals = curves[curves.run.isin(ok.run)].dropna(subset=["val_loss"]).sort_values("step")
        by = evals.groupby("run")
        first = evals.loc[by.val_loss.idxmin()].set_index("run")  # earliest step at the best
        after = (evals.step > evals.run.map(first.step)).groupby(evals.run).sum()
        read = {"best": first.val_loss, "best_step": first.step, "end": by.step.max(),
                "after": after}  # fmt: skip
        seen = {k: ok.run.map(read[k]).fillna(v) for k, v in seen.items()}
    seen = {k: pd.to_numeric(v, errors="coerce").values for k, v in seen.items()}
    ok = ok.assign(n_train=ok["data.n_train"].astype(int), **seen)
    return best_of_grid(ok, ["n_train"], metric="best")


def binds(runs: pd.DataFrame) -> pd.Series:
    """Per run: did its step cap bind? Its best validation loss came after RULE.bound x the
    steps it ran, and early stopping did not end it (fewer than train.patience evaluations
    after its best): the loss was still falling when the steps ran out, so it measures the
    compute, not the data. A run whose best step is unknown is not counted as bound."""
    patience = pd.to_numeric(runs.get("train.patience", pd.Series(index=runs.index)),
                             errors="coerce")  # fmt: skip
    stopped_itself = runs.after >= patience  # NaN (no patience, no curve) compares False
    return (runs.best_step > RULE.bound * runs.end) & ~stopped_itself


def censored_ns(runs: pd.DataFrame) -> dict:
    """N -> '<model> <bound>/<runs>' for each compared model whose cap binds there (``binds``),
    for every N where one does: those N are compute-limited, so part (a) does not read them."""
    compared = runs[runs.family.isin(COMPARES)].assign(bound=binds)
    out = {}
    for n, g in compared.groupby("n_train"):
        hit = [f"{m} {int(x.bound.sum())}/{len(x)}" for m, x in g.groupby("model") if x.bound.any()]
        if hit:
            out[n] = ", ".join(hit)
    return out


def gaps(runs: pd.DataFrame) -> dict:
    """N -> (attention model, best recurrence, Estimate of their difference in test loss).
    Which of each side is compared is chosen on the validation loss (``best``): the test
    split scores the choice, never makes it."""
    out = {}
    for n, g in runs.groupby("n_train"):
        attention, recurrent = in_family(g, *ATTENTION), in_family(g, *RECURRENCES)
        if not attention or not recurrent:
            continue
        mean = g.groupby("model").best.mean()
        a, r = mean[attention].idxmin(), mean[recurrent].idxmin()
        out[n] = (a, r, difference(g[g.model == a].test_loss, g[g.model == r].test_loss))
    return dict(sorted(out.items()))


def untested(runs: pd.DataFrame) -> str:
    """'test set not measured for 3 of 18 runs (job data_efficiency_test, what=test_set)':
    the runs without a test figure and the job that measures them (``_long_test`` for the
    full profile's longer runs); '' when every run has one. Never a fallback to validation."""
    missing = runs[runs.test_loss.isna()]
    if missing.empty:
        return ""
    jobs = sorted({f"{STUDY}_long_test" if b > 1 else f"{STUDY}_test"
                   for b in setting(missing, BUDGET, 1)})  # fmt: skip
    return (f"test set not measured for {len(missing)} of {len(runs)} runs (job "
            f"{', '.join(jobs)}, what=test_set)")  # fmt: skip


def count_levels(tables, runs: pd.DataFrame, scope: str = "test") -> dict:
    """order -> the count n-gram's loss at the largest N, fitted on that pool (each data
    seed's own) and scored on the test windows the runs' test figures read (``scope="test"``,
    averaged over the runs' data seeds), or on their validation windows (``scope="windows"``:
    the curve tau is read on); {} without this study's ngram rows."""
    big = runs[runs.n_train == runs.n_train.max()] if not runs.empty else runs
    settings = baselines.settings_of(big, n_train=True)
    if big.empty or settings is None:
        return {}
    rows = baselines.rows_for(tables, STUDY, **settings)
    if scope == "test" and not rows.empty:  # the data seeds these runs were scored on
        rows = rows[rows["sample"].isin(big.seed)]
    return baselines.levels(rows, scope=scope)


def threshold(runs: pd.DataFrame, trigram: float | None) -> float | None:
    """tau at the largest N, a threshold on the validation curve: TIME_RULE.frac of the way
    from the best mean validation loss up to the count trigram on the validation windows;
    None without the trigram or when no model's best is below it."""
    big = runs[runs.n_train == runs.n_train.max()]
    if big.empty or trigram is None:
        return None
    best = float(big.groupby("model").best.mean().min())
    return best + TIME_RULE.frac * (trigram - best) if best < trigram else None


def steps_to(runs: pd.DataFrame, curves: pd.DataFrame, tau: float) -> pd.DataFrame:
    """Per run at the largest N: the first evaluated step with val_loss <= tau and the wall
    clock there (``seconds``, NaN where the curve has none); a run that never got there
    counts as the most steps any run of the cell was given and its own last time (censored)."""
    big = runs[runs.n_train == runs.n_train.max()]
    c = curves[curves.run.isin(big.run)].dropna(subset=["val_loss"]).sort_values("step")
    budget = float(c.step.max()) if not c.empty else float("nan")
    hit = c[c.val_loss <= tau].groupby("run").first()  # the first evaluation at or below tau
    wall = c.wall_s if "wall_s" in c else pd.Series(float("nan"), c.index)
    last = wall.groupby(c.run).last()
    steps = big.run.map(hit.step).astype(float)
    seconds = big.run.map(hit.wall_s) if "wall_s" in hit else pd.Series(float("nan"), big.index)
    return big.assign(steps=steps.fillna(budget), censored=steps.isna(),
                      seconds=seconds.astype(float).fillna(big.run.map(last)))  # fmt: skip


def eval_interval(curves: pd.DataFrame, runs: pd.DataFrame) -> float:
    """Steps between two evaluations of ``runs`` (the median over their curves): the finest
    difference a step count read off the curves can show."""
    c = curves[curves.run.isin(runs.run)].dropna(subset=["val_loss"]).sort_values("step")
    gaps_ = c.groupby("run").step.diff().dropna()
    return float(gaps_.median()) if len(gaps_) else float("nan")


def read_ns(runs: pd.DataFrame) -> tuple[dict, str]:
    """({N: (attention model, best recurrence, gap)} of the N part (a) reads, the measured
    text of the N it leaves out): an N whose cap binds is censored, compute-limited."""
    g, cut = gaps(runs), censored_ns(runs)
    cut = {n: who for n, who in cut.items() if n in g}
    note = (
        f"; censored, compute-limited (best step after {RULE.bound} x the steps run), not "
        f"read: {', '.join(f'N={n} ({who})' for n, who in cut.items())}"
        if cut
        else ""
    )
    return {n: x for n, x in g.items() if n not in cut}, note


def part_a(g: dict) -> tuple[bool | None, str]:
    """(holds: True / False / None undecided, measured) from the gaps at the N read."""
    if len(g) < 2:
        return None, f"(a) fewer than two N read ({', '.join(f'N={n}' for n in g) or 'none'})"
    (n0, (a0, r0, g0)), (n1, (_, r1, g1)) = list(g.items())[0], list(g.items())[-1]
    measured = (f"test loss gap {a0} - best recurrence ({r0}) {fmt(g0)} nats at N={n0}, "
                f"({r1}) {fmt(g1)} at N={n1}")  # fmt: skip
    if g0.sign > 0 and g1.hi < g0.lo:
        return True, measured
    if g0.sign < 0 or g1.lo > g0.hi:
        return False, measured
    return None, measured


def control(runs: pd.DataFrame, levels: dict) -> list[str]:
    """The models whose test loss at the largest N is not below the count bigram's on the
    same test windows (``levels``: scope test)."""
    big = runs[runs.n_train == runs.n_train.max()]
    bar = levels[BIGRAM]
    return [m for m, x in big.groupby("model") if not estimate(x.test_loss).below(bar)]


def verdict(tables) -> tuple[str, str] | None:
    """Part (a): (verdict, measured); None without an attention model and a recurrence at
    two N. Read on the test split: a run without its test figure makes it inconclusive."""
    runs = study_runs(tables)
    if runs.empty or len(gaps(runs)) < 2:
        return None
    g, note = read_ns(runs)
    missing = untested(runs)
    if missing:
        return "inconclusive", f"(a) not read: {missing}{note} ({_seeds(runs)})"
    hungry, measured = part_a(g)
    measured += note
    levels, n1 = count_levels(tables, runs), runs.n_train.max()
    if BIGRAM not in levels or TRIGRAM not in levels:
        return "inconclusive", measured + f" ({_seeds(runs)}); {baselines.NOT_MEASURED}"
    measured += f"; at N={n1} {_said(levels, 'test')} ({_seeds(runs)})"
    failed = control(runs, levels)
    if failed:
        return "inconclusive", measured + f"; control (count {RULE.learned}) not met: " + (
            ", ".join(failed)
        )
    return {True: "supported", False: "not supported"}.get(hungry, "inconclusive"), measured


def _said(levels: dict, split: str) -> str:
    """'count bigram 2.37, trigram 1.83 nats (same test windows)': which split the levels
    were scored on; NOT_MEASURED without them."""
    return baselines.said(levels).replace("(same windows)", f"(same {split} windows)")


def _beyond(d, resolution) -> int:
    """+1 / -1 where the interval of ``d`` lies wholly above / below +-``resolution``, else 0:
    a difference within one evaluation interval is no difference."""
    return 1 if d.lo > resolution else -1 if d.hi < -resolution else 0


def _timed(runs: pd.DataFrame, s: pd.DataFrame, tau: float, curves) -> tuple[int, str]:
    """(sign of the wall-clock difference beyond one interval's time, measured): steps to
    tau (sample efficiency) and seconds to tau, LSTM minus the fastest attention model."""
    a = min(in_family(s, *ATTENTION), key=lambda m: s[s.model == m].steps.mean())
    pair = s[s.model.isin([SLOW, a])]
    step = eval_interval(curves, pair)
    d = difference(s[s.model == SLOW].steps, s[s.model == a].steps)
    word = {1: "more steps", -1: "fewer steps"}.get(
        _beyond(d, step), f"within one evaluation interval ({step:g} steps): no difference"
    )
    measured = (f"steps to tau={tau:.2f} at N={runs.n_train.max()} (sample efficiency): "
                f"{SLOW} - {a} {fmt(d)} steps, {word}")  # fmt: skip
    if pair.seconds.isna().all():
        return 0, measured + "; wall clock to tau not recorded"
    per_eval = (pair.seconds / pair.steps * step).groupby(pair.model).mean().max()
    w = difference(s[s.model == SLOW].seconds, s[s.model == a].seconds)
    measured += (f"; wall clock to tau {SLOW} - {a} {fmt(w)} s (one evaluation interval "
                 f"{per_eval:.2g} s)")  # fmt: skip
    if pair.censored.all():  # both at the budget: neither time is known
        return 0, measured + " (neither reaches tau: both censored)"
    return _beyond(w, per_eval), measured


def time_verdict(tables) -> tuple[str, str] | None:
    """Part (b): (verdict, measured); None without the LSTM and an attention model at the
    largest N."""
    runs = study_runs(tables)
    big = runs[runs.n_train == runs.n_train.max()] if not runs.empty else runs
    if big.empty or SLOW not in in_family(big, "recurrent") or not in_family(big, *ATTENTION):
        return None
    curves = tables.get("curves")
    levels, val = count_levels(tables, runs), count_levels(tables, runs, "windows")
    if not {BIGRAM, TRIGRAM} <= set(levels) or TRIGRAM not in val:
        return "inconclusive", baselines.NOT_MEASURED
    tau, said = threshold(runs, val[TRIGRAM]), _said(val, "validation")
    if tau is None:
        return "inconclusive", (f"no model's best validation loss is below the count trigram: "
                                f"no tau ({said})")  # fmt: skip
    if curves is None or curves.empty:
        return "inconclusive", f"no validation curves to read the time to tau={tau:.2f} from"
    s = steps_to(runs, curves, tau)
    sign, measured = _timed(runs, s, tau, curves)
    measured += f" ({_seeds(runs)})"
    elsewhere = not_parallel(big) if "device" in big else "unrecorded hardware"
    pair = big[big.model.isin([SLOW, *in_family(s, *ATTENTION)])]
    missing = untested(pair)  # the control of (a) reads their test loss
    failed = [] if missing else [m for m in control(runs, levels) if m in set(pair.model)]
    if missing:
        measured += f"; control of (a) not read: {missing}"
    if failed:
        measured += f"; control (count {RULE.learned}) not met: {', '.join(failed)}"
    if elsewhere:  # timed on a CPU: the claim is about parallel hardware
        return f"not measured on {elsewhere}", measured
    if failed or missing:
        return "inconclusive", measured
    return {1: "supported", -1: "not supported"}.get(sign, "inconclusive"), measured


def _seeds(runs: pd.DataFrame) -> str:
    n = int(runs.groupby(["model", "n_train"]).seed.nunique().min())
    return f"{n} seed{'s' * (n > 1)}"


def verdicts(tables) -> list[Verdict]:
    """C7 as two rows: (a) needs more data, (b) takes longer to train (a timing claim)."""
    runs, out = study_runs(tables), []
    parts = (
        (verdict, RULE, "a: needs more data", ATTENTION_VS_RECURRENCE),
        (time_verdict, TIME_RULE, "b: takes longer to train", {"attention": "attention"}),
    )
    for judge, rule, what, sides in parts:
        result = judge(tables)
        if result is None:
            continue
        v, measured = result
        measured += unnamed_text(runs, COMPARES, sides,
                                 lambda r, judge=judge: judge(tables | {"runs": r}))  # fmt: skip
        out.append(Verdict("C7", f"{STUDY} ({what}; text, N unique windows)", measured, rule, v))
    return out


def _profile(runs: pd.DataFrame) -> str:
    """What these runs are, read from them: models, T, pool sizes, cap, seeds."""
    lens = sorted(runs["data.seq_len"].dropna().unique()) if "data.seq_len" in runs else []
    T = ", ".join(str(int(t)) for t in lens) or "?"
    ns = ", ".join(f"{n:,}" for n in sorted(runs.n_train.unique()))
    return (
        f"These runs: {', '.join(sorted(runs.model.unique()))} at T = {T}, N = {ns} (part "
        "(a) reads the smallest and the largest whose cap does not bind), a cap of "
        f"{int(runs['train.steps'].max())} steps, {_seeds(runs)} per cell."
    )


def section(tables, figs) -> str:
    runs = study_runs(tables)
    if runs.empty:
        return "_No completed runs of the data-efficiency study yet._"
    figure, rows = _figure(runs, tables, figs)
    said = [(w, judge(tables)) for w, judge in (("(a)", verdict), ("(b)", time_verdict))]
    missing = untested(runs)
    parts = [
        "Left: test loss (the test split: each run's weights at its end, scored on test "
        "windows of its own data seed that no selection saw) against the number of unique "
        "training windows N (mean and 95% interval over seeds), with the count bigram and "
        "trigram on the same test windows; right: validation loss against step at the "
        "largest N (the training-time curve), with the threshold tau of part (b) and each "
        "model's mean steps to it marked on it. Every run has the same step cap and batch (N "
        "<= steps x batch); `train.patience` stops a run without a new best validation loss; "
        f"an N where a run's best came after {RULE.bound} x its steps is compute-limited, so "
        "part (a) does not read it. "
        + _profile(runs)
        + (f" Not drawn: {missing}." if missing else "")
        + " The GPU profile: size s, T = 256, N = 300, 3,000, 30,000, the lr swept in every "
        "cell. "
        + " ".join(f"Measured {w}: {r[1]} ({r[0]})." for w, r in said if r),
        figure,
        md_table(pd.DataFrame(rows).pivot(index="N", columns="model", values="test_loss")
                 .reset_index()) if rows else "",
        "Learning rate per model (calibrated once per model on the control, the largest pool, "
        "and reused by every N and seed on the CPU profile; swept in every cell on the GPU "
        "profile, best kept):\n\n" + md_table(lr_table(runs)),
    ]  # fmt: skip
    return "\n\n".join(p for p in parts if p)


def _figure(runs, tables, figs) -> tuple[str, list]:
    """Left: test loss against N (a trend line only over three or more N; runs without a
    test figure are not drawn); right: validation loss against step at the largest N with
    tau and each model's steps to it (part (b))."""
    fig, axes = figs.figure(ncols=2, width=4.8)
    rows, ns = [], sorted(runs.n_train.unique())
    models = sorted(runs.model.unique())
    for i, (model, g) in enumerate(runs.dropna(subset=["test_loss"]).groupby("model")):
        est = {n: estimate(x.test_loss) for n, x in g.groupby("n_train")}
        e = list(est.values())
        mean = [x.mean for x in e]
        dodge = 1.08 ** (i - (len(models) - 1) / 2)  # side by side on the log axis
        yerr = clipped_yerr(mean, [x.lo for x in e], [x.hi for x in e])
        axes[0].errorbar([n * dodge for n in est], mean, yerr=yerr, marker="o", capsize=3,
                         color=figs.color(model), label=model,
                         ls="-" if len(ns) >= 3 else "none")  # fmt: skip
        rows += [
            {"model": model, "N": n, "test_loss": fmt(x), "seeds": x.n} for n, x in est.items()
        ]
    _count_lines(axes[0], runs, tables)
    log_axis(axes[0], "x", ticks=ns)
    axes[0].margins(x=0.15)
    axes[0].set(xlabel="unique training windows N (windows)",
                ylabel="test loss (nats/token)",
                title=f"test split: loss at {len(ns)} pool sizes")  # fmt: skip
    _steps_panel(axes[1], runs, tables, figs)
    keys = [key_entry("error bars: 95% interval over seeds", ls="", marker="|", ms=8)]
    if len(axes[1].containers):
        keys.append(key_entry("mean steps to tau (hollow: a seed never got there)", ls="",
                              marker="v", ms=7))  # fmt: skip
    figs.legend(fig, extra=keys)
    return figs.save(fig, "data_efficiency", "C7"), rows


def _count_lines(ax, runs, tables):
    """The count bigram's and trigram's test loss at each N (fitted on each seed's pool,
    scored on the same test windows), gray, labelled at their right end: what counting
    reaches with that data."""
    for order, ls in ((BIGRAM, ":"), (TRIGRAM, "-.")):
        points = []
        for n, g in runs.groupby("n_train"):
            settings = baselines.settings_of(g, n_train=True)
            rows = baselines.rows_for(tables, STUDY, **settings) if settings else pd.DataFrame()
            level = baselines.levels(rows, scope="test").get(order)
            if level is not None:
                points.append((n, level))
        if points:
            name = baselines.order_name(order)
            ax.plot(*zip(*points), color="0.45", ls=ls, lw=1.0, marker=".", label=f"_{name}")
            ax.annotate(f"count {name}", xy=points[-1], xytext=(3, 0), textcoords="offset points",
                        fontsize=7, color="0.35", va="center")  # fmt: skip


def _steps_panel(ax, runs, tables, figs):
    """Validation loss against step at the largest N (a training-time curve), with the count
    bigram and trigram on the same validation windows; where tau is known, each model's mean
    steps to it (95% interval over seeds) marked on the tau line: the crossing part (b)
    reads."""
    levels, curves = count_levels(tables, runs, "windows"), tables.get("curves")
    tau = threshold(runs, levels.get(TRIGRAM))
    baselines.draw(ax, levels)
    n1 = int(runs.n_train.max())
    c = pd.DataFrame()
    if curves is not None and not curves.empty:
        c = curves[curves.run.isin(runs[runs.n_train == n1].run)].dropna(subset=["val_loss"])
    for model, g in c.groupby("model"):
        by = g.groupby("step").val_loss
        e = [estimate(v) for _, v in by]
        figs.line(ax, list(by.groups), [x.mean for x in e], [x.lo for x in e],
                  [x.hi for x in e], model=model)  # fmt: skip
    if tau is not None and not c.empty:
        ax.axhline(tau, color="0.15", ls="--", lw=0.9, zorder=1.5,
                   label=f"tau = {tau:.2f} nats/token (part b)")  # fmt: skip
        s = steps_to(runs, curves, tau)
        k = s.model.nunique()
        for i, (model, g) in enumerate(s.groupby("model")):
            e = estimate(g.steps)
            xerr = clipped_yerr([e.mean], [e.lo], [e.hi])
            open_ = bool(g.censored.any())  # some seed never got there: a lower bound
            ax.errorbar(
                [e.mean],
                [tau],
                xerr=xerr,
                marker="v",
                ms=8,
                capsize=3,
                ls="none",
                color=figs.color(model),
                mfc="white" if open_ else figs.color(model),
                zorder=4,
                label=f"_{model} reaches tau",
                transform=offset_copy(
                    ax.transData, ax.figure, y=4 * (i - (k - 1) / 2), units="points"
                ),
            )  # models at one step side by side
    ax.set(xlabel="training step (steps)", ylabel="validation loss (nats/token)",
           title=f"N = {n1}: steps to reach tau")  # fmt: skip
