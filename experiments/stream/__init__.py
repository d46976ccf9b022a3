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

The harness evaluates each arm the way it was trained, so those two figures differ in two
things at once (issue 22). The verdicts read seqbench.measure.protocols instead: every
trained model scored under BOTH protocols on the TEST split (random windows of it, fresh
state: the windows what=test_set scores; the whole of it, state carried), both arms of a seed
on the same windows. Selection (the learning rate) read validation; a run without its
test-split scores makes the verdict inconclusive, naming the job that measures them, never a
fall-back to validation. One verdict per protocol: does training on the stream (context
beyond the window, windows in order) buy a lower test loss at equal tokens, however the model
is then read? Paired by seed (same initialisation, same test windows). Control: each arm
must end below RULE.learned x the unigram cross-entropy, or it has not learned enough for the
comparison to mean anything. The rule names the recurrent family (the claim's); a model of
any other family gets its own line in the measured column.
"""

import numpy as np
import pandas as pd

from seqbench.report import baselines, stability
from seqbench.report.axes import axis_label, clipped_yerr, reference
from seqbench.report.markdown import md_table
from seqbench.report.stats import estimate, fmt
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
    "read on the test split under each protocol (random test windows, fresh state; the "
    "whole test stream, state carried), both arms of a seed scored on the same test text: "
    "supported if the 95% interval over seeds of the per-seed (random - stream) loss lies "
    "above 0, not supported if below 0, inconclusive if it contains 0, if fewer than "
    "{min_seeds} seeds have both arms, if a run lacks its test-split score, or if an arm "
    "ends above {learned} x the unigram cross-entropy; read for "
    "each {family} model (they agree, else nuanced; inconclusive if any is), every other "
    "family named apart",
    min_seeds=2,
    learned=0.9,
    family="recurrent",
)
ARMS = {False: "random", True: "stream"}  # data.stream -> the arm
TABLE = "protocols"  # seqbench.measure.protocols's rows: every model scored both ways
PROTOCOLS = {"windows": "random windows", "stream": "the whole stream"}  # protocol -> words
STATE = {"windows": "fresh state", "stream": "state carried"}
SPLIT = "test"  # the split the verdicts read (what.split); selection read validation
COUNT_SCOPES = {"windows": "test", "stream": "test_stream"}  # protocol -> what=ngram's scope
MEASURE = f"python -m seqbench.measure -m what={TABLE} +experiment={STUDY}"


# --- the verdict: both arms under one protocol at a time --------------------------------------
def protocol_rows(tables, split: str = SPLIT) -> pd.DataFrame:
    """The study's complete what=protocols rows of ``split`` (rows from before what.split
    scored validation) whose training run is complete, one per (training run, protocol),
    each with its run's unigram cross-entropy (the control)."""
    rows = complete(tables.get(TABLE), STUDY)
    runs = complete(tables.get("runs"), STUDY)
    if rows.empty or runs.empty or "train_run" not in rows:
        return pd.DataFrame()
    rows = rows[rows.get("split", pd.Series("val", rows.index)).fillna("val") == split]
    rows = rows[rows.train_run.isin(runs.run)].drop_duplicates(["train_run", "protocol"],
                                                               keep="last")  # fmt: skip
    by_run = runs.drop_duplicates("run", keep="last").set_index("run")
    if "step" in by_run and "train_steps" in rows:  # a score is of the state the run ended in:
        step = pd.to_numeric(rows.train_run.map(by_run.step), errors="coerce")  # a run read
        scored = pd.to_numeric(rows.train_steps, errors="coerce")  # at half its budget has none
        rows = rows[step.isna() | scored.isna() | (step == scored)]
    unigram = by_run.get("unigram_xent", pd.Series(dtype=float))
    return rows.assign(
        unigram_xent=pd.to_numeric(rows.train_run.map(unigram), errors="coerce"),
        loss=pd.to_numeric(rows.loss, errors="coerce"),
        state_carried=rows.state_carried.map(lambda v: str(v).lower() == "true"),
    )


def compare(rows: pd.DataFrame) -> list[dict]:
    """Per model, its rows under ONE protocol: each arm's loss (mean, interval) and the
    per-seed random - stream difference (the arms of a seed share its test windows and
    its initialisation, so the pair removes both from the comparison)."""
    out = []
    for model, g in rows.groupby("model"):
        by_seed = g.pivot_table(index="seed", columns="arm", values="loss", aggfunc="mean")
        if not set(ARMS.values()) <= set(by_seed.columns):
            continue
        paired = by_seed.dropna()
        loss = {a: by_seed[a].dropna() for a in ARMS.values()}
        unigram = float(g.unigram_xent.mean())
        out.append(
            {
                "model": model,
                "family": str(g.family.iloc[0]),
                "random": estimate(loss["random"]),
                "stream": estimate(loss["stream"]),
                "diff": estimate(paired["random"] - paired["stream"]),
                "seeds": len(paired),
                "tokens": int(pd.to_numeric(g.tokens).min()),
                "fresh": not g.state_carried.all(),
                "unigram": unigram,
                "learned": all(v.max() < RULE.learned * unigram for v in loss.values()),
            }
        )
    return out


