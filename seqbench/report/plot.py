"""One look for every figure in results/: the style and the ``Figures`` that apply and save it.

Every study section draws through a ``Figures`` object, so a figure reads without the text:

- encodings: ``figs.color(model)`` a colour per model from its family's palette (recurrent
  reds, attention blues, scans greens, baselines greys, other families hues of their own),
  assigned once per report over every model, so a model keeps its colour in every figure;
  ``figs.linestyle(impl)`` solid for a fast path (fused kernel, parallel scan), dashed for
  its per-step loop; ``figs.marker(depth)`` one per number of layers; ``figs.style`` all
  three as plot keywords and ``series_label`` the words ('lstm (unrolled), 2 layers').
- drawing: ``figs.line`` a series with its 95% interval as a band clipped to the metric's
  range (``axes.UNIT_RANGE`` for accuracy); ``figs.legend`` one legend outside the panels, or
  a key (colour = model, line = path, marker = depth; ``axes.key_entry`` names any other
  meaning of a line style); ``figs.label_ends`` direct labels; ``figs.claim_title`` the claim
  under test as title. Helpers for one axes (reference lines, log axes, bands, error bars,
  units) are ``seqbench.report.axes``.
- ``figs.save(fig, name, decides="C5", hardware=hardware_note(rows))`` writes
  ``<out>/<name>.png`` and returns its markdown; ``decides`` marks the figures a verdict
  reads (the contact sheet shows them; they get the claim as title); ``hardware``
  (``seqbench.report.hardware``) puts where and under what load a timing figure was measured
  under its title. Saving gives every linear axis of whole-number data whole-number ticks
  (``axes.integer_ticks``). ``on_save(fig, name)`` sees each live figure before it is closed
  (tests/figure_checks.py checks its rules there).
- names: a study's figures are its own files, ``<study>.png`` or ``<study>_<what>.png``. The
  report writer binds the figures to the study drawing them (``figs.of(study)``) and
  ``save`` refuses any other name, so a new study cannot take another's file name.
"""

import colorsys
import math
import textwrap
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import LinearSegmentedColormap, to_rgba
from matplotlib.lines import Line2D
from matplotlib.transforms import ScaledTranslation, blended_transform_factory

from seqbench.report.axes import band, integer_ticks
from seqbench.report.claims import LECTURE

PALETTES = {"recurrent": "Reds", "attention": "Blues", "scan": "Greens", "baseline": "Greys"}
SPARE = ("Purples", "Oranges", "YlOrBr", "PuRd", "BuGn", "GnBu")  # families nobody listed
# a fast path is solid, its per-step loop dashed; anything else a style of its own
LINESTYLES = {"-": "-", "fused": "-", "scan": "-", "unrolled": "--", "sequential": "--"}
SPARE_LINESTYLES = (":", "-.", (0, (5, 1, 1, 1)), (0, (1, 3)))
MARKERS = {1: "o", 2: "s", 3: "D", 4: "^", 6: "P", 8: "v"}
SPARE_MARKERS = ("X", "*", "<", ">", "h", "p")
# colour-blind-safe qualitative colours (Okabe & Ito 2008) for categories that are not models
CATEGORY = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")


class Figures:
    def __init__(self, out, families: dict[str, str], on_save=None, claims=None, study=None):
        """``families``: model -> family for every model the report will draw; ``claims``:
        claim id -> text for titles (default: the lecture's; the report writer adds every
        study's own); ``study``: whose figures these are (``of``)."""
        self.out = Path(out)
        self.written: list[str] = []
        self.deciding: dict[str, list[str]] = {}  # claim -> figures (png names) deciding it
        self.colors = palette(families)
        self.on_save, self.claims, self.study = on_save, dict(claims or LECTURE), study
        self._styles, self._markers, self._categories = dict(LINESTYLES), dict(MARKERS), {}
        self._unlisted: list = []
        self._used: dict[str, list] = {"model": [], "impl": [], "depth": []}  # since last save

    def of(self, study: str | None) -> "Figures":
        """These figures, drawn by ``study`` from now on: each file it saves is named after it
        (None: the report's own figures, any name)."""
        self.study = study
        return self

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
        try:
            check_name(name, self.study)
        except ValueError:
            import matplotlib.pyplot as plt

            plt.close(fig)  # refused: nothing written, nothing left open
            raise
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
        said = text or "; ".join(self.claims.get(c, "") for c in claims)
        head = ", ".join(claims)
        title = f"{head}: {said}" if head and said else head or said
        width = max(40, int(fig.get_figwidth() * 13))  # ~13 characters per inch at 10 pt
        fig.suptitle("\n".join(textwrap.wrap(title, width, break_on_hyphens=False)), fontsize=10)

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


def check_name(name: str, study: str | None) -> None:
    """A study's figure is ``<study>.png`` or ``<study>_<what>.png``: the results folder reads
    by study, and two studies can never write one file. ValueError otherwise (the writer shows
    it on that study's page, and the figure tests fail on it)."""
    if study is not None and name != study and not name.startswith(f"{study}_"):
        raise ValueError(
            f"figure {name!r} of study {study!r}: a study's figures are named {study}.png or "
            f"{study}_<what>.png"
        )


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


def series_label(model, impl=None, depth=None) -> str:
    """'lstm (unrolled), 2 layers': no '(-)' for a model with one path, no '1 layers'."""
    text = str(model) + (f" ({impl})" if _plain_impl(impl) not in (None, "-") else "")
    return text + (f", {_layers(_depth(depth))}" if _depth(depth) is not None else "")


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
