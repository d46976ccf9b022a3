"""Intervals behind every number a verdict uses.

A study compares families across replicates (a replicate is a seed: the model's
initialisation and, where the study sets it, its data). We report the mean with a 95% Student
t interval over replicates, mean +- t_{0.975, n-1} * s / sqrt(n), and a difference of two
groups with Welch's t interval (unequal variances, Welch-Satterthwaite degrees of freedom;
Welch 1947). Why t and not the percentile bootstrap: with the 3-5 replicates a cell can
afford, resampling replicates gives roughly [min, max] of three values, whose real coverage is
near 75%, not the 95% on the label (tests/test_coverage.py measures both); the t quantile
(12.7 for two replicates, 4.30 for three) widens the interval to what so few replicates can
say. A difference counts only when its interval excludes zero. The t quantile is computed
here (the regularised incomplete beta, Numerical Recipes 6.4, inverted by bisection): scipy
is not a dependency.
"""

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

LEVEL = 0.95


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


# --- the t quantile, without scipy ------------------------------------------------------------
def _beta_fraction(x: float, a: float, b: float) -> float:
    """The continued fraction of the incomplete beta (modified Lentz), converging fast for
    x < (a + 1) / (a + b + 2); the caller uses the symmetry I_x(a, b) = 1 - I_{1-x}(b, a)."""
    tiny, c, d = 1e-300, 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):  # fmt: skip
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _betainc(x: float, a: float, b: float) -> float:
    """The regularised incomplete beta I_x(a, b)."""
    if x <= 0.0 or x >= 1.0:
        return 0.0 if x <= 0.0 else 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))  # fmt: skip
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _beta_fraction(x, a, b) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(1.0 - x, b, a) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` (any real df > 0) degrees of freedom."""
    tail = 0.5 * _betainc(df / (df + t * t), df / 2, 0.5)
    return 1.0 - tail if t > 0 else tail


@lru_cache(maxsize=4096)  # a report asks for the same few (p, df) thousands of times
def t_quantile(p: float, df: float) -> float:
    """The t value below which a fraction ``p`` (> 0.5) of Student's t with ``df`` lies:
    bisection on t_cdf (the CDF is monotone; 64 halvings reach float precision)."""
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2
    for _ in range(64):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
    return (lo + hi) / 2


# --- intervals --------------------------------------------------------------------------------
def _values(values) -> np.ndarray:
    v = np.asarray(list(values), dtype=float)
    return v[np.isfinite(v)]


def _interval(mean: float, se: float, df: float, n: int) -> Estimate:
    """mean +- t_{(1+LEVEL)/2, df} * se; no spread (se 0) gives the point itself."""
    half = 0.0 if se == 0 else t_quantile((1 + LEVEL) / 2, df) * se
    return Estimate(mean, mean - half, mean + half, n)


def estimate(values, bounds: tuple[float, float] | None = None) -> Estimate:
    """Mean of ``values`` with its Student t interval (nan interval for fewer than 2).
    ``bounds``: the range the quantity cannot leave (an accuracy: (0, 1)); the interval is
    cut to it, which keeps its coverage (the true mean lies inside the range anyway)."""
    v = _values(values)
    if len(v) == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    if len(v) == 1:
        return Estimate(float(v[0]), float("nan"), float("nan"), 1)
    se = float(v.std(ddof=1)) / math.sqrt(len(v))
    e = _interval(float(v.mean()), se, len(v) - 1, len(v))
    if bounds is None:
        return e
    lo, hi = bounds
    return Estimate(e.mean, min(max(e.lo, lo), hi), max(min(e.hi, hi), lo), e.n)


def welch_df(va: np.ndarray, vb: np.ndarray) -> float:
    """Welch-Satterthwaite degrees of freedom of mean(a) - mean(b) (nan with no spread)."""
    qa, qb = va.var(ddof=1) / len(va), vb.var(ddof=1) / len(vb)
    if qa + qb == 0:
        return float("nan")
    return float((qa + qb) ** 2 / (qa**2 / (len(va) - 1) + qb**2 / (len(vb) - 1)))


def difference(a, b) -> Estimate:
    """mean(a) - mean(b) of two independent groups, with Welch's t interval; its n is the
    smaller group's count."""
    va, vb = _values(a), _values(b)
    if len(va) == 0 or len(vb) == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    mean, n = float(va.mean() - vb.mean()), min(len(va), len(vb))
    if n < 2:
        return Estimate(mean, float("nan"), float("nan"), n)
    se = math.sqrt(va.var(ddof=1) / len(va) + vb.var(ddof=1) / len(vb))
    return _interval(mean, se, welch_df(va, vb), n)


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
