"""Do the report's 95% intervals hold the true mean 95% of the time at the replicate counts a
study can afford (3, 5, 10)? Many replicate sets are drawn from known distributions, each gets
its interval from seqbench.report.stats, and the fraction that holds the true value is the
interval's empirical coverage. The percentile bootstrap the report used before is measured
beside it, so the reason for the change stays checked: with 3 replicates it covers ~70%."""

import itertools

import numpy as np
import pytest

from seqbench.report.stats import difference, estimate

SETS = 4000  # Monte-Carlo standard error of a 95% coverage: sqrt(.95 * .05 / 4000) = 0.0034
TOLERANCE = 4 * np.sqrt(0.95 * 0.05 / SETS)


def normal(rng, n):
    return rng.normal(1.0, 0.5, n)


def accuracies(rng, n):
    """Each replicate's accuracy over 128 held-out sequences at a true rate of 0.9: a
    Bernoulli mean, bounded and skewed near its ceiling, as recall's cells are."""
    return rng.binomial(128, 0.9, n) / 128


def lognormal(rng, n):
    """A long right tail (a loss ratio, a fade): the hard case for any interval on 3 values."""
    return rng.lognormal(0.0, 1.0, n)


TRUE_MEAN = {normal: 1.0, accuracies: 0.9, lognormal: float(np.exp(0.5))}


def coverage(intervals, truth) -> float:
    return float(np.mean([e.lo <= truth <= e.hi for e in intervals]))


def bootstrap_coverage(sets: np.ndarray, truth) -> float:
    """Coverage of the old 95% percentile bootstrap of the mean over replicates, with every
    one of the n^n resamples enumerated (the bootstrap's limit of infinitely many draws)."""
    n = sets.shape[1]
    resamples = np.array(list(itertools.product(range(n), repeat=n)))  # [n^n, n]
    means = sets[:, resamples].mean(-1)  # [SETS, n^n]
    lo, hi = np.quantile(means, [0.025, 0.975], axis=1)
    return float(np.mean((lo <= truth) & (truth <= hi)))


def draw_sets(draw, n, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([draw(rng, n) for _ in range(SETS)])  # [SETS, n]


@pytest.mark.parametrize("n", [3, 5, 10])
@pytest.mark.parametrize("draw", [normal, accuracies])
def test_the_t_interval_covers_95_percent_at_small_counts(draw, n):
    sets = draw_sets(draw, n)
    got = coverage([estimate(v) for v in sets], TRUE_MEAN[draw])
    assert abs(got - 0.95) < TOLERANCE, got


def test_the_old_bootstrap_covered_far_less_with_three_replicates():
    """The reason for the t interval: resampling 3 values gives about [min, max] of them."""
    sets = draw_sets(normal, 3)
    old, new = bootstrap_coverage(sets, 1.0), coverage([estimate(v) for v in sets], 1.0)
    assert old < 0.85 and new - old > 0.15, (old, new)


@pytest.mark.parametrize("n", [3, 5])
def test_on_a_long_tail_the_t_interval_falls_short_but_far_less_than_the_bootstrap(n):
    """No interval on 3-5 values is exact for a skewed quantity: the t interval's coverage
    drops to ~84% on a lognormal, the bootstrap's to 58-73%. Pinned so a change to either
    shows here."""
    sets = draw_sets(lognormal, n)
    truth = TRUE_MEAN[lognormal]
    new, old = coverage([estimate(v) for v in sets], truth), bootstrap_coverage(sets, truth)
    assert 0.80 < new < 0.90 and new - old > 0.10, (new, old)


def bootstrap_difference_coverage(a: np.ndarray, b: np.ndarray, truth) -> float:
    """The old interval of a difference: independent percentile bootstraps of each group,
    every pair of the n^n resamples of each enumerated."""
    n = a.shape[1]
    resamples = np.array(list(itertools.product(range(n), repeat=n)))
    ma, mb = a[:, resamples].mean(-1), b[:, resamples].mean(-1)  # [SETS, n^n] each
    diffs = (ma[:, :, None] - mb[:, None, :]).reshape(len(a), -1)  # [SETS, n^2n]
    lo, hi = np.quantile(diffs, [0.025, 0.975], axis=1)
    return float(np.mean((lo <= truth) & (truth <= hi)))


@pytest.mark.parametrize("n", [3, 5, 10])
@pytest.mark.parametrize("spread_b", [0.5, 2.0])
def test_welchs_difference_covers_95_percent(n, spread_b):
    """Welch's interval of mean(a) - mean(b) on groups of equal and of unequal spread: its
    degrees of freedom are an approximation, so the band is a little wider than for one mean."""
    rng = np.random.default_rng(n)
    a = rng.normal(1.0, 0.5, (SETS, n))
    b = rng.normal(0.0, spread_b, (SETS, n))
    got = coverage([difference(x, y) for x, y in zip(a, b)], 1.0)
    assert 0.93 < got < 0.975, got
    if n == 3:  # and the reason for the change, on the same sets
        assert bootstrap_difference_coverage(a, b, 1.0) < 0.85


def test_an_interval_cut_to_its_range_stays_inside_it():
    """Accuracies of 0.5, 1, 1: the t interval runs past 1; cut to (0, 1) it ends at 1, and
    the mean is kept."""
    from seqbench.report.stats import estimate

    free, cut = estimate([0.5, 1.0, 1.0]), estimate([0.5, 1.0, 1.0], bounds=(0.0, 1.0))
    assert free.hi > 1.0 and cut.hi == 1.0 and cut.lo == free.lo and cut.mean == free.mean
