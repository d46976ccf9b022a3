"""Study path_length (C5): untrained and trained fades read at the same recall distances, on
synthetic tables that give every verdict (a failing model counted as fading with its test
accuracy, a censored one held open, an interval across the bar, a missing test set, a family
the rule does not name), the stability perturbations, the reading, the section and figure,
the profiles, and a real measurement that reads its influence on the test split."""

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY, compose_cfg, measured_test_set

from seqbench.config import build_model, build_task
from seqbench.measure.influence import influence
from seqbench.measure.run import run_measurement
from seqbench.report import stability
from seqbench.report.plot import Figures
from seqbench.studies import path_length as study
from seqbench.studies import study_jobs

matplotlib.use("Agg")

FAMILIES = {"rnn": "recurrent", "lstm": "recurrent", "transformer": "attention", "mingru": "scan"}
T, DISTANCES, CAP = 64, (8, 48), 600
SOLVED = ("solved", 0.95, 100)  # (outcome, test accuracy, steps to the criterion)


def _influence_rows(model, seed, D, trained, curve, outcome):
    run = f"{model}-{seed}-{D}"
    learned = trained and outcome[0] == "solved"
    return [
        {"run": run, "study": "path_length", "status": "complete", "model": model,
         "family": FAMILIES[model], "seed": seed, "trained": str(trained), "d": d,
         "grad_norm": curve(d, seed, D), "examples": 64, "T": T, "distance": D,
         "criterion": "val_acc >= 0.9" if trained else np.nan,
         "steps_to_criterion": outcome[2] if learned else np.nan,
         "lr": 0.01 if trained else np.nan, "train_run": f"train-{run}" if trained else np.nan}
        for d in range(T)
    ]  # fmt: skip


def _tables(untrained, trained=None, outcomes=None, seeds=(0, 1, 2), cap=CAP, tested=True,
            study_name="path_length"):  # fmt: skip
    """model -> curve(d, seed, D), untrained and trained at every D of DISTANCES; ``outcomes``:
    (model, D) -> (solved | failed | censored, test accuracy, steps) of its training runs."""
    rows, runs = [], []
    for m, s, D in [(m, s, D) for m in {**untrained, **(trained or {})} for s in seeds
                    for D in DISTANCES]:  # fmt: skip
        outcome = (outcomes or {}).get((m, D), SOLVED)
        if m in untrained:
            rows += _influence_rows(m, s, D, False, untrained[m], outcome)
        if m in (trained or {}):
            rows += _influence_rows(m, s, D, True, trained[m], outcome)
            runs.append({"run": f"train-{m}-{s}-{D}", "study": "path_length",
                         "status": "complete", "model": m, "family": FAMILIES[m], "seed": s,
                         "train.steps": cap, "censored": outcome[0] == "censored",
                         "test_acc": outcome[1], "step": cap})  # fmt: skip
    tables = {"influence": pd.DataFrame(rows).assign(study=study_name)}
    if runs:  # the test accuracy reaches the study only through the test_set table
        runs = pd.DataFrame(runs)
        tables["runs"] = runs.drop(columns="test_acc")
        if tested:
            tables["test_set"] = measured_test_set(runs)
    return tables


def geometric(r):
    return lambda d, seed, D: r**d


def flat(d, seed, D):
    return 1.0


def peak(height):  # trained: the influence at the recall distance is ``height`` x the rest
    return lambda d, seed, D: height if d == D else 1.0


FADING = {"rnn": geometric(0.8), "lstm": geometric(0.9), "transformer": flat}
FLAT = {"rnn": flat, "lstm": flat, "transformer": flat}
LEARNED = {"rnn": peak(0.01), "lstm": peak(0.05), "transformer": peak(3.0)}
CARRIED = LEARNED | {"rnn": peak(2.0), "lstm": peak(2.0)}  # the value carried to the answer
FAILS = ("failed", 0.06, None)


def _verdict(*args, **kw):
    (v,) = study.verdicts(_tables(*args, **kw))
    assert v.claim == "C5" and v.rule == study.RULE.text
    return v


def test_the_fade_is_near_over_the_recall_distance_in_both_states():
    df = study.influence_table(_tables({"rnn": geometric(0.5)}, {"lstm": peak(0.1)}))
    r = study.runs(df)
    untrained = r[~r.trained & (r.distance == 8) & (r.seed == 0)].fade.item()
    assert untrained == pytest.approx(np.mean([0.5**d for d in range(1, 5)]) / 0.5**8)
    assert r[r.trained].fade.to_numpy() == pytest.approx(10.0)
    assert set(r.distance) == set(DISTANCES)  # both states at every distance


