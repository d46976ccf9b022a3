"""Stability in both directions (issue 22 items 6 and 8): a verdict read at 1x the budget and
the calibrated rate, checked at 4x the budget and at the neighbouring learning rates; one that
flips at 4x is reported from the longer runs; one with no 4x runs behind it is preliminary.

The study is a plain namespace holding the study contract (DECIDES, verdicts, section): its
rule is 'supported when the mean held-out accuracy of its runs is above 0.9'."""

import types

import numpy as np
import pandas as pd

from seqbench.report import generic, stability
from seqbench.report.claims import claims_table, legend, short_stability
from seqbench.report.plot import Figures
from seqbench.report.verdict import Verdict
from seqbench.report.write import study_parts

STEPS = 100  # each experiment's train.steps; collect's column is the cap: x train.budget


def _verdicts(tables):
    runs = tables["runs"]
    runs = runs[(runs.study == "toy") & (runs.status == "complete")]
    if runs.empty:
        return [Verdict("C5", "toy", "-", "r", "not measured")]
    acc = runs.val_acc.mean()
    measured = f"accuracy {acc:.2f} ({len(runs)} runs)"
    return [Verdict("C5", "toy", measured, "r", "supported" if acc > 0.9 else "not supported")]


def _section(tables, figs):
    return f"{len(tables['runs'])} runs"


TOY = types.SimpleNamespace(
    __name__="seqbench.studies.toy", DECIDES=("C5",), verdicts=_verdicts, section=_section
)


def _tables(*cells) -> dict:
    """Runs of seeds 0-2 per cell (budget, lr_step, final accuracy) with their curves: at
    half their steps every run stood at accuracy 0.6."""
    runs, curves = [], []
    for budget, lr_step, acc in cells:
        for seed in (0, 1, 2):
            run = f"toy-b{budget}-lr{lr_step}-s{seed}"
            runs.append({"run": run, "study": "toy", "status": "complete", "seed": seed,
                         "val_acc": acc, "train.steps": STEPS * budget, "train.budget": budget,
                         "train.lr_step": lr_step})  # fmt: skip
            steps = np.array([0.25, 0.5, 1.0]) * STEPS * budget
            curves += [{"run": run, "study": "toy", "step": s, "val_loss": 1 - a, "val_acc": a}
                       for s, a in zip(steps, (0.3, 0.6, acc))]  # fmt: skip
    return {"runs": pd.DataFrame(runs), "curves": pd.DataFrame(curves)}


def _annotated(tables) -> Verdict:
    (v,) = stability.annotate(TOY, "toy", tables, _verdicts(stability.at(tables)))
    return v


def test_a_verdict_that_flips_at_4x_the_budget_is_reported_from_the_longer_runs():
    v = _annotated(_tables((1, 0, 0.5), (4, 0, 0.95)))
    assert (v.verdict, v.measured, v.budget) == ("supported", "accuracy 0.95 (3 runs)", "4x")
    # its seeds and half its budget (2x: read from the 4x curves at step 200) perturbed there
    assert v.stability == "at 1x the budget: not supported; at half the budget: not supported"
    assert not v.preliminary
    assert short_stability(v.stability) == "at 1x: not supported; flips: half budget"
    row = next(r for r in claims_table([v]).splitlines() if r.startswith("| C5 |"))
    assert "**supported** |" in row and "| 4x |" in row and "at 1x: not supported" in row


def test_a_verdict_that_holds_at_4x_the_budget_says_so():
    v = _annotated(_tables((1, 0, 0.95), (4, 0, 0.97)))
    assert (v.verdict, v.measured, v.budget) == ("supported", "accuracy 0.95 (3 runs)", "1x")
    assert v.stability == "at half the budget: not supported; holds at 4x the budget"
    assert short_stability(v.stability) == "flips: half budget, holds at 4x"
    assert not v.preliminary


def test_4x_runs_that_do_not_measure_the_claim_leave_the_1x_verdict_standing():
    """A study that READS another: only the other's cells were trained at 4x, so the 4x
    tables do not measure the claim; the 1x verdict stands, the gap named in its column."""
    tables = _tables((1, 0, 0.95), (4, 0, 0.5))
    for df in tables.values():
        df.loc[df.run.str.contains("-b4-"), "study"] = "elsewhere"
    reader = types.SimpleNamespace(**vars(TOY), READS=("elsewhere",))
    (v,) = stability.annotate(reader, "toy", tables, _verdicts(stability.at(tables)))
    assert (v.verdict, v.budget, v.preliminary) == ("supported", "1x", False)
    assert v.stability == "at 4x the budget: not measured; at half the budget: not supported"
    tables["runs"].loc[tables["runs"].study == "elsewhere", "status"] = "failed"
    (v,) = stability.annotate(reader, "toy", tables, _verdicts(stability.at(tables)))
    assert v.preliminary  # 4x runs that did not complete confirm nothing


