"""Scale (C10): test loss against non-embedding parameters N and training compute C, per
family (Kaplan et al. 2020: Fig. 7 left, LSTMs against Transformers; the compute envelope).

Every figure and verdict reads the TEST split (issue 22): each run's ``test_loss``
(``what=test_set``, job ``scaling_test``, ``scaling_long_test`` for the 4x runs: the trained
weights on 1,024 test windows of the run's data seed), beside the count n-grams' ``scope=test``
rows on the same windows. Selection (the lr calibrated on the control size, the best of a
swept grid) reads the validation loss. A run without its test figure makes its model's
verdict ``inconclusive`` and names the job: never a fallback to validation.

Every size trains on the same number of tokens (steps x batch x seq_len) of the
character-level text task, at every budget the runs have (1x; the full profile adds 4x the
steps: ``BUDGETS = "all"``, so the report hands this study every budget at once); sizes are
the presets 5xs .. l, matched across families within 10% in N. C10 is read per model on the
loss-versus-compute envelope: the (size, budget) cells whose loss is below every cell of less
compute; "larger is better" holds where the envelope's end is made by the largest size (a
larger size under-trained at a fixed budget is not evidence against it when a longer budget
puts it on the envelope). A change of depth between sizes (n_layers) is stated. Per family

    L(N) = L_inf + a N^(-alpha)

is fitted to the mean loss per size (``fit_power_law``: least squares, alpha profiled on a
grid and refined, L_inf in [0, min L]), and alpha gets a 95% bootstrap interval over seeds:
each replicate resamples every size's seeds with replacement and refits. Training FLOPs per
step are counted by seqbench.flops on the model as configured (recurrences through their
unrolled path, same parameters; per batch row, times the batch size: every count is linear
in it), times the steps the run took. Where a cell was trained at several learning rates
(``train.lr`` swept, the GPU variant) the best of the grid by mean validation loss is kept.
"""

import functools
import math

import numpy as np
import pandas as pd
import torch
from omegaconf import OmegaConf

from seqbench.report import baselines
from seqbench.report.axes import axis_label, clipped_yerr, key_entry, log_axis
from seqbench.report.markdown import md_table
from seqbench.report.stability import BUDGET, setting
from seqbench.report.stats import LEVEL, difference, estimate, fmt
from seqbench.report.verdict import Rule, Verdict
from seqbench.studies import job_setting
from seqbench.studies._common import (
    best_of_grid,
    complete,
    in_family,
    study_of,
    unnamed_text,
    with_test,
)

TITLE = "Scale: loss against parameters and compute (C10)"
ORDER = 90
DECIDES = ("C10", "C10*")
STUDY = study_of(__name__)
BUDGETS = "all"  # the envelope reads every budget at once (seqbench.report.stability.own)
CLAIMS = {"C10*": "the Transformer's loss falls faster with N than the LSTM's (Kaplan 2020)"}
CPU_SIZES = ("5xs", "4xs", "3xs", "2xs", "xs")  # 30x in N for every family
# the sizes and models the GPU profile trains (profiles.yaml): the section names those a
# profile cut
GPU_SIZES = tuple(job_setting(__name__, "gpu", "model.size").split(","))
GPU_MODELS = tuple(job_setting(__name__, "gpu", "model").split(","))
RULE = Rule(
    "per model, its runs at every size and budget read on the loss-versus-compute envelope "
    "of their test loss (Kaplan et al. 2020: the (size, budget) cells whose mean loss is "
    "below that of every cell of less compute), if its best cell learned beyond the unigram "
    "(test loss < {learned:g} x the count unigram's on the same test windows; else "
    "inconclusive, as where a run's test set or the count baselines were not measured): "
    "supported if the envelope falls (its end below its start: interval of the difference "
    "over seeds below 0) and its end is made by the largest size, below every smaller size's "
    "best cell; nuanced if it "
    "falls but ends at a smaller size that the largest size's best cell does not reach "
    "(larger is better only up to that size at these budgets); not supported if the cell of "
    "most compute is worse than that of least; inconclusive when an interval contains 0 or "
    "fewer than {min_sizes} sizes were measured. A change of depth between sizes is stated",
    min_sizes=3,
    learned=0.9,
)
# the claim names the LSTM (Kaplan et al. compare LSTMs with Transformers): it is looked up
# among the models run, never assumed present
KAPLAN_RULE = Rule(
    "the exponent alpha of L = L_inf + a N^-alpha, L the test loss, fitted per family at one "
    "token budget (the longest at which both were trained at every size), bootstrap over "
    "seeds (inconclusive where a run's test set was not measured): supported if "
    "alpha(attention) - alpha({slow}) has its interval above 0, not supported "
    "if below 0, inconclusive if it contains 0",
    slow="lstm",
)
KAPLAN_COMPARES = ("attention", "recurrent")  # the LSTM's family; any other is named
ALPHAS = np.geomspace(1e-3, 3.0, 300)  # the profile grid; refined around its best point
RESAMPLES = 1000


