"""Truncated BPTT against random windows (ours, C1*): how a recurrent LM reads its corpus.

seqbench's default reads text as random windows, each from the zero state. Recurrent language
models are trained and published another way (Zaremba et al. 2014; pytorch/examples'
word_language_model): the corpus cut into B contiguous columns and read in order, one window
of seq_len after the other, the state carried across windows and detached (truncated BPTT);
evaluation reads the whole held-out stream the same way. ``data.stream=true`` is that
protocol. Two arms, everything else equal (the same LSTM, corpus, tokenizer, steps, batch and
so tokens, the studies' AdamW recipe), seeds 0-2:

    random   data.stream=false: trained and evaluated on random windows, fresh state each
    stream   data.stream=true: trained on the stream, state carried; the held-out loss over
             the whole validation stream, state carried

Each arm is evaluated the way it was trained, so the comparison is between protocols: does
the carried state (context beyond the window, and windows read in order rather than
shuffled) buy a lower held-out loss at equal tokens? Control: each arm must end below
RULE.learned x the unigram cross-entropy, or it has not learned enough for the comparison to
mean anything.
"""

import numpy as np
import pandas as pd

from seqbench.report import baselines
from seqbench.report.axes import axis_label, clipped_yerr, reference
from seqbench.report.markdown import md_table
from seqbench.report.stats import difference, estimate, fmt
from seqbench.report.verdict import Rule, Verdict
from seqbench.studies._common import complete, study_of

TITLE = "Truncated BPTT against random windows (C1*)"
ORDER = 12
DECIDES = ("C1*",)
STUDY = study_of(__name__)
CLAIMS = {
    "C1*": "a recurrent LM trained on its corpus as one stream, the state carried between "
    "windows (truncated BPTT), ends with a lower held-out loss than on random windows at "
    "equal tokens"
}
RULE = Rule(
    "supported if the 95% interval over seeds of (random - stream) held-out loss lies above "
    "0, not supported if below 0, inconclusive if it contains 0, if an arm has fewer than "
    "{min_seeds} seeds, or if an arm ends above {learned} x the unigram cross-entropy",
    min_seeds=2,
    learned=0.9,
)
ARMS = {False: "random", True: "stream"}


def arm_runs(tables) -> pd.DataFrame:
    """The study's complete runs, with an ``arm`` column (random / stream)."""
    runs = complete(tables.get("runs"), STUDY)
    if runs.empty or "data.stream" not in runs:
        return pd.DataFrame()
    streamed = runs["data.stream"].map(lambda v: str(v).lower() == "true")
    return runs.assign(arm=streamed.map(ARMS))


def compare(runs: pd.DataFrame) -> list[dict]:
    """Per model: each arm's held-out loss (mean, interval, seeds) and random - stream."""
    out = []
    if runs.empty:
        return out
    for model, g in runs.groupby("model"):
        arms = {a: g[g.arm == a] for a in ARMS.values()}
        if any(a.empty for a in arms.values()):
            continue
        loss = {a: r.val_loss.astype(float) for a, r in arms.items()}
        unigram = float(g.unigram_xent.astype(float).mean())
        out.append(
            {
                "model": model,
                "random": estimate(loss["random"]),
                "stream": estimate(loss["stream"]),
                "diff": difference(loss["random"], loss["stream"]),
                "seeds": min(len(v) for v in loss.values()),
                "unigram": unigram,
                "learned": all(v.max() < RULE.learned * unigram for v in loss.values()),
            }
        )
    return out


def decide(c: dict) -> str:
    if c["seeds"] < RULE.min_seeds or not c["learned"]:
        return "inconclusive"
    return {1: "supported", -1: "not supported", 0: "inconclusive"}[c["diff"].sign]


def verdicts(tables) -> list[Verdict]:
    out = []
    for c in compare(arm_runs(tables)):
        measured = (
            f"{c['model']}: held-out loss random {fmt(c['random'])}, stream {fmt(c['stream'])} "
            f"nats; random - stream {fmt(c['diff'])} ({c['seeds']} seeds; unigram "
            f"cross-entropy {c['unigram']:.2f})"
        )
        out.append(Verdict("C1*", "stream vs random windows", measured, RULE, decide(c)))
    return out


def section(tables, figs) -> str:
    runs = arm_runs(tables)
    if runs.empty:
        return "_No stream runs yet (`python -m seqbench.train -m +experiment=stream`)._"
    rows = [
        {
            "model": c["model"],
            "random_val_loss": fmt(c["random"]),
            "stream_val_loss": fmt(c["stream"]),
            "random_minus_stream": fmt(c["diff"]),
            "random_val_ppl": f"{np.exp(c['random'].mean):.3g}",
            "stream_val_ppl": f"{np.exp(c['stream'].mean):.3g}",
            "seeds": c["seeds"],
            "verdict": decide(c),
        }
        for c in compare(runs)
    ]
    tokens = runs["train.steps"].astype(float) * runs["train.batch_size"].astype(float)
    tokens *= runs["data.seq_len"].astype(float)
    parts = [
        "Held-out loss (nats) at the final evaluation, mean [95% interval] over seeds; each arm "
        "is evaluated as it was trained (random: random held-out windows, fresh state; stream: "
        "the whole validation stream, state carried). Both arms saw "
        f"{', '.join(f'{int(t):,}' for t in sorted(set(tokens)))} training tokens. "
        f"Rule: {RULE}.",
        md_table(pd.DataFrame(rows)) if rows else "_One arm has no complete run yet._",
    ]
    curves = tables.get("curves")
    if curves is not None and "val_loss" in curves and curves.run.isin(runs.run).any():
        parts.append(_figure(runs, curves, count_rows(tables, runs), figs))
    return "\n\n".join(parts)


