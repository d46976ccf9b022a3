"""Is a verdict stable? Each study's verdicts are read on the runs of the experiment's own
setting (``at``: train.budget 1, train.lr_step 0) and recomputed on perturbed tables:

    without seed s          every row of seed s removed (runs, curves, positions, measurements)
    at half the budget      each training run read at its last evaluation at or before half its
                            step cap (from its curve): a criterion reached later counts as not
                            reached, curves end there
    at 4x the budget        the full profile's longer runs (``train.budget=4``) in its place
    at the next smaller lr  the runs one grid position below the calibrated rate
    at the next larger lr   (``train.lr_step=-1`` / ``1``), at 1x the budget

and the claims table's stability column says ``stable`` or what flips the verdict ("without
seed 1: inconclusive"). A perturbation that changes none of a study's rows, or a setting
with no runs of the study (or of a study it READS), does not apply to it; when none applies
the column says so. Position-loss curves exist only for the final evaluation, so the
half-budget check leaves them as they are; a study whose verdicts read test figures (what=
test_set scores the model a run ended with, which a run cut at half its budget never was)
skips it: its 4x runs check the budget instead.

A verdict that differs at 4x the budget was never a verdict: it is reported from the longer
budget (its verdict and measured figures), the seeds and half budget are perturbed there, and
the column names the 1x verdict ("at 1x the budget: inconclusive"). One that holds says so;
one of a study with training runs but none at 4x is ``preliminary`` (the quick profile's
budget), unless the study's ``confirmed(tables)`` says its verdict was read on the cells its
full profile adds instead (MQAR: T=64 with the rate swept per cell).
"""

import numpy as np
import pandas as pd

from seqbench.report.verdict import VERDICTS, Verdict

METRICS = ("val_loss", "val_acc", "val_ppl")
BUDGET, LR_STEP = "train.budget", "train.lr_step"  # run columns (NaN in older runs: 1 and 0)
LONGER = 4  # the full profile's <study>_long jobs: train.budget=4
HALF = "at half the budget"
NEIGHBOURS = ((-1, "at the next smaller lr"), (1, "at the next larger lr"))


def setting(df: pd.DataFrame, column: str, default: float) -> pd.Series:
    """A run column as numbers, ``default`` where the column or the value is missing (runs
    from before the key existed trained at budget 1 and the calibrated rate)."""
    if column not in df:
        return pd.Series(float(default), index=df.index)
    return pd.to_numeric(df[column], errors="coerce").fillna(default)


def _is_at(df: pd.DataFrame, budget, lr_step) -> pd.Series:
    """``budget`` None: every budget (a study that reads them together, ``own``)."""
    same = setting(df, BUDGET, 1) == budget if budget is not None else True
    return same & (setting(df, LR_STEP, 0) == lr_step)


def own(module, tables: dict) -> dict:
    """The tables a study's verdicts and section read: ``at`` its experiment's own budget,
    or every budget at once where the study declares ``BUDGETS = "all"`` (a reading across
    budgets, as the scaling study's loss-versus-compute envelope: its 4x runs are part of
    the verdict, not a check beside it)."""
    return at(tables, None if getattr(module, "BUDGETS", None) == "all" else 1)


def at(tables: dict, budget=1, lr_step=0) -> dict:
    """The tables of the runs trained at ``budget`` x the experiment's steps and ``lr_step``
    grid positions from the calibrated rate: a table with its own budget or lr_step column
    is filtered by it; any other keeps the rows whose run (or ``train_run``, the training run
    a measurement scored) is kept, or is no training run at all (a measurement's own rows)."""
    runs = tables.get("runs")
    dropped = set()
    if runs is not None and not runs.empty and "run" in runs:
        dropped = set(runs.run[~_is_at(runs, budget, lr_step)])
    out = {}
    for name, df in tables.items():
        if df is None or df.empty:
            out[name] = df
        elif BUDGET in df or LR_STEP in df:
            out[name] = df[_is_at(df, budget, lr_step)]
        else:
            keep = pd.Series(True, index=df.index)
            for column in ("run", "train_run"):
                if column in df:
                    keep &= ~df[column].isin(dropped)
            out[name] = df[keep]
    return out


