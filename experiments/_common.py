"""Helpers the studies share, the one module they share them through (a study never imports
another): a study's own name, which rows are complete, Zoology's best-of-grid selection and
the learning-rate table, how a cell's seeds, steps to a criterion and control overrides read in
a claims row, and how timed rows read (their spread, whether timed groups agree, the hardware
the claim is about). A private module: study discovery skips names that start with an
underscore."""

import pandas as pd

from seqbench.data import TEST_SEQUENCES
from seqbench.models import SIZES
from seqbench.report.analysis import ratio, value_at
from seqbench.report.stats import Estimate, fmt


def study_of(module_name: str) -> str:
    """A study's name from its module's ``__name__`` (seqbench.studies.recall -> recall): a
    study says ``STUDY = study_of(__name__)`` once instead of retyping its own name."""
    return module_name.rsplit(".", 1)[-1]


def best_of_grid(runs: pd.DataFrame, cell=(), metric="val_loss") -> pd.DataFrame:
    """Zoology's selection (Arora et al. 2023): where a (model, cell) was trained at several
    learning rates (the GPU profile sweeps train.lr), keep the rows of the lr whose mean
    ``metric`` over seeds is lowest; a cell trained at one lr (a calibrated one) stays as is."""
    if runs.empty or "lr" not in runs or runs.lr.nunique(dropna=True) < 2:
        return runs
    keys = ["model", *cell]
    mean = runs.groupby([*keys, "lr"], dropna=False)[metric].mean().reset_index()
    mean = mean.dropna(subset=[metric])  # an lr with no finite score cannot be the best
    best = mean.loc[mean.groupby(keys, dropna=False)[metric].idxmin()]
    return runs.merge(best[[*keys, "lr"]], on=[*keys, "lr"])


def lr_table(runs: pd.DataFrame, cell=()) -> pd.DataFrame:
    """The learning rate each (model, cell) used, the grid it came from, and how it was
    chosen: calibrated on a control run (train.lr_grid) or best of a swept grid."""
    rows = []
    for key, g in runs.groupby(["model", *cell], dropna=False):
        grid = g["train.lr_grid"].dropna() if "train.lr_grid" in g else pd.Series(dtype=object)
        swept = sorted(g.lr.dropna().unique())
        if len(grid) and isinstance(grid.iloc[0], list | tuple):
            how, values = "calibrated on the control", list(grid.iloc[0])
        else:
            how, values = ("best of the swept grid" if len(swept) > 1 else "fixed"), swept
        chosen = best_of_grid(g, cell).lr.dropna().unique()
        if len(values) > 1 and len(chosen) == 1 and chosen[0] in (min(values), max(values)):
            # the optimum may lie outside: say so rather than let the grid look sufficient
            how += f" ({'top' if chosen[0] == max(values) else 'bottom'} of the grid)"
        rows.append(
            dict(zip(["model", *cell], key if isinstance(key, tuple) else (key,)))
            | {"lr": _rates(chosen), "grid": _rates(values), "how": how}
        )
    return pd.DataFrame(rows)


def size_rank(size) -> tuple:
    """Sort key for size presets in size order (5xs, 4xs, ..., xs, s, m, l; others after, by
    name), so a table of sizes never reads 2xs, 3xs, ..., l, m, s, xs."""
    return (SIZES.index(size), "") if size in SIZES else (len(SIZES), str(size))


def _rates(values) -> str:
    """Learning rates as the page reads them ('0.001, 0.003'), never a Python repr of a list
    of numpy floats ('[np.float64(0.003)]')."""
    return ", ".join(f"{float(v):g}" for v in values) or "-"


def seeds_text(cells: pd.DataFrame) -> str:
    """'3 seeds', or '2-3 seeds' where cells differ."""
    lo, hi = int(cells.seeds.min()), int(cells.seeds.max())
    return f"{lo} seed{'s' * (hi > 1)}" if lo == hi else f"{lo}-{hi} seeds"


def steps_text(c) -> str:
    """Steps to the criterion of a cell_table row: its interval when every seed got there,
    '> cap' when none did, else a lower bound (the seeds at the cap count at the cap)."""
    if c.reached == c.seeds:
        return fmt(estimate_of(c, "steps"))
    if c.reached == 0:
        return f"> {c.cap}"
    return f">= {c.steps:.0f} ({c.seeds - c.reached}/{c.seeds} seeds at the cap)"


def estimate_of(c, what) -> Estimate:
    """The Estimate of a cell_table row's ``what`` (acc or steps)."""
    return Estimate(getattr(c, what), getattr(c, f"{what}_lo"), getattr(c, f"{what}_hi"), c.seeds)


