"""Loss by position in the context (C5; Kaplan et al. 2020, Fig. 7).

Every text run's final evaluation writes the mean held-out loss at each token index t of the
context window (``positions`` table). Kaplan et al. found an LSTM's per-token loss flat after
~100 tokens while a Transformer's kept falling with t. Measured here per run as the *late
gain*: mean loss over positions [knee, knee + w) minus mean loss over the last w positions,
w = (T - knee) / 4, knee = RULE.knee (nats; > 0: the model still profits from context that
far back), then its mean and 95% interval over seeds per model.

A count trigram sees two tokens of context and no more, yet shows a "late gain" on a finite
sample of held-out windows (the text's own positional variation: -0.04..+0.07 nats over
samples, issue 22), >10x the width of the intervals over model seeds. So a late gain counts
only beyond the count trigram's on the same windows, and a difference only when its interval
clears the text's sampling noise: the largest deviation of the trigram's late gain on
another held-out sample from its gain on the models' windows (``seqbench.measure.ngram``,
rows of the group's study). Without those rows the verdict is inconclusive, said so.

Read on the test split (issue 22): the validation split chose each run's lr, so the late gain
a verdict reads comes from each run's loss by position on its test windows (the
``test_position_loss`` of its what=test_set row: the first 1,024 test windows of its data
seed), and the count trigram's from its ``scope=test_position`` rows on the same windows, per
data seed. The trigram's gain is the mean over the data seeds of the group's runs; the noise
is the largest deviation from it of the trigram's gain on any one data seed's test windows or
any validation sample. A run without its test figures makes the verdict inconclusive, naming
the job that measures them (never a fallback to the validation curves, which the figure then
draws, labelled).

Which runs (the group rule): complete causal text runs with unrestricted data of the studies
in SOURCES, in that order: this study's own long-context runs (the GPU profile, T = 1024)
when there are any with an attention model and a recurrence, else the core study's text runs
(T = 256, the CPU profile: the C1 runs serve C5 as well, at no extra cost). Pool-limited
(data_efficiency) and masked (causal_vs_masked) runs are never read. On a swept lr grid the
best lr per (model, T) is kept (``_common.best_of_grid``).
"""

import json

import numpy as np
import pandas as pd

from seqbench.data import TEST_SEQUENCES
from seqbench.report import baselines
from seqbench.report.axes import clipped_yerr, log_axis
from seqbench.report.markdown import md_table
from seqbench.report.stats import difference, estimate, fmt
from seqbench.report.verdict import Rule, Verdict
from seqbench.studies._common import (
    ATTENTION_VS_RECURRENCE,
    TEST_TABLE,
    best_of_grid,
    complete,
    family_of,
    in_family,
    study_of,
    unnamed_text,
)

TITLE = "Loss by position in the context (C5, Kaplan Fig. 7)"
ORDER = 34
DECIDES = ("C5",)
ATTENTION, RECURRENCES = ("attention",), ("recurrent", "scan")
COMPARES = ATTENTION + RECURRENCES  # a model of any other family is named, not compared
STUDY = study_of(__name__)
SOURCES = (STUDY, "core")  # the group rule: the first with both kinds decides
READS = SOURCES  # the stability column perturbs these studies' runs too
RULE = Rule(
    "late gain g = mean loss over positions [{knee}, {knee} + w) minus over the last w, "
    "w = (T - {knee}) / 4 (Kaplan et al. 2020: an LSTM stops improving after ~{knee} tokens), "
    "T >= {min_len}, read on each run's test windows (validation chose the lr); a gain "
    "counts only beyond the add-k count {baseline}'s late gain on the same test windows (mean "
    "over the data seeds), by more than the text's sampling noise (the largest deviation from "
    "it of the {baseline}'s late gain on one data seed's test windows or one validation "
    "sample). supported if the attention model's "
    "g - g_{baseline} clears the noise and its g exceeds every recurrent and scan model's by "
    "more than the noise (95% intervals over seeds), not supported if it is below every one "
    "by more than the noise, nuanced if above some and below others; inconclusive if an "
    "interval reaches into the noise, T < {min_len}, a run's test set or the count baselines "
    "were not measured",
    knee=100,
    min_len=256,
    baseline="trigram",
)
BASELINE = 3  # the order of RULE.baseline
TEST_JOBS = {"core": "core_text_test", STUDY: f"{STUDY}_test"}  # what=test_set of each source
SPLIT_WORDS = {"test": "test", "val": "validation"}


