"""Study path_length (C5): the fade tests on synthetic influence tables (every verdict
reachable, inconclusive for a failed criterion and for an interval across the threshold,
families not names), the stability perturbations, the reading and the section."""

import matplotlib
import numpy as np
import pandas as pd
import pytest

from seqbench.report import stability
from seqbench.report.plot import Figures
from seqbench.studies import path_length as study
from seqbench.studies import study_jobs

matplotlib.use("Agg")

FAMILIES = {"rnn": "recurrent", "lstm": "recurrent", "transformer": "attention", "mingru": "scan"}
UNTRAINED_T, TRAINED_T, DISTANCE = 64, 16, 8
CRITERION = "val_acc >= 0.9"


def _rows(model, seed, trained, curve, learned=True, study_name="path_length"):
    T = TRAINED_T if trained else UNTRAINED_T
    run = f"{model}-{seed}-{'trained' if trained else 'untrained'}"
    return [
        {
            "run": run, "study": study_name, "status": "complete", "model": model,
            "family": FAMILIES[model], "seed": seed, "trained": str(trained), "d": d,
            "grad_norm": curve(d, seed), "examples": 64, "T": T,
            "distance": DISTANCE if trained else 48,
            "val_acc": (0.95 if learned else 0.1) if trained else np.nan,
            "criterion": CRITERION if trained else np.nan,
            "steps_to_criterion": (100.0 if learned else np.nan) if trained else np.nan,
            "lr": 0.01 if trained else np.nan,
        }
        for d in range(T)
    ]  # fmt: skip


def _influence(untrained, trained=None, failed=(), seeds=(0, 1, 2), **kw):
    """model -> curve(d, seed), untrained and trained; ``failed``: (model, seed) pairs whose
    training run did not reach its criterion."""
    rows = []
    for trained_state, curves in ((False, untrained), (True, trained or {})):
        for m, curve in curves.items():
            for s in seeds:
                learned = (m, s) not in failed
                rows += _rows(m, s, trained_state, curve, learned, **kw)
    return {"influence": pd.DataFrame(rows)}


def geometric(r):
    return lambda d, seed: r**d


def flat(d, seed):
    return 1.0


def peak(height):  # trained: the influence at the recall distance is ``height`` x the rest
    return lambda d, seed: height if d == DISTANCE else 1.0


FADING = {"rnn": geometric(0.8), "lstm": geometric(0.9), "transformer": flat}
LEARNED = {"rnn": peak(0.01), "lstm": peak(0.05), "transformer": peak(3.0)}


def _verdict(*args, **kw):
    (v,) = study.verdicts(_influence(*args, **kw))
    assert v.claim == "C5" and v.rule == study.RULE.text
    return v


def test_decay_is_near_over_far_and_at_the_recall_distance():
    df = study.influence_table(_influence({"rnn": lambda d, s: 1.0 if d <= 4 else 0.01}))
    one = df[df.seed == 0]
    assert study.decay(one) == pytest.approx(100.0)
    assert np.isnan(study.decay(one[one.d < 2 * study.RULE.near]))  # too few distances
    t = study.influence_table(_influence({}, {"lstm": peak(0.1)}))
    assert study.decay_to_value(t[t.seed == 0]) == pytest.approx(10.0)


@pytest.mark.parametrize(
    "untrained, trained, expected",
    [
        (FADING, LEARNED, "supported"),  # fades untrained and still after training
        # training built a path to the value: the architecture fades, the trained model not
        (FADING, LEARNED | {"lstm": peak(2.0)}, "nuanced"),
        (FADING | {"lstm": flat}, LEARNED, "not supported"),  # a flat recurrence, untrained
        (FADING | {"transformer": geometric(0.8)}, LEARNED, "not supported"),
        (FADING, LEARNED | {"transformer": peak(0.01)}, "not supported"),  # attention fades
    ],
)
def test_verdicts(untrained, trained, expected):
    v = _verdict(untrained, trained)
    assert v.verdict == expected
    assert "transformer" in v.measured and "(3 seeds)" in v.measured


