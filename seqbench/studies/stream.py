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

from seqbench.report.plot import axis_label, md_table, reference
from seqbench.report.stats import difference, estimate, fmt
from seqbench.studies import Rule, Verdict, complete, train

TITLE = "Truncated BPTT against random windows (C1*)"
ORDER = 12
DECIDES = ("C1*",)
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
_CPU = ("hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
BENCH = {
    "smoke": [train("stream", "-m", "+experiment=stream", "train.steps=20",
                    "train.eval_every=20", "seed=0")],
    "cpu": [train("stream", "-m", "+experiment=stream", *_CPU)],
    "gpu": [train("stream", "-m", "+experiment=stream", "model.size=s", "train.steps=3000",
                  "train.eval_every=500", "train.threads=null")],
}  # fmt: skip


def arm_runs(tables) -> pd.DataFrame:
    """The study's complete runs, with an ``arm`` column (random / stream)."""
    runs = complete(tables.get("runs"), "stream")
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
        parts.append(_figure(runs, curves, figs))
    return "\n\n".join(parts)


def _figure(runs, curves, figs) -> str:
    """Held-out loss against training tokens, mean over seeds with its 95% interval, one line
    per (model, arm); the unigram cross-entropy and the rule's control drawn."""
    arm = dict(zip(runs.run, runs.arm))
    c = (
        curves[curves.run.isin(arm)]
        .dropna(subset=["val_loss"])
        .assign(arm=lambda d: d.run.map(arm))
    )
    fig, axes = figs.figure(width=7.0, height=4.0)
    ax = axes[0]
    for (model, name), g in c.groupby(["model", "arm"]):
        est = [(t / 1e6, estimate(x.val_loss.astype(float))) for t, x in g.groupby("tokens_seen")]
        t = [x for x, _ in est]
        mean, lo, hi = ([getattr(e, k) for _, e in est] for k in ("mean", "lo", "hi"))
        figs.line(ax, t, mean, lo, hi, model=model, marker="o", ms=3,
                  ls="-" if name == "stream" else "--", label=f"{model}, {name}")  # fmt: skip
    unigram = pd.to_numeric(runs.unigram_xent, errors="coerce").dropna()
    if len(unigram):
        u = float(unigram.mean())
        reference(ax, u, f"unigram cross-entropy {u:.2f}", kind="chance")
        reference(ax, RULE.learned * u, f"control: {RULE.learned:g} x unigram", kind="threshold")
    ax.set(xlabel=axis_label("training tokens", "millions"),
           ylabel=axis_label("held-out loss", "nats per token"),
           title="held-out loss while training")  # fmt: skip
    ax.margins(y=0.1)  # room above the reference lines for their labels
    figs.legend(fig)
    return figs.save(fig, "stream_vs_random", decides=DECIDES)