def decide(c: dict) -> str:
    if c["seeds"] < RULE.min_seeds or not c["learned"]:
        return "inconclusive"
    return {1: "supported", -1: "not supported", 0: "inconclusive"}[c["diff"].sign]


def combined(found: list[dict]) -> str:
    """The claim's verdict from its family's models: theirs when they agree, inconclusive
    when any is, nuanced when supported and not supported mix; not measured without one."""
    said = {decide(c) for c in found if c["family"] == RULE.family}
    if not said:
        return "not measured"
    if "inconclusive" in said:
        return "inconclusive"
    return said.pop() if len(said) == 1 else "nuanced"


def _line(c: dict, protocol: str) -> str:
    fresh = c["fresh"] and protocol == "stream"
    fresh = ", each window read fresh (its state grows)" if fresh else ""
    return (
        f"{c['model']}: random {fmt(c['random'])}, stream {fmt(c['stream'])} nats; random - "
        f"stream {fmt(c['diff'])} ({c['seeds']} seeds, {c['tokens']:,} {SPLIT} tokens"
        f"{fresh}; unigram {c['unigram']:.2f})"
    )


def verdicts(tables) -> list[Verdict]:
    """One verdict per protocol, read on the test split; inconclusive where a complete run
    has no test-split score under that protocol (never read on validation instead)."""
    rows, runs, out = protocol_rows(tables), complete(tables.get("runs"), STUDY), []
    for protocol, words in PROTOCOLS.items():
        mine = rows[rows.protocol == protocol] if not rows.empty else rows
        found, missing = compare(mine) if not mine.empty else [], unscored(runs, mine, protocol)
        if not found and not missing:
            continue
        lines = [_line(c, protocol) for c in found if c["family"] == RULE.family]
        lines += [
            f"{c['family']} (not compared by this rule): {_line(c, protocol)}: {decide(c)}"
            for c in found
            if c["family"] != RULE.family
        ]
        verdict = "inconclusive" if missing else combined(found)
        experiment = f"stream vs random windows (scored on {words})"
        out.append(Verdict("C1*", experiment, "; ".join([missing] * bool(missing) + lines),
                           RULE, verdict))  # fmt: skip
    return out


def unscored(runs: pd.DataFrame, rows: pd.DataFrame, protocol: str) -> str:
    """'' when every complete run has its test-split score under ``protocol`` (``rows``: that
    protocol's, protocol_rows'); else what is missing and the job that measures it."""
    if runs.empty:
        return ""
    scored = set(rows.train_run) if "train_run" in rows else set()
    missing = runs[~runs.run.isin(scored)]
    if missing.empty:
        return ""
    return (
        f"{SPLIT} split not scored on {PROTOCOLS[protocol]} for {len(missing)} of {len(runs)} "
        f"runs ({_job(missing)}, swept as the training)"
    )


def _job(runs: pd.DataFrame) -> str:
    """The bench job (profiles.yaml) that scores these runs, with its command."""
    budget = float(stability.setting(runs, stability.BUDGET, 1).max())
    if budget == 1:
        return f"the {STUDY}_{TABLE} job: `{MEASURE}`"
    name = f"the {STUDY}_long_{TABLE} job" if budget == stability.LONGER else "what=protocols"
    return f"{name}: `{MEASURE} train.budget={budget:g}`"


# --- the section ------------------------------------------------------------------------------
def arm_runs(tables) -> pd.DataFrame:
    """The study's complete runs, with an ``arm`` column (random / stream)."""
    runs = complete(tables.get("runs"), STUDY)
    if runs.empty or "data.stream" not in runs:
        return pd.DataFrame()
    streamed = runs["data.stream"].map(lambda v: str(v).lower() == "true")
    return runs.assign(arm=streamed.map(ARMS))


