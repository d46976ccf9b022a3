"""Scale (C10): held-out loss against non-embedding parameters N and training compute C, per
family, at one token budget (Kaplan et al. 2020, Fig. 7 left: LSTMs against Transformers).

Every run trains on the same number of tokens (steps x batch x seq_len) of the character-level
text task; sizes are the presets 5xs .. l, matched across families within 10% in N. Per family

    L(N) = L_inf + a N^(-alpha)

is fitted to the mean loss per size (``fit_power_law``: least squares, alpha profiled on a
grid and refined, L_inf in [0, min L]), and alpha gets a 95% bootstrap interval over seeds:
each replicate resamples every size's seeds with replacement and refits. Training FLOPs per
step are counted by seqbench.flops on the model as configured (recurrences through their
unrolled path, same parameters; per batch row, times the batch size: every count is linear
in it), times the steps the run took. Where a cell was trained at several learning rates
(``train.lr`` swept, the GPU variant) the best of the grid by mean held-out loss is kept.
"""

import functools
import math

import numpy as np
import pandas as pd
import torch
from omegaconf import OmegaConf

from seqbench.report import baselines
from seqbench.report.axes import axis_label, clipped_yerr, key_entry, log_axis, reference
from seqbench.report.markdown import md_table
from seqbench.report.stats import LEVEL, difference, estimate, fmt
from seqbench.report.verdict import Rule, Verdict
from seqbench.studies import job_setting
from seqbench.studies._common import best_of_grid, complete, in_family, study_of, unnamed_text