def test_the_scan_family_is_drawn_but_not_judged():
    v = _verdict(FADING | {"mingru": flat}, LEARNED)
    assert v.verdict == "supported"  # named, with what the rule would say of it (issue 22)
    assert "; scan (not compared by this rule: mingru): as attention, " in v.measured


def test_inconclusive_when_a_family_has_no_model_that_reached_its_criterion():
    failed = {(m, s) for m in ("rnn", "lstm") for s in (0, 1, 2)}
    v = _verdict(FADING, LEARNED, failed=failed)
    assert v.verdict == "inconclusive"
    assert f"left out, seeds that reached {CRITERION}: lstm 0/3, rnn 0/3" in v.measured
    # one recurrent model failed one seed: it is left out, the LSTM still decides
    v = _verdict(FADING, LEARNED | {"lstm": peak(2.0)}, failed={("rnn", 1)})
    assert v.verdict == "nuanced" and "rnn 2/3" in v.measured


def test_inconclusive_when_an_interval_straddles_the_threshold():
    # the LSTM's untrained fade is 2x in one seed and far above 10x in the others
    spread = {"lstm": lambda d, s: 1.0 if d <= 4 else (0.5 if s == 0 else 1e-3)}
    v = _verdict(FADING | spread, LEARNED)
    assert v.verdict == "inconclusive" and "lstm" in v.measured and "cannot tell" in v.measured


def test_inconclusive_without_trained_models():
    v = _verdict(FADING)
    assert v.verdict == "inconclusive" and "no trained models" in v.measured


@pytest.mark.parametrize(
    "tables",
    [
        {},  # not measured
        _influence({"rnn": geometric(0.8), "lstm": geometric(0.9)}),  # no attention model
        _influence({"transformer": flat, "mingru": geometric(0.8)}),  # no recurrent model
        _influence(FADING, study_name="other"),
    ],
)
def test_no_verdict_without_both_families(tables):
    assert study.verdicts(tables) == []


def test_an_underflowing_far_gradient_still_counts_as_fading():
    under = {"rnn": lambda d, s: float(d <= 40)}  # the far gradient is exactly 0: fade ∞
    v = _verdict(FADING | under, LEARNED)
    assert v.verdict == "supported" and "rnn ∞" in v.measured


def test_stability_leaves_out_each_seed():
    tables = _influence(FADING, LEARNED)
    tables["runs"] = pd.DataFrame({"run": ["x", "y", "z"], "seed": [0, 1, 2]})
    (v,) = stability.annotate(study, "path_length", tables, study.verdicts(tables))
    assert v.stability == "stable"  # two seeds still give intervals on the same side
    # the LSTM's untrained fade: 1x in seed 0, ~1e6x in seeds 1 and 2 (two tight seeds
    # give a t interval clear of 10x; all three straddle it)
    far = {0: 1.0, 1: 1e-6, 2: 0.9e-6}
    straddle = _influence(FADING | {"lstm": lambda d, s: 1.0 if d <= 4 else far[s]}, LEARNED)
    straddle["runs"] = tables["runs"]
    (v,) = stability.annotate(study, "path_length", straddle, study.verdicts(straddle))
    assert v.verdict == "inconclusive" and "without seed 0: supported" in v.stability


def test_rule_sentence_carries_the_thresholds():
    text = study.RULE.text
    assert ">= 10x" in text and "d <= 4" in text and "1/4" in text


def test_reading_follows_the_data():
    r = study.runs(study.influence_table(_influence(FADING, LEARNED | {"lstm": peak(2.0)})))
    md = study._reading(r)
    assert md.startswith("**Reading.** Untrained (threshold 10x): fades: lstm, rnn; flat:")
    assert "Trained to the criterion (threshold 10x): fades: rnn; flat: lstm, transformer" in md
    failed = study.runs(study.influence_table(_influence(FADING, LEARNED, failed={("rnn", 0)})))
    assert "Did not reach the criterion in every seed: rnn (2/3)." in study._reading(failed)
    assert study._reading(r.iloc[0:0]) == ""