def preferring(tables: dict, budget=LONGER) -> dict:
    """``at(tables)`` with each training run that has a twin at ``budget`` (``_covers``'s
    twin: same cell, model and seed) replaced by that twin, and the rows that read it with
    it: the tables a section draws when its verdict was read at the longer budget. A cell
    trained only at 1x (a study's control, a job the full profile does not lengthen) stays."""
    runs = tables.get("runs")
    if runs is None or runs.empty or "run" not in runs:
        return at(tables)
    one, far = runs[_is_at(runs, 1, 0)], runs[_is_at(runs, budget, 0)]
    if far.empty:
        return at(tables)
    twin = [c for c in one if c in ("task", "model", "seed") or c.startswith(("data.", "model."))]
    twin = [c for c in twin if c != "data.seed"]
    key = lambda df: pd.Series(list(map(tuple, df[twin].astype(str).to_numpy())), index=df.index)  # noqa: E731
    replaced = one[key(one).isin(set(key(far)))]
    kept = set(far.run) | (set(one.run) - set(replaced.run))
    dropped = set(runs.run) - kept
    out = {}
    for name, df in tables.items():
        if df is None or df.empty:
            out[name] = df
            continue
        keep = pd.Series(True, index=df.index)
        for column in ("run", "train_run"):
            if column in df:
                keep &= ~df[column].isin(dropped)
        if (BUDGET in df or LR_STEP in df) and not {"run", "train_run"} & set(df):
            keep &= _is_at(df, 1, 0) | _is_at(df, budget, 0)
        out[name] = df[keep & (setting(df, LR_STEP, 0) == 0)]
    return out


def has_runs(tables: dict, studies: set, budget=1, lr_step=0) -> bool:
    """Are there complete training runs of these studies at this setting, and (away from the
    experiment's own setting) does every cell they train hold all the replicates and models
    the experiment's setting holds? A full profile stopped part-way through a job leaves a
    cell with fewer runs, and a verdict read on it would be an artefact of where it stopped."""
    runs = tables.get("runs")
    if runs is None or runs.empty or "study" not in runs:
        return False
    mine = runs[runs.study.isin(studies)]
    if "status" in mine:
        mine = mine[mine.status == "complete"]
    there = mine[_is_at(mine, budget, lr_step)]
    if there.empty or (budget, lr_step) == (1, 0):
        return not there.empty
    return _covers(there, mine[_is_at(mine, 1, 0)])


def _covers(there: pd.DataFrame, base: pd.DataFrame) -> bool:
    """Does ``there`` hold a twin of every run of ``base`` in the cells ``there`` trains? A
    cell: the task and its data settings (the seed aside); a twin: the same cell, model
    settings, model and seed. ``there`` and ``base`` are rows of one runs table."""
    cell = [c for c in base if c == "task" or c.startswith("data.") and c != "data.seed"]
    twin = [*cell, *(c for c in base if c in ("model", "seed") or c.startswith("model."))]

    def keys(df: pd.DataFrame, cols: list) -> pd.Series:
        return pd.Series(list(map(tuple, df[cols].astype(str).to_numpy())), index=df.index)

    if base.empty:
        return True
    base = base[keys(base, cell).isin(set(keys(there, cell)))]
    return set(keys(base, twin)) <= set(keys(there, twin))


NOT_REPLICATES = ("ngram",)  # count baselines: one job (seed 0) measures every data seed


