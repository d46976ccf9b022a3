"""Small computations the report sections share: log-log slopes and value lookups.

A power law y = a T^k is a straight line of slope k on log-log axes; the least-squares slope
of log y on log T is what the report quotes as "time grows as T^k" (k = 1: linear, k = 2:
quadratic). Every number a section writes comes through here from the measured tables.
"""

import numpy as np
import pandas as pd


def loglog_slope(x, y) -> float:
    """Least-squares slope of log y against log x over the finite, positive points."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if len(np.unique(x[ok])) < 2:  # one length has no slope (polyfit would guess one)
        return float("nan")
    return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0])


def value_at(df: pd.DataFrame, x: str, at, y: str) -> float:
    """Median of ``y`` over the rows where ``x == at`` (nan when there are none)."""
    sel = df.loc[df[x] == at, y]
    sel = pd.to_numeric(sel, errors="coerce").dropna()
    return float(sel.median()) if len(sel) else float("nan")


def ratio(a, b) -> float:
    """a / b without warnings: inf when only b is 0 (e.g. a gradient that underflowed)."""
    a, b = float(a), float(b)
    if np.isnan(a) or np.isnan(b) or (a == 0 and b == 0):
        return float("nan")
    return a / b if b != 0 else float("inf")
