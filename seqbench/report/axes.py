"""Drawing helpers for one axes, shared by every figure of the report.

``reference`` (a chance level or threshold, drawn and labelled), ``log_axis`` (plain ticks, at
least two: never "6x10^0"; ``si=True`` labels counts '20k', '3M'), ``band`` and
``clipped_yerr`` (an interval clipped to the metric's range, ``UNIT_RANGE`` for accuracy),
``iqr_band`` (a median's spread on a log axis), ``dodge`` (coinciding series moved apart on a log
axis), ``axis_label`` (units), ``key_entry`` (what a line style means), ``integer_ticks``
(whole-number data gets whole-number ticks; ``Figures.save`` applies it to every axes). The
figure-level style (colours per model, legends, titles, saving) is ``seqbench.report.plot``.
"""

import math

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.ticker import (
    AutoLocator,
    FixedLocator,
    FuncFormatter,
    Locator,
    MaxNLocator,
    NullFormatter,
)

UNIT_RANGE = (0.0, 1.0)  # accuracy, probabilities: intervals are clipped to it
BAND_ALPHA = 0.18


def integer_ticks(ax):
    """Integer ticks on each linear axis whose plotted values are all whole numbers (steps,
    distances, counts): a tick at 2.5 names a value that cannot occur."""
    for which in ("x", "y"):
        axis = getattr(ax, f"{which}axis")
        if axis.get_scale() != "linear" or not isinstance(axis.get_major_locator(), AutoLocator):
            continue
        vals = [v for ln in ax.get_lines() if ln.get_transform() == ax.transData
                for v in np.asarray(getattr(ln, f"get_{which}data")(), float)]  # fmt: skip
        vals = np.asarray(vals, float)
        vals = vals[np.isfinite(vals)]
        if len(vals) and np.all(vals == np.round(vals)):
            axis.set_major_locator(MaxNLocator(integer=True))


def key_entry(label, ls="-", marker=None, color="0.35", **kw) -> tuple:
    """A gray legend entry for what a line style or marker means when it is not an execution
    path or a depth (a decoding mode, a fitted curve): (handle, label) for ``legend(extra=)``."""
    return Line2D([], [], color=color, ls=ls, marker=marker or "", **kw), label


def axis_label(what: str, unit: str | None = None) -> str:
    """'sequence length T (tokens)'; no unit for a pure number (a share, a ratio)."""
    return f"{what} ({unit})" if unit else what