def test_the_neighbouring_learning_rates_are_listed_only_where_their_runs_exist():
    alone = _annotated(_tables((1, 0, 0.95)))
    assert "lr" not in alone.stability
    v = _annotated(_tables((1, 0, 0.95), (1, -1, 0.5), (1, 1, 0.96)))
    assert v.verdict == "supported" and v.measured == "accuracy 0.95 (3 runs)"  # lr 0 only
    assert v.stability == "at the next smaller lr: not supported; at half the budget: not supported"
    assert short_stability(v.stability) == "flips: smaller lr; half budget"
    flipped = _annotated(_tables((1, 0, 0.5), (4, 0, 0.95), (1, 1, 0.5)))
    assert "at the next larger lr (at 1x the budget): not supported" in flipped.stability


def test_at_keeps_measurement_rows_of_their_own_and_reads_old_runs_as_1x():
    tables = _tables((1, 0, 0.5), (4, 0, 0.95), (1, -1, 0.4))
    tables["runs"].loc[0, ["train.budget", "train.lr_step"]] = np.nan  # a run before the keys
    runs = tables["runs"]
    tables["test_set"] = pd.DataFrame(  # a measurement of each run, joined by train_run
        {"run": [f"m-{r}" for r in runs.run], "train_run": runs.run, "test_acc": runs.val_acc}
    )
    tables["span"] = pd.DataFrame({"run": ["span-0", "span-1"], "span": [3, 5]})  # no training
    tables["perf"] = pd.DataFrame({"train.budget": [1, 4, np.nan], "x": [1, 2, 3]})
    one = stability.at(tables)
    assert list(one["runs"].run) == [f"toy-b1-lr0-s{s}" for s in (0, 1, 2)]
    assert set(one["curves"].run) == set(one["runs"].run)
    assert list(one["test_set"].train_run) == list(one["runs"].run)
    assert one["span"].equals(tables["span"]) and list(one["perf"].x) == [1, 3]
    longer = stability.at(tables, 4)
    assert set(longer["runs"]["train.budget"]) == {4} and list(longer["perf"].x) == [2]
    assert len(stability.at(tables, 1, -1)["test_set"]) == 3


def test_a_report_without_4x_runs_marks_its_verdicts_preliminary(tmp_path):
    tables = _tables((1, 0, 0.95), (1, 1, 0.5))  # no 4x runs; an lr neighbour beside
    (v,), md = study_parts(TOY, tables, Figures(tmp_path, {}))
    assert md == "3 runs"  # the section, like the verdict, reads the 1x, lr step 0 runs
    assert (v.verdict, v.budget, v.preliminary) == ("supported", "1x", True)
    assert "**supported** (preliminary)" in claims_table([v])
    csv = generic.verdict_rows([v])
    assert (csv.budget[0], csv.preliminary[0], csv.verdict[0]) == ("1x", True, "supported")
    assert "**(preliminary)**: the quick profile's budget; `make bench PROFILE=full`" in legend()
    (confirmed,), _ = study_parts(TOY, _tables((1, 0, 0.95), (4, 0, 0.96)), Figures(tmp_path, {}))
    assert not confirmed.preliminary and "(preliminary)" not in claims_table([confirmed])


def test_a_study_with_no_training_runs_is_neither_budgeted_nor_preliminary():
    tables = {"runs": pd.DataFrame(), "span": pd.DataFrame({"run": ["m"], "study": "toy"})}
    (v,) = stability.annotate(TOY, "toy", tables, [Verdict("C3", "toy", "m", "r", "supported")])
    assert (v.budget, v.preliminary) == ("", False) and v.stability.startswith("n/a")


def test_a_full_profile_stopped_part_way_through_a_cell_is_not_read_at_4x():
    """Two of three seeds at 4x: the cell is incomplete, so the 4x verdict (read on fewer
    runs) is neither reported nor listed, and the verdict stays preliminary."""
    tables = _tables((1, 0, 0.5), (4, 0, 0.95))
    runs = tables["runs"]
    tables["runs"] = runs[~((runs["train.budget"] == 4) & (runs.seed == 2))]
    v = _annotated(tables)
    assert (v.verdict, v.budget) == ("not supported", "1x") and v.preliminary
    assert "4x" not in v.stability
    # a cell the 4x job never trains (another task) does not hold the others back
    other = tables["runs"].assign(task="other")
    full = _tables((1, 0, 0.5), (4, 0, 0.95))
    full["runs"] = pd.concat([full["runs"].assign(task="copy"), other[other["train.budget"] == 1]])
    assert stability.has_runs(full, {"toy"}, 4) and not stability.has_runs(tables, {"toy"}, 4)


