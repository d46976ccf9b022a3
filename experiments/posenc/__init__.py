"""Positional encodings and order (C6).

Two kinds of evidence. (1) Training runs (study ``posenc``): the same Transformer with
``pos`` = none, sinusoidal, learned or rope on ``copy`` (reproduce a segment: order decides
everything) and ``lag_recall`` (found by content), three seeds each, trained to a criterion
with the lr calibrated per encoding on a control. (2) The ``order`` measurement
(seqbench/measure/order.py), one per seed: max |f(P x) - P f(x)| for random permutations P,
which is ~0 for a bidirectional Transformer without positions (a bag of words) and not for a
causal one; and a linear probe's R^2 for the absolute position read off the final hidden
states (Haviv et al. 2022).

How much order a causal model without positions learns is the *order degree* on copy, per
seed: (acc_none - floor) / (1 - floor), where the floor is the best order-blind predictor on
the same test sequences, measured, never assumed: the larger of the bag-of-words model's
accuracy (family ``baseline``, trained in the same study on the same cells: posenc_floor.yaml)
and the exact Bayes predictor from the bag of the prefix (the ``floor`` rows of the order
measurement). 0 = no better than a bag of words could do, 1 = perfect. A trained bag of words
can sit far below the exact floor (a floor the model did not reach is not the best
order-blind predictor), so the larger one is read and named. Accuracies, their differences
and the degree carry 95% t intervals over seeds (each seed its own data and test set). The
permutation checks are identities of the code (they catch bugs); the section shows them, the
verdict does not read them.
"""

import numpy as np
import pandas as pd

from seqbench.report.axes import UNIT_RANGE, clipped_yerr, reference
from seqbench.report.markdown import md_table
from seqbench.report.stats import Estimate, difference, estimate, fmt
from seqbench.report.verdict import Rule, Verdict
from seqbench.studies import profile_settings
from seqbench.studies._common import (
    CENSORING,
    LONG_ENOUGH,
    TEST_RULE,
    censored,
    censored_note,
    censored_text,
    complete,
    long_enough,
    needs_test,
    on_test_set,
    study_of,
    unnamed_families,
    untested,
    with_test,
)

TITLE = "Positional encodings and order (C6)"
ORDER = 40
DECIDES = ("C6",)
STUDY = study_of(__name__)
ENCODED = "attention"  # the family whose positional encodings the rule compares
FLOOR = "baseline"  # bow (seqbench/models/bow.py): a bag of words, order-blind by construction
EXACT = "bag of the prefix (exact)"  # the order measurement's floor predictor (measure.order)
TWO_BAGS = "two bags (which side of the delimiter)"  # its reference: not order-blind
EQUIVARIANT = 1e-5  # max |f(Px) - P f(x)| below this: permutation-equivariant (a code check)
RULE = Rule(
    "accuracies are read " + TEST_RULE + "; the order-blind floor is, per seed, the larger "
    f"of the {FLOOR} family's copy accuracy (bow, trained on the same cells) and the exact "
    "Bayes predictor from the bag of the prefix, on the same test sequences; order degree = "
    "(acc_none - floor) / (1 - floor); inconclusive without a floor, or unless the best "
    "encoding's copy accuracy beats the floor by >= {learned_copy} (lower end of its 95% "
    "interval); not supported if positions add nothing (best encoding minus no-PE copy "
    "accuracy: interval within +-{negligible}, or below 0); supported if positions help "
    "(interval > 0) and the causal no-PE model learns no order (order degree interval <= "
    "{learns_order}); nuanced if it learns some (degree interval > {learns_order}); "
    "inconclusive where an interval straddles its threshold, or where the no-PE model's copy "
    "runs are censored and the verdict would be supported or nuanced (the gain from positions "
    "is then an upper bound, the degree a lower one); the permutation checks are identities "
    "of the code, shown in the section and not read here; " + CENSORING,
    long_enough=LONG_ENOUGH,
    negligible=0.02,  # an accuracy gain within this of 0 at both ends: positions add nothing
    learns_order=0.1,  # order degree above this: the causal no-PE model learned order
    learned_copy=0.2,  # the best encoding this far over the floor: it learned copy's order
)
# what each profile passes beyond the experiment file (the section says so), from
# profiles.yaml: never typed beside the values
CPU_CUT = (
    f"{profile_settings(__name__, 'cpu')}; "
    f"the GPU profile passes {profile_settings(__name__, 'gpu')}"
)


