"""One look for every figure in results/: the style, the helpers that apply it, saving, tables.

Every study section draws through a ``Figures`` object, so a figure reads without the text:

- encodings: ``figs.color(model)`` a colour per model from its family's palette (recurrent
  reds, attention blues, scans greens, baselines greys, other families hues of their own),
  assigned once per report over every model, so a model keeps its colour in every figure;
  ``figs.linestyle(impl)`` solid for a fast path (fused kernel, parallel scan), dashed for
  its per-step loop; ``figs.marker(depth)`` one per number of layers; ``figs.style`` all
  three as plot keywords and ``series_label`` the words ('lstm (unrolled), 2 layers').
- drawing: ``figs.line`` a series with its 95% interval as a band clipped to the metric's
  range (``UNIT_RANGE`` for accuracy); ``figs.legend`` one legend outside the panels, or a
  key (colour = model, line = path, marker = depth; ``key_entry`` names any other meaning
  of a line style); ``figs.label_ends`` direct labels; ``figs.claim_title`` the claim under
  test as title. Module functions for one axes:
  ``reference`` (a chance level or threshold, drawn and labelled), ``log_axis`` (plain
  ticks, at least two: never "6x10^0"), ``band``, ``clipped_yerr``, ``axis_label`` (units).
- ``figs.save(fig, name, decides="C5", hardware=hardware_note(rows))`` writes
  ``<out>/<name>.png`` and returns its markdown; ``decides`` marks the figures a verdict
  reads (the contact sheet shows them; they get the claim as title); ``hardware`` puts where
  and under what load a timing figure was measured under its title. Saving gives every
  linear axis of whole-number data whole-number ticks (``integer_ticks``). ``on_save(fig,
  name)`` sees each live figure before it is closed (tests/figure_checks.py checks its rules
  there). ``log_axis(..., si=True)`` labels counts '20k', '3M'; ``dodge`` moves coinciding
  series' markers apart on a log axis; ``figs.legend(..., into=ax)`` fills an empty panel.
"""

import colorsys
import math
import re
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import LinearSegmentedColormap, to_rgba
from matplotlib.lines import Line2D
from matplotlib.ticker import (
    AutoLocator,
    FixedLocator,
    FuncFormatter,
    Locator,
    MaxNLocator,
    NullFormatter,
)
from matplotlib.transforms import ScaledTranslation, blended_transform_factory

PALETTES = {"recurrent": "Reds", "attention": "Blues", "scan": "Greens", "baseline": "Greys"}
SPARE = ("Purples", "Oranges", "YlOrBr", "PuRd", "BuGn", "GnBu")  # families nobody listed
# a fast path is solid, its per-step loop dashed; anything else a style of its own
LINESTYLES = {"-": "-", "fused": "-", "scan": "-", "unrolled": "--", "sequential": "--"}
SPARE_LINESTYLES = (":", "-.", (0, (5, 1, 1, 1)), (0, (1, 3)))
MARKERS = {1: "o", 2: "s", 3: "D", 4: "^", 6: "P", 8: "v"}
SPARE_MARKERS = ("X", "*", "<", ">", "h", "p")
# colour-blind-safe qualitative colours (Okabe & Ito 2008) for categories that are not models
CATEGORY = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")
UNIT_RANGE = (0.0, 1.0)  # accuracy, probabilities: intervals are clipped to it
BAND_ALPHA = 0.18


