"""Helpers the studies share: Zoology's best-of-grid selection and the learning-rate table,
and how a cell's seeds, steps to a criterion and control overrides read in a claims row.
(A private module: study discovery skips names that start with an underscore.)"""

import pandas as pd

from seqbench.models import SIZES
from seqbench.report.stats import Estimate, fmt


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


# --- helpers the studies share: which rows, which families ---------------------------------
def complete(df: pd.DataFrame | None, study: str | None = None) -> pd.DataFrame:
    """The complete rows of a table (optionally of one study); empty when there are none."""
    if df is None or df.empty or "status" not in df:
        return pd.DataFrame()
    ok = df[df.status == "complete"]
    if study is not None and "study" in ok:
        ok = ok[ok.study == study]
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