# --- the power law -------------------------------------------------------------------------------
def _profile(x, y, alphas):
    """For each curve y [R, n] and each alpha of ``alphas`` ([G] or [R, G]): the least-squares
    (L_inf, a) of y = L_inf + a x^-alpha with L_inf in [0, min y], and the squared error;
    each [R, G]. An alpha whose best a is <= 0 (no falling law) gets an infinite error."""
    z = x ** -np.asarray(alphas)[..., None]  # [(R,) G, n]
    ym, zm = y.mean(-1, keepdims=True), z.mean(-1)  # [R, 1], [(R,) G]
    zc = z - zm[..., None]
    slope = (zc * (y - ym)[:, None, :]).sum(-1) / (zc**2).sum(-1)  # [R, G] least squares
    c = np.clip(ym - slope * zm, 0.0, y.min(-1, keepdims=True))
    a = ((y[:, None, :] - c[..., None]) * z).sum(-1) / (z**2).sum(-1)  # again, L_inf clipped
    sse = ((c[..., None] + a[..., None] * z - y[:, None, :]) ** 2).sum(-1)
    return c, a, np.where((slope > 0) & (a > 0), sse, np.inf)


def fit_many(n, losses) -> dict:
    """The fit of every curve of ``losses`` [R, len(n)] at once: {l_inf, a, alpha}, each [R].
    alpha is profiled on ALPHAS, then refined between the grid's neighbours of its best; a
    curve that does not fall with N gets alpha 0, a 0 and l_inf its mean."""
    n0 = float(np.min(n))
    x, y = np.asarray(n, float) / n0, np.atleast_2d(np.asarray(losses, float))  # scale-free
    _, _, sse = _profile(x, y, ALPHAS)
    i = sse.argmin(1)  # [R]
    lo, hi = ALPHAS[np.maximum(i - 1, 0)], ALPHAS[np.minimum(i + 1, len(ALPHAS) - 1)]
    fine = lo[:, None] + (hi - lo)[:, None] * np.linspace(0, 1, 201)  # [R, 201]
    c, a, sse2 = _profile(x, y, fine)
    j = sse2.argmin(1)
    rows = np.arange(len(y))
    ok = np.isfinite(sse).any(1)
    alpha = np.where(ok, fine[rows, j], 0.0)
    return {
        "l_inf": np.where(ok, c[rows, j], y.mean(1)),
        "a": np.where(ok, a[rows, j] * n0**alpha, 0.0),  # back to N in its own units
        "alpha": alpha,
    }


def fit_power_law(n, loss) -> dict:
    """{l_inf, a, alpha}: L(N) = l_inf + a N^-alpha fitted to the points (n, loss)."""
    return {k: float(v[0]) for k, v in fit_many(n, [loss]).items()}


def bootstrap_alpha(by_size: dict, seed: int = 0) -> np.ndarray:
    """alpha of RESAMPLES refits, each on the means of every size's seeds resampled with
    replacement. ``by_size``: N -> losses of its seeds."""
    rng = np.random.default_rng(seed)
    ns = sorted(by_size)
    means = []
    for n in ns:  # [RESAMPLES] means of this size's resampled seeds
        v = np.asarray(by_size[n], float)
        means.append(v[rng.integers(0, len(v), (RESAMPLES, len(v)))].mean(1))
    return fit_many(ns, np.stack(means, axis=1))["alpha"]  # [RESAMPLES]


def interval(samples) -> tuple[float, float]:
    return tuple(float(q) for q in np.quantile(samples, [(1 - LEVEL) / 2, (1 + LEVEL) / 2]))