def section(tables, figs) -> str:
    runs = arm_runs(tables)
    if runs.empty:
        return "_No stream runs yet (`python -m seqbench.train -m +experiment=stream`)._"
    tokens = runs["train.steps"].astype(float) * runs["train.batch_size"].astype(float)
    tokens *= runs["data.seq_len"].astype(float)
    rows = protocol_rows(tables)
    scored = [] if rows.empty else [
        (p, c) for p in PROTOCOLS for c in compare(rows[rows.protocol == p])
    ]  # fmt: skip
    missing = [m for p in PROTOCOLS if (m := unscored(runs, _of(rows, p), p))]
    parts = [
        f"{SPLIT.capitalize()}-split loss (nats), mean [95% interval] over seeds, of every "
        f"trained model scored under both protocols on the {SPLIT} split (what=protocols, "
        f"what.split={SPLIT}; the learning rate was chosen on validation): random {SPLIT} "
        f"windows, fresh state, and the whole {SPLIT} stream, state carried. Both arms saw "
        f"{', '.join(f'{int(t):,}' for t in sorted(set(tokens)))} training tokens. "
        f"Rule: {RULE}.",
        md_table(pd.DataFrame([_scored_row(p, c) for p, c in scored]))
        if scored
        else f"_Not scored on the {SPLIT} split yet (`{MEASURE}`, swept as the training)._",
        *([f"_{'; '.join(missing)}: the verdicts are inconclusive until then._"] * bool(missing)),
        "As trained (each arm evaluated by the harness as it was trained; no verdict reads "
        "this table, since its two columns come from two protocols):",
        md_table(pd.DataFrame(_as_trained(runs))),
    ]
    if scored:
        parts.append(_figure(scored, rows, count_rows(tables, runs), figs))
    return "\n\n".join(parts)


def _of(rows: pd.DataFrame, protocol: str) -> pd.DataFrame:
    return rows[rows.protocol == protocol] if not rows.empty else rows


def _scored_row(protocol: str, c: dict) -> dict:
    return {
        "scored on": f"{PROTOCOLS[protocol]}, {STATE[protocol]}",
        "model": c["model"],
        "random_arm": fmt(c["random"]),
        "stream_arm": fmt(c["stream"]),
        "random_minus_stream": fmt(c["diff"]),
        "seeds": c["seeds"],
        f"{SPLIT}_tokens": c["tokens"],
        "verdict": decide(c),
    }


def _as_trained(runs: pd.DataFrame) -> list[dict]:
    out = []
    for model, g in runs.groupby("model"):
        loss = {a: g[g.arm == a].val_loss.astype(float) for a in ARMS.values()}
        out.append({"model": model} | {f"{a}_val_loss": fmt(estimate(v)) for a, v in loss.items()}
                   | {"seeds": min(len(v) for v in loss.values())})  # fmt: skip
    return out


def count_rows(tables, runs) -> pd.DataFrame:
    """This study's n-gram rows on its runs' windows (seqbench.measure.ngram): the figure
    draws their test levels (COUNT_SCOPES)."""
    settings = baselines.settings_of(runs)
    return baselines.rows_for(tables, STUDY, **settings) if settings else pd.DataFrame()


def _count_levels(ax, rows, spans):
    """Under each protocol, the count bigram's and trigram's loss on the test split scored
    that way (the models' random test windows, averaged over their data seeds; or the whole
    test stream read as one sequence): gray segments over that protocol's span of the axis
    (``spans``: protocol -> (x0, x1)), labelled."""
    for protocol, (x0, x1) in spans.items():
        for order, level in baselines.levels(rows, scope=COUNT_SCOPES[protocol]).items():
            if order < 2:
                continue  # the unigram is drawn across, from the runs
            name = baselines.order_name(order)
            ax.hlines(level, x0, x1, color="0.45", ls="-." if order > 2 else ":", lw=1.0,
                      label=f"_count {name}")  # fmt: skip
            ax.annotate(f"count {name} {level:.2f}", (x0, level), xytext=(0, 1), va="bottom",
                        textcoords="offset points", fontsize=6, color="0.35")  # fmt: skip


MARKERS = {"random": "o", "stream": "s"}  # the arm that trained the model
GAP = 2.6  # x distance between the protocols' groups of two arms


