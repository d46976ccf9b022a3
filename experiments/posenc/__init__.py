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
seed: (acc_none - chance) / (acc_best_PE - chance), chance = 1/(vocab - 1): 0 = no better
than a bag of words could do, 1 = as good as with positional encodings. Accuracies, their
difference and the degree carry 95% t intervals over seeds; the equivariance checks
are exact (the worst seed decides).
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
    untested,
    with_test,
)

TITLE = "Positional encodings and order (C6)"
ORDER = 40
DECIDES = ("C6",)
STUDY = study_of(__name__)
RULE = Rule(
    "accuracies are read " + TEST_RULE + "; "
    "inconclusive unless the best encoding's copy accuracy beats chance by >= {learned_copy} "
    "(lower end of its 95% interval); not supported if the bidirectional no-PE model is not "
    "equivariant (worst seed's error >= {equivariant:g}) or positions add nothing (best "
    "encoding minus no-PE copy accuracy: interval within +-{negligible}, or below 0); "
    "supported if positions help (interval > 0) and the causal no-PE model learns no order "
    "(order degree interval <= {learns_order}); nuanced if it learns some (degree interval > "
    "{learns_order}, every seed's causal error > {broken:g}); inconclusive where an interval "
    "straddles its threshold, or where the no-PE model's copy runs are censored and the "
    "verdict says positions help (it may still learn more order); " + CENSORING,
    long_enough=LONG_ENOUGH,
    equivariant=1e-5,  # max |f(Px) - P f(x)| below this: permutation-equivariant
    negligible=0.02,  # an accuracy gain within this of 0 at both ends: positions add nothing
    learns_order=0.1,  # order degree above this: the causal no-PE model learned order
    broken=1e-3,  # equivariance error above this: clearly not equivariant
    learned_copy=0.2,  # below this over chance nothing learned copy: nothing to compare to
)
# what each profile passes beyond the experiment file (the section says so), from
# profiles.yaml: never typed beside the values
CPU_CUT = (
    f"{profile_settings(__name__, 'cpu')}; "
    f"the GPU profile passes {profile_settings(__name__, 'gpu')}"
)


def accuracy_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The complete posenc training runs: task, pos, seed, val_acc, lr, steps_to_criterion."""
    ok = complete(runs, STUDY)
    if ok.empty:
        return pd.DataFrame()
    ok = ok.rename(columns={"model.pos": "pos"})
    for c in ("lr", "steps_to_criterion", "vocab_size"):
        if c not in ok:
            ok[c] = np.nan
    return ok


def accuracy_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (task, encoding): held-out accuracy with its interval over seeds, seeds, how many
    reached the criterion, the median steps to it and the (calibrated) lr."""
    ok = accuracy_runs(runs)
    if ok.empty:
        return pd.DataFrame()
    rows = []
    for (task, pos), g in ok.groupby(["task", "pos"]):
        e = estimate(g.test_acc, bounds=(0.0, 1.0))  # reported: never the stopping set
        steps = pd.to_numeric(g.steps_to_criterion, errors="coerce")
        rows.append({
            "task": task, "pos": pos, "acc": e.mean, "lo": e.lo, "hi": e.hi,
            "seeds": int(g.seed.nunique()), "reached": f"{int(steps.notna().sum())}/{len(g)}",
            "steps": float(steps.median()) if steps.notna().any() else np.nan,
            "lr": float(pd.to_numeric(g.lr, errors="coerce").median()),
            "vocab_size": g.vocab_size.iloc[0],
        })  # fmt: skip
    return pd.DataFrame(rows)


def _copy(ok: pd.DataFrame) -> pd.DataFrame:
    """Copy accuracy, one row per seed, one column per encoding."""
    copy = ok[ok.task == "copy"]
    return copy.pivot_table(index="seed", columns="pos", values="test_acc", aggfunc="mean")


def copy_numbers(runs: pd.DataFrame) -> dict | None:
    """The copy figures the rule reads: chance, the best encoding, accuracy estimates, the
    gain of the best encoding over none and the order degree, per seed; None unless copy
    has runs without positions and with some encoding."""
    ok = accuracy_runs(runs)
    if ok.empty or "copy" not in set(ok.task):
        return None
    by_seed = _copy(ok)
    if "none" not in by_seed or len(by_seed.columns) < 2:
        return None
    vocab = ok[ok.task == "copy"].vocab_size.iloc[0]
    chance = 1 / (float(vocab) - 1)  # segment tokens: [1, vocab), 0 delimits
    best = by_seed.drop(columns="none").mean().idxmax()
    paired = by_seed[["none", best]].dropna()  # seeds that have both: the degree pairs them
    return {
        "chance": chance,
        "best": best,
        "acc": {p: estimate(by_seed[p], bounds=(0.0, 1.0)) for p in by_seed.columns},
        "gain": difference(by_seed[best], by_seed["none"]),
        "degree": estimate((paired["none"] - chance) / (paired[best] - chance)),
    }


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
        vals = none[mask & (none.state == state)][col].dropna()
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


def decide(c: dict, checks: dict) -> str:
    """The rule on the copy numbers and the order checks (see RULE)."""
    r = RULE
    best = c["acc"][c["best"]]
    if not (np.isfinite(best.lo) and best.lo - c["chance"] >= r.learned_copy):
        return "inconclusive"  # nothing learned copy: no encoding to compare with
    gain, degree = c["gain"], c["degree"]
    adds_nothing = (gain.lo > -r.negligible and gain.hi < r.negligible) or gain.sign < 0
    if checks["bidir_error"] >= r.equivariant or adds_nothing:
        return "not supported"
    if gain.sign <= 0:
        return "inconclusive"  # positions may help: the interval reaches both sides of 0
    if degree.hi <= r.learns_order:
        return "supported"
    if degree.lo > r.learns_order:
        return "nuanced" if checks["causal_error"] > r.broken else "supported"
    return "inconclusive"