# --- tables ----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=256)
def _flops_per_step(model_yaml: str, vocab_size: int, seq_len: int, batch_size: int) -> int:
    from seqbench.config import build_model
    from seqbench.flops import train_step_flops

    node = OmegaConf.create(model_yaml)
    if node.get("impl") == "fused":  # the fused kernel is one opaque op; same arithmetic
        node.impl = "unrolled"
    torch.manual_seed(0)
    model = build_model(node, vocab_size, "cpu")
    tokens = torch.zeros(1, seq_len, dtype=torch.long)  # [1, T]: one batch row
    return train_step_flops(model, tokens, tokens) * batch_size


def _plain(v):
    """A value of a runs-table cell as the config had it: numpy scalars as Python ones, and
    integral floats as ints (a column with gaps is float; every float key accepts an int)."""
    v = v.item() if hasattr(v, "item") else v
    return int(v) if isinstance(v, float) and v.is_integer() else v


def flops_per_step(row) -> int:
    """FLOPs of one training step of a run, from its model config (the runs table's
    ``model.*`` columns; a key another model has, empty here, is left out)."""
    model = {
        k.split(".", 1)[1]: _plain(v)
        for k, v in row.items()
        if str(k).startswith("model.") and not (isinstance(v, float) and math.isnan(v))
    }
    return _flops_per_step(OmegaConf.to_yaml(OmegaConf.create(model)), int(row["vocab_size"]),
                           int(row["data.seq_len"]), int(row["train.batch_size"]))  # fmt: skip


def loss_table(tables) -> pd.DataFrame:
    """One row per run of the study at its cell's best rate (chosen on the validation loss):
    model, family, size, seed, N, budget (train.budget; 1 before the key), depth (n_layers
    as built), test loss (``loss``: NaN where the run's test set was not measured), training
    FLOPs."""
    ok = complete(tables["runs"], STUDY)
    if ok.empty or "model.size" not in ok:
        return pd.DataFrame()
    ok = with_test(ok.assign(budget=setting(ok, BUDGET, 1)), tables, STUDY)
    ok = best_of_grid(ok[ok.val_loss.notna()], ["model.size", "budget"])
    depth = ok.get("hp_n_layers", ok.get("model.n_layers", pd.Series(np.nan, ok.index)))
    ok = ok.assign(n=ok.params_non_embedding, loss=ok.test_loss, depth=depth,
                   flops=[flops_per_step(r) * r["step"] for _, r in ok.iterrows()])  # fmt: skip
    return ok[["run", "model", "family", "model.size", "seed", "n", "budget", "depth", "loss",
               "flops", "lr"]]  # fmt: skip


def untested(t: pd.DataFrame) -> str:
    """'test set not measured for 3 of 30 runs (job scaling_long_test, what=test_set)': the
    rows of ``t`` without a test loss and the job that measures them; '' when none."""
    missing = t[t.loss.isna()]
    if missing.empty:
        return ""
    jobs = sorted({f"{STUDY}_long_test" if b > 1 else f"{STUDY}_test" for b in missing.budget})
    return (f"test set not measured for {len(missing)} of {len(t)} runs (job "
            f"{', '.join(jobs)}, what=test_set)")  # fmt: skip


def by_size(t: pd.DataFrame, model: str) -> dict:
    """N -> the seeds' losses, for one model (N is its size's parameter count)."""
    g = t[t.model == model]
    return {float(n): list(s.loss) for n, s in g.groupby("n")}


# --- verdicts --------------------------------------------------------------------------------
def cells(t: pd.DataFrame, model: str) -> pd.DataFrame:
    """One row per (size, budget) of one model: N, size, budget, depth, mean training FLOPs,
    the seeds' losses (a list) and their mean."""
    g = t[t.model == model]
    rows = [
        {"n": n, "size": x["model.size"].iloc[0], "budget": b, "depth": x.depth.iloc[0],
         "flops": float(x.flops.mean()), "losses": list(x.loss), "mean": float(x.loss.mean())}
        for (n, b), x in g.groupby(["n", "budget"])
    ]  # fmt: skip
    return pd.DataFrame(rows).sort_values(["flops", "n"], ignore_index=True)


