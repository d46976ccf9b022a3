"""Is a verdict stable? Each study's verdicts are recomputed on perturbed tables:

    without seed s        every row of seed s removed (runs, curves, positions, measurements)
    at half the budget    each training run read at its last evaluation at or before half its
                          step cap (from its curve): a criterion reached later counts as not
                          reached, curves end there

and the claims table's stability column says ``stable`` or what flips the verdict ("without
seed 1: inconclusive"). A perturbation that changes none of a study's rows does not apply
to it; when none applies the column says so. Position-loss curves exist only for the final
evaluation, so the half-budget check leaves them as they are.
"""

import numpy as np
import pandas as pd

METRICS = ("val_loss", "val_acc", "val_ppl")


def without_seed(tables: dict, seed) -> dict:
    out = {}
    dropped = set()
    runs = tables.get("runs")
    if runs is not None and not runs.empty and "seed" in runs:
        dropped = set(runs.run[runs.seed == seed])
    for name, df in tables.items():
        if df is None or df.empty:
            out[name] = df
        elif "seed" in df:
            out[name] = df[df.seed != seed]
        elif "run" in df and dropped:
            out[name] = df[~df.run.isin(dropped)]
        else:
            out[name] = df
    return out


def half_budget(tables: dict) -> dict:
    runs, curves = tables.get("runs"), tables.get("curves")
    if runs is None or runs.empty or curves is None or curves.empty or "train.steps" not in runs:
        return tables
    runs = runs.copy()
    half = (pd.to_numeric(runs["train.steps"], errors="coerce") // 2).to_dict()
    keep, cut = [], []
    by_run = dict(tuple(curves.groupby("run")))
    for i, row in runs.iterrows():
        g = by_run.get(row.run)
        if g is None or not np.isfinite(half[i]):
            keep.append(i)
            continue
        g = g[g.step <= half[i]]
        cut.append(g)
        evals = g.dropna(subset=["val_loss"]) if "val_loss" in g else g.iloc[0:0]
        if evals.empty:
            continue  # never evaluated in the first half: no figure at half the budget
        last = evals.iloc[-1]
        for m in METRICS:
            if m in runs and m in last:
                runs.at[i, m] = last[m]
        if "step" in runs:
            runs.at[i, "step"] = last.step
        if "steps_to_criterion" in runs and pd.notna(row.get("steps_to_criterion")):
            if row["steps_to_criterion"] > half[i]:
                runs.at[i, "steps_to_criterion"] = np.nan  # reached only in the second half
        keep.append(i)
    return tables | {
        "runs": runs.loc[keep],
        "curves": pd.concat(cut, ignore_index=True) if cut else curves.iloc[0:0],
    }


def _touches(before: dict, after: dict, studies: set) -> bool:
    """Did the perturbation change any row of these studies?"""
    for name, df in before.items():
        if df is None or df.empty or "study" not in df:
            continue
        new = after.get(name)
        mine = df.study.isin(studies)
        if new is None or len(new) != len(df) or (new.index != df.index).any():
            if mine.any():
                return True
            continue
        if mine.any() and not new[mine.values].equals(df[mine]):
            return True
    return False


def seeds_of(tables: dict, studies: set) -> list:
    """The seeds behind these studies' rows, in any table that has a seed column."""
    seeds = set()
    for df in tables.values():
        if df is not None and not df.empty and {"seed", "study"} <= set(df):
            seeds |= set(df.seed[df.study.isin(studies)].dropna().unique())
    return sorted(seeds)


def perturbations(tables: dict, seeds=()):
    """(label, perturbed tables): leaving each seed out (only where there are two or more:
    leaving out the only seed leaves no data, which says nothing), and half the budget."""
    if len(seeds) >= 2:
        for s in seeds:
            yield f"without seed {int(s)}", without_seed(tables, s)
    yield "at half the budget", half_budget(tables)


def annotate(module, study: str, tables: dict, verdicts: list) -> list:
    """The verdicts with their stability column filled. A study whose verdicts read other
    studies' runs names them in ``READS`` (optional), so their perturbations count."""
    if not verdicts:
        return verdicts
    reads = {study, *getattr(module, "READS", ())}
    flips = {id(v): [] for v in verdicts}
    applied = 0
    seeds = seeds_of(tables, reads)
    for label, perturbed in perturbations(tables, seeds):
        if not _touches(tables, perturbed, reads):
            continue
        applied += 1
        try:
            again = {(v.claim, v.experiment): v.verdict for v in module.verdicts(perturbed)}
        except Exception as e:  # a perturbation the verdict code cannot take is a flip too
            again = {(v.claim, v.experiment): f"failed ({type(e).__name__})" for v in verdicts}
        for v in verdicts:
            new = again.get((v.claim, v.experiment), "not measured")
            if new != v.verdict:
                flips[id(v)].append(f"{label}: {new}")
    for v in verdicts:
        if v.stability:
            continue
        if not applied:
            v.stability = "n/a (no seeds or training budget behind it)"
        else:
            v.stability = "; ".join(flips[id(v)]) or "stable"
            if len(seeds) < 2:
                v.stability += " (one seed: none to leave out)"
    return verdicts