def test_the_bench_summary_names_the_profile_its_jobs_ran():
    jobs = pd.DataFrame({"job": ["recall", "recall_long"], "seconds": [60.0, 120.0],
                         "status": ["ok", "ok"], "profile": ["full", "full"]})  # fmt: skip
    text = generic.bench_summary({"bench_jobs": jobs})
    assert text.startswith("The last `make bench PROFILE=full` ran 2 jobs in 180 s (3.0 min)")
    older = generic.bench_summary({"bench_jobs": jobs.drop(columns="profile")})
    assert older.startswith("The last `make bench` ran 2 jobs")  # a csv from before the column


def test_a_section_whose_verdict_was_read_at_4x_draws_the_4x_runs_where_they_exist(tmp_path):
    """The figures show the runs the verdict was read on: each 1x run with a 4x twin (same
    cell, model and seed) is replaced, with the rows that read it; a cell the full profile
    does not lengthen stays at 1x; an lr neighbour never enters. The section says so."""
    tables = _tables((1, 0, 0.5), (4, 0, 0.95), (1, 1, 0.4))
    tables["runs"] = tables["runs"].assign(task="copy")
    control = _tables((1, 0, 0.3))["runs"].assign(task="control", run=lambda d: d.run + "-c")
    tables["runs"] = pd.concat([tables["runs"], control], ignore_index=True)
    runs = tables["runs"]
    tables["test_set"] = pd.DataFrame({"run": "m-" + runs.run, "train_run": runs.run})
    drawn = stability.preferring(tables)
    kept = drawn["runs"].set_index("run")
    assert sorted(kept.task) == ["control"] * 3 + ["copy"] * 3
    assert set(kept[kept.task == "copy"]["train.budget"]) == {4}
    assert set(kept[kept.task == "control"]["train.budget"]) == {1}
    assert set(drawn["test_set"].train_run) == set(kept.index)
    assert set(drawn["curves"].run) <= set(kept.index)
    assert stability.preferring(_tables((1, 0, 0.5)))["runs"].equals(
        stability.at(_tables((1, 0, 0.5)))["runs"]
    )  # no 4x runs: the 1x tables
    (v,), md = study_parts(TOY, tables, Figures(tmp_path, {}))
    assert v.budget == "4x" and md.endswith("\n\n6 runs") and "read at 4x the step budget" in md
    (v,), md = study_parts(TOY, _tables((1, 0, 0.95), (4, 0, 0.96)), Figures(tmp_path, {}))
    assert v.budget == "1x" and md == "3 runs"  # holds at 4x: drawn at 1x, as read


def test_leaving_a_seed_out_keeps_the_count_baselines_measured_as_seed_0():
    """The n-gram job runs once (seed=0) and scores every data seed's windows: leaving seed 0
    out drops that replicate's runs, never the baselines every seed is compared with."""
    tables = _tables((1, 0, 0.95))
    tables["ngram"] = pd.DataFrame({"run": "ng", "study": "toy", "seed": 0, "order": 2,
                                    "scope": "test", "sample": [0, 1, 2],
                                    "test_loss": [2.3, 2.4, 2.5]})  # fmt: skip
    out = stability.without_seed(tables, 0)
    assert set(out["runs"].seed) == {1, 2} and out["ngram"].equals(tables["ngram"])


def test_a_study_read_on_test_figures_is_not_cut_at_half_its_budget():
    """what=test_set scores each run's final model: at half the budget there is none, so the
    check would always read 'not measured'; the column leaves it out (4x checks the budget)."""
    tables = _tables((1, 0, 0.95), (4, 0, 0.97))
    assert "at half the budget" in _annotated(tables).stability
    runs = tables["runs"]
    tables["test_set"] = pd.DataFrame({"run": "m-" + runs.run, "train_run": runs.run})
    v = _annotated(tables)
    assert v.stability == "stable; holds at 4x the budget"


def test_the_claims_table_states_the_steps_of_the_runs_each_verdict_was_read_on(tmp_path):
    """A verdict reported from its 4x runs says their steps, not the quick profile's."""
    from seqbench.report.write import budgets

    tables = _tables((1, 0, 0.5), (4, 0, 0.95))
    tables["runs"] = tables["runs"].assign(device="cpu", model="m")
    (v,), _ = study_parts(TOY, tables, Figures(tmp_path, {}))
    assert v.budget == "4x" and budgets(TOY, tables, [v]) == ["400 steps, 3 seeds, cpu"]
    (w,), _ = study_parts(TOY, _tables((1, 0, 0.95), (4, 0, 0.96)), Figures(tmp_path, {}))
    one = _tables((1, 0, 0.95), (4, 0, 0.96))
    one["runs"] = one["runs"].assign(device="cpu", model="m")
    assert w.budget == "1x" and budgets(TOY, one, [w]) == ["100 steps, 3 seeds, cpu"]
