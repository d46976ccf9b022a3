"""Recall versus distance (C5): lag_recall, trained to a criterion, against the distance d.

The lecture: in an RNN information from word a reaches word b only by surviving |b - a| state
updates, while attention has a direct edge. ``lag_recall`` isolates exactly that: one value to
carry over d distractor tokens (chance 1 / n_keys). Every run trains until its held-out
accuracy reaches the criterion (``train.target``, checked every ``train.eval_every`` steps) or
its step cap, and records ``steps_to_criterion`` (censored at the cap).

A cell (model, d) is *solved* when the 95% interval of its test accuracy over seeds lies at or
above RULE.solved, *failed* when it lies below, *undecided* when it straddles the bar (some
seeds hit the cap short of it). A failed cell with a seed censored (stopped at its cap while
improving or at chance: evaluate.stop_reason) is undecided too, unless the cap is >= 4x the
steps the slowest model that solved that distance needed (``censor``). A model's *reach* is the
longest d with every measured distance up to it solved. The control is the shortest distance: a
model that does not solve it cannot speak to a distance effect and is left out. An undecided
cell, or a model measured over fewer distances than the others, gives its reach a range [lo,
hi]; the verdict is taken at both ends and is inconclusive where they differ. Learning rates:
calibrated once per model on the control (CPU, ``train.lr_grid``), or swept in every cell with
the best kept (GPU, ``_common.best_of_grid``, Zoology's selection).
"""

import numpy as np
import pandas as pd

from seqbench.report.axes import UNIT_RANGE, key_entry, log_axis, reference
from seqbench.report.markdown import md_table
from seqbench.report.stats import estimate, fmt
from seqbench.report.verdict import Rule, Verdict
from seqbench.studies._common import (
    ATTENTION_VS_RECURRENCE,
    CENSORING,
    LONG_ENOUGH,
    TEST_RULE,
    best_of_grid,
    censored,
    censored_note,
    censored_text,
    complete,
    cpu_only,
    estimate_of,
    in_family,
    left_out,
    long_enough,
    lr_sentence,
    needs_test,
    on_test_set,
    seeds_text,
    step_cap,
    steps_text,
    study_of,
    unnamed_text,
    with_test,
)

TITLE = "Recall versus distance (C5)"
ORDER = 30
DECIDES = ("C5",)
STUDY = study_of(__name__)
ATTENTION, RECURRENCES = ("attention",), ("recurrent", "scan")
COMPARES = ATTENTION + RECURRENCES  # a model of any other family is named, not compared
RULE = Rule(
    "a distance is solved when the 95% interval of accuracy (" + TEST_RULE + ") over seeds "
    "lies at or above "
    "{solved:.0%} (failed: below; undecided: across); reach = longest d with every measured d "
    "up to it solved; a model that does not solve the control (the shortest d) is left out; "
    "supported if the attention model's reach is >= {ratio}x every recurrent model's, not "
    "supported if some recurrent model reaches as far, nuanced between; inconclusive when an "
    "undecided cell or an unmeasured distance could change that, or a side has no model left; "
    + CENSORING,
    solved=0.9,
    ratio=4,
    long_enough=LONG_ENOUGH,
)