@pytest.mark.parametrize(
    "untrained, trained, outcomes, expected",
    [
        # every trained recurrence fades where attention is flat
        (FADING, LEARNED, {}, "supported"),
        # failing the task counts as fading: rnn fails at 8 and 48, lstm at 48
        (
            FADING,
            CARRIED,
            {("rnn", 8): FAILS, ("rnn", 48): FAILS, ("lstm", 48): FAILS},
            "supported",
        ),  # fmt: skip
        # only some recurrences fade where attention is flat: the lstm carries the value
        (FADING, CARRIED, {("rnn", 8): FAILS, ("rnn", 48): FAILS}, "nuanced"),
        # every trained recurrence is flat where its untrained architecture fades
        (FADING, CARRIED, {}, "nuanced"),
        # nothing fades anywhere, untrained or trained: no distance separates the families
        (FLAT, CARRIED, {}, "not supported"),
        # attention fades where a recurrence is flat
        (FADING, CARRIED | {"transformer": peak(0.01)}, {}, "not supported"),
        # both families fail at the longest distance and neither fades at the shorter one
        (FLAT, CARRIED, {(m, 48): FAILS for m in FADING}, "not supported"),
    ],
)
def test_every_verdict(untrained, trained, outcomes, expected):
    v = _verdict(untrained, trained, outcomes)
    assert v.verdict == expected, v.measured
    assert "transformer" in v.measured and "(3 seeds)" in v.measured
    assert all(f"D={D}: " in v.measured for D in DISTANCES)


def test_a_failing_model_counts_as_fading_with_its_test_accuracy():
    v = _verdict(FADING, CARRIED, {("rnn", 48): FAILS, ("lstm", 48): FAILS})
    assert v.verdict == "supported"
    d48 = v.measured.split("D=48: ")[1]
    assert d48.startswith("every recurrent model fades, attention is flat")
    assert "rnn fails the task, test accuracy 0.06 [0.06, 0.06] (fades)" in d48
    # one seed failing: fades only if the solved seeds do; a flat lstm becomes undecided
    v = _verdict(FADING, CARRIED, {("rnn", 48): FAILS} | {("lstm", 48): ("solved", 0.9, 100)})
    assert v.verdict == "nuanced"
    r = study.runs(study.influence_table(_tables(FADING, CARRIED)))
    r.loc[r.trained & (r.model == "lstm") & (r.seed == 0), "learned"] = False
    call = study.cells(r)[8]["trained"]["lstm"]
    assert call.word == "cannot tell" and "over the 2/3 seeds that solved it" in call.text


def test_a_censored_model_is_undecided_unless_its_cap_is_long_enough():
    censored = {("lstm", 48): ("censored", 0.07, None), ("rnn", 48): FAILS}
    slow = {("transformer", D): ("solved", 0.95, 200) for D in DISTANCES}
    v = _verdict(FADING, CARRIED, censored | slow)  # 600 < 4 x 200: the lstm may yet solve it
    assert v.verdict == "inconclusive"
    assert "lstm 0/3 solved: censored at 600 steps (< 4 x 200) (cannot tell)" in v.measured
    v = _verdict(FADING, CARRIED, censored | slow, cap=800)  # 4 x 200: it had its chance
    assert v.verdict == "supported" and "lstm fails the task, test accuracy 0.07" in v.measured


def test_inconclusive_when_an_interval_straddles_the_threshold():
    # the lstm's trained fade is 2x in one seed and 1e3x in the others, at both distances
    spread = {"lstm": lambda d, s, D: (0.5 if s == 0 else 1e-3) if d == D else 1.0}
    v = _verdict(FADING, CARRIED | spread, {("rnn", D): FAILS for D in DISTANCES})
    assert v.verdict == "inconclusive" and "lstm" in v.measured and "(cannot tell)" in v.measured


def test_inconclusive_without_trained_models_or_their_test_set():
    v = _verdict(FADING)
    assert v.verdict == "inconclusive" and "trained: lstm not trained (cannot tell)" in v.measured
    v = _verdict(
        FADING, {m: LEARNED[m] for m in ("rnn", "transformer")}
    )  # the lstm: untrained only
    assert v.verdict == "inconclusive" and "lstm not trained (cannot tell)" in v.measured
    v = _verdict(FADING, LEARNED, tested=False)
    assert v.verdict == "inconclusive"
    assert v.measured.startswith("test set not measured for 18 of 18 runs")


