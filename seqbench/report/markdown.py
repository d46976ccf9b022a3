"""Markdown the report writes: tables that read as numbers.

Every table on a report page goes through ``md_table``, so a cell never shows a Python repr,
float noise, or more digits than its interval supports. The claims table, the generic parts and
every study share it; it sits below all of them (it imports no other report module).
"""

import math
import re

import numpy as np
import pandas as pd

MISSING = "-"  # a cell with no value: a dash, explained under the table
NOISE = 1e-12  # |x| below this fraction of its column's largest value is float noise: 0


def md_table(df, floatfmt=None, missing="not measured, or does not apply to this row") -> str:
    """A DataFrame as a GitHub markdown table that reads as numbers: integers as integers,
    floats to 3 significant digits (``floatfmt`` to choose), a column ``x`` beside ``x_lo`` and
    ``x_hi`` to the digits its interval's width supports, float noise (|x| < 1e-12 of its
    column's largest) as 0, lists as 'a, b', and a missing value (nan, None) as a dash with a
    footnote saying what a dash means (``missing``). No Python repr reaches the page."""
    cols = [str(c) for c in df.columns]
    scale = {c: _column_scale(df.iloc[:, i]) for i, c in enumerate(cols)}
    rows, dashed = [], False
    for row in df.itertuples(index=False):
        values = dict(zip(cols, row))
        out = []
        for c, v in values.items():
            text = cell(v, floatfmt, scale[c], _interval_of(c, values))
            dashed |= text == MISSING and not (isinstance(v, str) and v == MISSING)
            out.append(text.replace("|", "\\|").replace("\n", " "))
        rows.append("| " + " | ".join(out) + " |")
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols), *rows]
    return "\n".join(lines) + (f"\n\nA cell {MISSING}: {missing}." if dashed and missing else "")


def cell(v, floatfmt=None, scale=None, interval=None) -> str:
    """One table cell (see ``md_table``); ``interval``: the (lo, hi) that sets its digits."""
    if isinstance(v, list | tuple | np.ndarray | pd.Series):
        return ", ".join(cell(x, floatfmt, scale) for x in v) or MISSING
    if v is None or v is pd.NA or v is pd.NaT:
        return MISSING
    if isinstance(v, bool | np.bool_):
        return "yes" if v else "no"
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        return _float_cell(float(v), floatfmt, scale, interval)
    text = str(v)
    if text.strip() in ("", "nan", "NaN", "None", "<NA>"):  # missing; "none" is a value
        return MISSING
    return _interval_text(text)


INTERVAL = re.compile(r"(-?\d+\.?\d*) \[(-?\d+\.?\d*), (-?\d+\.?\d*)\]")


def _interval_text(text: str) -> str:
    """'0.0211 [0.00176, 0.0928]' -> '0.021 [0.002, 0.093]': a formatted estimate cut to the
    digits its interval's width supports (never more digits than it was written with)."""
    m = INTERVAL.fullmatch(text.strip())
    if not m:
        return text
    mean, lo, hi = m.groups()
    dec = interval_decimals(float(lo), float(hi))
    written = max(len(x.partition(".")[2]) for x in (mean, lo, hi))
    if dec is None or dec >= written:
        return text
    return f"{float(mean):.{dec}f} [{float(lo):.{dec}f}, {float(hi):.{dec}f}]"


def _float_cell(v: float, floatfmt, scale, interval) -> str:
    if not math.isfinite(v):
        return MISSING if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if v == 0 or abs(v) < NOISE * (scale or abs(v)):
        return "0"
    if v.is_integer() and abs(v) < 1e6:  # above, 2.29e6 like its non-integer neighbours
        return str(int(v))
    if interval is not None:
        return f"{v:.{interval_decimals(*interval)}f}"
    if 1e3 <= abs(v) < 1e6 and (not floatfmt or floatfmt.endswith("g")):
        return f"{v:.0f}"  # 8196, not 8.2e+03 beside 516
    if floatfmt:
        return format(v, floatfmt)
    if 1e-3 <= abs(v) < 1e3:
        return f"{v:.3g}"
    k = math.floor(math.log10(abs(v)))
    return f"{v / 10**k:.3g}e{k}"


def interval_decimals(lo, hi, most=6) -> int | None:
    """Decimals that show an interval's width to two significant digits (width 0.06 -> 3
    decimals: 0.930 [0.900, 0.960]; width 40 -> 0 decimals: 283 [175, 350])."""
    width = abs(float(hi) - float(lo))
    if not math.isfinite(width) or width == 0:
        return None
    return int(min(max(1 - math.floor(math.log10(width)), 0), most))


def _interval_of(col: str, values: dict):
    """(lo, hi) for ``col`` when the row has ``col_lo`` and ``col_hi`` (or it is one of them)
    and the interval has a finite, non-zero width; else None."""
    base = col.removesuffix("_lo").removesuffix("_hi")
    lo, hi = values.get(f"{base}_lo"), values.get(f"{base}_hi")
    try:
        ok = interval_decimals(lo, hi) is not None
    except (TypeError, ValueError):
        return None
    return (lo, hi) if ok else None


def _column_scale(s: pd.Series) -> float | None:
    """The largest finite |value| of a numeric column (for telling noise from data)."""
    x = pd.to_numeric(s, errors="coerce")
    x = x[np.isfinite(x)].abs() if len(x) else x
    return float(x.max()) if len(x) and x.max() > 0 else None