# --- the table: one row per (model, distance) ---------------------------------------------
def recall_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Complete recall runs with their distance and step cap (``step_cap``: a 4x run is
    censored against its own cap); of a swept lr grid only the best lr per (model,
    distance): most seeds at the criterion, then fewest steps."""
    ok = complete(runs, STUDY)
    if ok.empty:
        return ok
    ok = ok[ok.task == "lagrecall"]
    cap = step_cap(ok)
    steps = pd.to_numeric(ok.steps_to_criterion, errors="coerce")
    # censored runs rank after every run that reached the criterion, by their accuracy
    score = steps.where(steps.notna(), cap * (2 - ok.val_acc.astype(float)))
    ok = ok.assign(distance=ok["data.distance"].astype(int), cap=cap, steps=steps, score=score)
    return best_of_grid(ok, ["distance"], metric="score")


def status(lo: float, hi: float) -> str:
    """solved / failed / undecided from an accuracy interval (no interval: undecided)."""
    if np.isfinite(lo) and lo >= RULE.solved:
        return "solved"
    if np.isfinite(hi) and hi < RULE.solved:
        return "failed"
    return "undecided"


def cell_table(ok: pd.DataFrame) -> pd.DataFrame:
    """Accuracy and steps to the criterion per (model, distance), with intervals over seeds.
    Steps count a censored seed at its cap: a lower bound, flagged by ``reached < seeds``."""
    rows = []
    for (model, family, d), g in ok.groupby(["model", "family", "distance"]):
        acc = estimate(
            g.test_acc.astype(float), bounds=(0.0, 1.0)
        )  # reported: never the stopping set
        steps = estimate(g.steps.fillna(g.cap))
        rows.append(
            {"model": model, "family": family, "distance": int(d), "acc": acc.mean,
             "acc_lo": acc.lo, "acc_hi": acc.hi, "steps": steps.mean, "steps_lo": steps.lo,
             "steps_hi": steps.hi, "seeds": int(g.seed.nunique()),
             "reached": int(g.steps.notna().sum()), "cap": int(g.cap.max()),
             "censored": int(censored(g).sum()), "slowest": float(g.steps.max()),
             "lr": ", ".join(f"{v:g}" for v in sorted(g.lr.dropna().unique())),
             "status": status(acc.lo, acc.hi)}
        )  # fmt: skip
    return censor(pd.DataFrame(rows))


def censor(cells: pd.DataFrame) -> pd.DataFrame:
    """A failed cell with a censored seed (stopped at its cap while improving or at chance)
    is undecided unless its cap is long enough (_common.long_enough: against the slowest
    seed of the models that solved the same distance, every seed at the criterion); ``note``
    says which and why."""
    cells = cells.assign(note="")
    for d, g in cells.groupby("distance"):
        slowest = g[g.reached == g.seeds].slowest.max()  # nan when no model solved d
        for i, c in g.iterrows():
            if c.status == "failed" and c.censored and not long_enough(c.cap, slowest):
                cells.loc[i, "status"] = "undecided"
                cells.loc[i, "note"] = censored_note(f"{c.model} d={d}", c.cap, slowest)
    return cells


def reach(cells: pd.DataFrame) -> dict:
    """model -> (lo, hi): the longest d with every distance up to it solved, counting
    undecided cells as failed (lo) or solved (hi); a model that solved all its distances
    but was not measured as far as the others might reach the longest of them (hi)."""
    longest = int(cells.distance.max())
    out = {}
    for model, g in cells.sort_values("distance").groupby("model"):
        lo = hi = 0
        open_lo = open_hi = True
        for d, s in zip(g.distance, g.status):
            open_lo = open_lo and s == "solved"
            open_hi = open_hi and s != "failed"
            lo, hi = (int(d) if open_lo else lo), (int(d) if open_hi else hi)
        out[model] = (lo, longest if open_hi else hi)
    return out


def controls(cells: pd.DataFrame) -> dict:
    """model -> did it solve the control, the shortest distance of the study?"""
    shortest = cells.distance.min()
    at = cells[cells.distance == shortest].set_index("model").status
    return {m: at.get(m) == "solved" for m in cells.model.unique()}


def decide(attention_reach: int, recurrent_reach: int) -> str:
    """The rule on two reaches (monotone: more attention reach or less recurrent reach never
    moves the verdict away from supported)."""
    if recurrent_reach >= attention_reach:
        return "not supported"
    if attention_reach >= RULE.ratio * recurrent_reach:
        return "supported"
    return "nuanced"


def verdict(cells: pd.DataFrame) -> tuple[str, str] | None:
    """(verdict, measured); None without an attention model and a recurrence (no data)."""
    attention, recurrences = in_family(cells, *ATTENTION), in_family(cells, *RECURRENCES)
    if not attention or not recurrences:
        return None
    passed, r = controls(cells), reach(cells)
    att = [r[m] for m in attention if passed[m]]
    rec = [r[m] for m in recurrences if passed[m]]
    measured = _measured(cells, r, passed) + unnamed_text(
        cells, COMPARES, ATTENTION_VS_RECURRENCE, verdict
    )
    if not att or not rec:
        return "inconclusive", measured
    # the ends of the reach ranges most and least favourable to the claim
    best = decide(min(hi for _, hi in att), max(lo for lo, _ in rec))
    worst = decide(min(lo for lo, _ in att), max(hi for _, hi in rec))
    return (best if best == worst else "inconclusive"), measured


def _span(lo, hi) -> str:
    """A reach, or its range where undecided cells leave it open ("4 to 256 (undecided)")."""
    return str(lo) if lo == hi else f"{lo} to {hi} (undecided)"


def _measured(cells, r, passed) -> str:
    longest = int(cells.distance.max())
    at = cells[cells.distance == longest].sort_values("model")
    acc = ", ".join(f"{c.model} {fmt(estimate_of(c, 'acc'))}" for c in at.itertuples())
    steps = ", ".join(f"{c.model} {steps_text(c)}" for c in at.itertuples())
    out = (
        f"reach (d solved at >= {RULE.solved:.0%}): "
        + ", ".join(f"{m} {_span(*v)}" for m, v in sorted(r.items()))
        + f"; test accuracy at d={longest}: {acc}; steps to the criterion at d={longest}: {steps}"
        + f" ({seeds_text(cells)})"
    )
    notes = [n for n in cells.sort_values(["model", "distance"]).note if n]
    return out + left_out(passed, f"d={int(cells.distance.min())}") + censored_text(notes)


def verdicts(tables) -> list[Verdict]:
    """C5 on lag_recall: one verdict over every distance, or none before the runs exist."""
    ok = with_test(recall_runs(tables["runs"]), tables, STUDY)
    decided = None if ok.empty else verdict(cell_table(ok))
    if decided is None:
        return []
    v, measured = needs_test(ok, *decided)
    return [Verdict("C5", f"{STUDY} (lag_recall vs distance)", measured, RULE, v)]


# --- the section ---------------------------------------------------------------------------
def _setup(ok: pd.DataFrame) -> str:
    """The distances each model ran, seeds, batch, criterion and cap, read from the runs
    (and what the CPU profile cuts)."""
    first = ok.iloc[0]
    dists = {
        m: ", ".join(str(d) for d in sorted(g.distance.unique())) for m, g in ok.groupby("model")
    }
    same = len(set(dists.values())) == 1
    where = (
        f"d = {next(iter(dists.values()))} for every model"
        if same
        else "; ".join(f"{m}: d = {v}" for m, v in dists.items())
    )
    text = (
        f"Runs: {where} (seq_len = d + 8), {seeds_text(cell_table(ok))} per cell, batch "
        f"{int(first['train.batch_size'])}, trained to {first.criterion} (checked every "
        f"{int(first['train.eval_every'])} steps on {int(first['train.eval_batches'])} held-out "
        f"batches) or the cap of {int(ok.cap.max())} steps."
    )
    cut = (
        " This is the CPU profile; the GPU profile adds d = 1024, the 0.99 criterion on "
        "more held-out sequences, a 2000-step cap and "
        "minGRU/minLSTM (their scan costs 1.5-3x an LSTM step here, most at T = 264); "
        "seeds are never cut."
    )
    return text + lr_sentence(ok, "d") + cpu_only(ok, cut)


CENSORED = "0.1"  # the ring around a cell some seed of which stopped at the cap


def _figure(cells: pd.DataFrame, figs) -> str:
    fig, axes = figs.figure(ncols=2, width=4.6)
    distances = sorted(cells.distance.unique())
    models = sorted(cells.model.unique())
    for model, g in cells.sort_values("distance").groupby("model"):
        marker = "osD^vP*X"[models.index(model) % 8]  # the reds are close: a shape each
        figs.line(axes[0], g.distance, g.acc, g.acc_lo, g.acc_hi, model=model, marker=marker,
                  clip=UNIT_RANGE)  # fmt: skip
        figs.line(axes[1], g.distance, g.steps, g.steps_lo, g.steps_hi, model=model,
                  marker=marker)  # fmt: skip
        # a lower bound (some seed stopped at the cap short of the criterion): a dark ring
        # around the point itself, so the line's end stays visible
        cut = g[g.reached < g.seeds]
        if len(cut):
            axes[1].plot(cut.distance, cut.steps, ls="", marker=marker, ms=12, mfc="none",
                         color=CENSORED, mew=1.2, lw=0.5, zorder=3, label="_censored")  # fmt: skip
    chance = 1 / float(cells.attrs.get("n_keys", 16))
    reference(axes[0], RULE.solved, f"solved: {RULE.solved:.0%}", kind="threshold")
    reference(axes[0], chance, f"chance 1/{int(round(1 / chance))}", kind="chance")
    axes[1].axhline(int(cells.cap.max()), color="0.15", ls="--", lw=0.9, zorder=1.5,
                    label=f"step cap ({int(cells.cap.max())} steps)")  # fmt: skip
    axes[0].set(xlabel="distance d (tokens)", ylabel="test accuracy", ylim=(0, 1.0),
                title="final accuracy")  # fmt: skip
    axes[1].set(xlabel="distance d (tokens)", ylabel="steps to the criterion (steps)",
                title="steps to the criterion")  # fmt: skip
    for ax in axes:
        log_axis(ax, "x", distances)
        ax.set_xlim(min(distances) / 1.4, max(distances) * 1.4)  # drawn without test figures too
    log_axis(axes[1], "y")
    axes[1].margins(y=0.1)  # the cap line and its hollow markers clear of the frame
    censored = (
        [
            key_entry(
                "ring: a seed stopped at the cap (lower bound)",
                ls="",
                marker="o",
                mfc="none",
                ms=9,
                color=CENSORED,
            )
        ]
        if (cells.reached < cells.seeds).any()
        else []
    )
    figs.legend(fig, extra=censored)
    return figs.save(fig, "recall_vs_distance", "C5")


def _table(cells: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "d": cells.distance,
            "model": cells.model,
            "test accuracy": [fmt(estimate_of(c, "acc")) for c in cells.itertuples()],
            "steps to criterion": [steps_text(c) for c in cells.itertuples()],
            "reached": [f"{c.reached}/{c.seeds}" for c in cells.itertuples()],
            "censored": [f"{c.censored}/{c.seeds}" for c in cells.itertuples()],
            "cell": cells.status,
            "lr": cells.lr,
        }
    ).sort_values(["d", "model"])


def section(tables, figs) -> str:
    ok = with_test(recall_runs(tables["runs"]), tables, STUDY)
    if ok.empty:
        return "_No completed runs of the recall study yet._"
    cells = cell_table(ok)
    cells.attrs["n_keys"] = int(ok["data.n_keys"].iloc[0]) if "data.n_keys" in ok else 16
    r, passed = reach(cells), controls(cells)
    failed = sorted(m for m, ok_ in passed.items() if not ok_)
    control = int(cells.distance.min())
    return "\n\n".join(
        [
            _setup(ok),
            f"Left: accuracy at the end of training {on_test_set(ok)} (the criterion read "
            "the validation batches), against the distance d; right: "
            "steps to the criterion (a seed that stopped at the cap counts at the cap, so a "
            "ring around a point marks a lower bound). Lines: mean over seeds; bands: 95% "
            "t interval over seeds.",
            _figure(cells, figs),
            md_table(_table(cells)),
            "Reach (longest d with every distance up to it solved; a range where a cell is "
            "undecided or a model was not run as far): "
            + ", ".join(f"{m} {_span(*v)}" for m, v in sorted(r.items()))
            + ". "
            + (
                f"Control d = {control}: not solved by {', '.join(failed)}, left out of the "
                "verdict."
                if failed
                else f"Control d = {control}: solved by every model."
            ),
        ]
    )