def test_a_family_the_rule_does_not_compare_is_named_with_what_it_would_say():
    v = _verdict(FADING | {"mingru": geometric(0.9)}, LEARNED | {"mingru": peak(2.0)})
    assert v.verdict == "supported"
    assert "; scan (not compared by this rule: mingru): as attention, supported; " in v.measured
    assert v.measured.endswith("as a recurrence, nuanced")
    v = _verdict(FADING | {"mingru": geometric(0.9)}, LEARNED)  # measured only untrained
    assert v.verdict == "supported" and v.measured.endswith(
        "(not compared by this rule: mingru): as attention, inconclusive; as a recurrence, "
        "inconclusive"
    )


@pytest.mark.parametrize(
    "tables",
    [
        {},  # not measured
        _tables({"rnn": geometric(0.8), "lstm": geometric(0.9)}),  # no attention model
        _tables({"transformer": flat, "mingru": geometric(0.8)}),  # no recurrent model
        _tables(FADING, study_name="other"),
    ],
)
def test_no_verdict_without_both_families(tables):
    assert study.verdicts(tables) == []


def test_an_underflowing_value_gradient_still_counts_as_fading():
    under = {"rnn": lambda d, s, D: float(d != D)}  # the gradient at D is exactly 0: fade ∞
    v = _verdict(FADING, LEARNED | under)
    assert v.verdict == "supported" and "rnn ∞ (fades)" in v.measured


def test_stability_leaves_out_each_seed():
    tables = _tables(FADING, LEARNED)
    (v,) = stability.annotate(study, "path_length", tables, study.verdicts(tables))
    assert v.stability == "stable"  # two seeds still give intervals on the same side
    # the lstm's trained fade at 8: ~1x in seed 0, ~1e6x in seeds 1 and 2 (two tight seeds
    # give a t interval clear of 10x; all three straddle it); at 48 it fails the task
    far = {0: 1.0, 1: 1e-6, 2: 0.9e-6}
    lstm = {"lstm": lambda d, s, D: far[s] if d == D else 1.0}
    straddle = _tables(FADING, LEARNED | lstm, {("lstm", 48): FAILS})
    (v,) = stability.annotate(study, "path_length", straddle, study.verdicts(straddle))
    assert v.verdict == "supported" and "without seed 0" not in v.stability  # 48 decides
    straddle = _tables(FADING, CARRIED | lstm, {("rnn", D): FAILS for D in DISTANCES})
    (v,) = stability.annotate(study, "path_length", straddle, study.verdicts(straddle))
    assert v.verdict == "inconclusive" and "without seed 0: supported" in v.stability


def test_rule_sentence_carries_the_thresholds():
    text = study.RULE.text
    assert "at or above 10x" in text and "d <= 4" in text and "< 4x" not in text
    assert "every seed failed its task counts as fading" in text and "censored" in text


def test_reading_follows_the_data():
    tables = _tables(FADING, CARRIED, {("rnn", 8): FAILS, ("rnn", 48): FAILS})
    r = study.runs(study.influence_table(tables))
    md = study._reading(study.cells(r), r)
    assert md.startswith("**Reading.** At D=8 (bar 10x): untrained, flat: lstm, rnn, transformer |")
    assert "trained, fades: rnn; flat: lstm, transformer; so some recurrent models fade" in md
    assert "missed the criterion: rnn 0/3." in md
    assert study._reading({}, r.iloc[0:0]) == ""


def test_section_draws_the_figure_and_the_table(tmp_path):
    tables = _tables(FADING | {"mingru": geometric(0.95)}, CARRIED, {("rnn", 48): FAILS})
    md = study.section(tables, Figures(tmp_path, FAMILIES))
    assert "![path_length_influence](path_length_influence.png)" in md
    assert (tmp_path / "path_length_influence.png").exists()
    assert "| 48 | rnn |" in md and "test accuracy 0.06 [0.06, 0.06] (fades) | 0/3 |" in md
    assert "| 48 | mingru |" in md and "| not trained |" in md
    assert "Task accuracy on 1,024 test sequences the stopping rule never saw." in md
    assert "**Reading.**" in md and "nan" not in md.split("**Reading.**")[1]
    assert study.section({}, Figures(tmp_path, FAMILIES)) == "_No completed path_length runs._"


def _saved(tables, tmp_path):
    """The live figure the section saves (inspected after drawing)."""
    seen = []
    study.section(tables, Figures(tmp_path, FAMILIES, on_save=lambda fig, _: seen.append(fig)))
    (fig,) = seen
    return fig