def accuracy_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The complete posenc training runs: task, pos, seed, test_acc, lr, steps_to_criterion.
    ``pos`` is the encoding for the compared family's runs and the model's name for any other
    (the floor's bow, a user's model), so each gets its own bar and row."""
    ok = complete(runs, STUDY)
    if ok.empty:
        return pd.DataFrame()
    ok = ok.rename(columns={"model.pos": "pos"})
    for c in ("pos", "lr", "steps_to_criterion", "vocab_size", "family", "model", "train.steps"):
        if c not in ok:
            ok[c] = np.nan
    ok["pos"] = ok.pos.where(encoded(ok), ok.model)
    return ok


def encoded(ok: pd.DataFrame) -> pd.Series:
    """The rows of the compared family (a table without families holds only those)."""
    return ok.family.isna() | (ok.family == ENCODED)


def accuracy_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (task, encoding): test accuracy with its interval over seeds, seeds, how many
    reached the criterion and were censored, the steps to it (censored seeds count at their
    cap: a lower bound) and the (calibrated) lr."""
    ok = accuracy_runs(runs)
    if ok.empty:
        return pd.DataFrame()
    rows = []
    for (task, pos), g in ok.groupby(["task", "pos"]):
        e = estimate(g.test_acc, bounds=(0.0, 1.0))  # reported: never the stopping set
        rows.append({
            "task": task, "pos": pos, "acc": e.mean, "lo": e.lo, "hi": e.hi,
            "seeds": int(g.seed.nunique()), "reached": f"{int(_steps(g).notna().sum())}/{len(g)}",
            "censored": f"{int(censored(g).sum())}/{len(g)}", "steps": steps_words(g),
            "lr": float(pd.to_numeric(g.lr, errors="coerce").median()),
            "vocab_size": g.vocab_size.iloc[0],
        })  # fmt: skip
    return pd.DataFrame(rows)


def _steps(g: pd.DataFrame) -> pd.Series:
    return pd.to_numeric(g.steps_to_criterion, errors="coerce")


def steps_words(g: pd.DataFrame) -> str:
    """Steps to the criterion over a cell's seeds: the median when every seed reached it,
    '> cap' when none did, '>= median (k/n at the cap)' where some did (a censored seed counts
    at its cap: the median is a lower bound)."""
    steps, cap = _steps(g), pd.to_numeric(g["train.steps"], errors="coerce")
    if steps.notna().all():
        return f"{steps.median():g}"
    if steps.isna().all():
        return f"> {cap.max():g}"
    return f">= {steps.fillna(cap).median():g} ({int(steps.isna().sum())}/{len(g)} at the cap)"


def _copy(ok: pd.DataFrame) -> pd.DataFrame:
    """The compared family's copy accuracy, one row per seed, one column per encoding."""
    copy = ok[(ok.task == "copy") & encoded(ok)]
    return copy.pivot_table(index="seed", columns="pos", values="test_acc", aggfunc="mean")