def lr_control(run) -> str:
    """The calibration runs' overrides of one run row, as 'key=value' (flat() of the dict)."""
    keys = [k for k in run.index if k.startswith("train.lr_control.") and pd.notna(run[k])]
    return ", ".join(f"{k.removeprefix('train.lr_control.')}={run[k]:g}" for k in keys)


def lr_sentence(ok: pd.DataFrame, cell: str) -> str:
    """How the learning rate was chosen, read from the runs: calibrated once per model on the
    control (``train.lr_grid``), or the best of a grid swept per (model, ``cell``); with each
    model's rate(s)."""
    lrs = ", ".join(
        f"{m} {'/'.join(f'{v:g}' for v in sorted(g.lr.dropna().unique()))}"
        for m, g in ok.groupby("model")
    )
    grid = ok["train.lr_grid"].dropna() if "train.lr_grid" in ok else pd.Series(dtype=object)
    if len(grid) and isinstance(grid.iloc[0], list | tuple):
        return (
            f" Learning rate: calibrated once per model on the control (one run per lr of "
            f"{_rates(grid.iloc[0])} with {lr_control(ok.iloc[0])}, seed 0, trained to its end "
            f"under the run's own schedule{_schedule(ok)}; the lowest held-out loss at the end "
            f"wins, and a best rate at an edge extends the grid x3 on that side, twice at most) "
            f"and reused by every cell and seed: {lrs}.{_edges(ok)}"
        )
    return f" Learning rate: best of the swept grid per (model, {cell}): {lrs}."


def _schedule(ok: pd.DataFrame) -> str:
    """' (constant after warm-up)' for runs with a stopping criterion, '' otherwise."""
    crit = ok["train.criterion"].dropna() if "train.criterion" in ok else pd.Series(dtype=object)
    return " (constant after warm-up)" if len(crit) and crit.astype(str).ne("").any() else ""


def _edges(ok: pd.DataFrame) -> str:
    """' Still at an edge of the extended grid: lstm (1e-3/.../0.09).': the models whose
    calibrated rate the grid could not bracket (collect's lr_at_edge), '' when none."""
    if "lr_at_edge" not in ok:
        return ""
    edge = ok[ok.lr_at_edge.eq(True)].drop_duplicates("model")
    named = ", ".join(f"{r.model} ({r.lr_grid_searched})" for r in edge.itertuples())
    return f" Still at an edge of the extended grid: {named}." if named else ""


def left_out(passed: dict, control: str) -> str:
    """'; left out, control d=2 not solved: rnn': the models a verdict leaves out because
    they failed its control cell ({model: passed}); '' when every model passed."""
    left = sorted(m for m, ok in passed.items() if not ok)
    return f"; left out, control {control} not solved: {', '.join(left)}" if left else ""


def cpu_only(ok: pd.DataFrame, note: str) -> str:
    """``note`` (what the CPU profile cuts) where every run of ``ok`` ran on the CPU, else ''."""
    return note if set(ok.device.dropna()) <= {"cpu"} else ""


# --- censored runs (issue 22): stopped at the cap while improving or at chance ---------------
LONG_ENOUGH = 4  # a cap decides a failure when >= this x the steps the slowest solver needed
CENSORING = (  # a rule's sentence ends with this, its Rule given long_enough=LONG_ENOUGH
    "a run stopped at its step cap while its held-out loss still improved or while still at "
    "chance is censored: its cell is undecided, never failed, unless the cap is >= "
    "{long_enough}x the steps the slowest model that solved the cell (every seed at its "
    "criterion) needed"
)


def step_cap(runs: pd.DataFrame) -> pd.Series:
    """Per run: the step cap it trained under. The report's collect (``capped``) already
    multiplies train.steps by train.budget, so a 4x run is read against its own cap here."""
    return pd.to_numeric(runs["train.steps"], errors="coerce").astype(float)


def censored(runs: pd.DataFrame) -> pd.Series:
    """Per run: was it censored (evaluate.stop_reason, recorded or derived by report.collect)?
    A table without the column (hand-made) has no censored run."""
    if "censored" not in runs:
        return pd.Series(False, index=runs.index)
    return runs.censored.map(lambda v: v is True or v == 1 or str(v).lower() == "true")


def long_enough(cap, slowest) -> bool:
    """Does a cap decide a failure: >= LONG_ENOUGH x the steps the slowest model that solved
    the cell needed (``slowest``: nan or None when no model solved it, and then it cannot)?"""
    return slowest is not None and pd.notna(slowest) and cap >= LONG_ENOUGH * slowest


def censored_note(label: str, cap, slowest) -> str:
    """'lstm d=16: censored at 400 steps (< 4 x 175)', or '(no model solved the cell)'."""
    why = (
        f"< {LONG_ENOUGH} x {slowest:.0f}"
        if slowest is not None and pd.notna(slowest)
        else "no model solved the cell"
    )
    return f"{label}: censored at {int(cap)} steps ({why})"