def test_section_draws_the_figure_and_the_table(tmp_path):
    tables = _influence(FADING | {"mingru": geometric(0.95)}, LEARNED)
    md = study.section(tables, Figures(tmp_path, FAMILIES))
    assert "![path_length_influence](path_length_influence.png)" in md
    assert (tmp_path / "path_length_influence.png").exists()
    assert "| lstm | trained | 16 |" in md and "| 3/3 | 100 | 0.01 |" in md
    assert "CPU profile cut: only lstm, gru, transformer are trained" in md
    assert "**Reading.**" in md and "nan" not in md.split("**Reading.**")[1]
    assert study.section({}, Figures(tmp_path, FAMILIES)) == "_No completed path_length runs._"


def test_bench_jobs():
    for jobs in study_jobs(study.__name__).values():
        assert all(j.module == "seqbench.measure" for j in jobs)
        influence = [j for j in jobs if j.name != "path_length_test"]
        assert all(j.args[:2] == ["-m", "+experiment=path_length"] for j in influence)
        (test,) = [j for j in jobs if j.name == "path_length_test"]  # the task accuracy
        assert test.args[:3] == ["-m", "what=test_set", "+experiment=path_length"]
    cpu = {j.name: j.args for j in study_jobs(study.__name__)["cpu"]}
    assert "what.trained=[false]" in cpu["path_length"]  # every model, untrained
    assert "model=lstm,gru,transformer" in cpu["path_length_trained"]
    assert "what.trained=[true]" in cpu["path_length_trained"]


def _saved(tables, tmp_path):
    """The live figure the section saves (inspected after drawing)."""
    seen = []
    study.section(tables, Figures(tmp_path, FAMILIES, on_save=lambda fig, _: seen.append(fig)))
    (fig,) = seen
    return fig


def test_the_figure_reaches_the_deepest_gradient_and_says_what_it_leaves_out(tmp_path):
    """Issue 23: y ticks stopped at 1e-12 over data down to 1e-18; two identical 'recall
    distance' entries; fractional distance ticks; models missing from the trained panel."""
    fig = _saved(_influence(FADING | {"mingru": geometric(0.5)}, LEARNED), tmp_path)
    untrained, trained = fig.axes[:2]
    smallest = min(v for ln in untrained.get_lines() for v in ln.get_ydata() if v > 0)
    ticks = [t for t in untrained.get_yticks() if t > 0]
    low, high = sorted(untrained.get_ylim())
    assert min(t for t in ticks if low <= t <= high) <= 10 * smallest  # 0.5^63 ~ 1e-19
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend.count("the task's recall distance") == 1
    assert {"d = 48", "d = 8"} <= {t.get_text() for ax in fig.axes for t in ax.texts}
    for ax in (untrained, trained):
        assert all(float(t).is_integer() for t in ax.get_xticks())
    assert any("not trained here: mingru" in t.get_text() for t in trained.texts)
    assert "T=64" in untrained.get_title() and "T=16" in trained.get_title()


def test_the_trained_models_runs_are_the_studys_own():
    """The influence measurement files its trained models' runs under its own study, so no
    second study name exists for the report to list as other runs; a run of the study is a
    training run or an influence measurement, told apart by its table."""
    from omegaconf import OmegaConf

    from seqbench.measure.common import training_config
    from seqbench.studies import experiment_files
    from tests.conftest import compose_cfg

    assert OmegaConf.load(experiment_files()["path_length"]).study == study.STUDY
    cfg = compose_cfg(["what=influence", f"study={study.STUDY}"], config_name="measure")
    assert training_config(cfg).study == study.STUDY == "path_length"
    adhoc = compose_cfg(["what=influence", "study=mine"], config_name="measure")
    assert training_config(adhoc).study == "mine"  # a user's measurement: the user's study