def windows(T: int) -> tuple[range, range] | None:
    """(early, late) positions of the late gain, None when T leaves no room past the knee."""
    w = (T - RULE.knee) // 4
    if w < 1:
        return None
    return range(RULE.knee, RULE.knee + w), range(T - w, T)


def test_positions(tables) -> pd.DataFrame:
    """(run, position, loss) on the test split: each complete what=test_set row's
    ``test_position_loss`` list, by its training run; empty without."""
    test = complete(tables.get(TEST_TABLE))
    if test.empty or "test_position_loss" not in test:
        return pd.DataFrame(columns=["run", "position", "loss"])
    test = test.dropna(subset=["test_position_loss"]).drop_duplicates("train_run", keep="last")
    rows = [
        {"run": r.train_run, "position": t, "loss": float(v)}
        for r in test.itertuples()
        for t, v in enumerate(json.loads(r.test_position_loss))
    ]
    return pd.DataFrame(rows, columns=["run", "position", "loss"])


def positions_of(tables, split: str) -> pd.DataFrame:
    """The loss-by-position rows (run, position, loss) of ``split``: test from the test_set
    rows, val from the final evaluation's ``positions`` table."""
    if split == "test":
        return test_positions(tables)
    return tables.get("positions", pd.DataFrame())


def run_gains(tables, split: str = "val") -> pd.DataFrame:
    """One row per run of the sources with loss by position on ``split``: study, seq_len,
    model, family, seed, late gain."""
    runs, pos = complete(tables["runs"]), positions_of(tables, split)
    if runs.empty or pos is None or pos.empty or "study" not in runs:
        return pd.DataFrame()
    text = runs[(runs.task == "text") & runs.study.isin(SOURCES)]
    if "model.causal" in text:  # only models with a causal switch have the key at all
        text = text[text["model.causal"].ne(False)]
    if "data.n_train" in text:  # a pool of N windows is C7's question, not this one
        text = text[text["data.n_train"].isna()]
    if text.empty:
        return pd.DataFrame()
    text = text.assign(seq_len=text["data.seq_len"].astype(int))
    text = best_of_grid(text, ["study", "seq_len"])
    by_run = dict(tuple(pos[pos.run.isin(text.run)].groupby("run")))
    rows = []
    for _, r in text[text.run.isin(by_run)].iterrows():
        loss = by_run[r.run].set_index("position").loss
        w = windows(int(r.seq_len))
        gain = loss.reindex(w[0]).mean() - loss.reindex(w[1]).mean() if w else np.nan
        keys = ("run", "study", "seq_len", "model", "family", "seed")
        rows.append({k: r[k] for k in keys} | {"gain": gain})
    return pd.DataFrame(rows)


def decisive_group(gains: pd.DataFrame) -> tuple[str, int] | None:
    """(study, T) the verdict reads: the first of SOURCES with an attention model and a
    recurrence, at its longest T."""
    for study in SOURCES:
        g = gains[gains.study == study] if not gains.empty else gains
        if not g.empty and in_family(g, *ATTENTION) and in_family(g, *RECURRENCES):
            T = int(g[g.model.isin(in_family(g, *ATTENTION))].seq_len.max())
            return study, T
    return None