def envelope(c: pd.DataFrame) -> pd.DataFrame:
    """Kaplan's envelope: the cells whose mean loss is below that of every cell of less
    compute, in compute order (the lowest loss reached at each compute)."""
    keep = c["mean"] < c["mean"].cummin().shift(fill_value=np.inf)
    return c[keep]


def _cell(r) -> str:
    return f"{r['size']} {_budget(r['budget'])} {r['mean']:.3g}"


def _budget(b) -> str:
    return f"{b:g}x"


def depth_text(c: pd.DataFrame) -> str:
    """'; depth 1 -> 2 layers between 3xs and 2xs' for every change of depth between adjacent
    sizes (read from the runs' n_layers): a size step that is also a depth step is two
    changes at once. '' without a change or without the depth."""
    by = c.drop_duplicates("n").sort_values("n")
    steps = [
        f"depth {int(a.depth)} -> {int(b.depth)} layers between {a['size']} and {b['size']}"
        for (_, a), (_, b) in zip(by.iterrows(), by.iloc[1:].iterrows())
        if pd.notna(a.depth) and pd.notna(b.depth) and a.depth != b.depth
    ]
    return "".join(f"; {s}" for s in steps)


def on_envelope(c: pd.DataFrame, unigram: float = math.nan) -> tuple[str, str]:
    """(verdict, measured) for one model's cells (``cells``) read on their loss-versus-
    compute envelope: does it fall, and is its end (the lowest loss) made by the largest
    size? ``unigram``: the count unigram's test loss on the same windows (the control)."""
    ns = sorted(set(c.n))
    if len(ns) < RULE.min_sizes:
        return "inconclusive", f"{len(ns)} sizes"
    if c["mean"].min() >= RULE.learned * unigram:  # nan: no control asked (verdicts asks one)
        return "inconclusive", (f"failed the control: best test loss {c['mean'].min():.3g} >= "
                                f"{RULE.learned:g} x count unigram {unigram:.3g}")  # fmt: skip
    env = envelope(c)
    first, last, most = env.iloc[0], env.iloc[-1], c.iloc[-1]
    seeds = min(len(v) for v in c.losses)
    budgets = ", ".join(_budget(b) for b in sorted(set(c.budget)))
    path = " -> ".join(map(_cell, env.to_dict("records")))
    measured = (f"test-loss envelope (lowest loss at each compute) {path}, "
                f"{first.flops:.2g} -> {last.flops:.2g} FLOPs; {len(ns)} sizes at {budgets} the "
                f"budget, {seeds} seeds{depth_text(c)}")  # fmt: skip
    if difference(most.losses, first.losses).sign > 0:
        return "not supported", measured + (
            f"; the most compute ({_cell(most)}) is worse than the least ({_cell(first)})"
        )
    if len(env) < 2 or difference(last.losses, first.losses).sign >= 0:
        return "inconclusive", measured + "; the envelope does not fall beyond its interval"
    top = c[c.n == ns[-1]].sort_values("mean").iloc[0]  # the largest size at its best budget
    if last.n == ns[-1]:
        rival = c[c.n < ns[-1]].sort_values("mean").iloc[0]
        d = difference(last.losses, rival.losses)
        measured += f"; the largest size makes its end: {fmt(d)} against {_cell(rival)}"
        return ("supported" if d.sign < 0 else "inconclusive"), measured
    d = difference(top.losses, last.losses)
    measured += (f"; its end is {last['size']}, not the largest size: {_cell(top)}, "
                 f"{fmt(d)} above it (larger is better up to {last['size']})")  # fmt: skip
    return ("nuanced" if d.sign > 0 else "inconclusive"), measured


def read_budget(t: pd.DataFrame, models) -> float | None:
    """The longest budget at which every one of ``models`` has RULE.min_sizes sizes: where
    C10*'s one-token-budget comparison is read (nearest to Kaplan's converged runs)."""
    ok = [b for b, g in t.groupby("budget")
          if all(g[g.model == m].n.nunique() >= RULE.min_sizes for m in models)]  # fmt: skip
    return max(ok) if ok else None