def verdict(runs: pd.DataFrame, checks: dict) -> tuple[str, str] | None:
    c = copy_numbers(runs) if runs is not None else None
    if c is None or checks.get("bidir_error") is None or checks.get("causal_error") is None:
        return None
    probe = checks.get("causal_probe_trained")
    seeds = sorted({e.n for e in c["acc"].values()})
    measured = (
        f"permutation error max abs(f(Px) - P f(x)), {checks['seeds']} seeds: bidirectional "
        f"no-PE (worst) {checks['bidir_error']:.1e}, causal no-PE (least) "
        f"{checks['causal_error']:.1e}; copy accuracy "
        + ", ".join(f"{p} {fmt(e, 2)}" for p, e in sorted(c["acc"].items()))
        + f"; {c['best']} minus none {fmt(c['gain'], 2)}; order degree of causal no-PE "
        f"{fmt(c['degree'], 2)}"
        + (f"; position probe R^2 (trained causal no-PE) {fmt(probe, 2)}" if probe else "")
        + f" ({'/'.join(map(str, seeds))} seeds)"
    )
    v, note = decide(c, checks), none_censored(runs)
    if note and v in ("supported", "nuanced"):
        v = "inconclusive"  # the gain from positions is an upper bound, the degree a lower one
    return v, measured + censored_text([note] if note else [])


def none_censored(runs: pd.DataFrame) -> str:
    """Why the no-PE copy accuracy is only a lower bound (a seed stopped at its cap while
    improving or at chance, a cap shorter than LONG_ENOUGH x the steps the slowest encoding
    that solved copy needed); '' when it is not."""
    ok = accuracy_runs(runs)
    copy = ok[ok.task == "copy"] if not ok.empty else ok
    none = copy[copy.pos == "none"] if not copy.empty else copy
    if none.empty or not censored(none).any():
        return ""
    steps = pd.to_numeric(copy.steps_to_criterion, errors="coerce")
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
    result = verdict(runs, order_checks(tables.get("order")))
    copy = runs[runs.task == "copy"] if runs is not None and len(runs) else pd.DataFrame()
    missing = untested(copy) if len(copy) else ""
    if result is None and not missing:
        return []
    v, measured = needs_test(copy, *result) if result else ("inconclusive", missing)
    return [Verdict("C6", f"{STUDY} (copy, lag_recall) + order checks", measured, RULE, v)]


def section(tables, figs) -> str:
    runs = tested_runs(tables)
    acc = accuracy_table(runs) if runs is not None else pd.DataFrame()
    parts = _accuracy(acc, runs, figs) if not acc.empty else []
    order = complete(tables.get("order"))
    if not order.empty:
        parts += [
            "Permutation checks and position probes (`order` measurement, one run per seed): "
            "`equivariance_error` = max over random permutations P of max |f(Px) - P f(x)| "
            "on the logits (the largest over seeds); `probe_r2` = held-out R^2 of a linear "
            "probe for the absolute position from the final hidden states (mean [95% "
            "interval] over seeds).",
            md_table(_order_rows(order)),
        ]
    checks = order_checks(tables.get("order"))
    if checks.get("bidir_error") is not None:
        err = checks["bidir_error"]
        call = "equivariant" if err < RULE.equivariant else "NOT equivariant"
        text = (
            f"Bidirectional without positions: error {err:.1e} in the worst of "
            f"{checks['seeds']} seeds ({call} at {RULE.equivariant:g})"
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


def _accuracy(acc: pd.DataFrame, runs, figs) -> list[str]:
    """The accuracy figure (one panel per task, one bar per encoding, 95% intervals), its
    table and the order degree."""
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
        seeds = sorted({int(n) for n in g.seeds})
        ax.set(
            title=f"{TASK_WORDS.get(task, task)}, {'/'.join(map(str, seeds))} seeds",
            xlabel="positional encoding",
            ylabel="test accuracy",
            ylim=(0, 1.05),
        )
    shown = acc.assign(
        acc=[fmt(Estimate(r.acc, r.lo, r.hi, r.seeds), 3) for r in acc.itertuples()],
        steps=acc.steps.map(lambda s: "" if pd.isna(s) else f"{s:g}"),
    ).drop(columns=["lo", "hi", "vocab_size"])
    parts = [
        f"Accuracy {on_test_set(runs)} of the same causal Transformer with each positional "
        "encoding (mean and 95% t interval over seeds), trained to the criterion "
        "(`reached`: seeds that reached it within the cap; `steps`: their median steps). "
        "The learning rate (`lr`) was calibrated once per encoding and task on the control "
        f"setting (`train.lr_control`) and reused by every seed. The CPU profile passes: "
        f"{CPU_CUT}.",
        figs.save(fig, "posenc_accuracy", decides=DECIDES),
        md_table(shown.rename(columns={"acc": "test accuracy [95% interval]"})),
    ]
    c = copy_numbers(runs)
    if c is not None:
        parts.append(
            f"Order degree of the causal model without positions on copy: "
            f"**{fmt(c['degree'], 2)}** (0 = bag of words, 1 = as good as with positions; "
            f"best encoding: {c['best']})."
        )
    return parts