def late_gain(loss: pd.Series, T: int) -> float:
    """Mean loss over the early window minus over the late one (``windows``); nan without."""
    w = windows(T)
    return loss.reindex(w[0]).mean() - loss.reindex(w[1]).mean() if w else np.nan


def group_runs(tables, gains, study: str, T: int) -> pd.DataFrame:
    """The complete training runs behind the gains of (study, T)."""
    g = gains[(gains.study == study) & (gains.seq_len == T)]
    runs = complete(tables["runs"])
    return runs[runs.run.isin(g.run)]


def count_rows(tables, gains) -> pd.DataFrame:
    """The n-gram rows of the decisive group: its study, T, eval batches and batch."""
    chosen = decisive_group(gains) if not gains.empty else None
    settings = baselines.settings_of(group_runs(tables, gains, *chosen)) if chosen else None
    return baselines.rows_for(tables, chosen[0], **settings) if settings else pd.DataFrame()


def count_gain(rows: pd.DataFrame, T: int, split="val", seeds=()) -> dict | None:
    """{gain: the count baseline's late gain on the models' windows, noise: the largest
    deviation from it of its gain on one held-out sample, samples: how many}; None without.
    val: the models' windows are validation sample 0, the other samples the noise. test: the
    gain is the mean over ``seeds`` (the runs' data seeds, each scored on its own test
    windows; every one needed) and the noise reads each seed's test windows and every
    validation sample."""
    on_val = {s: late_gain(x, T) for s, x in baselines.position_loss(rows, BASELINE).items()}
    if split == "val":
        own = on_val.get(baselines.HARNESS, np.nan)
        samples = list(on_val.values())
    else:
        on_test = baselines.position_loss(rows, BASELINE, scope="test_position")
        per_seed = [late_gain(on_test[s], T) for s in seeds if s in on_test]
        own = float(np.mean(per_seed)) if len(per_seed) == len(seeds) > 0 else np.nan
        samples = per_seed + list(on_val.values())
    if not np.isfinite(own):
        return None
    noise = max((abs(g - own) for g in samples if np.isfinite(g)), default=0.0)
    return {"gain": own, "noise": noise, "samples": len(samples)}


def clears(e, noise: float) -> int:
    """+1 / -1 when the interval lies above +noise / below -noise, 0 when it reaches in."""
    return 1 if e.lo > noise else -1 if e.hi < -noise else 0


def verdict(gains: pd.DataFrame, count: dict | None, where=" on the test split"):
    """(verdict, measured, group) from the per-run late gains and the count baseline's late
    gain on the group's windows (``count_gain``), ``where`` naming the split they were read
    on; None without both kinds."""
    chosen = decisive_group(gains)
    if chosen is None:
        return None
    study, T = chosen
    g = gains[(gains.study == study) & (gains.seq_len == T)]
    group = f"{study}, T={T}"
    per_model = {m: estimate(x.gain) for m, x in g.groupby("model")}
    seeds = int(g.groupby("model").seed.nunique().min())
    measured = (
        f"late gain{where} (T={T}): "
        + ", ".join(f"{m} {fmt(e)}" for m, e in per_model.items())
        + f" nats ({seeds} seed{'s' * (seeds > 1)})"
    ) + unnamed_text(g, COMPARES, ATTENTION_VS_RECURRENCE, lambda t: verdict(t, count, where))
    if T < RULE.min_len:
        return "inconclusive", measured + f"; T={T} < {RULE.min_len}: too short to test", group
    if count is None:
        return "inconclusive", measured + f"; {baselines.NOT_MEASURED}", group
    noise = count["noise"]
    measured += (
        f"; count {RULE.baseline} {count['gain']:+.3f}, noise +-{noise:.3f} over "
        f"{count['samples']} held-out samples"
    )
    signs, own, said = [], [], []
    for a in in_family(g, *ATTENTION):
        excess = estimate(g[g.model == a].gain - count["gain"])
        own.append(clears(excess, noise))  # its own late gain, beyond counting's
        said.append(f"{a} - {RULE.baseline} {fmt(excess)}")
        for r in in_family(g, *RECURRENCES):
            d = difference(g[g.model == a].gain, g[g.model == r].gain)
            signs.append(clears(d, noise))
            said.append(f"{a} - {r} {fmt(d)}")
    measured += "; " + ", ".join(said)
    if 0 in signs:
        return "inconclusive", measured, group
    if all(s > 0 for s in signs):
        if all(o > 0 for o in own):
            return "supported", measured, group
        return "inconclusive", measured + f"; no late gain beyond the {RULE.baseline}'s", group
    if all(s < 0 for s in signs):
        return "not supported", measured, group
    return "nuanced", measured, group