def kaplan(t: pd.DataFrame) -> tuple[str, str] | None:
    """(verdict, measured) on alpha(attention) - alpha(LSTM) at one budget (``read_budget``:
    the longest both have; any other budget's verdict named beside it); None without both."""
    slow, att = KAPLAN_RULE.slow, in_family(t, "attention")
    if slow not in set(t.model) or not att:
        return None
    budget = read_budget(t, (att[0], slow))
    if budget is None:
        return None
    v, measured = _kaplan_at(t[t.budget == budget], att[0], slow)
    measured += f" (at {_budget(budget)} the budget)"
    for b in sorted(set(t.budget) - {budget}):
        if read_budget(t[t.budget == b], (att[0], slow)) is not None:
            other = _kaplan_at(t[t.budget == b], att[0], slow)[0]
            measured += f"; at {_budget(b)} the budget: {other}" if other != v else ""
    return v, measured


def _kaplan_at(t: pd.DataFrame, fast: str, slow: str) -> tuple[str, str]:
    """C10* at one budget: the bootstrap interval of alpha(fast) - alpha(slow); inconclusive
    where a run of either lacks its test figure."""
    missing = untested(t[t.model.isin([fast, slow])])
    if missing:
        return "inconclusive", missing
    a, b = by_size(t, fast), by_size(t, slow)
    da, db = bootstrap_alpha(a), bootstrap_alpha(b, seed=1)
    lo, hi = interval(da - db)
    fa, fb = (
        fit_power_law(sorted(a), [np.mean(a[n]) for n in sorted(a)]),
        fit_power_law(sorted(b), [np.mean(b[n]) for n in sorted(b)]),
    )
    ia, ib = interval(da), interval(db)
    measured = (f"alpha {fast} {fa['alpha']:.3g} [{ia[0]:.3g}, {ia[1]:.3g}], {slow} "
                f"{fb['alpha']:.3g} [{ib[0]:.3g}, {ib[1]:.3g}]; difference "
                f"{fa['alpha'] - fb['alpha']:.3g} [{lo:.3g}, {hi:.3g}]")  # fmt: skip
    seeds = min(len(v) for v in [*a.values(), *b.values()])
    measured += f", {seeds} seed{'s' if seeds > 1 else ''}"
    if seeds < 2:  # resampling one seed gives no interval at all
        return "inconclusive", measured
    return ("supported" if lo > 0 else "not supported" if hi < 0 else "inconclusive"), measured


def model_verdict(t: pd.DataFrame, model: str, levels: dict) -> tuple[str, str]:
    """C10 for one model on its test losses: inconclusive, naming what is missing, where a run
    has no test figure or the count unigram (the control) was not measured."""
    missing = untested(t[t.model == model])
    if missing:
        return "inconclusive", missing
    if 1 not in levels:
        return "inconclusive", baselines.NOT_MEASURED
    return on_envelope(cells(t, model), levels[1])


def verdicts(tables) -> list[Verdict]:
    t = loss_table(tables)
    if t.empty:
        return []
    out, levels = [], count_levels(tables)
    for fam in sorted(set(t.family)):
        for m in in_family(t, fam):
            v, measured = model_verdict(t, m, levels)
            out.append(Verdict("C10", f"{STUDY} ({m}, {fam}; text, loss-compute envelope)",
                               measured, RULE, v))  # fmt: skip
    k = kaplan(t)
    if k is not None:
        said = unnamed_text(t, KAPLAN_COMPARES, {"attention": "attention"}, kaplan)
        out.append(Verdict("C10*", f"{STUDY} (alpha, attention vs lstm)", k[1] + said,
                           KAPLAN_RULE, k[0]))  # fmt: skip
    return out


# --- section ---------------------------------------------------------------------------------
def section(tables, figs) -> str:
    t = loss_table(tables)
    if t.empty:
        return "_No completed scaling runs._"
    missing, t = untested(t), t.dropna(subset=["loss"])
    if t.empty:
        return f"_No scaling run with a test figure yet: {missing}._"
    figure, rows = _figure(t, count_levels(tables), figs)
    budget = _budget(_fit_budget(t))
    parts = [
        f"Test loss (the test split: each run's trained weights on test windows of its own "
        f"data seed that no selection saw; mean over seeds, 95% interval) of every model at "
        f"each size, every "
        f"size trained on the same tokens at each budget ({_tokens(tables['runs'])} tokens of "
        f"character-level text); left, at {budget} the budget, the line through the points: "
        "the fit L_inf + a N^-alpha. Middle: every (size, budget) cell against the training "
        "FLOPs counted by seqbench.flops (filled: the longest budget, hollow: shorter ones), "
        "and each model's envelope, the lowest loss reached at each compute, that C10 reads. "
        f"Right: each model's fitted alpha at {budget} the budget and the attention - LSTM "
        "difference C10* reads, with 95% bootstrap intervals. Count unigram, bigram and trigram: "
        "their loss on the same test windows." + (f" Not drawn: {missing}." if missing else ""),
        figure,
        md_table(pd.DataFrame(rows)),
        _profile_note(t),
    ]
    return "\n\n".join(p for p in parts if p)