def censored_text(notes) -> str:
    """'; censored, so undecided: <note>, <note>' for the measured column; '' without any."""
    return f"; censored, so undecided: {', '.join(notes)}" if notes else ""


# --- helpers the studies share: which rows, which families ---------------------------------
def complete(df: pd.DataFrame | None, *studies: str) -> pd.DataFrame:
    """The complete rows of a table (of ``studies`` when named); empty when there are none."""
    if df is None or df.empty or "status" not in df:
        return pd.DataFrame()
    ok = df[df.status == "complete"]
    if studies and "study" in ok:
        ok = ok[ok.study.isin(studies)]
    return ok.copy()


def family_of(df: pd.DataFrame) -> dict:
    """model -> family, as the runs recorded it (the model class declares its family)."""
    if df is None or df.empty or "family" not in df:
        return {}
    pairs = df[["model", "family"]].dropna().drop_duplicates()
    return dict(zip(pairs.model, pairs.family))


def in_family(df: pd.DataFrame, *families) -> list[str]:
    """The models of a table that belong to any of ``families``, sorted."""
    fam = family_of(df)
    return sorted(m for m, f in fam.items() if f in families)


# --- every family counted or named (issue 22): a rule names the families it compares ---------
def unnamed_families(df: pd.DataFrame, named) -> dict[str, list[str]]:
    """family -> its models, for every family of the table that the rule does not name (a
    user's ``ssm``, a ``conv``): the models the rule leaves out of its comparison."""
    out: dict[str, list[str]] = {}
    for model, family in sorted(family_of(df).items()):
        if family not in named:
            out.setdefault(family, []).append(model)
    return out


def as_family(df: pd.DataFrame, models, family: str, named) -> pd.DataFrame:
    """The table with ``models`` standing as the ``family`` side of a rule in place of that
    family's own models (the other named families kept, other unnamed families left out):
    what the rule says of those models on that side."""
    mine = df.model.isin(models)
    out = df[mine | (df.family.isin(named) & (df.family != family))].copy()
    out.loc[out.model.isin(models), "family"] = family
    return out


# the sides of a rule that compares attention with the recurrences: {label: family}
ATTENTION_VS_RECURRENCE = {"attention": "attention", "a recurrence": "recurrent"}


def _word(said) -> str:
    """A verdict function's answer as one word: (verdict, measured) or a Verdict -> its
    verdict; None (no data for the rule) -> 'no verdict'."""
    if said is None:
        return "no verdict"
    if isinstance(said, tuple):
        return said[0]
    return getattr(said, "verdict", str(said))


def unnamed_text(df: pd.DataFrame, named, sides: dict, judge) -> str:
    """'; ssm (not compared by this rule: s4): as attention, supported; as a recurrence, not
    supported' for each unnamed family of ``df``: its models and the verdict ``judge(table)``
    gives with them standing as each side ({label: family}) of the rule in place of that
    side's models (``as_family``), so a model the rule does not compare is named in the
    measured column with what the rule would say of it, never silently dropped.
    '' when every family of the table is named. ``judge`` may be the study's own verdict
    function: the relabelled table has no unnamed family left, so it recurses once."""
    lines = []
    for family, models in unnamed_families(df, named).items():
        said = [
            f"as {label}, {_word(judge(as_family(df, models, side, named)))}"
            for label, side in sides.items()
        ]
        lines.append(f"; {family} (not compared by this rule: {', '.join(models)}): "
                     + "; ".join(said))  # fmt: skip
    return "".join(lines)


# --- timed rows: the machine, the spread, and whether timed groups agree ----------------------
# (time_vs_length and decode_cost read timings alike; a study never imports another)
PARALLEL = "cuda"  # the hardware the wall-clock claims are about; elsewhere "not measured on"
TIMED = "n/a (timing medians with IQR over timed blocks; no seeds or training)"


def not_parallel(rows) -> str | None:
    """The devices among ``rows`` that are not PARALLEL ('cpu'); None when all are."""
    kinds = {str(d).split(":")[0] for d in rows.device.dropna()}
    others = sorted(kinds - {PARALLEL})
    return ", ".join(others) if others else None


def median_iqr(g, x, at, y="median_s", iqr="iqr_s", scale=1e3, unit="ms") -> str:
    """'12.3 ms (IQR 0.41)': the median and IQR of the row of ``g`` where ``x == at``."""
    med, spread = value_at(g, x, at, y), value_at(g, x, at, iqr)
    return f"{fmt(med * scale, 3)} {unit} (IQR {fmt(spread * scale, 2)})"