def _figure(scored, rows, counts, figs) -> str:
    """(a) Under each protocol (a group), each arm's test-split loss (every seed a small dot, the
    mean with its 95% interval), the unigram cross-entropy, the control bar and the count
    bigram and trigram scored the same way; (b) per protocol, random - stream with its
    interval, the number each verdict reads, against 0. Protocols and arms are categories,
    never joined by a line."""
    fig, (ax, dax) = figs.figure(ncols=2, width=4.4, height=3.8)
    models = sorted({c["model"] for _, c in scored})
    w = 0.4 / len(models)  # models side by side within an arm
    ticks = {}
    for j, protocol in enumerate(PROTOCOLS):
        for k, arm in enumerate(ARMS.values()):
            ticks[j * GAP + k] = f"{arm} arm"
            for i, m in enumerate(models):
                x = j * GAP + k + (i - (len(models) - 1) / 2) * w
                g = rows[(rows.protocol == protocol) & (rows.model == m) & (rows.arm == arm)]
                if g.empty:
                    continue
                e, name = estimate(g.loss), f"{arm} arm"  # named by its tick
                ax.plot(np.full(len(g), x + 0.1), g.loss, ls="", marker=MARKERS[arm], ms=2,
                        color=figs.color(m), alpha=0.5, label=name)  # fmt: skip
                ax.errorbar([x], [e.mean], yerr=clipped_yerr([e.mean], [e.lo], [e.hi]), capsize=4,
                            fmt=MARKERS[arm], color=figs.color(m), label=name)  # fmt: skip
        ax.text(j * GAP + 0.5, 1.01, f"scored on {PROTOCOLS[protocol]}\n({STATE[protocol]})",
                transform=ax.get_xaxis_transform(), ha="center", va="bottom",
                fontsize=7)  # fmt: skip
    u = float(rows.unigram_xent.mean())
    if np.isfinite(u):
        reference(ax, u, f"unigram {u:.2f}", kind="chance")
        reference(ax, RULE.learned * u, f"control: {RULE.learned:g} x unigram", kind="threshold")
    _count_levels(ax, counts, {p: (j * GAP - 0.45, j * GAP + 1.45) for j, p in
                               enumerate(PROTOCOLS)})  # fmt: skip
    ax.set_xticks(list(ticks), list(ticks.values()), fontsize=7)
    ax.set(xlim=(-0.6, GAP + 1.6), xlabel="the arm that trained the model",
           ylabel=axis_label(f"{SPLIT}-split loss", "nats/token"))  # fmt: skip
    ax.set_title("(a) each arm under each protocol", fontsize=9, pad=24)
    ax.margins(y=0.1)
    for j, protocol in enumerate(PROTOCOLS):
        for i, c in enumerate(c for p, c in scored if p == protocol):
            d, x = c["diff"], j + (i - (len(models) - 1) / 2) * w
            dax.errorbar([x], [d.mean], yerr=clipped_yerr([d.mean], [d.lo], [d.hi]), fmt="o",
                         capsize=4, color=figs.color(c["model"]), label=c["model"])  # fmt: skip
            dax.annotate(fmt(d), (x, d.mean), xytext=(4, -5), fontsize=6, va="center",
                         textcoords="offset points", color="0.2")  # fmt: skip
            if j == len(PROTOCOLS) - 1:  # named once, left of its last point: clear of the label
                dax.annotate(c["model"], (x, d.mean), xytext=(-3.5, -3), fontsize=6, ha="right",
                             va="center", textcoords="offset points", color="0.2")  # fmt: skip
    # the reference labelled at the left edge: the figures sit right of their points
    dax.axhline(0.0, color="0.15", ls="--", lw=0.9, label="no difference", zorder=1.5)
    dax.annotate("no difference", xy=(0.01, 0.0), xycoords=("axes fraction", "data"),
                 xytext=(0, 1), textcoords="offset points", fontsize=7, va="bottom",
                 color="0.15")  # fmt: skip
    dax.set_xticks(range(len(PROTOCOLS)), [f"scored on\n{w}" for w in PROTOCOLS.values()],
                   fontsize=7)  # fmt: skip
    dax.set(xlim=(-0.6, len(PROTOCOLS) - 0.4), xlabel="protocol that scores the model",
            ylabel=axis_label("random - stream loss", "nats/token"))  # fmt: skip
    dax.set_title("(b) what each verdict reads", fontsize=9)
    dax.margins(y=0.2)
    ax.text(0.01, 0.01, f"{_seeds_said(rows)}; bars: 95% interval; colour: {', '.join(models)}",
            transform=ax.transAxes, fontsize=6, color="0.3")  # fmt: skip
    figs.claim_title(fig, "C1*", text="does a carried state (truncated BPTT) beat random windows "
                     f"at equal tokens, scored either way on the {SPLIT} split?")  # fmt: skip
    return figs.save(fig, "stream_vs_random", decides=DECIDES)


def _seeds_said(rows) -> str:
    n = sorted({int(k) for k in rows.groupby(["protocol", "model", "arm"]).seed.nunique()})
    return f"dots: {'-'.join(map(str, (n[0], n[-1])[: len(set(n))]))} seeds per arm"