def count_levels(tables) -> dict:
    """order -> the count n-gram's loss on the test windows this study's runs are scored on
    (its ngram rows, ``scope=test``, averaged over the runs' data seeds; seqbench.measure.
    ngram); {} without them or where the runs' settings differ."""
    runs = complete(tables["runs"], STUDY)
    settings = baselines.settings_of(runs) if not runs.empty else None
    if settings is None:
        return {}
    rows = baselines.rows_for(tables, STUDY, **settings)
    if not rows.empty:  # the data seeds the runs were scored on
        rows = rows[rows["sample"].isin(runs.seed)]
    return baselines.levels(rows, scope="test")


def _figure(t: pd.DataFrame, levels: dict, figs) -> tuple[str, list]:
    """Test loss against N (points and the fitted law) and against compute, with the count
    unigram's, bigram's and trigram's loss on the same test windows; the fitted exponents
    alpha with their 95% intervals (C10*)."""
    fig, axes = figs.figure(ncols=3, width=4.0)
    rows, whole, t = [], t, t[t.budget == _fit_budget(t)]
    for m, g in t.groupby("model"):
        sizes = by_size(t, m)
        n = sorted(sizes)
        est = [estimate(sizes[x]) for x in n]
        mean, lo, hi = (np.array([getattr(e, k) for e in est]) for k in ("mean", "lo", "hi"))
        yerr = clipped_yerr(mean, lo, hi)
        # left: the measured points and, through them, the fitted law
        axes[0].errorbar(n, mean, yerr=yerr, capsize=3, label=m, marker="o",
                         **(figs.style(m) | {"ls": "none"}))  # fmt: skip
        fit = fit_power_law(n, mean)
        grid = np.geomspace(n[0], n[-1], 50)
        curve = fit["l_inf"] + fit["a"] * grid ** -fit["alpha"]
        axes[0].plot(grid, curve, lw=1.0, color=figs.color(m), label="_fit")
        boot = interval(bootstrap_alpha(sizes)) if len(n) >= RULE.min_sizes else (math.nan,) * 2
        rows.append({"model": m, "family": g.family.iloc[0], "budget": _budget(g.budget.iloc[0]),
                     "sizes": len(n),
                     "N": f"{int(n[0])}-{int(n[-1])}", "alpha": f"{fit['alpha']:.3g}",
                     "alpha 95%": f"[{boot[0]:.3g}, {boot[1]:.3g}]", "L_inf": f"{fit['l_inf']:.3g}",
                     "lr": ", ".join(f"{v:g}" for v in sorted(set(g.lr)))})  # fmt: skip
        rows[-1] |= {"_alpha": fit["alpha"], "_lo": boot[0], "_hi": boot[1]}
    for ax, what, unit in zip(axes, ("non-embedding parameters N", "training compute"),
                              ("count", "FLOPs")):  # fmt: skip
        log_axis(ax, "x")
        ax.set(
            xlabel=axis_label(what, unit),
            ylabel=axis_label("test loss", "nats/token"),
        )
        # what counting reaches with no context (the control), one or two tokens of it
        baselines.draw(ax, levels, orders=(1, 2, 3))
    axes[0].set_title("against parameters (test split)", fontsize=10)
    axes[1].set_title("against compute (test split)", fontsize=10)
    _compute_panel(axes[1], whole, figs)
    _alpha_panel(axes[2], t, rows, figs)
    keys = [key_entry("fit L∞ + a N^-α (left); envelope (middle)", lw=1.0),
            key_entry("bars: 95% interval over seeds", ls="", marker="|", ms=8)]  # fmt: skip
    figs.legend(fig, extra=keys)
    md = figs.save(fig, "scaling_loss_vs_n_and_flops", decides=("C10", "C10*"))
    return md, [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]


