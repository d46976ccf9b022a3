"""Helpers the studies share, the one module they share them through (a study never imports
another): a study's own name, which rows are complete, Zoology's best-of-grid selection and
the learning-rate table, how a cell's seeds, steps to a criterion and control overrides read in
a claims row, and how timed rows read (their spread, whether timed groups agree, the hardware
the claim is about). A private module: study discovery skips names that start with an
underscore."""

import pandas as pd

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
            f"{_rates(grid.iloc[0])} with {lr_control(ok.iloc[0])}, seed 0; the fastest to the "
            f"criterion wins, else the lowest held-out loss) and reused by every cell and seed: "
            f"{lrs}."
        )
    return f" Learning rate: best of the swept grid per (model, {cell}): {lrs}."


def left_out(passed: dict, control: str) -> str:
    """'; left out, control d=2 not solved: rnn': the models a verdict leaves out because
    they failed its control cell ({model: passed}); '' when every model passed."""
    left = sorted(m for m, ok in passed.items() if not ok)
    return f"; left out, control {control} not solved: {', '.join(left)}" if left else ""


def cpu_only(ok: pd.DataFrame, note: str) -> str:
    """``note`` (what the CPU profile cuts) where every run of ``ok`` ran on the CPU, else ''."""
    return note if set(ok.device.dropna()) <= {"cpu"} else ""


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
