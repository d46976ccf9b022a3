"""Multi-query associative recall (C5; Arora et al. 2023, Zoology, Fig. 2).

Zoology's generator and protocol (``seqbench.data.synthetic.MQAR``): P key-value pairs, then
each key queried once, the answer never fed back, random filler; a fixed pool of training
examples (``data.n_train``); 2 layers; training stops at 99% held-out accuracy (the criterion)
or the step cap; the learning rate from Zoology's grid (4 values log-spaced 1e-4 .. 1e-2),
calibrated once per model on a short cell (the CPU profile's T=16 cells) or swept in every cell
with the best held-out result kept per (model, cell) (the full profile's T=64 cells and the
GPU's: ``_common.best_of_grid``, Zoology's selection; at T=64 a rate that suits one family
leaves another far behind). The attention model has learned absolute positions, as Zoology's.
``model.d_model`` sets every family's width, so parameter counts differ between families at
the same width (the table lists them).

Rule: the verdict reads the settings at T >= RULE.long when any was run (issue 22: at T=16
with 2 pairs every recurrence sits on the "which of two values" plateau); the shorter ones
stay in the measured column as a control line, shown but never deciding; without a long
setting (the quick CPU profile) it reads every setting but the control. The control (the
setting with the fewest pairs, then the shortest) is a cell each model must solve (95%
interval of test accuracy over seeds at or above RULE.solved; test sequences from
seqbench.measure.test_set, never the criterion's validation batches); a model that does not
is left out. In every cell the verdict reads, the attention model is *ahead* of a recurrence
when the 95% interval of their accuracy difference lies above 0, *level* when it lies within
+-RULE.margin, *behind* below 0, *undecided* otherwise; a cell that no model solves did not
converge within its cap and is undecided too, and so is a comparison a censored model (stopped
at its cap while improving or at chance, the cap short of 4x the slowest solver's steps) could
still change (``unsettled``, ``settled``). The verdict reads the share of those cells where
attention is ahead of every recurrence, counting undecided cells both ways: inconclusive where
the two ends disagree.
"""

import numpy as np
import pandas as pd

from seqbench.report.axes import UNIT_RANGE, clipped_yerr, log_axis, reference
from seqbench.report.markdown import md_table
from seqbench.report.stats import Estimate, difference, estimate, fmt
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

TITLE = "Multi-query associative recall (C5, Zoology)"
ORDER = 32
DECIDES = ("C5",)
STUDY = study_of(__name__)
ATTENTION, RECURRENCES = ("attention",), ("recurrent", "scan")
COMPARES = ATTENTION + RECURRENCES  # a model of any other family is named, not compared
RULE = Rule(
    "accuracy is read " + TEST_RULE + "; "
    "each model must solve the control cell (95% interval of accuracy over seeds >= "
    "{solved:.0%}) or is left out; the verdict reads the settings with T >= {long} where any "
    "was run (the shorter ones are shown, not read), else every setting but the control; in "
    "each (setting, d_model) cell it reads, attention is ahead of a recurrence when the 95% "
    "interval of the accuracy difference lies above 0, level within +-{margin}; a cell no "
    "model solves (interval >= {solved:.0%}) did not converge within its cap (undecided); "
    "supported if attention is ahead of every recurrence in >= "
    "{supported:.0%} of the cells, not supported if in <= {refuted:.0%}, nuanced between; "
    "inconclusive when undecided cells could move it across a bar, or a side has no model "
    "left; a comparison a censored model could still change is undecided: " + CENSORING,
    solved=0.9,
    margin=0.05,
    supported=0.8,
    refuted=0.2,
    long=64,
    long_enough=LONG_ENOUGH,
)