class Figures:
    def __init__(self, out, families: dict[str, str], on_save=None, claims=None):
        """``families``: model -> family for every model the report will draw; ``claims``:
        claim id -> text for titles (default: the lecture's and every study's)."""
        self.out = Path(out)
        self.written: list[str] = []
        self.deciding: dict[str, list[str]] = {}  # claim -> figures (png names) deciding it
        self.colors = palette(families)
        self.on_save, self.claims = on_save, claims
        self._styles, self._markers, self._categories = dict(LINESTYLES), dict(MARKERS), {}
        self._unlisted: list = []
        self._used: dict[str, list] = {"model": [], "impl": [], "depth": []}  # since last save

    # --- encodings ----------------------------------------------------------------------
    def color(self, model):
        if model not in self.colors:  # a model no table named: a colour of its own all the same
            self._unlisted.append(model)
            self.colors[model] = nth_color(len(self._unlisted) - 1, lightness=0.3)
        return self.colors[model]

    def linestyle(self, impl):
        return _assign(self._styles, _plain_impl(impl), SPARE_LINESTYLES, "-")

    def marker(self, depth):
        return _assign(self._markers, _depth(depth), SPARE_MARKERS, "o")

    def category(self, value):
        """A colour for a category that is not a model (an objective, an encoding)."""
        if value not in self._categories:
            self._categories[value] = nth_color(len(self._categories))
        return self._categories[value]

    def style(self, model, impl=None, depth=None) -> dict:
        """Plot keywords for one series; remembered for ``legend(fig, key=True)``."""
        for kind, v in (("model", model), ("impl", _plain_impl(impl)), ("depth", _depth(depth))):
            if v is not None and v not in self._used[kind]:
                self._used[kind].append(v)
        out = {"color": self.color(model), "ls": self.linestyle(impl)}
        return out | ({"marker": self.marker(depth)} if _depth(depth) is not None else {})

    # --- figures ------------------------------------------------------------------------
    def figure(self, ncols=1, width=5.0, height=3.6, nrows=1, **kw):
        """(fig, axes): axes flat, one per panel; constrained layout keeps outside legends and
        labels inside the saved image."""
        import matplotlib.pyplot as plt  # here, not at import: --help need not load pyplot

        fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows),
                                 squeeze=False, layout="constrained", **kw)  # fmt: skip
        return fig, axes.ravel()

    def line(self, ax, x, y, lo=None, hi=None, *, model, impl=None, depth=None, label=None,
             clip=None, **kw):  # fmt: skip
        """One series with its interval [lo, hi] as a band (clipped to ``clip``)."""
        style = self.style(model, impl, depth) | kw
        (ln,) = ax.plot(x, y, label=label or series_label(model, impl, depth), **style)
        if lo is not None and hi is not None:
            band(ax, x, lo, hi, style["color"], clip)
        return ln

    def save(self, fig, name: str, decides=(), hardware=None) -> str:
        """Save as out/name.png and return the markdown that shows it. ``hardware``: the note
        a timing figure carries under its title (``hardware_note``): a time means nothing
        without the machine and its load."""
        decides = (decides,) if isinstance(decides, str) else tuple(decides)
        if decides and not fig.get_suptitle():
            self.claim_title(fig, *decides)
        for ax in fig.axes:
            integer_ticks(ax)
        if fig.get_layout_engine() is None:  # a figure not made by figure()
            fig.tight_layout()
        if fig.get_suptitle() and fig.legends:
            _title_over_panels(fig)
        if hardware:
            _add_note(fig, hardware)
        fig.savefig(self.out / f"{name}.png", dpi=110)
        self.written.append(f"{name}.png")
        for claim in decides:
            self.deciding.setdefault(claim, []).append(f"{name}.png")
        if self.on_save is not None:
            self.on_save(fig, name)
        import matplotlib.pyplot as plt

        plt.close(fig)
        self._used = {k: [] for k in self._used}
        return f"![{name}]({name}.png)"

    def claim_title(self, fig, *claims, text=None):
        """A title that states the claim being tested: 'C5: <the claim>' (or ``text``)."""
        said = text or "; ".join(self._claim_texts().get(c, "") for c in claims)
        head = ", ".join(claims)
        title = f"{head}: {said}" if head and said else head or said
        width = max(40, int(fig.get_figwidth() * 13))  # ~13 characters per inch at 10 pt
        fig.suptitle("\n".join(textwrap.wrap(title, width, break_on_hyphens=False)), fontsize=10)

    def _claim_texts(self) -> dict:
        if self.claims is None:
            from seqbench import studies
            from seqbench.report.claims import LECTURE

            self.claims = dict(LECTURE)
            for m in studies.all_studies():
                self.claims |= getattr(m, "CLAIMS", {})
        return self.claims

    # --- legends and labels -------------------------------------------------------------
    def legend(self, fig, key=False, title=None, extra=(), into=None, **kw):
        """One legend for the whole figure, outside the data area (right of the panels), or
        ``into`` a panel left empty (its frame and ticks removed) where a grid has one.
        ``key``: colour = model, line style = path, marker = depth, from the series drawn
        through ``style`` since the last save, instead of one entry per line; ``extra``:
        (handle, label) pairs added at the end (``key_entry``: what a line style means)."""
        if key:
            handles = self._key_handles()
        else:
            handles = {}
            for ax in fig.axes:  # a name the panel already shows (a direct label) only once
                shown = {t.get_text() for t in ax.texts}
                for h, lab in zip(*ax.get_legend_handles_labels()):
                    if lab not in shown:
                        handles.setdefault(lab, h)
            handles = list(zip(handles.values(), handles.keys()))
        handles = [*handles, *extra]
        if not handles:
            return None
        hs, labels = zip(*handles)
        if into is not None:
            into.set_visible(True)
            into.axis("off")
            kw = {"loc": "center", "fontsize": 7, "frameon": False} | kw
            return into.legend(hs, labels, title=title, **kw)
        kw = {"loc": "outside right upper", "fontsize": 7, "frameon": False} | kw
        return fig.legend(hs, labels, title=title, **kw)

    def _key_handles(self) -> list:
        used, gray = self._used, "0.35"
        out = [(Line2D([], [], color=self.color(m), lw=2.5), str(m)) for m in used["model"]]
        paths = [i for i in used["impl"] if i != "-"]  # a model's only path needs no entry
        out += [(Line2D([], [], color=gray, ls=self.linestyle(i)), f"path: {i}") for i in paths]
        if used["depth"]:
            out += [(Line2D([], [], color=gray, ls="", marker=self.marker(d)), _layers(d))
                    for d in used["depth"]]  # fmt: skip
        return out

    def label_ends(self, ax, fontsize=7):
        """Direct labels: each labelled line's name just right of its last point, in its
        colour; labels that would overlap are pushed apart and tied to their point by a thin
        line, so a label never floats away from the line it names. Call it once the panel's
        limits are final (after its log axes and any shared panel's data)."""
        fig = ax.figure
        if fig.get_layout_engine() is not None:
            fig.canvas.draw()  # the final axes box: the gap between labels is in its units
        to_axes = ax.transData + ax.transAxes.inverted()
        ends = []
        for ln in ax.get_lines():
            x, y = (np.asarray(v, float) for v in ln.get_data())
            ok = np.isfinite(x) & np.isfinite(y)
            if ln.get_label().startswith("_") or not ok.any() or ln.get_transform() != ax.transData:
                continue
            i = np.flatnonzero(ok)[np.argmax(x[ok])]  # the point at the largest x
            ends.append([to_axes.transform((x[i], y[i]))[1], (x[i], y[i]), ln])
        height_pt = ax.get_position().height * fig.get_figheight() * 72
        gap = 1.2 * fontsize / max(height_pt, 1.0)  # one text line, in axes fractions
        ends.sort(key=lambda e: e[0])
        placed = _spread(ends, gap, fontsize, ax)
        for (y0, xy, ln), y1 in zip(ends, placed):
            moved = abs(y1 - y0) > 0.6 * gap
            arrow = {"arrowstyle": "-", "color": ln.get_color(), "lw": 0.5, "shrinkA": 0,
                     "shrinkB": 0} if moved else None  # fmt: skip
            shift = ScaledTranslation((8 if moved else 3) / 72, 0, fig.dpi_scale_trans)
            # in data units: a later change of the view (a shared axis) keeps it by its line
            y_data = to_axes.inverted().transform((0.5, y1))[1]
            where = blended_transform_factory(ax.transData + shift, ax.transData)
            ax.annotate(ln.get_label(), xy, xytext=(xy[0], y_data), textcoords=where,
                        fontsize=fontsize, color=ln.get_color(), va="center", ha="left",
                        annotation_clip=False, arrowprops=arrow,
                        bbox={"fc": "white", "ec": "none", "alpha": 0.7, "pad": 0.3})  # fmt: skip