def test_the_figure_has_a_panel_per_distance_and_state_and_names_what_failed(tmp_path):
    tables = _tables(FADING | {"mingru": geometric(0.5)}, CARRIED, {("rnn", 48): FAILS})
    fig = _saved(tables, tmp_path)
    titles = [ax.get_title() for ax in fig.axes[:4]]
    assert titles == ["untrained, D=8 (T=64)", "untrained, D=48 (T=64)",
                      "trained at D=8 (T=64)", "trained at D=48 (T=64)"]  # fmt: skip
    untrained = fig.axes[0]
    smallest = min(v for ln in untrained.get_lines() for v in ln.get_ydata() if v > 0)
    ticks = [t for t in untrained.get_yticks() if t > 0]
    low, high = sorted(untrained.get_ylim())
    assert min(t for t in ticks if low <= t <= high) <= 10 * smallest  # 0.5^63 ~ 1e-19
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend.count("the task's recall distance") == 1
    notes = " ".join(t.get_text() for t in fig.axes[3].texts).replace("\n", " ")
    assert "missed the criterion: rnn 0/3" in notes
    assert "not trained here: mingru" in notes
    assert all(float(t).is_integer() for ax in fig.axes[:4] for t in ax.get_xticks())


def test_profiles_read_every_model_untrained_train_both_families_and_full_adds_4x():
    jobs = study_jobs(study.__name__)
    for profile in jobs.values():
        assert all(j.module == "seqbench.measure" for j in profile)
        for j in profile:
            test = ["what=test_set"] * j.name.endswith("_test")
            assert j.args[: 2 + len(test)] == ["-m", *test, "+experiment=path_length"]
    cpu = {j.name: j.args for j in jobs["cpu"]}
    assert set(cpu) == {"path_length", "path_length_trained", "path_length_test"}
    assert "what.trained=[false]" in cpu["path_length"]  # every model: no model= given
    assert not any(a.startswith(("model=", "data.distance=")) for a in cpu["path_length"])
    for name in ("path_length_trained", "path_length_test"):  # rnn included (issue 25)
        assert "model=@lecture" in cpu[name] and not any("distance" in a for a in cpu[name])
    full = {j.name: j for j in jobs["full"]}
    assert {n: full[n].args for n in cpu} == cpu  # the same runs, reused by content key
    for long, base in (("path_length_long", "path_length_trained"),
                       ("path_length_long_test", "path_length_test")):  # fmt: skip
        assert full[long].rank == 42 and "train.budget=4" in full[long].args
        assert [a for a in full[long].args if a != "train.budget=4"] == cpu[base]
    assert set(full) == {*cpu, "path_length_long", "path_length_long_test"}


def test_the_experiment_reads_untrained_and_trained_at_the_same_distances():
    from omegaconf import OmegaConf

    from seqbench.studies import experiment_files

    exp = OmegaConf.load(experiment_files()["path_length"])
    assert exp.study == study.STUDY and exp.hydra.sweeper.params.model == "@compared"
    distances = [int(d) for d in exp.hydra.sweeper.params["data.distance"].split(",")]
    assert distances == [8, 24, 48] and exp.data.seq_len >= max(distances) + 2
    cfg = compose_cfg(["what=influence"], config_name="measure")
    assert list(cfg.what.trained) == [False, True] and cfg.what.split == "test"


def test_influence_is_read_on_the_test_split(tmp_path):
    """The measurement's rows are the gradients on Task.test_examples, which no training,
    criterion or calibration batch reads, for both states; a trained row names its run."""
    cfg = compose_cfg(
        [*TINY, "what=influence", "what.batch_size=8", "data.seq_len=16", "data.distance=4",
         "train.steps=4", "model=lstm", f"out_dir={tmp_path}"],
        config_name="measure",
    )  # fmt: skip
    s = run_measurement(cfg)
    assert s["status"] == "complete", s
    rows = pd.read_csv(Path(s["run_dir"]) / "rows.csv")
    assert set(rows.split) == {"test"} and set(rows["train.budget"]) == {1}
    assert rows[rows.trained].train_run.str.startswith("measure-lstm-").all()
    task = build_task(cfg.data)
    tokens, targets = task.test_examples(8)
    torch.manual_seed(cfg.seed)
    norms, dist = influence(build_model(cfg.model, task.vocab_size, "cpu"), tokens, targets)
    untrained = rows[~rows.trained].set_index("d").grad_norm
    for d in (1, 4):
        assert untrained[d] == pytest.approx(norms[dist == d].mean().item(), rel=1e-5)
    val, _ = task.batch("val", 0, 8)
    assert not torch.equal(val, tokens)  # a different batch: the check above can tell them apart
