"""Study path_length (C5): the decay rule on synthetic influence tables (every verdict
reachable, families not names), the reading generated from the numbers, and the section."""

import matplotlib
import numpy as np
import pandas as pd
import pytest

from seqbench.report.plot import Figures
from seqbench.studies import path_length as study

matplotlib.use("Agg")

FAMILIES = {"rnn": "recurrent", "lstm": "recurrent", "transformer": "attention", "mingru": "scan"}
T = 48  # distances d = 0..T-1


def _influence(untrained, trained=None, study_name="path_length"):
    """Rows of the influence table: model -> grad_norm(d) untrained (and trained)."""
    rows = []
    for state, curves in ((False, untrained), (True, trained or {})):
        for m, curve in curves.items():
            for d in range(T):
                rows.append(
                    {
                        "run": f"{m}-{state}",
                        "study": study_name,
                        "status": "complete",
                        "model": m,
                        "family": FAMILIES[m],
                        "trained": state,
                        "d": d,
                        "grad_norm": curve(d),
                        "examples": 64,
                        "distance": 40,
                        "val_acc": 0.9 if state else np.nan,
                    }
                )
    return {"influence": pd.DataFrame(rows)}


def geometric(r):
    return lambda d: r**d


def flat(d):
    return 1.0


def test_decay_is_near_over_far():
    df = study.influence_table(_influence({"rnn": lambda d: 1.0 if d <= 4 else 0.01}))
    assert study.decay(df) == pytest.approx(100.0)
    too_short = df[df.d < 2 * study.RULE.near]  # fewer than 2 x near distances: no decay
    assert np.isnan(study.decay(too_short))


@pytest.mark.parametrize(
    "curves,expected",
    [
        ({"rnn": geometric(0.8), "lstm": geometric(0.9), "transformer": flat}, "supported"),
        ({"rnn": geometric(0.8), "lstm": flat, "transformer": flat}, "not supported"),
        ({"rnn": geometric(0.8), "transformer": geometric(0.8)}, "not supported"),
        # the scan family is not in the rule: a flat minGRU changes nothing
        ({"rnn": geometric(0.8), "transformer": flat, "mingru": flat}, "supported"),
    ],
)
def test_verdicts(curves, expected):
    (v,) = study.verdicts(_influence(curves))
    assert v.claim == "C5" and v.verdict == expected and v.rule == study.RULE.text
    assert "transformer" in v.measured and "rnn" in v.measured and "mingru" not in v.measured


@pytest.mark.parametrize(
    "tables",
    [
        {},  # not measured
        _influence({"rnn": geometric(0.8), "lstm": geometric(0.9)}),  # no attention model
        _influence({"transformer": flat, "mingru": geometric(0.8)}),  # no recurrent model
        _influence({"rnn": geometric(0.8), "transformer": flat}, study_name="other"),
    ],
)
def test_no_verdict_without_both_families(tables):
    assert study.verdicts(tables) == []


def test_only_the_untrained_models_decide():
    trained = {"rnn": flat, "transformer": geometric(0.8)}  # trained curves would refute
    (v,) = study.verdicts(_influence({"rnn": geometric(0.8), "transformer": flat}, trained))
    assert v.verdict == "supported"


def test_rule_sentence_carries_the_thresholds():
    assert "10x" in study.RULE.text and "d <= 4" in study.RULE.text


def test_reading_follows_the_data():
    peak = {"lstm": lambda d: 5.0 if d == 40 else 1.0}
    md = study._reading(study.influence_table(_influence({"lstm": flat}, peak)))
    assert md.startswith("**Reading.**") and "lstm untrained ×1" in md and "∞" not in md
    assert "lstm ×5 (held-out accuracy 0.9)" in md
    # a far gradient that underflows to 0: the ∞ note appears, because the number is ∞
    under = study._reading(study.influence_table(_influence({"rnn": lambda d: float(d < 20)})))
    assert "rnn untrained ×∞" in under and "underflows" in under
    # nothing measurable: no reading at all
    short = study.influence_table(_influence({"rnn": flat}))
    assert study._reading(short[short.d < 4]) == ""


def test_section_draws_the_figure(tmp_path):
    tables = _influence(
        {"rnn": geometric(0.8), "transformer": flat, "mingru": geometric(0.95)},
        {"rnn": geometric(0.9), "transformer": flat},
    )
    md = study.section(tables, Figures(tmp_path, FAMILIES))
    assert "![influence_vs_distance](influence_vs_distance.png)" in md
    assert (tmp_path / "influence_vs_distance.png").exists()
    assert "**Reading.**" in md and "nan" not in md.split("**Reading.**")[1]
    assert study.section({}, Figures(tmp_path, FAMILIES)) == "_No completed path_length runs._"


def test_bench_jobs():
    for profile, jobs in study.BENCH.items():
        (job,) = jobs
        assert job.name == "path_length" and job.module == "seqbench.measure"
        assert job.args[:2] == ["-m", "+experiment=path_length"]
        # smoke and cpu reuse the core study's lag_recall runs as the trained models
        assert ("what.train_study=core" in job.args) == (profile != "gpu")