# --- helpers that need no Figures ------------------------------------------------------------
def _spread(ends, gap, fontsize, ax) -> list[float]:
    """Heights (axes fractions) for end labels sorted by height: each at its line's end, moved
    up just enough to clear the labels below it that share its horizontal stretch, then down
    just enough to stay under the panel's top (half a line below it: the title is there)."""
    px = ax.figure.dpi / 72
    left = [ax.transData.transform(xy)[0] for _, xy, _ in ends]
    right = [x + len(ln.get_label()) * 0.6 * fontsize * px + 8 * px
             for x, (_, _, ln) in zip(left, ends)]  # fmt: skip

    def clash(i, j):
        return left[i] < right[j] and left[j] < right[i]

    placed = [e[0] for e in ends]
    for k in range(len(placed)):
        below = [placed[j] + gap for j in range(k) if clash(j, k)]
        placed[k] = max([placed[k], *below])
    for k in reversed(range(len(placed))):
        above = [placed[j] - gap for j in range(k + 1, len(placed)) if clash(j, k)]
        placed[k] = min([placed[k], 1.0 - gap / 2, *above])
    return placed


def _title_over_panels(fig):
    """Centre the title over the panels, wrapped to their width, so a legend outside on the
    right never runs into it (laid out once to learn where the panels are)."""
    fig.canvas.draw()
    boxes = [ax.get_position() for ax in fig.axes]
    x0, x1 = min(b.x0 for b in boxes), max(b.x1 for b in boxes)
    to_fig = fig.transFigure.inverted()
    legends = [to_fig.transform_bbox(lg.get_window_extent()) for lg in fig.legends]
    if not any(b.x0 >= x1 - 0.01 for b in legends):  # no legend beside the panels: all the width
        x0, x1 = 0.02, 0.98
    title = fig._suptitle  # the Text itself: its words are re-wrapped, its style kept
    words = " ".join(title.get_text().split())
    width = max(30, int((x1 - x0) * fig.get_figwidth() * 13))  # ~13 characters per inch
    title.set_text("\n".join(textwrap.wrap(words, width, break_on_hyphens=False)))
    title.set_x((x0 + x1) / 2)


