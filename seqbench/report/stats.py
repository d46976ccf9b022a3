"""Intervals behind every number a verdict uses.

A study compares families across seeds (and, within a run, across held-out sequences). We
report the mean with a 95% percentile-bootstrap interval over seeds (Efron & Tibshirani 1993):
resample the seeds with replacement, recompute the mean, take the 2.5th and 97.5th
percentiles. With 3 seeds this is close to [min, max], honestly wide. A difference between two
groups counts only when its interval (independent resamples of each group) excludes zero.
The generator is seeded, so a report is reproducible.
"""

from dataclasses import dataclass

import numpy as np

LEVEL = 0.95
RESAMPLES = 4000


@dataclass(frozen=True)
class Estimate:
    mean: float
    lo: float
    hi: float
    n: int

    def __str__(self) -> str:
        return fmt(self)

    @property
    def sign(self) -> int:
        """+1 / -1 when the interval lies above / below zero, 0 when it contains it."""
        if self.lo > 0:
            return 1
        if self.hi < 0:
            return -1
        return 0

    def above(self, threshold) -> bool:
        return self.lo >= threshold

    def below(self, threshold) -> bool:
        return self.hi < threshold


def _values(values) -> np.ndarray:
    v = np.asarray(list(values), dtype=float)
    return v[np.isfinite(v)]


def _resampled_means(v: np.ndarray, rng) -> np.ndarray:
    idx = rng.integers(0, len(v), size=(RESAMPLES, len(v)))
    return v[idx].mean(axis=1)


def estimate(values, seed: int = 0) -> Estimate:
    """Mean of ``values`` with its bootstrap interval (nan interval for fewer than 2)."""
    v = _values(values)
    if len(v) == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    if len(v) == 1:
        return Estimate(float(v[0]), float("nan"), float("nan"), 1)
    means = _resampled_means(v, np.random.default_rng(seed))
    lo, hi = np.quantile(means, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return Estimate(float(v.mean()), float(lo), float(hi), len(v))


def difference(a, b, seed: int = 0) -> Estimate:
    """mean(a) - mean(b), with the interval of independent bootstrap resamples of each."""
    va, vb = _values(a), _values(b)
    if len(va) == 0 or len(vb) == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    mean = float(va.mean() - vb.mean())
    if len(va) < 2 or len(vb) < 2:
        return Estimate(mean, float("nan"), float("nan"), min(len(va), len(vb)))
    rng = np.random.default_rng(seed)
    diffs = _resampled_means(va, rng) - _resampled_means(vb, rng)
    lo, hi = np.quantile(diffs, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return Estimate(mean, float(lo), float(hi), min(len(va), len(vb)))


def fmt(v, digits: int = 3) -> str:
    """A number as the report's text writes it (the one formatter of sentences and verdicts;
    tables go through ``markdown.md_table``): an Estimate as '0.93 [0.90, 0.96]' (with the
    interval when there is one), a plain number to ``digits`` significant digits ('∞' for a
    ratio over zero), 'n/a' for none."""
    if isinstance(v, Estimate):
        if not np.isfinite(v.mean):
            return "n/a"
        if not (np.isfinite(v.lo) and np.isfinite(v.hi)):
            return f"{v.mean:.{digits}g}"
        return f"{v.mean:.{digits}g} [{v.lo:.{digits}g}, {v.hi:.{digits}g}]"
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "n/a"
    if isinstance(v, float) and np.isinf(v):
        return "∞" if v > 0 else "-∞"
    return f"{v:.{digits}g}"