def floor_by_seed(ok: pd.DataFrame, order: pd.DataFrame | None) -> pd.DataFrame:
    """Per seed: the copy accuracy of the FLOOR family's models (``bow``, their best) and of the
    exact order-blind predictor (``exact``), the larger (``floor``) and which one it is."""
    copy = ok[(ok.task == "copy") & (ok.family == FLOOR)] if len(ok) else ok
    found = {}
    if len(copy):  # per seed, the best of the floor family's models
        found["bow"] = copy.groupby(["seed", "model"]).test_acc.mean().groupby(level=0).max()
    rows = complete(order)
    if len(rows) and "predictor" in rows:
        exact = rows[(rows.predictor == EXACT) & (rows.get("task", "copy") == "copy")]
        found["exact"] = pd.to_numeric(exact.test_acc, errors="coerce").groupby(exact.seed).max()
    table = pd.DataFrame(found).dropna(how="all")
    if table.empty:
        return table
    return table.assign(floor=table.max(axis=1), which=table.idxmax(axis=1))


def copy_numbers(runs: pd.DataFrame, order: pd.DataFrame | None = None) -> dict | None:
    """The copy figures the rule reads: the best encoding, accuracy estimates, the gain of the
    best encoding over none, and, where a floor was measured, the floor per seed and the order
    degree; None unless copy has runs without positions and with some encoding."""
    ok = accuracy_runs(runs)
    if ok.empty or "copy" not in set(ok.task):
        return None
    by_seed = _copy(ok)
    if "none" not in by_seed or len(by_seed.columns) < 2:
        return None
    best = by_seed.drop(columns="none").mean().idxmax()
    floor = floor_by_seed(ok, order)
    c = {
        "best": best,
        "acc": {p: estimate(by_seed[p], bounds=(0.0, 1.0)) for p in by_seed.columns},
        "gain": difference(by_seed[best], by_seed["none"]),
        "floor": floor,
        "degree": None,
    }
    if len(floor):
        paired = by_seed[["none", best]].join(floor.floor, how="inner").dropna()  # per seed
        c["degree"] = estimate((paired.none - paired.floor) / (1 - paired.floor))
        c["over_floor"] = estimate(paired[best] - paired.floor)
    return c


def order_checks(order: pd.DataFrame | None) -> dict:
    """The no-PE models' equivariance errors (untrained; the worst seed for the bag-of-words
    check, the least broken seed for the causal one) and the probes' R^2 with intervals over
    seeds. The order rows are read whatever study wrote them (one measurement per task)."""
    ok = complete(order)
    if ok.empty:
        return {}
    none = ok[ok.pos == "none"]
    causal = none.causal.astype(str).str.lower() == "true"  # rows.csv writes True / False

    def pick(mask, state, col, how):
        vals = none[mask & (none.state == state)][col].dropna() if col in none else []
        if not len(vals):
            return None
        return estimate(vals) if how == "interval" else float(getattr(vals, how)())

    return {
        "bidir_error": pick(~causal, "init", "equivariance_error", "max"),
        "causal_error": pick(causal, "init", "equivariance_error", "min"),
        "seeds": int(none.seed.nunique()) if "seed" in none else 1,
        "bidir_probe": pick(~causal, "init", "probe_r2", "interval"),
        "causal_probe_init": pick(causal, "init", "probe_r2", "interval"),
        "causal_probe_trained": pick(causal, "trained", "probe_r2", "interval"),
    }


def decide(c: dict) -> str:
    """The rule on the copy numbers (see RULE); the permutation checks are not read."""
    r = RULE
    if c["degree"] is None or not np.isfinite(c["over_floor"].lo):
        return "inconclusive"  # no measured floor: nothing to measure the order from
    if c["over_floor"].lo < r.learned_copy:
        return "inconclusive"  # no encoding learned copy's order: nothing to compare with
    gain, degree = c["gain"], c["degree"]
    if (gain.lo > -r.negligible and gain.hi < r.negligible) or gain.sign < 0:
        return "not supported"  # robust to a censored no-PE run: its accuracy only rises
    if gain.sign <= 0:
        return "inconclusive"  # positions may help: the interval reaches both sides of 0
    if degree.hi <= r.learns_order:
        return "supported"
    if degree.lo > r.learns_order:
        return "nuanced"
    return "inconclusive"