def _add_note(fig, note):
    """The note as the last line of the title (a title of its own where there is none)."""
    title = fig.get_suptitle()
    # as wide as the title where a legend stands beside the panels, else the figure's width
    lines = title.splitlines() if fig.legends else ["x" * int(fig.get_figwidth() * 12)]
    width = max([40, *(len(line) for line in lines)])
    note = "\n".join(textwrap.wrap(note, width, break_on_hyphens=False))
    fig.suptitle(f"{title}\n{note}" if title else note, fontsize=9 if not title else None)


def hardware_note(rows, machines=None) -> str:
    """'measured on cpu (AMD EPYC), 1 thread; load average not recorded': where a timing
    figure's ``rows`` were measured, from their device/threads columns (the CPU's name from
    ``machines``, the runs table, where the rows do not carry it) and any load column."""
    places = []
    for dev, g in rows.groupby(rows.get("device", pd.Series("?", rows.index)).astype(str)):
        name = _first(g, "gpu", "device_name") if dev.startswith("cuda") else _first(g, "cpu")
        if name is None and machines is not None and "cpu" in machines and "device" in machines:
            name = _first(machines[machines.device.astype(str) == dev], "gpu" if
                          dev.startswith("cuda") else "cpu")  # fmt: skip
        threads = sorted({int(t) for t in g.get("threads", pd.Series()).dropna()})
        where = dev + (f" ({name})" if name and name != dev else "")
        if threads:
            where += f", {'/'.join(map(str, threads))} thread{'s' * (threads[-1] > 1)}"
        places.append(where)
    loads = [c for c in rows if c.startswith("load")]
    values = pd.to_numeric(rows[loads].stack(), errors="coerce").dropna() if loads else []
    lo, hi = (f"{v:.2g}" for v in (values.min(), values.max())) if len(values) else ("", "")
    load = f"load average {lo if lo == hi else f'{lo}-{hi}'}" if lo else "load average not recorded"
    return f"measured on {'; '.join(places) or 'unrecorded hardware'}; {load}"