# --- the table: one row per (setting, d_model, model) --------------------------------------
def mqar_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Complete MQAR runs with their setting, width and step cap; of a swept lr grid only the
    best lr per (model, setting, width), read on the held-out batches (most seeds at the
    criterion, then fewest steps, then the highest accuracy), with the grid it came from
    (``grid_n``, ``grid_lo``, ``grid_hi``: a best rate at an edge is flagged)."""
    ok = complete(runs, STUDY)
    if ok.empty:
        return ok
    ok = ok[ok.task == "mqar"]
    # the width as built; the override where a run did not record its hparams
    width = ok.hp_d_model if "hp_d_model" in ok else ok["model.d_model"]
    cap = step_cap(ok)
    steps = pd.to_numeric(ok.steps_to_criterion, errors="coerce")
    score = steps.where(steps.notna(), cap * (2 - ok.val_acc.astype(float)))
    T, P = ok["data.seq_len"].astype(int), ok["data.num_kv_pairs"].astype(int)
    ok = ok.assign(
        seq_len=T,
        kv=P,
        d_model=width.astype(int),
        setting=[f"T={t}, kv={p}" for t, p in zip(T, P)],
        cap=cap,
        steps=steps,
        score=score,
    )
    swept = ok.groupby(["model", "setting", "d_model"]).lr
    ok = ok.assign(
        grid_n=swept.transform("nunique"), grid_lo=swept.transform("min"),
        grid_hi=swept.transform("max"),
    )  # fmt: skip
    return best_of_grid(ok, ["setting", "d_model"], metric="score")


def cell_table(ok: pd.DataFrame) -> pd.DataFrame:
    """Accuracy (interval over seeds), seeds at the criterion and parameters per cell."""
    rows = []
    keys = ["setting", "seq_len", "kv", "d_model", "model", "family"]
    for key, g in ok.groupby(keys):
        acc = estimate(
            g.test_acc.astype(float), bounds=(0.0, 1.0)
        )  # reported: never the stopping set
        steps = estimate(g.steps.fillna(g.cap))
        rows.append(
            dict(zip(keys, key))
            | {"acc": acc.mean, "acc_lo": acc.lo, "acc_hi": acc.hi, "steps": steps.mean,
               "steps_lo": steps.lo, "steps_hi": steps.hi, "seeds": int(g.seed.nunique()),
               "reached": int(g.steps.notna().sum()), "censored": int(censored(g).sum()),
               "slowest": float(g.steps.max()),
               "cap": int(g.cap.max()), "values": list(g.test_acc.astype(float)),
               "params": g.params_non_embedding.iloc[0] if "params_non_embedding" in g else None,
               "chance": 1 / (float(g.vocab_size.iloc[0]) / 2) if "vocab_size" in g else None,
               "lr": lr_text(g)}
        )  # fmt: skip
    return pd.DataFrame(rows).sort_values(["kv", "seq_len", "d_model", "model"])


def lr_text(g: pd.DataFrame) -> str:
    """The rate a cell's runs trained at; of a swept grid '0.01 (best of 4, top edge)': a best
    rate at an edge of its grid may have a better one outside it."""
    rates = ", ".join(f"{v:g}" for v in sorted(g.lr.dropna().unique()))
    n = int(g.grid_n.max()) if "grid_n" in g and g.grid_n.notna().any() else 1
    if n < 2:
        return rates
    edge = (
        ", top edge" if g.lr.max() >= g.grid_hi.max()
        else ", bottom edge" if g.lr.min() <= g.grid_lo.min() else ""
    )  # fmt: skip
    return f"{rates} (best of {n}{edge})"


def control_setting(cells: pd.DataFrame) -> str:
    """The easiest setting: fewest pairs, then the shortest sequence."""
    return cells.sort_values(["kv", "seq_len"]).setting.iloc[0]


def solved(c) -> bool:
    """Is a cell_table row solved: its accuracy interval at or above RULE.solved?"""
    return bool(np.isfinite(c.acc_lo) and c.acc_lo >= RULE.solved)


def passing(cells: pd.DataFrame) -> dict:
    """model -> did it solve the control (at some width)?"""
    at = cells[cells.setting == control_setting(cells)]
    return {m: any(solved(c) for c in at[at.model == m].itertuples()) for m in cells.model.unique()}


def compare(att_values, rec_values) -> str:
    """ahead / level / behind / undecided from the interval of mean(att) - mean(rec)."""
    d = difference(att_values, rec_values)
    if not (np.isfinite(d.lo) and np.isfinite(d.hi)):
        return "undecided"
    if -RULE.margin < d.lo and d.hi < RULE.margin:
        return "level"
    return "ahead" if d.lo > 0 else "behind" if d.hi < 0 else "undecided"


def unsettled(cells: pd.DataFrame) -> dict:
    """(setting, d_model, model) -> why, for each cell with a censored seed (stopped at its
    cap while improving or at chance) whose cap is not long enough (_common.long_enough,
    against the slowest seed of the models that solved the same cell, every seed at the
    criterion)."""
    out = {}
    for (s, w), cell in cells.groupby(["setting", "d_model"]):
        slowest = max(
            (c.slowest for c in cell.itertuples() if c.reached == c.seeds), default=np.nan
        )  # the models that solved it: every seed at the criterion
        for c in cell.itertuples():
            if c.censored and not long_enough(c.cap, slowest):
                out[(s, w, c.model)] = censored_note(f"{c.model} {s}, d_model {w}", c.cap, slowest)
    return out


def settled(pair: str, att_open: bool, rec_open: bool) -> str:
    """A comparison a censored side could still change is undecided: attention ahead of a
    recurrence that may catch up, or level with / behind a recurrence while it may pull
    ahead itself."""
    if (pair == "ahead" and rec_open) or (pair in ("level", "behind") and att_open):
        return "undecided"
    return pair


def outcomes(cells: pd.DataFrame, attention, recurrences) -> dict:
    """(setting, d_model) -> ahead / not ahead / undecided, over the non-control cells."""
    out = {}
    control = control_setting(cells)
    open_ = unsettled(cells)
    for (s, w), cell in cells[cells.setting != control].groupby(["setting", "d_model"]):
        by = cell.set_index("model")
        att = [m for m in attention if m in by.index]
        rec = [m for m in recurrences if m in by.index]
        if not att or not rec:
            continue
        if not any(solved(c) for c in cell.itertuples()):
            out[(s, w)] = "undecided"  # no model converged within its cap
            continue
        pairs = [
            settled(compare(by.at[a, "values"], by.at[r, "values"]), (s, w, a) in open_,
                    (s, w, r) in open_)
            for a in att for r in rec
        ]  # fmt: skip
        if all(p == "ahead" for p in pairs):
            out[(s, w)] = "ahead"
        elif any(p in ("level", "behind") for p in pairs):
            out[(s, w)] = "not ahead"
        else:
            out[(s, w)] = "undecided"
    return out


def decide(share: float) -> str:
    if share >= RULE.supported:
        return "supported"
    if share <= RULE.refuted:
        return "not supported"
    return "nuanced"


def deciding(cells: pd.DataFrame) -> list[str]:
    """The settings the verdict reads, easiest first: those at T >= RULE.long when any was run
    (the shorter ones stay beside them as a control line), else every setting but the control
    (the quick CPU profile's short cell)."""
    rest = cells[cells.setting != control_setting(cells)]
    long = rest[rest.seq_len >= RULE.long]
    return list(dict.fromkeys((long if len(long) else rest).sort_values(["kv", "seq_len"]).setting))


def verdict(cells: pd.DataFrame) -> tuple[str, str] | None:
    """(verdict, measured); None without an attention model and a recurrence (no data)."""
    attention, recurrences = in_family(cells, *ATTENTION), in_family(cells, *RECURRENCES)
    if not attention or not recurrences:
        return None
    passed = passing(cells)
    att = [m for m in attention if passed[m]]
    rec = [m for m in recurrences if passed[m]]
    found = outcomes(cells, att, rec) if att and rec else {}
    reads = deciding(cells)
    result = {k: v for k, v in found.items() if k[0] in reads}
    measured = _measured(cells, found, passed) + unnamed_text(
        cells, COMPARES, ATTENTION_VS_RECURRENCE, verdict
    )
    if not result:
        return "inconclusive", measured
    n = len(result)
    ahead = sum(v == "ahead" for v in result.values())
    undecided = sum(v == "undecided" for v in result.values())
    best, worst = decide((ahead + undecided) / n), decide(ahead / n)
    return (best if best == worst else "inconclusive"), measured


def _accuracies(cells: pd.DataFrame, setting: str) -> str:
    """'T=64, kv=4, d_model 64: gru 0.27 [0.25, 0.29] at lr 0.01 (best of 4), ...': each
    model's test accuracy in a setting at its widest width (the recurrences' best chance)."""
    at = cells[cells.setting == setting]
    at = at[at.d_model == at.d_model.max()]
    accs = ", ".join(
        f"{c.model} {fmt(Estimate(c.acc, c.acc_lo, c.acc_hi, c.seeds))} at lr {c.lr}"
        for c in at.itertuples()
    )
    return f"{setting}, d_model {int(at.d_model.max())}: {accs}"


def _measured(cells, found, passed) -> str:
    """The outcome over the cells the verdict reads, the accuracies in the hardest of them,
    and the shorter settings as a control line (shown, not read)."""
    control, reads = control_setting(cells), deciding(cells)
    result = {k: v for k, v in found.items() if k[0] in reads}
    ahead = sum(v == "ahead" for v in result.values())
    undecided = sum(v == "undecided" for v in result.values())
    out = (
        f"attention ahead of every recurrence in {ahead}/{len(result)} cells ({undecided} "
        f"undecided) of {'; '.join(reads) or control}; test accuracy at "
        f"{_accuracies(cells, reads[-1] if reads else control)} ({seeds_text(cells)})"
    )
    shorter = [s for s in dict.fromkeys(cells.setting) if s not in reads and s != control]
    for s in shorter:  # the T=16 cells beside the long ones: a control line, never deciding
        said = sorted({v for (k, _), v in found.items() if k == s}) or ["not compared"]
        out += f"; shown, not read: attention {'/'.join(said)} at {_accuracies(cells, s)}"
    notes = [v for (s, _, _), v in sorted(unsettled(cells).items()) if s in reads]
    return out + left_out(passed, control) + censored_text(notes)


def confirmed(tables) -> bool:
    """Is the verdict read on the full profile's cells (T >= RULE.long, the rate swept per
    cell) rather than the quick profile's T=16 ones? Then it is not preliminary, though no run
    trained at 4x the budget (seqbench.report.stability)."""
    ok = mqar_runs(tables["runs"])
    return not ok.empty and bool((ok.seq_len >= RULE.long).any())


def verdicts(tables) -> list[Verdict]:
    ok = with_test(mqar_runs(tables["runs"]), tables, STUDY)
    result = verdict(cell_table(ok)) if not ok.empty else None
    if result is None:
        return []
    v, measured = needs_test(ok, *result)
    return [Verdict("C5", f"{STUDY} (Zoology, accuracy vs d_model)", measured, RULE, v)]


# --- the section ---------------------------------------------------------------------------
CPU_CUT = (  # what a CPU profile leaves out, said where every run was on the CPU
    " This is {which}: Zoology's vocabulary of 8,192 (its output layer costs 5-10x the rest "
    "of these models on one core), its 100k-example pool, {settings} the width 128 and the "
    "scan models are the GPU profile's; {kept}."
)
QUICK = {  # the quick profile, and the full one with the long cells (T >= RULE.long)
    False: {"which": "the quick CPU profile", "settings": "its settings from (64, 4) up,",
            "kept": "the full CPU profile adds T=64 with 4 and 8 pairs, the lr swept per cell"},
    True: {"which": "the full CPU profile", "settings": "its settings from (128, 8) up,",
           "kept": "the T=64 cells run at vocabulary 64 with the lr swept per cell"},
}  # fmt: skip


def _lr_text(ok: pd.DataFrame) -> str:
    """How the rate was chosen, said of the settings it applies to: calibrated once per model
    (``train.lr_grid``: the T=16 cells) or the best of a grid swept per cell (the T=64 ones)."""
    ok = ok.sort_values(["kv", "seq_len"])  # the settings named easiest first
    grid = ok["train.lr_grid"] if "train.lr_grid" in ok else pd.Series(None, index=ok.index)
    calibrated = grid.map(lambda g: isinstance(g, list | tuple)).astype(bool)
    parts = [p for p in (ok[calibrated], ok[~calibrated]) if len(p)]
    if len(parts) == 1:
        return lr_sentence(ok, "cell")
    return "".join(
        f" Learning rate at {' and '.join(dict.fromkeys(p.setting))}:"
        + lr_sentence(p, "cell").removeprefix(" Learning rate:")
        for p in parts
    )


def _setup(ok: pd.DataFrame) -> str:
    """What was run, read from the runs (and what the CPU profiles cut)."""
    first = ok.iloc[0]
    pool = first.get("data.n_train")
    pool = f"a fixed pool of {int(pool):,} training examples" if pd.notna(pool) else "fresh data"
    text = (
        f"Runs: vocabulary {int(first.vocab_size)}, {pool}, settings "
        + "; ".join(dict.fromkeys(ok.sort_values(["kv", "seq_len"]).setting))
        + f"; d_model {', '.join(str(w) for w in sorted(ok.d_model.unique()))}, "
        f"{seeds_text(cell_table(ok))} per cell, batch {int(first['train.batch_size'])}, "
        f"trained to {first.criterion} (checked every {int(first['train.eval_every'])} steps) "
        f"or the cap of {int(ok.cap.max())} steps."
    )
    cut = CPU_CUT.format(**QUICK[bool((ok.seq_len >= RULE.long).any())])
    return text + _lr_text(ok) + cpu_only(ok, cut)


def _figure(cells: pd.DataFrame, figs) -> str:
    settings = list(dict.fromkeys(cells.sort_values(["kv", "seq_len"]).setting))
    named = [f"{s}\n(control)" if s == control_setting(cells) else s for s in settings]
    widths = sorted(cells.d_model.unique())
    by_width = len(widths) > 1  # Zoology's figure: a panel per setting, x = width
    fig, axes = figs.figure(ncols=len(settings) if by_width else 1, width=3.8 if by_width else 5)
    models = sorted(cells.model.unique())
    for i, model in enumerate(models):
        g = cells[cells.model == model]
        if by_width:
            for ax, s, n in zip(axes, settings, named):
                part = g[g.setting == s]
                figs.line(ax, part.d_model, part.acc, part.acc_lo, part.acc_hi, model=model,
                          marker="o", clip=UNIT_RANGE)  # fmt: skip
                ax.set_title(n.replace("\n", " "))
        else:  # settings are categories: points side by side, never joined by a line
            x = (
                np.array([settings.index(s) for s in g.setting])
                + (i - (len(models) - 1) / 2) * 0.12
            )
            axes[0].errorbar(x, g.acc, yerr=clipped_yerr(g.acc, g.acc_lo, g.acc_hi, UNIT_RANGE),
                             ls="none", marker="o", capsize=3, color=figs.color(model),
                             label=model)  # fmt: skip
    chance = cells.chance.dropna() if "chance" in cells else pd.Series(dtype=float)
    for ax in axes[: len(settings) if by_width else 1]:
        reference(ax, RULE.solved, f"solved: {RULE.solved:.0%}", kind="threshold")
        if len(chance):  # a guess among the values (the upper half of the vocabulary)
            reference(ax, float(chance.iloc[0]), f"chance 1/{round(1 / chance.iloc[0])}")
        if by_width:
            log_axis(ax, "x", widths)
            ax.set(xlabel="model width d_model (channels)")
        else:
            ax.set_xticks(range(len(settings)), named, fontsize=8)
            ax.set_xlim(-0.5, len(settings) - 0.5)
            ax.set(xlabel="setting (T tokens, kv key-value pairs)",
                   title=f"one width measured: d_model {widths[0]}")  # fmt: skip
        ax.set(ylabel="test accuracy", ylim=(0, 1.0))
    figs.legend(fig)
    return figs.save(fig, "mqar_accuracy_vs_width", "C5")


def _caption(ok: pd.DataFrame, cells: pd.DataFrame) -> str:
    """What the figure and the table show (``shown, not read`` only where it occurs)."""
    mixed = (cells.seq_len < RULE.long).any() and (cells.seq_len >= RULE.long).any()
    shown = f"; `shown, not read`: shorter than T={RULE.long}, beside longer settings"
    return (
        f"Accuracy on the scored query positions, {on_test_set(ok)} (line: mean over seeds; "
        "band: 95% t interval over seeds). Column `attention`: the attention model against "
        "every recurrence in that cell (with every model that passed the control"
        f"{shown if mixed else ''}), `reached`: seeds at the criterion, `steps`: mean steps "
        "to it, `lr`: the rate (of a grid swept per cell, the best on the held-out batches)."
    )


def _outcome(c, control: str, reads: list, found: dict) -> str:
    """A cell_table row's entry in the column `attention`."""
    if c.setting == control:
        return "control"
    said = found.get((c.setting, c.d_model), "-")
    return said if c.setting in reads else f"{said} (shown, not read)"


def section(tables, figs) -> str:
    ok = with_test(mqar_runs(tables["runs"]), tables, STUDY)
    if ok.empty:
        return "_No completed runs of the MQAR study yet._"
    cells = cell_table(ok)
    passed = passing(cells)
    attention = [m for m in in_family(cells, *ATTENTION) if passed[m]]
    found = outcomes(cells, attention, [m for m in in_family(cells, *RECURRENCES) if passed[m]])
    control, reads = control_setting(cells), deciding(cells)
    table = pd.DataFrame(
        {
            "setting": cells.setting,
            "d_model": cells.d_model,
            "model": cells.model,
            "params": cells.params,
            "test accuracy": [
                fmt(Estimate(c.acc, c.acc_lo, c.acc_hi, c.seeds)) for c in cells.itertuples()
            ],  # fmt: skip
            "reached": [f"{c.reached}/{c.seeds}" for c in cells.itertuples()],
            "steps": [steps_text(c) for c in cells.itertuples()],
            "lr": cells.lr,
            "attention": [_outcome(c, control, reads, found) for c in cells.itertuples()],
        }
    )
    return "\n\n".join(
        [
            _setup(ok),
            _caption(ok, cells),
            _figure(cells, figs) if cells.acc.notna().any() else "_No test accuracy to draw._",
            md_table(table),
        ]
    )