def floor_text(c: dict) -> str:
    """'order-blind floor 0.255 [0.25, 0.26] (exact bag-of-prefix predictor, 3/3 seeds; bow
    0.11 [0.1, 0.12], below it)': the floor, which predictor set it, and the other."""
    floor = c["floor"]
    if floor.empty:
        return "no order-blind floor measured (what=order on copy, or the bow runs)"
    names = {"exact": "exact bag-of-prefix predictor", "bow": f"bow ({FLOOR})"}
    which = floor.which.value_counts()
    by = ", ".join(f"{names[w]} {n}/{len(floor)} seeds" for w, n in which.items())
    text = f"order-blind floor {fmt(estimate(floor.floor), 3)} (set by {by}"
    for w in ("exact", "bow"):
        if w in floor and which.get(w, 0) < len(floor) and floor[w].notna().any():
            text += f"; {names[w]} {fmt(estimate(floor[w].dropna()), 2)}, below it"
    return text + ")"


def verdict(runs: pd.DataFrame, order: pd.DataFrame | None = None) -> tuple[str, str] | None:
    c = copy_numbers(runs, order) if runs is not None else None
    if c is None:
        return None
    checks = order_checks(order)
    probe = checks.get("causal_probe_trained")
    seeds = sorted({e.n for e in c["acc"].values()})
    measured = (
        "copy accuracy "
        + ", ".join(f"{p} {fmt(e, 2)}" for p, e in sorted(c["acc"].items()))
        + f"; {floor_text(c)}; {c['best']} minus none {fmt(c['gain'], 2)}"
        + (f"; order degree of causal no-PE {fmt(c['degree'], 2)}" if c["degree"] else "")
        + (f"; position probe R^2 (trained causal no-PE) {fmt(probe, 2)}" if probe else "")
        + f" ({'/'.join(map(str, seeds))} seeds)"
        + others_text(runs)
    )
    v, note = decide(c), none_censored(runs)
    if note and v in ("supported", "nuanced"):
        v = "inconclusive"  # the gain from positions is an upper bound, the degree a lower one
    return v, measured + censored_text([note] if note else [])


def others_text(runs: pd.DataFrame) -> str:
    """'; recurrent (not compared by this rule: lstm): copy 0.93 [0.9, 0.95]' for each family
    on copy that is neither the compared one nor the floor: named, never silently dropped."""
    ok = accuracy_runs(runs)
    copy = ok[ok.task == "copy"] if len(ok) else ok
    lines = []
    for family, models in unnamed_families(copy, (ENCODED, FLOOR)).items():
        accs = [f"{m} copy {fmt(estimate(copy[copy.model == m].test_acc), 2)}" for m in models]
        lines.append(f"; {family} (not compared by this rule): {', '.join(accs)}")
    return "".join(lines)


def none_censored(runs: pd.DataFrame) -> str:
    """Why the no-PE copy accuracy is only a lower bound (a seed stopped at its cap while
    improving or at chance, a cap shorter than LONG_ENOUGH x the steps the slowest encoding
    that solved copy needed); '' when it is not."""
    ok = accuracy_runs(runs)
    copy = ok[(ok.task == "copy") & encoded(ok)] if not ok.empty else ok
    none = copy[copy.pos == "none"] if not copy.empty else copy
    if none.empty or not censored(none).any():
        return ""
    steps = _steps(copy)
    solved = [g.max() for p, g in steps.groupby(copy.pos) if p != "none" and g.notna().all()]
    slowest = max(solved, default=np.nan)
    cap = float(none["train.steps"].max())
    return "" if long_enough(cap, slowest) else censored_note("none (copy)", cap, slowest)


def tested_runs(tables) -> pd.DataFrame | None:
    """The complete posenc runs with their test figures (_common.with_test)."""
    runs = tables.get("runs")
    return None if runs is None else with_test(complete(runs, STUDY), tables, STUDY)