def band(ax, x, lo, hi, color, clip=None):
    """A shaded interval, clipped to the metric's range (``clip``: (low, high) or None)."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    if clip is not None:
        lo, hi = np.clip(lo, *clip), np.clip(hi, *clip)
    return ax.fill_between(np.asarray(x, float), lo, hi, color=color, alpha=BAND_ALPHA, lw=0)


def clipped_yerr(mean, lo, hi, clip=None) -> np.ndarray:
    """[2, n] error-bar lengths for ax.errorbar / ax.bar from an interval, clipped to ``clip``
    (a missing bound: no bar on that side)."""
    mean, lo, hi = (np.asarray(v, float) for v in (mean, lo, hi))
    if clip is not None:
        lo, hi = np.clip(lo, *clip), np.clip(hi, *clip)
    return np.nan_to_num(np.vstack([mean - lo, hi - mean]).clip(min=0))


def reference(ax, value, label, axis="y", kind="chance"):
    """A chance level (gray, dotted) or a threshold (dark, dashed), labelled on the line."""
    style = {"chance": dict(color="0.45", ls=":"), "threshold": dict(color="0.15", ls="--")}
    draw = ax.axhline if axis == "y" else ax.axvline
    ln = draw(value, lw=0.9, label=label, zorder=1.5, **style[kind])
    if axis == "y":
        pos = dict(xy=(0.995, value), xycoords=("axes fraction", "data"), ha="right", va="bottom")
    else:
        pos = dict(xy=(value, 0.99), xycoords=("data", "axes fraction"), ha="right", va="top",
                   rotation=90)  # fmt: skip
    ax.annotate(label, xytext=(0, 1), textcoords="offset points", fontsize=7,
                color=ln.get_color(), **pos)  # fmt: skip
    return ln


def log_axis(ax, which="x", ticks=None, si=False):
    """A log axis with plain tick labels: at ``ticks`` (the measured values, thinned to at most
    MAX_TICKS) or at 1-2-5 steps chosen so the view shows at least two; ``si``: large counts
    as '20k', '3M', '1G' (a FLOP count reads as a size, not as '1e7')."""
    getattr(ax, f"set_{which}scale")("log")
    axis = getattr(ax, f"{which}axis")
    if ticks is not None:
        vals = sorted({float(v) for v in ticks if np.isfinite(v) and v > 0})
        step = math.ceil(len(vals) / MAX_TICKS) if vals else 1
        axis.set_major_locator(FixedLocator(vals[::step]))
    else:
        axis.set_major_locator(ReadableLogLocator())
    axis.set_major_formatter(FuncFormatter(lambda v, _: si_number(v) if si else number(v)))
    axis.set_minor_formatter(NullFormatter())


def si_number(v) -> str:
    """'950', '20k', '1.5M', '3G', '1T': a count with an SI prefix from a thousand up."""
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{prefix}"
    return number(v)


def iqr_band(median, iqr) -> tuple:
    """(lo, hi) of a band for a median and its inter-quartile range on a log axis: hi =
    median + IQR/2 and lo its mirror on the log scale (median^2 / hi), so a spread wider than
    twice the median (a busy machine) never runs the band down to zero and off the axis."""
    median, iqr = np.asarray(median, float), np.asarray(iqr, float)
    hi = median + iqr / 2
    return median * median / hi, hi


def dodge(x, i, n, step=1.05) -> np.ndarray:
    """x of the i-th of n series that share their points, moved sideways by a few percent on a
    log axis so coinciding markers stay visible (the captions say so)."""
    return np.asarray(x, float) * step ** (i - (n - 1) / 2)


MAX_TICKS = 8


class ReadableLogLocator(Locator):
    """Decades when the view spans several (every n-th past MAX_TICKS), else 1-3 or 1-2-5
    steps, else the two ends: three labelled ticks where the steps give them (a line far
    from the only two would be hard to read off), at least two, never one."""

    def __call__(self):
        return self.tick_values(*self.axis.get_view_interval())

    def tick_values(self, vmin, vmax):
        lo, hi = sorted((float(vmin), float(vmax)))
        lo = max(lo, hi * 1e-100, 1e-300)  # influence reaches 1e-18: ticks all the way down
        k0, k1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
        candidates = []
        # the last: halves, so a view inside one decade (a loss from 1.3 to 3.1) gets three
        for subs in ((1,), (1, 3), (1, 2, 5), (1, 2, 3, 5, 7), range(1, 10),
                     (1, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9)):  # fmt: skip
            ticks = [m * 10.0**k for k in range(k0, k1 + 1) for m in subs]
            ticks = [t for t in ticks if lo * (1 - 1e-9) <= t <= hi * (1 + 1e-9)]
            candidates.append(ticks[:: math.ceil(len(ticks) / MAX_TICKS)] if ticks else [])
        for enough in (3, 2):
            for ticks in candidates:
                if len(ticks) >= enough:
                    return ticks
        return [float(f"{lo:.2g}"), float(f"{hi:.2g}")]


def number(v) -> str:
    """A tick label: '16', '0.05', '2048'; '3e11' for the very large or small."""
    if v == 0 or not np.isfinite(v):
        return "0" if v == 0 else ""
    if 1e-3 <= abs(v) < 1e5:
        return f"{v:.6g}"
    k = math.floor(math.log10(abs(v)))
    return f"{v / 10**k:.3g}e{k}"