TITLE = "Scale: loss against parameters and compute (C10)"
ORDER = 90
DECIDES = ("C10", "C10*")
STUDY = study_of(__name__)
CLAIMS = {"C10*": "the Transformer's loss falls faster with N than the LSTM's (Kaplan 2020)"}
CPU_SIZES = ("5xs", "4xs", "3xs", "2xs", "xs")  # 30x in N for every family
# the sizes and models the GPU profile trains (profiles.yaml): the section names those a
# profile cut
GPU_SIZES = tuple(job_setting(__name__, "gpu", "model.size").split(","))
GPU_MODELS = tuple(job_setting(__name__, "gpu", "model").split(","))
RULE = Rule(
    "per model, if its best size learned beyond the unigram (held-out loss < {learned:g} x "
    "the unigram cross-entropy; else inconclusive): supported if the largest size's loss is "
    "below the smallest's (interval of the difference over seeds below 0) and no step up in "
    "size raises it (no adjacent difference above 0); nuanced if the largest is better but a "
    "step up raises it; not supported if the largest is worse; inconclusive when the "
    "interval contains 0 or fewer than {min_sizes} sizes were measured",
    min_sizes=3,
    learned=0.9,
)
# the claim names the LSTM (Kaplan et al. compare LSTMs with Transformers): it is looked up
# among the models run, never assumed present
KAPLAN_RULE = Rule(
    "the exponent alpha of L = L_inf + a N^-alpha, fitted per family, bootstrap over seeds: "
    "supported if alpha(attention) - alpha({slow}) has its interval above 0, not supported "
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


def loss_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run of the study at its cell's best rate: model, family, size, seed, N,
    held-out loss, training FLOPs."""
    ok = complete(runs, STUDY)
    if ok.empty or "model.size" not in ok:
        return pd.DataFrame()
    ok = best_of_grid(ok[ok.val_loss.notna()], ["model.size"])
    ok = ok.assign(n=ok.params_non_embedding, loss=ok.val_loss,
                   flops=[flops_per_step(r) * r["step"] for _, r in ok.iterrows()])  # fmt: skip
    ok["unigram"] = ok["unigram_xent"] if "unigram_xent" in ok else np.nan
    return ok[["model", "family", "model.size", "seed", "n", "loss", "flops", "lr", "unigram"]]


def by_size(t: pd.DataFrame, model: str) -> dict:
    """N -> the seeds' losses, for one model (N is its size's parameter count)."""
    g = t[t.model == model]
    return {float(n): list(s.loss) for n, s in g.groupby("n")}


# --- verdicts --------------------------------------------------------------------------------
def improves(sizes: dict, unigram: float = math.nan, flops: dict | None = None) -> tuple:
    """(verdict, measured) for one model: is the largest size better than the smallest, and
    does no step up hurt? ``unigram``: the corpus's unigram cross-entropy (the control);
    ``flops``: N -> training FLOPs, quoted beside N."""
    ns = sorted(sizes)
    if len(ns) < RULE.min_sizes:
        return "inconclusive", f"{len(ns)} sizes"
    best = min(np.mean(v) for v in sizes.values())
    if best >= RULE.learned * unigram:  # a nan unigram (not recorded) passes
        return "inconclusive", (f"failed the control: best loss {best:.3g} >= {RULE.learned:g}"
                                f" x unigram {unigram:.3g}")  # fmt: skip
    d = difference(sizes[ns[-1]], sizes[ns[0]])
    steps = [difference(sizes[b], sizes[a]) for a, b in zip(ns, ns[1:])]
    worse = [f"{int(a)}->{int(b)}" for (a, b), s in zip(zip(ns, ns[1:]), steps) if s.sign > 0]
    seeds = min(len(v) for v in sizes.values())
    measured = (f"loss {fmt(estimate(sizes[ns[0]]))} at N={int(ns[0])} -> "
                f"{fmt(estimate(sizes[ns[-1]]))} at N={int(ns[-1])} ({ns[-1] / ns[0]:.0f}x), "
                f"difference {fmt(d)}, {len(ns)} sizes, {seeds} seeds")  # fmt: skip
    if flops:
        measured += f", training compute {flops[ns[0]]:.2g} -> {flops[ns[-1]]:.2g} FLOPs"
    if worse:
        measured += f"; loss rises from N {', '.join(worse)}"
    if d.sign < 0:
        return ("nuanced" if worse else "supported"), measured
    return ("not supported" if d.sign > 0 else "inconclusive"), measured


def kaplan(t: pd.DataFrame) -> tuple[str, str] | None:
    """(verdict, measured) on alpha(attention) - alpha(LSTM); None without both."""
    slow, att = KAPLAN_RULE.slow, in_family(t, "attention")
    if slow not in set(t.model) or not att:
        return None
    fast = att[0]
    a, b = by_size(t, fast), by_size(t, slow)
    if min(len(a), len(b)) < RULE.min_sizes:
        return None
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
    v = "supported" if lo > 0 else "not supported" if hi < 0 else "inconclusive"
    return v, measured


def verdicts(tables) -> list[Verdict]:
    t = loss_table(tables["runs"])
    if t.empty:
        return []
    out = []
    for fam in sorted(set(t.family)):
        for m in in_family(t, fam):
            g = t[t.model == m]
            flops = g.groupby("n").flops.mean().to_dict()
            v, measured = improves(by_size(t, m), float(g.unigram.median()), flops)
            out.append(Verdict("C10", f"{STUDY} ({m}, {fam}; text, same tokens)", measured,
                               RULE, v))  # fmt: skip
    k = kaplan(t)
    if k is not None:
        said = unnamed_text(t, KAPLAN_COMPARES, {"attention": "attention"}, kaplan)
        out.append(Verdict("C10*", f"{STUDY} (alpha, attention vs lstm)", k[1] + said,
                           KAPLAN_RULE, k[0]))  # fmt: skip
    return out


# --- section ---------------------------------------------------------------------------------
def section(tables, figs) -> str:
    t = loss_table(tables["runs"])
    if t.empty:
        return "_No completed scaling runs._"
    figure, rows = _figure(t, count_levels(tables), figs)
    parts = [
        f"Held-out loss (mean over seeds, 95% interval) of every model at each size, all "
        f"trained on the same {_tokens(tables['runs'])} tokens of character-level text; "
        "left, the line through the points: the fit L_inf + a N^-alpha. Middle: the same runs "
        "against the training FLOPs counted by seqbench.flops. Right: each model's fitted alpha "
        "and the attention - LSTM difference C10* reads, with 95% bootstrap intervals.",
        figure,
        md_table(pd.DataFrame(rows)),
        _profile_note(t),
    ]
    return "\n\n".join(p for p in parts if p)


def count_levels(tables) -> dict:
    """order -> the count n-gram's loss on the held-out windows of this study's runs (its
    ngram rows, seqbench.measure.ngram); {} without them or where the runs' windows differ."""
    runs = complete(tables["runs"], STUDY)
    settings = baselines.settings_of(runs) if not runs.empty else None
    return baselines.levels(baselines.rows_for(tables, STUDY, **settings)) if settings else {}