def verdicts(tables) -> list[Verdict]:
    runs = tested_runs(tables)
    result = verdict(runs, tables.get("order")) if runs is not None else None
    copy = runs[runs.task == "copy"] if runs is not None and len(runs) else pd.DataFrame()
    missing = untested(copy) if len(copy) else ""
    if result is None and not missing:
        return []
    v, measured = needs_test(copy, *result) if result else ("inconclusive", missing)
    return [Verdict("C6", f"{STUDY} (copy) + order-blind floor", measured, RULE, v)]


def section(tables, figs) -> str:
    runs = tested_runs(tables)
    acc = accuracy_table(runs) if runs is not None else pd.DataFrame()
    c = copy_numbers(runs, tables.get("order")) if runs is not None else None
    parts = _accuracy(acc, runs, figs, c) if not acc.empty else []
    parts += _floor(c, tables.get("order")) if c is not None else []
    order = complete(tables.get("order"))
    checked = order[order.state != "floor"] if "state" in order else order
    if not checked.empty:
        parts += [
            "Checks of the code, not evidence for the claim (the verdict does not read them): "
            "permutation checks and position probes (`order` measurement, one run per seed). "
            "`equivariance_error` = max over random permutations P of max |f(Px) - P f(x)| "
            "on the logits (the largest over seeds); `probe_r2` = held-out R^2 of a linear "
            "probe for the absolute position from the final hidden states (mean [95% "
            "interval] over seeds).",
            md_table(_order_rows(checked)),
        ]
    checks = order_checks(tables.get("order"))
    if checks.get("bidir_error") is not None:
        err = checks["bidir_error"]
        call = "equivariant" if err < EQUIVARIANT else "NOT equivariant: a bug"
        text = (
            f"Bidirectional without positions: error {err:.1e} in the worst of "
            f"{checks['seeds']} seeds ({call} at {EQUIVARIANT:g})"
        )
        if checks.get("causal_error") is not None:
            text += f"; causal without positions: {checks['causal_error']:.1e} in the least"
        parts.append(text + ".")
    return "\n\n".join(parts) or "_No completed runs of the posenc study or order checks yet._"


def _chance(runs, task) -> tuple[float, str] | None:
    """(chance accuracy, its words) of a task from its runs' config: copy guesses among the
    segment tokens [1, vocab), lag_recall among the n_keys values; None if not recorded."""
    ok = accuracy_runs(runs)
    ok = ok[ok.task == task] if not ok.empty else ok
    if task == "copy" and len(ok) and ok.vocab_size.notna().any():
        n = int(ok.vocab_size.dropna().iloc[0]) - 1
    elif task == "lagrecall" and "data.n_keys" in ok and ok["data.n_keys"].notna().any():
        n = int(ok["data.n_keys"].dropna().iloc[0])
    else:
        return None
    return 1 / n, f"1/{n}"


def _floor(c: dict, order) -> list[str]:
    """The order-blind floor per seed (which predictor set it), the two-bag reference and
    the order degree: the figures C6 reads, with the predictors' own words."""
    floor = c["floor"]
    if floor.empty:
        return [f"Order degree: not measured ({floor_text(c)})."]
    rows = complete(order)
    two = rows[rows.get("predictor") == TWO_BAGS] if "predictor" in rows else rows.iloc[:0]
    two = pd.to_numeric(two.test_acc, errors="coerce").groupby(two.seed).max()
    table = floor.join(two.rename("two bags"), how="left")
    shown = table.reset_index().rename(columns={"index": "seed", "exact": EXACT})
    text = (
        f"**Order-blind floor** on the copy test sequences, per seed: `{EXACT}` is the "
        "Bayes-optimal guess from the bag of the prefix under copy's generator (any "
        "reordering of the prefix gives the same guess; ties split evenly), `bow` the trained "
        f"bag-of-words model ({FLOOR}); the floor is the larger, "
        f"{floor_text(c).removeprefix('order-blind floor ')}."
    )
    if "bow" in floor and floor.bow.notna().any() and (floor.bow < floor.floor).any():
        text += (
            " The trained bag of words stays below the exact floor: a floor a model did not "
            "reach is not the best order-blind predictor, so the exact one is read there."
        )
    if two.notna().any():
        text += (
            f" `{TWO_BAGS}` knows which side of the delimiter each token sits (one bit of "
            f"order per token), so it is not order-blind: {fmt(estimate(two.dropna()), 3)}, "
            "shown as a reference only."
        )
    degree = c["degree"]
    return [
        text,
        md_table(shown.rename(columns={"which": "set by"})),
        f"Order degree of the causal model without positions on copy, (acc_none - floor) / "
        f"(1 - floor) per seed: **{fmt(degree, 2)}** (0 = no better than the best bag of "
        f"words, 1 = perfect; best encoding: {c['best']}, "
        f"{fmt(c['over_floor'], 2)} over the floor).",
    ]