def without_seed(tables: dict, seed) -> dict:
    """Every row of replicate ``seed`` removed: its runs, the rows that read them, and the
    rows of tables with a seed column, except NOT_REPLICATES (the count baselines' job runs
    once, as seed 0, and scores each data seed's windows: a study picks the levels of the
    seeds its runs have, so dropping seed 0 must not drop every baseline)."""
    out = {}
    dropped = set()
    runs = tables.get("runs")
    if runs is not None and not runs.empty and "seed" in runs:
        dropped = set(runs.run[runs.seed == seed])
    for name, df in tables.items():
        if df is None or df.empty or name in NOT_REPLICATES:
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
    half = (pd.to_numeric(runs["train.steps"], errors="coerce") // 2).to_dict()  # collect.capped
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
    yield HALF, half_budget(tables)


def recompute(module, tables: dict, verdicts: list) -> dict:
    """(claim, experiment) -> the study's Verdict on ``tables``; a perturbation the verdict
    code cannot take is a flip too ('failed (KeyError)' in place of each verdict)."""
    try:
        return {_key(v): v for v in module.verdicts(tables)}
    except Exception as e:
        return dict.fromkeys(map(_key, verdicts), f"failed ({type(e).__name__})")


def _key(v: Verdict) -> tuple:
    return v.claim, v.experiment


def _word(found) -> str:
    return found.verdict if isinstance(found, Verdict) else (found or "not measured")


def _checks(module, tables: dict, reads: set, verdicts: list) -> tuple[list, int]:
    """([(label, recomputed verdicts)] of the seed and half-budget perturbations that touch
    these studies' rows, the number of seeds)."""
    seeds = seeds_of(tables, reads)
    final = _tested(tables, reads)
    done = [
        (label, recompute(module, perturbed, verdicts))
        for label, perturbed in perturbations(tables, seeds)
        if _touches(tables, perturbed, reads) and not (final and label == HALF)
    ]
    return done, len(seeds)


def _tested(tables: dict, reads: set) -> bool:
    """Do these studies' verdicts read test figures (what=test_set rows of their runs)? Those
    score the model each run ended with: a run read at half its budget has none, so the
    half-budget check cannot be made (the 4x runs check the budget in the other direction)."""
    runs, test = tables.get("runs"), tables.get("test_set")
    if runs is None or runs.empty or test is None or test.empty or "train_run" not in test:
        return False
    return bool(test.train_run.isin(set(runs.run[runs.study.isin(reads)])).any())


def _adopt(v: Verdict, longer) -> bool:
    """Does the longer budget's verdict replace ``v``? Where it decides something else; not
    where its code failed or its runs do not measure the claim (nothing to report from)."""
    return (
        isinstance(longer, Verdict)
        and longer.verdict in VERDICTS
        and longer.verdict not in ("not measured", v.verdict)
    )


def annotate(module, study: str, tables: dict, verdicts: list) -> list:
    """The verdicts, computed on ``at(tables)``, with their budget (``1x`` / ``4x``),
    ``preliminary`` and stability column filled; one that differs at 4x the budget is
    replaced by the 4x one. ``tables``: every run, of every budget and lr step. A study
    whose verdicts read other studies' runs names them in ``READS`` (optional), so their
    runs and perturbations count."""
    if not verdicts:
        return verdicts
    reads = {study, *getattr(module, "READS", ())}
    whole = getattr(module, "BUDGETS", None) == "all"  # its verdicts read every budget
    longer = None  # the verdicts at 4x the budget, where the study has such runs
    if has_runs(tables, reads, LONGER) and not whole:
        longer = recompute(module, at(tables, LONGER), verdicts)
    shorter = _from_longer(verdicts, longer, has_runs(tables, reads))
    if whole and has_runs(tables, reads, LONGER):  # read on both budgets: not preliminary
        for v in verdicts:
            v.budget, v.preliminary = f"1x+{LONGER}x", False
    confirmed = getattr(module, "confirmed", None)  # a study whose full profile adds cells,
    if confirmed is not None and confirmed(at(tables)):  # not budgets (MQAR's T=64 sweep)
        for v in verdicts:
            v.preliminary = False
    neighbours = [  # at 1x the budget: the full profile trains lr neighbours at budget 1
        (label, recompute(module, at(tables, 1, step), verdicts))
        for step, label in NEIGHBOURS
        if has_runs(tables, reads, 1, step)
    ]
    checks = {"1x": _checks(module, own(module, tables), reads, verdicts)}
    if shorter:  # seeds and half the budget perturbed where those verdicts were read
        checks[f"{LONGER}x"] = _checks(module, at(tables, LONGER), reads, verdicts)
    for v in verdicts:
        if v.stability:
            continue
        done, seeds = checks.get(v.budget) or checks["1x"]  # "1x+4x": read on both
        beside = [(f"at {LONGER}x the budget", longer)] if longer is not None else []
        if id(v) in shorter:  # reported from 4x: the lr neighbours are read at 1x
            beside = [("at 1x the budget", {_key(v): shorter[id(v)]})]
            beside += [(f"{label} (at 1x the budget)", a) for label, a in neighbours]
        else:
            beside += neighbours
        flips = [f"{label}: {_word(a.get(_key(v)))}" for label, a in [*beside, *done]
                 if _word(a.get(_key(v))) != v.verdict]  # fmt: skip
        holds = (
            longer is not None and id(v) not in shorter and _word(longer.get(_key(v))) == v.verdict
        )
        v.stability = _column(flips, bool(done or neighbours or beside), seeds, holds)
    return verdicts


def _from_longer(verdicts: list, longer, trained: bool) -> dict:
    """Each verdict's budget and ``preliminary`` mark; one that differs at 4x the budget takes
    the 4x verdict and figures. Returns id(verdict) -> its 1x verdict, for those replaced."""
    shorter = {}
    for v in verdicts:
        v.budget = "1x" if trained or longer is not None else ""
        v.preliminary = trained and longer is None
        new = (longer or {}).get(_key(v))
        if _adopt(v, new):
            shorter[id(v)] = v.verdict
            v.verdict, v.measured, v.budget = new.verdict, new.measured, f"{LONGER}x"
    return shorter


def _column(flips: list, applied: bool, seeds: int, holds: bool) -> str:
    """The stability text: what flips the verdict, or 'stable'; whether it holds at 4x."""
    if not applied:
        return "n/a (no seeds or training budget behind it)"
    text = "; ".join(flips) or "stable"
    if seeds < 2:
        text += " (one seed: none to leave out)"
    return text + (f"; holds at {LONGER}x the budget" if holds else "")
