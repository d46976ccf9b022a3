"""Intervals on known data, and the stability column on tables built to flip."""

import math
import types

import numpy as np
import pandas as pd
import pytest

from seqbench.report import stability
from seqbench.report.stats import difference, estimate, fmt, t_cdf, t_quantile
from seqbench.report.verdict import Verdict


def test_interval_of_constant_values_is_the_value():
    e = estimate([0.7, 0.7, 0.7])
    assert (e.mean, e.lo, e.hi, e.n) == pytest.approx((0.7, 0.7, 0.7, 3))


def test_interval_matches_the_normal_approximation_for_many_values():
    rng = np.random.default_rng(1)
    x = rng.normal(10.0, 2.0, size=400)
    e = estimate(x)
    half = 1.96 * x.std(ddof=1) / math.sqrt(len(x))
    assert e.lo == pytest.approx(x.mean() - half, abs=0.05)
    assert e.hi == pytest.approx(x.mean() + half, abs=0.05)


def test_three_seeds_give_a_t_interval_wider_than_their_range():
    """With 3 values the 95% interval is mean +- 4.30 s / sqrt(3): wider than [min, max],
    which covers the mean only ~75% of the time (tests/test_coverage.py)."""
    e = estimate([0.2, 0.5, 0.9])
    half = 4.302653 * np.std([0.2, 0.5, 0.9], ddof=1) / math.sqrt(3)
    assert (e.lo, e.hi) == pytest.approx((0.5333333 - half, 0.5333333 + half))
    assert e.lo < 0.2 and e.hi > 0.9 and fmt(e) == "0.533 [-0.339, 1.41]"


@pytest.mark.parametrize(
    "df, p, t",  # standard t tables (e.g. Abramowitz & Stegun 26.10), and closed forms
    [(1, 0.975, 12.7062), (2, 0.975, 4.3027), (3, 0.975, 3.1824), (4, 0.975, 2.7764),
     (9, 0.975, 2.2622), (30, 0.975, 2.0423), (120, 0.975, 1.9799), (1e7, 0.975, 1.9600),
     (5, 0.995, 4.0321), (10, 0.9, 1.3722)],
)  # fmt: skip
def test_the_t_quantile_matches_the_tables(df, p, t):
    assert t_quantile(p, df) == pytest.approx(t, abs=1e-4)


def test_the_t_quantile_at_a_fractional_df_matches_its_closed_forms():
    """Welch's df is fractional: check the CDF where it has a closed form (df=1: Cauchy;
    df=2: t / sqrt(2 + t^2)) and that a fractional df lies between its neighbours."""
    for t in (0.3, 1.0, 4.0):
        assert t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)
        assert t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-12)
    assert t_quantile(0.975, 3) < t_quantile(0.975, 2.5) < t_quantile(0.975, 2)


def test_welchs_difference_uses_the_welch_satterthwaite_df():
    a, b = [1.0, 1.2, 1.4, 1.1], [0.0, 0.5, -0.5]
    va, vb = np.var(a, ddof=1) / 4, np.var(b, ddof=1) / 3
    df = (va + vb) ** 2 / (va**2 / 3 + vb**2 / 2)
    d = difference(a, b)
    half = t_quantile(0.975, df) * math.sqrt(va + vb)
    assert (d.mean, d.lo, d.hi, d.n) == pytest.approx((1.175, 1.175 - half, 1.175 + half, 3))
    assert 2 < df < 3  # the noisier small group dominates: fewer df than 4 + 3 - 2


def test_a_difference_counts_only_when_its_interval_excludes_zero():
    assert difference([0.9, 0.92, 0.95], [0.1, 0.12, 0.15]).sign == 1
    assert difference([0.1, 0.12, 0.15], [0.9, 0.92, 0.95]).sign == -1
    assert difference([0.1, 0.9, 0.5], [0.2, 0.8, 0.45]).sign == 0  # overlapping: undecided
    assert math.isnan(estimate([]).mean) and fmt(estimate([0.3])) == "0.3"


def _study(rule):
    """A study whose verdict is computed by ``rule(runs)`` over its complete runs."""

    def verdicts(tables):
        runs = tables["runs"]
        return [Verdict("C5", "toy", "-", "r", rule(runs))]

    return types.SimpleNamespace(verdicts=verdicts)


def _tables():
    runs = pd.DataFrame(
        {
            "run": ["a", "b", "c"],
            "study": "toy",
            "seed": [0, 1, 2],
            "val_acc": [0.95, 0.96, 0.10],
            "train.steps": 100,
            "steps_to_criterion": [80, 90, np.nan],
        }
    )
    curves = pd.DataFrame(
        {
            "run": ["a", "a", "b", "b", "c", "c"],
            "study": "toy",
            "step": [50, 100] * 3,
            "val_loss": [1.0, 0.1] * 3,
            "val_acc": [0.3, 0.95, 0.4, 0.96, 0.1, 0.1],
        }
    )
    return {"runs": runs, "curves": curves}


def test_stability_names_the_seed_that_flips_the_verdict():
    study = _study(lambda r: "supported" if r.val_acc.min() > 0.5 else "inconclusive")
    tables = _tables()
    (v,) = stability.annotate(study, "toy", tables, study.verdicts(tables))
    assert v.verdict == "inconclusive" and v.stability == "without seed 2: supported"


def test_stability_reads_the_first_half_of_the_budget_from_the_curves():
    study = _study(lambda r: "supported" if r.val_acc.max() > 0.9 else "not supported")
    tables = _tables()
    (v,) = stability.annotate(study, "toy", tables, study.verdicts(tables))
    assert v.stability == "at half the budget: not supported"  # at step 50 nobody was at 0.9
    half = stability.half_budget(tables)["runs"]
    assert half.steps_to_criterion.isna().all()  # reached at 80 and 90: after half of 100


def test_a_stable_verdict_and_one_nothing_can_perturb():
    study = _study(lambda r: "supported")
    tables = _tables()
    assert stability.annotate(study, "toy", tables, study.verdicts(tables))[0].stability == "stable"
    other = stability.annotate(study, "elsewhere", tables, study.verdicts(tables))[0]
    assert other.stability.startswith("n/a")


def test_fmt_writes_plain_numbers_and_estimates_alike():
    """One formatter for every number a sentence or verdict quotes: an estimate with its
    interval, a plain number to its significant digits, and no 'nan' or 'inf' on a page."""
    assert fmt(0.123456) == "0.123" and fmt(2.0, 2) == "2" and fmt(1234.5, 4) == "1234"
    assert fmt(3) == "3" and fmt(None) == "n/a" and fmt(float("nan")) == "n/a"
    assert fmt(float("inf")) == "∞" and fmt(-float("inf")) == "-∞"
    assert fmt(estimate([float("nan")])) == "n/a"  # no finite value: no estimate either
    assert fmt(difference([1.0, 2.0], [0.0, 1.0])).startswith("1 [")