def _first(df, *cols):
    for c in cols:
        if c in df:
            vals = [str(v) for v in df[c].dropna().unique() if str(v) not in ("", "None")]
            if vals:
                return ", ".join(sorted(vals))
    return None


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


def series_label(model, impl=None, depth=None) -> str:
    """'lstm (unrolled), 2 layers': no '(-)' for a model with one path, no '1 layers'."""
    text = str(model) + (f" ({impl})" if _plain_impl(impl) not in (None, "-") else "")
    return text + (f", {_layers(_depth(depth))}" if _depth(depth) is not None else "")


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


def palette(families: dict[str, str]) -> dict:
    """model -> colour: within a family, models in name order take evenly spaced shades of
    the family's colormap, so any number of models stays distinct and the mapping is stable."""
    by_family: dict[str, list[str]] = {}
    for model, fam in sorted(families.items()):
        by_family.setdefault(str(fam), []).append(model)
    unlisted = sorted(f for f in by_family if f not in PALETTES)
    colors = {}
    for fam in sorted(by_family):
        cmap = _family_cmap(fam, unlisted)
        models = by_family[fam]
        for i, model in enumerate(models):
            shade = 0.75 if len(models) == 1 else 0.45 + 0.55 * i / (len(models) - 1)
            colors[model] = cmap(shade)
    return colors


def _family_cmap(fam, unlisted):
    if fam in PALETTES:
        return colormaps[PALETTES[fam]]
    i = unlisted.index(fam)
    if i < len(SPARE):
        return colormaps[SPARE[i]]
    hue = (0.13 + 0.618 * i) % 1.0  # golden-ratio hues: each extra family its own
    dark, mid = colorsys.hls_to_rgb(hue, 0.2, 0.9), colorsys.hls_to_rgb(hue, 0.5, 0.9)
    return LinearSegmentedColormap.from_list(fam, ["white", mid, dark])


def nth_color(i: int, lightness=0.45):
    """The i-th category colour: Okabe-Ito first, then golden-ratio hues (never a repeat)."""
    if i < len(CATEGORY):
        return to_rgba(CATEGORY[i])
    return to_rgba(colorsys.hls_to_rgb((0.05 + 0.618 * i) % 1.0, lightness, 0.8))


def _assign(table, key, spare, default):
    if key is None:
        return default
    if key not in table:
        used = set(map(str, table.values()))
        free = [s for s in spare if str(s) not in used] or list(spare)
        table[key] = free[0] if free else default
    return table[key]


def _plain_impl(impl):
    return None if impl is None or (isinstance(impl, float) and math.isnan(impl)) else str(impl)


def _depth(depth):
    try:
        return None if depth is None or math.isnan(float(depth)) else int(depth)
    except (TypeError, ValueError):
        return None


def _layers(d) -> str:
    return f"{d} layer{'' if d == 1 else 's'}"


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