def block_ratio(num, den, x, at, col="block_{}_s") -> tuple[float, float]:
    """(lowest, highest) ratio num / den that the rows' group medians allow at ``x == at``:
    num's lowest group over den's highest, and the reverse. The two series ran at different
    times, so their groups are not paired: the range is the widest the groups allow. (nan,
    nan) when the rows carry no groups (runs from before they were recorded)."""
    lo, hi = col.format("min"), col.format("max")
    if not {lo, hi} <= set(num) & set(den):
        return float("nan"), float("nan")
    return (ratio(value_at(num, x, at, lo), value_at(den, x, at, hi)),
            ratio(value_at(num, x, at, hi), value_at(den, x, at, lo)))  # fmt: skip


def blocks_disagree(ranges: dict, threshold) -> str:
    """'blocks disagree: 0.82-1.3 (lstm)': the comparisons whose block range ({name: (lo,
    hi)}) lies on both sides of the rule's ``threshold``; '' when every block agrees."""
    split = {n: r for n, r in ranges.items() if r[0] <= threshold < r[1]}
    if not split:
        return ""
    lo, hi = min(r[0] for r in split.values()), max(r[1] for r in split.values())
    return f"blocks disagree: {fmt(lo, 2)}-{fmt(hi, 2)} ({', '.join(split)})"


def honest(verdict, measured, note) -> tuple[str, str]:
    """A verdict whose timed blocks disagree is ``inconclusive`` and says so; a verdict that
    is ``not measured on`` this hardware keeps its word and gains the note."""
    if not note:
        return verdict, measured
    keep = verdict.startswith("not measured on ")
    return (verdict if keep else "inconclusive"), f"{measured}; {note}"


# --- reported figures come from the test set (issue 22): seqbench.measure.test_set ----------
TEST_TABLE = "test_set"  # the table of seqbench.measure.test_set's rows
TEST_COLUMNS = ("test_acc", "test_loss", "test_correct", "test_scored", "test_sequences")
TEST_WORDS = "on {n:,} test sequences the stopping rule never saw"
TEST_RULE = TEST_WORDS.format(n=TEST_SEQUENCES)  # what a rule's sentence says of its figures


def with_test(runs: pd.DataFrame, tables, *studies) -> pd.DataFrame:
    """``runs`` with the test figures of each training run (TEST_COLUMNS, NaN where its test
    set was not measured), joined by the training run's name from the complete test_set rows
    (of ``studies``). Selection (the criterion, the lr grid) keeps reading val_acc/val_loss;
    every figure a verdict reports reads these. Idempotent: figures a row already carries
    (joined before) are kept, the rest filled from the table."""
    if runs.empty:
        return runs
    test = complete(tables.get(TEST_TABLE), *studies)
    if test.empty or "train_run" not in test:
        test = pd.DataFrame(columns=["train_run", *TEST_COLUMNS])
    by_run = test.drop_duplicates("train_run", keep="last").set_index("train_run")
    # a figure scores the model state its run ended in: a row moved to another step (the
    # stability column's half budget) has no test figure
    same = pd.Series(True, runs.index)
    if "step" in runs and "train_steps" in by_run:
        scored = pd.to_numeric(runs.run.map(by_run.train_steps), errors="coerce")
        same = scored.isna() | (scored == pd.to_numeric(runs.step, errors="coerce"))
    joined = {}
    for c in TEST_COLUMNS:
        found = runs.run.map(by_run[c]) if c in by_run else pd.Series(float("nan"), runs.index)
        found = found.where(same)
        joined[c] = runs[c].fillna(found) if c in runs else found
    return runs.assign(**{c: pd.to_numeric(v, errors="coerce") for c, v in joined.items()})


def untested(runs: pd.DataFrame) -> str:
    """'test set not measured for 5 of 36 runs (what=test_set)'; '' when every run has its
    test figures."""
    missing = int(runs.test_acc.isna().sum()) if "test_acc" in runs else len(runs)
    if not missing:
        return ""
    return f"test set not measured for {missing} of {len(runs)} runs (what=test_set)"


def needs_test(runs: pd.DataFrame, verdict: str, measured: str) -> tuple[str, str]:
    """A verdict read on runs some of which lack their test figures is ``inconclusive``, the
    measured column saying so first; else (verdict, measured) as they are."""
    missing = untested(runs)
    return ("inconclusive", f"{missing}; {measured}") if missing else (verdict, measured)


def on_test_set(runs: pd.DataFrame) -> str:
    """'on 1,024 test sequences the stopping rule never saw' (the fewest of ``runs``)."""
    n = runs.test_sequences.min() if "test_sequences" in runs else float("nan")
    if pd.notna(n):
        return TEST_WORDS.format(n=int(n))
    measured = "test_acc" in runs and runs.test_acc.notna().any()
    return (
        "on test sequences the stopping rule never saw" if measured else "(test set not measured)"
    )