def _fit_budget(t: pd.DataFrame) -> float:
    """The budget the fit and alpha are drawn at: C10*'s (``read_budget``) where every model
    has enough sizes, else the longest."""
    return read_budget(t, sorted(set(t.model))) or float(t.budget.max())


def _compute_panel(ax, t: pd.DataFrame, figs):
    """Every (size, budget) cell of each model against its training FLOPs (filled: the
    longest budget, hollow: shorter ones; 95% intervals over seeds) and the model's envelope
    through the cells that make it (``envelope``): what C10 reads."""
    for m in sorted(set(t.model)):
        c = cells(t, m)
        for b, x in c.groupby("budget"):
            e = [estimate(v) for v in x.losses]
            mean = [v.mean for v in e]
            filled = b == t.budget.max()
            ax.errorbar(x.flops, mean, yerr=clipped_yerr(mean, [v.lo for v in e],
                        [v.hi for v in e]), capsize=3, marker="o", ls="none",
                        color=figs.color(m), mfc=figs.color(m) if filled else "white",
                        label=m if filled else "_")  # fmt: skip
        env = envelope(c)
        ax.plot(env.flops, env["mean"], lw=1.2, color=figs.color(m), label="_envelope")


def _alpha_panel(ax, t, rows, figs):
    """Each model's fitted alpha with its bootstrap interval, and the difference the C10*
    verdict reads (attention - LSTM, 95% interval against 0)."""
    names = [r["model"] for r in rows]
    for i, r in enumerate(rows):
        ax.errorbar([r["_alpha"]], [i], xerr=clipped_yerr([r["_alpha"]], [r["_lo"]], [r["_hi"]]),
                    marker="o", capsize=3, ls="none", color=figs.color(r["model"]),
                    label=r["model"])  # fmt: skip
    slow, att = KAPLAN_RULE.slow, in_family(t, "attention")
    if slow in names and att and att[0] in names:
        a, b = by_size(t, att[0]), by_size(t, slow)
        if min(len(a), len(b)) >= RULE.min_sizes:  # as kaplan() draws it
            lo, hi = interval(bootstrap_alpha(a) - bootstrap_alpha(b, seed=1))
            d = rows[names.index(att[0])]["_alpha"] - rows[names.index(slow)]["_alpha"]
            ax.errorbar([d], [len(names)], xerr=[[max(d - lo, 0)], [max(hi - d, 0)]],
                        marker="D", capsize=3, ls="none", color="0.2",
                        label=f"difference {att[0]} - {slow} (C10*)")  # fmt: skip
            names.append(f"difference\n{att[0]} - {slow}")
            ax.axvline(0.0, color="0.45", ls=":", lw=0.9, label="α difference 0")
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_ylim(-0.7, len(names) - 0.3)
    ax.set(xlabel="fitted exponent α (no unit)", ylabel="model",
           title="fitted α of L(N) = L∞ + a N^-α")  # fmt: skip
    ax.title.set_fontsize(10)


def _tokens(runs) -> str:
    ok = complete(runs, STUDY)
    per = ok["train.steps"] * ok["train.batch_size"] * ok["data.seq_len"]
    return ", ".join(f"{int(v):,}" for v in sorted(set(per.dropna())))


def _profile_note(t: pd.DataFrame) -> str:
    sizes = sorted(set(t["model.size"]), key=lambda s: GPU_SIZES.index(s) if s in GPU_SIZES else 99)
    cut = [s for s in GPU_SIZES if s not in sizes]
    unrun = [m for m in GPU_MODELS if m not in set(t.model)]
    lrs = "one rate per model" if t.groupby("model").lr.nunique().max() == 1 else "best of grid"
    return (f"Sizes measured: {', '.join(sizes)}; learning rate: {lrs} (calibrated on the "
            "control size, seed 0, `train.lr_grid`, and reused at every size; the GPU variant "
            "that sweeps `train.lr` in every cell keeps each cell's best)."
            + (f" Not measured here (the GPU profile's larger sizes): {', '.join(cut)}."
               if cut else "")
            + (f" Models left to the GPU profile (the CPU bench's budget): {', '.join(unrun)}."
               if unrun else ""))  # fmt: skip