def decide(tables) -> tuple[str, str, str] | None:
    """``verdict`` of the decisive group's late gains on the test split and the count
    trigram's on the same test windows. The group is the runs' (their final evaluation's
    curves); a run of it without its test figures makes the verdict inconclusive, naming
    the job, with the validation reading after it, labelled."""
    gains = run_gains(tables)
    chosen = decisive_group(gains) if not gains.empty else None
    if chosen is None:
        return None
    rows, T = count_rows(tables, gains), chosen[1]
    group = gains[(gains.study == chosen[0]) & (gains.seq_len == T)]
    tested = run_gains(tables, "test")
    missing = int((~group.run.isin(tested.run if not tested.empty else [])).sum())
    if missing:
        _, measured, said = verdict(gains, count_gain(rows, T), " on the validation split")
        job = TEST_JOBS.get(chosen[0], "what=test_set")
        return (
            "inconclusive",
            (f"test set not measured for {missing} of {len(group)} runs (job {job}); {measured}"),
            said,
        )
    return verdict(tested, count_gain(rows, T, "test", sorted(set(group.seed))))


def verdicts(tables) -> list[Verdict]:
    result = decide(tables)
    if result is None:
        return []
    v, measured, group = result
    return [Verdict("C5", f"loss by position ({group})", measured, RULE, v)]


def position_curves(tables, bins: int = 40, split: str = "val") -> pd.DataFrame:
    """Held-out loss (of ``split``) against position for the figure, per (study, T, model):
    each run's loss averaged over log-spaced bins of positions (the per-token curve of a few
    hundred held-out windows is noise at this scale; Kaplan et al. plot it on a log axis
    too), then the mean and 95% interval over seeds at each bin's first position."""
    gains = run_gains(tables, split)
    if gains.empty:
        return gains
    runs = gains[["run", "study", "seq_len", "model"]]
    merged = positions_of(tables, split).merge(runs, on="run")
    rows = []
    for (study, T, model), g in merged.groupby(["study", "seq_len", "model"]):
        edges = np.unique(np.geomspace(1, T + 1, bins).astype(int)) - 1  # 0, 1, 2, 3, 5, ...
        g = g.assign(bin=edges[np.searchsorted(edges, g.position, side="right") - 1])
        per_run = g.groupby(["bin", "run"]).loss.mean().reset_index()
        for b, x in per_run.groupby("bin"):
            e = estimate(x.loss)
            rows.append({"study": study, "seq_len": T, "model": model, "position": b,
                         "loss": e.mean, "lo": e.lo, "hi": e.hi, "seeds": e.n})  # fmt: skip
    return pd.DataFrame(rows).assign(family=lambda d: d.model.map(family_of(gains)))


def shown_split(tables, gains) -> str:
    """'test' where every run of ``gains`` has its test figures, else 'val' (said so)."""
    tested = run_gains(tables, "test")
    return "test" if not tested.empty and gains.run.isin(tested.run).all() else "val"