def _figure(t: pd.DataFrame, levels: dict, figs) -> tuple[str, list]:
    """Loss against N (points and the fitted law) and against compute, with the text's
    unigram cross-entropy and the count bigram's and trigram's loss on the same held-out
    windows; the fitted exponents alpha with their 95% intervals (C10*)."""
    fig, axes = figs.figure(ncols=3, width=4.0)
    rows = []
    for m, g in t.groupby("model"):
        sizes = by_size(t, m)
        n = sorted(sizes)
        est = [estimate(sizes[x]) for x in n]
        mean, lo, hi = (np.array([getattr(e, k) for e in est]) for k in ("mean", "lo", "hi"))
        flops = g.groupby("n").flops.mean().loc[n].values
        yerr = clipped_yerr(mean, lo, hi)
        # left: the measured points and, through them, the fitted law; middle: points joined
        axes[0].errorbar(n, mean, yerr=yerr, capsize=3, label=m, marker="o",
                         **(figs.style(m) | {"ls": "none"}))  # fmt: skip
        axes[1].errorbar(flops, mean, yerr=yerr, capsize=3, label=m, marker="o", **figs.style(m))
        fit = fit_power_law(n, mean)
        grid = np.geomspace(n[0], n[-1], 50)
        curve = fit["l_inf"] + fit["a"] * grid ** -fit["alpha"]
        axes[0].plot(grid, curve, lw=1.0, color=figs.color(m), label="_fit")
        boot = interval(bootstrap_alpha(sizes)) if len(n) >= RULE.min_sizes else (math.nan,) * 2
        rows.append({"model": m, "family": g.family.iloc[0], "sizes": len(n),
                     "N": f"{int(n[0])}-{int(n[-1])}", "alpha": f"{fit['alpha']:.3g}",
                     "alpha 95%": f"[{boot[0]:.3g}, {boot[1]:.3g}]", "L_inf": f"{fit['l_inf']:.3g}",
                     "lr": ", ".join(f"{v:g}" for v in sorted(set(g.lr)))})  # fmt: skip
        rows[-1] |= {"_alpha": fit["alpha"], "_lo": boot[0], "_hi": boot[1]}
    unigram = t.unigram.dropna()
    for ax, what, unit in zip(axes, ("non-embedding parameters N", "training compute"),
                              ("count", "FLOPs")):  # fmt: skip
        log_axis(ax, "x")
        ax.set(
            xlabel=axis_label(what, unit),
            ylabel=axis_label("held-out loss", "nats/token"),
        )
        if len(unigram):  # the best a model without context can do
            reference(ax, float(unigram.median()), f"unigram {unigram.median():.2f}")
        baselines.draw(ax, levels)  # what counting one or two tokens of context reaches
    axes[0].set_title("against parameters (1 token = 1 character)", fontsize=10)
    axes[1].set_title("against training compute", fontsize=10)
    _alpha_panel(axes[2], t, rows, figs)
    keys = [key_entry("fit L∞ + a N^-α (left)", lw=1.0),
            key_entry("bars: 95% interval over seeds", ls="", marker="|", ms=8)]  # fmt: skip
    figs.legend(fig, extra=keys)
    md = figs.save(fig, "scaling_loss_vs_n_and_flops", decides=("C10", "C10*"))
    return md, [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]


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