def _order_rows(order: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (pos, causal, state), g in order.groupby(["pos", "causal", "state"]):
        rows.append({
            "pos": pos, "causal": causal, "state": state,
            "equivariance_error": float(g.equivariance_error.max()),
            "probe_r2": fmt(estimate(g.probe_r2), 2),
            "seeds": int(g.seed.nunique()) if "seed" in g else len(g),
        })  # fmt: skip
    return pd.DataFrame(rows)


TASK_WORDS = {"copy": "copy a segment", "lagrecall": "lag recall (by content)"}


def _accuracy(acc: pd.DataFrame, runs, figs, c: dict | None) -> list[str]:
    """The accuracy figure (one panel per task, one bar per encoding or other model, 95%
    intervals, chance and on copy the measured order-blind floor) and its table."""
    tasks = sorted(acc.task.unique())
    fig, axes = figs.figure(ncols=len(tasks), width=4.0)
    for ax, task in zip(axes, tasks):
        g = acc[acc.task == task]
        ax.bar(g.pos, g.acc, capsize=3, color=[figs.category(p) for p in g.pos],
               yerr=clipped_yerr(g.acc, g.lo, g.hi, UNIT_RANGE),
               error_kw={"ecolor": "0.2", "color": "0.2"})  # fmt: skip
        chance = _chance(runs, task)
        if chance is not None:  # an empty slot on the right holds its label clear of the bars
            reference(ax, chance[0], f"chance {chance[1]}")
            ax.set_xlim(-0.5, len(g) + 0.3)
        if task == "copy" and c is not None and len(c["floor"]):
            floor = c["floor"].floor.mean()
            reference(ax, floor, f"order-blind floor {floor:.2f}")
        seeds = sorted({int(n) for n in g.seeds})
        ax.set(
            title=f"{TASK_WORDS.get(task, task)}, {'/'.join(map(str, seeds))} seeds",
            xlabel="positional encoding (or model)",
            ylabel="test accuracy",
            ylim=(0, 1.05),
        )
    shown = acc.assign(
        acc=[fmt(Estimate(r.acc, r.lo, r.hi, r.seeds), 3) for r in acc.itertuples()],
    ).drop(columns=["lo", "hi", "vocab_size"])
    parts = [
        f"Accuracy {on_test_set(runs)} of the same causal Transformer with each positional "
        f"encoding, and of the order-blind bag of words ({FLOOR}) on the same cells (mean "
        "and 95% t interval over seeds), trained to the criterion (`reached`: seeds that "
        "reached it within the cap; `censored`: seeds stopped at the cap while still "
        "improving or at chance, undecided; `steps`: the median steps to the criterion, a "
        "censored seed counted at its cap, so `>` and `>=` are lower bounds). "
        "The learning rate (`lr`) was calibrated once per encoding and task on the control "
        f"setting (`train.lr_control`) and reused by every seed. The CPU profile passes: "
        f"{CPU_CUT}.",
        figs.save(fig, "posenc_accuracy", decides=DECIDES),
        md_table(shown.rename(columns={"acc": "test accuracy [95% interval]"})),
    ]
    return parts