def _split_sentence(split: str, chosen) -> str:
    if split == "test":
        return (
            f"Read on the test split: each run's first {TEST_SEQUENCES:,} test windows of its "
            "data seed "
            "(what=test_set); the count trigram on the same windows, per data seed."
        )
    job = TEST_JOBS.get(chosen[0], "what=test_set") if chosen else "what=test_set"
    return (
        f"**Test set not measured** for every run (job {job}): the curves and gains below "
        "read the validation split, which chose the lr, and decide nothing."
    )


def section(tables, figs) -> str:
    gains = run_gains(tables)
    if gains.empty:
        return "_No completed causal text runs of " + " or ".join(SOURCES) + " yet._"
    chosen = decisive_group(gains)
    split = shown_split(tables, gains)
    seeds = sorted(set(gains.seed))
    counts = (chosen, count_rows(tables, gains), split, seeds) if chosen else None
    gains = run_gains(tables, split)
    curves = position_curves(tables, split=split)
    figure, rows = _figure(curves, gains, counts, figs)
    rule = (
        f"The verdict reads `{chosen[0]}` (T = {chosen[1]}): the first of {', '.join(SOURCES)} "
        "with an attention model and a recurrence."
        if chosen
        else "No group has both an attention model and a recurrence: no verdict."
    )
    return "\n\n".join(
        [
            _split_sentence(split, chosen) + f" {SPLIT_WORDS[split].capitalize()} loss against "
            "the position in the context window (final model, "
            "averaged over log-spaced bins of positions; mean over seeds with its 95% interval "
            "as a band; log x axis as in Kaplan et al. 2020 Fig. 7). Late gain = mean loss "
            f"over [{RULE.knee}, {RULE.knee} + w) minus the last "
            f"w positions, w = (T - {RULE.knee}) / 4: how much a model still gains from "
            f"context past ~{RULE.knee} tokens. " + rule + " The CPU profile trains no runs of "
            "its own for this claim (it reads the core text runs, T = 256); the GPU profile "
            "adds T = 1024 with the lr swept in every cell.",
            figure,
            md_table(pd.DataFrame(rows)),
        ]
    )


ERROR_BARS = {"lw": 1, "ecolor": "0.2", "color": "0.2"}  # grey, caps included


def _binned(loss: pd.Series, T: int, bins: int = 40) -> pd.Series:
    """A per-position loss averaged over the log-spaced bins ``position_curves`` uses."""
    edges = np.unique(np.geomspace(1, T + 1, bins).astype(int)) - 1
    at = edges[np.searchsorted(edges, loss.index.to_numpy(), side="right") - 1]
    return loss.groupby(at).mean()


def _count_curve(ax, counts, study, T):
    """The count trigram's loss by position on the decisive group's windows (gray)."""
    if not counts or counts[0] != (study, T) or counts[1].empty:
        return
    if counts[2] == "test":  # the mean over the data seeds' test windows, as the runs'
        per_seed = baselines.position_loss(counts[1], BASELINE, scope="test_position")
        found = [per_seed[s] for s in counts[3] if s in per_seed]
        loss = pd.concat(found, axis=1).mean(axis=1) if found else None
    else:
        loss = baselines.position_loss(counts[1], BASELINE).get(baselines.HARNESS)
    if loss is not None:
        c = _binned(loss, T)
        ax.plot(c.index + 1, c.values, color="0.45", ls="-.", lw=1.0,
                label=f"count {RULE.baseline}")  # fmt: skip


def _count_band(ax, counts, T):
    """The count trigram's late gain and its noise over held-out samples, as a band."""
    count = count_gain(counts[1], T, counts[2], counts[3]) if counts else None
    if count:
        g, n = count["gain"], count["noise"]
        ax.axhspan(g - n, g + n, color="0.6", alpha=0.25, lw=0,
                   label=f"count {RULE.baseline}: {g:+.3f} +- {n:.3f} (text noise)")  # fmt: skip