def count_rows(tables, runs) -> pd.DataFrame:
    """This study's n-gram rows on its runs' held-out windows (seqbench.measure.ngram)."""
    settings = baselines.settings_of(runs)
    return baselines.rows_for(tables, STUDY, **settings) if settings else pd.DataFrame()


def _count_levels(ax, rows, arms):
    """Under each arm, the count bigram's and trigram's loss scored as that arm is (random
    windows, or the whole held-out stream read as one sequence): gray segments, labelled."""
    for j, scope in enumerate(("windows", "stream")[: len(arms)]):
        for order, level in baselines.levels(rows, scope=scope).items():
            if order < 2:
                continue  # the unigram is drawn across, from the runs
            name = baselines.order_name(order)
            ax.hlines(level, j - 0.45, j + 0.45, color="0.45", ls="-." if order > 2 else ":",
                      lw=1.0, label=f"_count {name}")  # fmt: skip
            ax.annotate(f"count {name} {level:.2f}", (j - 0.45, level), xytext=(0, 1),
                        textcoords="offset points", fontsize=6, color="0.35")  # fmt: skip


def _figure(runs, curves, counts, figs) -> str:
    """(a) Each arm's final held-out loss, every seed a small dot and the mean with its 95%
    interval, the unigram cross-entropy, the control bar and the count bigram and trigram
    scored as each arm is; (b) random - stream with its
    interval, the number the verdict reads, against 0. The arms are two evaluations, not a
    trend: categories, never joined by a line."""
    fig, (ax, dax) = figs.figure(ncols=2, width=4.2, height=3.8)
    arms, models = list(ARMS.values()), sorted(runs.model.unique())
    w = 0.5 / max(1, len(models))
    for i, m in enumerate(models):
        x0 = i * w - 0.25 + w / 2
        for j, a in enumerate(arms):
            loss = runs[(runs.model == m) & (runs.arm == a)].val_loss.astype(float)
            if loss.empty:
                continue
            e = estimate(loss)
            ax.plot(np.full(len(loss), j + x0 + 0.08), loss, ls="", marker=".", ms=3,
                    color=figs.color(m), alpha=0.5, label=m)  # fmt: skip
            ax.errorbar([j + x0], [e.mean], yerr=clipped_yerr([e.mean], [e.lo], [e.hi]),
                        fmt="o", capsize=4, color=figs.color(m), label=m)  # fmt: skip
            if j == len(arms) - 1:  # the model named beside its last dot
                ax.annotate(m, (j + x0, e.mean), xytext=(10, 0), textcoords="offset points",
                            color=figs.color(m), fontsize=7, va="center")  # fmt: skip
    unigram = pd.to_numeric(runs.unigram_xent, errors="coerce").dropna()
    if len(unigram):
        u = float(unigram.mean())
        reference(ax, u, f"unigram {u:.2f}", kind="chance")
        reference(ax, RULE.learned * u, f"control: {RULE.learned:g} x unigram", kind="threshold")
    _count_levels(ax, counts, arms)
    ax.set_xticks(range(len(arms)), ["random windows", "stream, state carried"], fontsize=8)
    ax.set(xlim=(-0.6, len(arms) - 0.4), xlabel="training and evaluation protocol",
           ylabel=axis_label("final held-out loss", "nats/token"))  # fmt: skip
    ax.set_title("(a) each arm at equal tokens", fontsize=9)
    ax.margins(y=0.1)
    for i, c in enumerate(compare(runs)):
        d = c["diff"]
        dax.errorbar([i], [d.mean], yerr=clipped_yerr([d.mean], [d.lo], [d.hi]), fmt="o",
                     capsize=4, color=figs.color(c["model"]), label=c["model"])  # fmt: skip
        dax.annotate(fmt(d), (i, d.mean), xytext=(8, 0), textcoords="offset points",
                     fontsize=7, va="center", color="0.2")  # fmt: skip
    reference(dax, 0.0, "no difference", kind="threshold")
    dax.set_xticks(range(len(models)), models, fontsize=8)
    dax.set(xlim=(-0.6, len(models) - 0.4), xlabel="model",
            ylabel=axis_label("random - stream loss", "nats/token"))  # fmt: skip
    dax.set_title("(b) what the verdict reads", fontsize=9)
    dax.margins(y=0.2)
    ax.text(0.01, 0.01, f"{_seeds_said(runs)}; bars: 95% interval", transform=ax.transAxes,
            fontsize=7, color="0.3")  # fmt: skip
    figs.claim_title(fig, "C1*", text="does a carried state (truncated BPTT) beat random "
                     "windows at equal tokens?")  # fmt: skip
    return figs.save(fig, "stream_vs_random", decides=DECIDES)


def _seeds_said(runs) -> str:
    n = sorted({int(k) for k in runs.groupby(["model", "arm"]).seed.nunique()})
    return f"dots: {'-'.join(map(str, (n[0], n[-1])[: len(set(n))]))} seeds per arm"