def _figure(curves, gains, counts, figs) -> tuple[str, list]:
    """Loss against position per (study, T) with the count trigram's on the decisive
    group's windows, then the late gain per model as bars over the trigram's noise band (the
    figure), and the rows of the late-gain table."""
    groups = list(curves.groupby(["study", "seq_len"]))
    fig, axes = figs.figure(ncols=len(groups) + 1, width=4.6)  # panels per (study, T), gains
    models = sorted(curves.model.unique())
    word = SPLIT_WORDS[counts[2]] if counts else "held-out"
    for ax, ((study, T), g) in zip(axes, groups):
        for i, (model, c) in enumerate(g.groupby("model")):
            figs.line(ax, c.position + 1, c.loss, c.lo, c.hi, model=model, ms=3.5,
                      marker="osD^vP*X"[models.index(model) % 8],
                      markevery=(i % 3, 3))  # fmt: skip
        _count_curve(ax, counts, study, int(T))
        _knee(ax)
        log_axis(ax, "x")
        ax.set(xlabel="position t in the context (tokens)", ylabel=f"{word} loss (nats/token)",
               title=f"{study} runs, T={int(T)}")  # fmt: skip
    rows = _gains_panel(axes[-1], gains, len(models), figs)
    if counts:
        _count_band(axes[-1], counts, counts[0][1])
    # the legend below (the titles keep the top). The end labels are placed once the
    # largest legend has taken its room; the final one leaves out the names they show, so
    # the panels only grow and the labels only move apart
    first = figs.legend(fig, loc="outside lower center", ncol=3)
    for ax in axes[:-1]:
        figs.label_ends(ax)
    first.remove()
    figs.legend(fig, loc="outside lower center", ncol=3)
    return figs.save(fig, "text_positions_loss_by_position", "C5"), rows


def _gains_panel(ax, gains, n_models, figs) -> list[dict]:
    """The late gain per model (and T) as bars with their intervals; the table's rows."""
    rows, ticks = [], []
    pairs = list(gains.groupby(["study", "seq_len"]))
    for k, ((study, T), g) in enumerate(pairs):
        for i, m in enumerate(sorted(g.model.unique())):
            e = estimate(g[g.model == m].gain)
            x = k * (n_models + 1) + i
            ax.bar([x], [e.mean], yerr=clipped_yerr([e.mean], [e.lo], [e.hi]), capsize=3,
                   color=figs.color(m), label=f"_{m}", error_kw=ERROR_BARS)  # fmt: skip
            ticks.append((x, m if len(pairs) == 1 else f"{m}\nT={int(T)}"))
            rows.append({"study": study, "seq_len": int(T), "model": m, "late_gain": fmt(e),
                         "seeds": e.n})  # fmt: skip
    ax.axhline(0.0, color="0.45", lw=0.8, label="0: no late gain")
    ax.set_xticks([x for x, _ in ticks], [t for _, t in ticks], fontsize=7, rotation=30)
    w = windows(int(gains.seq_len.max()))
    ax.set(
        xlabel="model",
        ylabel=f"late gain (nats/token)\n> 0: loss still falls past t = {RULE.knee}",
        title=(
            f"late gain: loss over t in [{w[0][0]}, {w[0][-1] + 1}) minus the last {len(w[1])}"
            if w and len(pairs) == 1
            else "late gain"
        )
        + "\n(< 0: loss higher late; bars: 95% interval over seeds)",
    )
    ax.title.set_fontsize(9)
    return rows


def _knee(ax):
    """The knee (Kaplan: an LSTM stops improving past it), labelled inside the frame."""
    ax.axvline(RULE.knee, color="0.15", ls="--", lw=0.9, zorder=1.5, label=f"t = {RULE.knee}")
    ax.annotate(f"t = {RULE.knee}", xy=(RULE.knee, 0.98), xycoords=("data", "axes fraction"),
                xytext=(-3, 0), textcoords="offset points", ha="right", va="top", fontsize=7,
                color="0.15")  # fmt: skip
