"""What a reader without the text could not read in a drawn figure, from its matplotlib
objects (tests/test_figures.py runs every study's figures through ``problems``).

The rules (each message ends with its rule id in brackets; EXEMPT lists the exceptions):
- [title] every figure has a title, or every panel with data has one of its own;
- [label] every axis has a label, and no label shows TeX as literal text (``x_{p+1}``);
- [unit] every numeric axis names its unit in parentheses ("time (s)", "distance (tokens)",
  "layers (count)") or is an explicit pure number (accuracy, ratio, share, fraction, ...);
- [hardware] a timing figure (an axis in s, ms, tokens/s, ..., or wall-clock, latency, MFU)
  says where it was measured and under what load in its title or caption text
  ("measured on ...; load ...": ``report.hardware.hardware_note``);
- [log-ticks] a log axis shows at least two tick labels, none of them "6x10^0";
- [integer] an axis whose plotted values are all whole numbers (steps, distances, counts)
  labels whole-number ticks only (no 2.5 for a distance);
- [categorical] categories on an axis (text tick labels) are never joined by a line;
- [explained] every line has a legend entry (its panel's, the figure's or one in a panel
  left empty for it), a direct label,
  or a key that names its colour, line style and marker; bars are explained likewise;
- [distinct] no two series of a panel share colour AND line style AND marker (bars: colour
  AND hatch); [hidden] none lies under another with nothing to tell it is there;
- [near] a direct label sits next to the line it names (or is tied to it by a leader line);
- [once] nothing is named twice: no repeated legend entry, no legend entry that is also a
  direct label or a tick label of the axis;
- [palette] every colour comes from the style module: the models' family palettes, its
  category colours, or greys (no matplotlib default cycle, no "tab:" colours); no two models
  share a colour, and a model's line is drawn in its palette colour [model-colour];
- [covered] no legend covers a data point, line, band or bar, or a title;
- [range] an accuracy axis holds no point, bar or band outside [0, 1];
- [claim] a figure that decides a claim says which in its title.
"""

import re

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.colors import to_rgba
from matplotlib.container import BarContainer, ErrorbarContainer
from matplotlib.lines import Line2D
from matplotlib.markers import MarkerStyle
from matplotlib.patches import Patch
from matplotlib.transforms import Bbox

TEX = re.compile(r"[_^]\{|\\times|\\mathdefault")
UNIT = re.compile(r"\([^()]*[^()\s][^()]*\)")  # "(tokens)", "(nats/token)", "(count)"
UNITLESS = ("accuracy", "ratio", "share", "fraction", "probability", "speed-up", "x faster")
TIME_UNITS = {"s", "ms", "µs", "us", "ns", "seconds", "second"}
TIME_WORDS = ("wall-clock", "latency", "throughput", "mfu", "utilisation", "tokens per second")
NEAR_PT = 4.0  # a direct label's box, grown by this many points, must touch its line

# (study, rule, reason): a rule that cannot hold for a study's figure for a real reason. Empty
# is the goal; every entry says why, and the test drops only that study's messages of that rule.
EXEMPT: list[tuple[str, str, str]] = []


def exempt(study, messages) -> list[str]:
    """``messages`` less those of rules EXEMPT lists for ``study``."""
    rules = {f"[{rule}]" for s, rule, _ in EXEMPT if s == study}
    return [m for m in messages if not any(m.endswith(r) for r in rules)]


def rgba(c) -> tuple:
    return tuple(round(float(v), 3) for v in to_rgba(c))


def _handle_props(h) -> dict:
    if isinstance(h, Line2D):
        return {"color": rgba(h.get_color()), "ls": _ls(h), "marker": _marker(h)}
    if isinstance(h, Patch):
        return {"color": rgba(h.get_facecolor()), "ls": None, "marker": None}
    if isinstance(h, LineCollection) and len(h.get_color()):  # an errorbar's key: its bars
        return {"color": rgba(h.get_color()[0]), "ls": None, "marker": None}
    try:  # collections (scatter, fill_between) and containers' first artist
        return {"color": rgba(h.get_facecolor()[0]), "ls": None, "marker": None}
    except Exception:
        return {"color": None, "ls": None, "marker": None}


def _ls(ln) -> str | None:
    ls = ln.get_linestyle()
    return None if ls in ("None", "none", "", " ") else str(ls)


def _marker(ln) -> str | None:
    m = ln.get_marker()
    return None if m in ("None", "none", "", " ", None) else str(m)


def _legends(fig) -> list:
    return [ax.get_legend() for ax in fig.axes if ax.get_legend()] + list(fig.legends)


def _series(ax) -> list[tuple]:
    """(artist, label) of every data line of a panel: an errorbar's data line carries its
    container's label; caps and bar segments belong to it and are not series of their own."""
    parts, out = set(), []
    for c in ax.containers:
        if isinstance(c, ErrorbarContainer):
            data, caps, bars = c.lines
            parts |= {id(a) for a in (*caps, *bars)}
            if data is not None:
                out.append((data, c.get_label()))
                parts.add(id(data))
    for ln in ax.get_lines():
        if id(ln) not in parts and ln.get_visible() and len(ln.get_xdata()):
            out.append((ln, ln.get_label()))
    return out


def _look(ln) -> dict:
    return {"color": rgba(ln.get_color()), "ls": _ls(ln), "marker": _marker(ln)}


def _explained(ln, label, ax, legend_texts, handles, texts) -> bool:
    """Named in a legend or a direct label, or every property that tells it from the
    panel's other lines (colour, and line style or marker where they vary) is in a key."""
    named = legend_texts | texts | {t.get_text() for t in ax.get_xticklabels()}  # or a category
    if not label.startswith("_") and label in named:
        return True
    mine, looks = _look(ln), [_look(a) for a, _ in _series(ax)]
    varying = ["color"] + [k for k in ("ls", "marker") if len({lk[k] for lk in looks}) > 1]
    return bool(handles) and all(any(h[k] == mine[k] for h in handles) for k in varying)


def _overlaps(artist, region, renderer) -> bool:
    """Does this data artist draw anything inside ``region`` (display coordinates)?"""
    if isinstance(artist, Patch):
        return artist.get_window_extent(renderer).overlaps(region)
    if isinstance(artist, Line2D):
        paths, filled = [artist.get_path()], False
        if _ls(artist) is None:  # markers only: the points themselves
            xy = artist.get_transform().transform(artist.get_xydata())
            return bool(region.count_contains(xy[np.isfinite(xy).all(1)]))
    else:  # collections: error bars, bands (filled), scatter points (offsets)
        paths = artist.get_paths()
        filled = artist.get_facecolor().size > 0 and artist.get_facecolor()[:, 3].max() > 0
        offsets = artist.get_offsets()
        if len(offsets) and artist.get_offset_transform() is not artist.get_transform():
            xy = artist.get_offset_transform().transform(offsets)
            return bool(region.count_contains(xy[np.isfinite(xy).all(1)]))
    trans = artist.get_transform()
    return any(
        trans.transform_path(p).cleaned(remove_nans=True).intersects_bbox(region, filled=filled)
        for p in paths
    )


def _data_artists(ax) -> list:
    return [a for a in (*ax.get_lines(), *ax.collections, *ax.patches) if a.get_visible()]


def _tick_labels(axis) -> list[str]:
    lo, hi = sorted(axis.get_view_interval())
    out = []
    for t in (*axis.get_ticklabels(), *axis.get_ticklabels(minor=True)):
        v = t.get_position()[0 if axis.axis_name == "x" else 1]
        if t.get_visible() and t.get_text() and lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9):
            out.append(t.get_text())
    return out


def problems(fig, name, figs, decides=()) -> list[str]:
    """What a reader without the text could not read in this (drawn) figure."""
    renderer, out = fig.canvas.get_renderer(), []
    out += _shared_colours(fig, name, figs)
    for ax in fig.axes:
        if ax.axison and _data_artists(ax):
            out += _panel(ax, fig, f"{name}[{ax.get_title() or fig.axes.index(ax)}]", figs)
            where = f"{name}[{ax.get_title() or fig.axes.index(ax)}]"
            out += _covered(ax, fig, where, renderer)
            out += _units(ax, where) + _integers(ax, where) + _joined_categories(ax, where)
            out += _near(ax, where, renderer) + _bars_distinct(ax, where)
    heads = [t for t in (fig._suptitle, *(ax.title for ax in fig.axes)) if t and t.get_text()]
    for lg in _legends(fig):
        box = lg.get_window_extent(renderer).expanded(0.98, 0.95)
        out += [f"{name}: a legend covers the title {t.get_text()[:40]!r} [covered]"
                for t in heads if box.overlaps(t.get_window_extent(renderer))]  # fmt: skip
    titles = [fig.get_suptitle() or "", *(ax.get_title() for ax in fig.axes)]
    out += [f"{name}: decides {c} but its title does not say so [claim]"
            for c in decides if not any(c in t for t in titles)]  # fmt: skip
    out += _titled(fig, name) + _hardware(fig, name) + _palette(fig, name, figs)
    out += _named_once(fig, name)
    return out


def _shared_colours(fig, name, figs) -> list[str]:
    """Legend entries naming different models in one colour, or a model off its palette."""
    by_colour, out = {}, []
    for lg in _legends(fig):
        for h, t in zip(lg.legend_handles, lg.get_texts()):
            model, colour = _model(t.get_text(), figs), _handle_props(h)["color"]
            if model is not None and colour is not None:
                by_colour.setdefault(colour, set()).add(model)
    return out + [f"{name}: models {sorted(ms)} share the colour {c} [model-colour]"
                  for c, ms in by_colour.items() if len(ms) > 1]  # fmt: skip


def _model(label, figs):
    head = re.split(r"[ (:,]", label)[0]
    return head if head in figs.colors else None


def _panel(ax, fig, where, figs) -> list[str]:
    """Labels, log ticks, lines explained and distinct, accuracy in range: one panel."""
    out = []
    for which in ("x", "y"):
        label = getattr(ax, f"get_{which}label")()
        shared = getattr(ax, f"get_shared_{which}_axes")().get_siblings(ax)
        if not label and not any(getattr(a, f"get_{which}label")() for a in shared):
            out.append(f"{where}: the {which} axis has no label [label]")
        if TEX.search(label) and "$" not in label:
            out.append(f"{where}: the {which} label shows TeX as text: {label!r} [label]")
        axis = getattr(ax, f"{which}axis")
        if axis.get_scale() == "log":
            labels = _tick_labels(axis)
            if not labels:  # a shared axis shows its ticks once, on a sibling panel
                labels = max((_tick_labels(getattr(a, f"{which}axis")) for a in shared), key=len,
                             default=[])  # fmt: skip
            if len(labels) < 2 or any("\\times" in t for t in labels):
                out.append(
                    f"{where}: log {which} axis ticks {labels} (need >= 2, no mantissa x 10^k)"
                    " [log-ticks]"
                )
    # its own legend, the figure's, or one in a panel without data (it serves every panel)
    spare = [a.get_legend() for a in fig.axes if not a.axison and a is not ax]
    legends = [lg for lg in (ax.get_legend(), *fig.legends, *spare) if lg]
    legend_texts = {t.get_text() for lg in legends for t in lg.get_texts()}
    handles = [_handle_props(h) for lg in legends for h in lg.legend_handles]
    texts = {t.get_text() for t in (*fig.texts, *ax.texts)}
    looks, unexplained, alike, off_palette = {}, [], [], []
    hidden = [h for h in _hidden(_series(ax)) if h not in texts]  # a direct label still shows it
    for ln, label in _series(ax):
        if not _explained(ln, label, ax, legend_texts, handles, texts):
            unexplained.append(label)
        look = (rgba(ln.get_color()), _ls(ln), _marker(ln))
        on_data = ln.get_transform() == ax.transData  # reference lines are not series
        if on_data and looks.setdefault(look, label) != label:
            alike.append(f"{looks[look]!r} = {label!r}")
        model = _model(label, figs)
        if model is not None and look[0] != rgba(figs.colors[model]):
            off_palette.append(label)
    for what, names, rule in (
        ("line(s) have no legend entry or direct label", unexplained, "explained"),
        ("pair(s) of lines look the same (colour, line style, marker)", alike, "distinct"),
        ("line(s) are not drawn in their model's palette colour", off_palette, "model-colour"),
        ("line(s) are hidden under another (same points, nothing to tell them apart)", hidden,
         "hidden"),
    ):  # fmt: skip
        if names:
            out.append(f"{where}: {len(names)} {what}: {_some(names)} [{rule}]")
    categorical = any(not _numeric(t.get_text()) for t in ax.get_xticklabels())
    for c in ax.containers:
        if isinstance(c, BarContainer) and c.get_label() not in legend_texts | texts:
            if not categorical and not handles:
                out.append(f"{where}: bars {c.get_label()!r} are not explained [explained]")
    if "accuracy" in ax.get_ylabel():
        ys = [v for a in _data_artists(ax) for v in _data_y(a)]
        if ys and (min(ys) < -1e-9 or max(ys) > 1 + 1e-9):
            out.append(
                f"{where}: accuracy drawn outside [0, 1] ({min(ys):.4g}..{max(ys):.4g}) [range]"
            )
    return out


def _hidden(series, px=1.5) -> list[str]:
    """Labels of lines whose every drawn point lies under a later line's points, with no
    marker of their own showing past it."""
    drawn = []
    for ln, label in series:
        xy = ln.get_transform().transform(ln.get_xydata())
        drawn.append((ln, label, xy[np.isfinite(xy).all(1)]))
    out = []
    for i, (a, label, pa) in enumerate(drawn):
        for b, _, pb in drawn[i + 1 :]:
            if not len(pa) or not len(pb) or b.get_zorder() < a.get_zorder():
                continue
            near = np.linalg.norm(pa[:, None] - pb[None], axis=-1).min(axis=1) <= px
            if (
                near.all()
                and _marker(a) in (None, _marker(b))
                and b.get_linewidth() >= a.get_linewidth()
            ):
                out.append(label)
                break
    return out


def _covered(ax, fig, where, renderer) -> list[str]:
    """Legends (any in the figure) over this panel's data, in display coordinates."""
    out = []
    for lg in _legends(fig):
        box = lg.get_window_extent(renderer).expanded(0.98, 0.95)  # a touch is no cover
        region = Bbox.intersection(box, ax.bbox)
        if region is None:
            continue
        hit = [a for a in _data_artists(ax) if _overlaps(a, region, renderer)]
        if hit:
            out.append(f"{where}: a legend covers {len(hit)} data artist(s) [covered]")
    return out


def _some(names, n=4) -> str:
    return ", ".join(map(str, names[:n])) + (
        f" and {len(names) - n} more" if len(names) > n else ""
    )


def _value(text) -> float:
    """A tick label's number: '0.5', '−1', '3e11', '20k', '1.5M' (ValueError for a word)."""
    text = text.replace("−", "-")
    scale = {"k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}.get(text[-1:], 1) if text[:-1] else 1
    return float(text[:-1] if scale != 1 else text) * scale


def _numeric(text) -> bool:
    """A number tick, not a category (an empty label is no category)."""
    try:
        _value(text)
        return True
    except ValueError:
        return not text


def _data_y(artist) -> list[float]:
    """y values in data coordinates of lines, bands, error bars and bars (axes-spanning
    reference lines and anything on another transform excluded)."""
    if isinstance(artist, Line2D):
        if artist.get_transform() != artist.axes.transData:
            return []
        y = np.asarray(artist.get_ydata(), float)
    elif isinstance(artist, Patch):
        if not hasattr(artist, "get_height"):
            return []
        y = np.array([artist.get_y(), artist.get_y() + artist.get_height()], float)
    else:
        if artist.get_transform() != artist.axes.transData:
            return []
        y = np.concatenate([p.vertices[:, 1] for p in artist.get_paths()] or [np.array([])])
    return list(y[np.isfinite(y)])


# --- the rules of issue 23 ---------------------------------------------------------------------
def _texts(fig) -> list[str]:
    """Every title and caption text of a figure (suptitle, panel titles, figure texts)."""
    heads = [fig.get_suptitle() or "", *(ax.get_title() for ax in fig.axes)]
    return [t for t in (*heads, *(t.get_text() for t in fig.texts)) if t]


def _data_panels(fig) -> list:
    return [ax for ax in fig.axes if ax.axison and _data_artists(ax)]


def _titled(fig, name) -> list[str]:
    if fig.get_suptitle() or all(ax.get_title() for ax in _data_panels(fig)):
        return []
    return [f"{name}: no title (neither the figure nor every panel has one) [title]"]


def _categorical(axis) -> bool:
    return any(not _numeric(t.get_text()) for t in axis.get_ticklabels())


def _axis_label(ax, which) -> str:
    """The axis's label, or a shared sibling's (a shared axis is labelled once)."""
    shared = getattr(ax, f"get_shared_{which}_axes")().get_siblings(ax)
    labels = [getattr(a, f"get_{which}label")() for a in (ax, *shared)]
    return next((lab for lab in labels if lab), "")


def _units(ax, where) -> list[str]:
    out = []
    for which in ("x", "y"):
        label = _axis_label(ax, which)
        if not label or _categorical(getattr(ax, f"{which}axis")):
            continue  # no label: [label] says so; categories carry no unit
        if not UNIT.search(label) and not any(w in label.lower() for w in UNITLESS):
            out.append(f"{where}: the {which} label {label!r} names no unit [unit]")
    return out


def is_timing(fig) -> bool:
    """A figure of measured times: an axis in seconds or per second, or a word that means it."""
    for ax in fig.axes:
        for label in (ax.get_xlabel(), ax.get_ylabel()):
            units = {u for g in re.findall(r"\(([^()]*)\)", label)
                     for u in re.split(r"[\s/]+|\bper\b", g)}  # fmt: skip
            if units & TIME_UNITS or any(w in label.lower() for w in TIME_WORDS):
                return True
    return False


def _hardware(fig, name) -> list[str]:
    text = " ".join(_texts(fig))
    if not is_timing(fig) or ("measured on" in text and "load" in text):
        return []
    return [f"{name}: a timing figure that does not say its hardware and load [hardware]"]


def _axis_values(ax, which) -> np.ndarray:
    """The values plotted on one axis (data lines and scatter points, not reference lines)."""
    i, vals = (0 if which == "x" else 1), []
    for ln in ax.get_lines():
        if ln.get_transform() == ax.transData and ln.get_visible():
            vals.append(np.asarray(ln.get_xydata(), float)[:, i])
    for c in ax.collections:
        if len(c.get_offsets()) and c.get_offset_transform() == ax.transData:
            vals.append(np.asarray(c.get_offsets(), float)[:, i])
    vals = np.concatenate(vals) if vals else np.array([])
    return vals[np.isfinite(vals)]


def _integers(ax, where) -> list[str]:
    out = []
    for which in ("x", "y"):
        axis, vals = getattr(ax, f"{which}axis"), _axis_values(ax, which)
        if _categorical(axis) or len(np.unique(vals)) < 2 or not np.all(vals == np.round(vals)):
            continue
        if vals.min() >= 0 and vals.max() <= 1:  # a share that happens to be 0 or 1
            continue
        bad = [t for t in _tick_labels(axis) if _numeric(t) and not _whole(t)]
        if bad:
            out.append(f"{where}: whole-number {which} data with ticks {bad[:4]} [integer]")
    return out


def _whole(text) -> bool:
    v = _value(text)
    return v == round(v)


def _joined_categories(ax, where) -> list[str]:
    out = []
    for which, i in (("x", 0), ("y", 1)):
        if not _categorical(getattr(ax, f"{which}axis")):
            continue
        for ln, label in _series(ax):
            xy = np.asarray(ln.get_xydata(), float)
            pos = xy[np.isfinite(xy).all(1), i] if len(xy) else xy
            if ln.get_transform() == ax.transData and _ls(ln) and len(np.unique(pos)) > 1:
                out.append(
                    f"{where}: {label!r} joins the {which} categories by a line [categorical]"
                )
    return out


def _near(ax, where, renderer) -> list[str]:
    """Direct labels (texts naming one of the panel's lines) next to that line."""
    lines = {label: ln for ln, label in _series(ax) if not label.startswith("_")}
    pad = NEAR_PT * ax.figure.dpi / 72
    out = []
    for t in ax.texts:
        ln = lines.get(t.get_text())
        if ln is None or not t.get_visible():
            continue
        path = ln.get_transform().transform_path(ln.get_path())
        if getattr(t, "arrow_patch", None) is not None and t.xycoords == "data":
            x, y = ax.transData.transform(t.xy)
            box = Bbox.from_extents(x - pad, y - pad, x + pad, y + pad)  # the leader's end
        else:
            b = t.get_window_extent(renderer)
            box = Bbox.from_extents(b.x0 - pad, b.y0 - pad, b.x1 + pad, b.y1 + pad)
        if not path.intersects_bbox(box, filled=False):
            out.append(f"{where}: the label {t.get_text()!r} is away from its line [near]")
    return out


def _bars_distinct(ax, where) -> list[str]:
    seen, out = {}, []
    for c in ax.containers:
        if isinstance(c, BarContainer) and len(c.patches):
            look = (tuple(sorted({rgba(p.get_facecolor()) for p in c.patches})),
                    c.patches[0].get_hatch() or "")  # fmt: skip
            if seen.setdefault(look, c.get_label()) != c.get_label():
                out.append(f"{where}: bars {seen[look]!r} and {c.get_label()!r} look the same"
                           " (colour, hatch) [distinct]")  # fmt: skip
    return out


def style_colours(figs) -> set:
    """Every colour the style module hands out: model palettes, category colours (rgb)."""
    from seqbench.report.plot import nth_color

    out = {rgba(c)[:3] for c in figs.colors.values()}
    out |= {rgba(c)[:3] for c in figs._categories.values()}
    return out | {rgba(nth_color(i))[:3] for i in range(32)}


def _grey(rgb) -> bool:
    return max(rgb) - min(rgb) < 0.02


def _artist_colours(a) -> list:
    """The colours an artist puts on the page (an error bar's caps: their marker edge only)."""
    if isinstance(a, Line2D):
        marker = _marker(a)
        filled = marker is not None and MarkerStyle(marker).is_filled()
        return [c for c, shown in ((a.get_color(), _ls(a) is not None),
                                   (a.get_markeredgecolor(), marker is not None),
                                   (a.get_markerfacecolor(), filled)) if shown]  # fmt: skip
    if isinstance(a, Patch):
        return [a.get_facecolor(), a.get_edgecolor()]
    return [*a.get_facecolor(), *a.get_edgecolor()]


def _palette(fig, name, figs) -> list[str]:
    allowed, off = style_colours(figs), set()
    for ax in fig.axes:
        for a in _data_artists(ax):
            for c in _artist_colours(a):
                if isinstance(c, str) and c.lower() in ("none", "auto"):
                    continue
                rgb, alpha = rgba(c)[:3], rgba(c)[3]
                if alpha > 0 and not _grey(rgb) and rgb not in allowed:
                    off.add(rgb)
    if not off:
        return []
    return [f"{name}: colour(s) not from the style module: {_some(sorted(off))} [palette]"]


def _named_once(fig, name) -> list[str]:
    """A legend entry twice, or one that every panel drawing it already labels directly, or
    one that repeats a tick label (the legend then only says what the axis says)."""
    out = []
    ticks = {t.get_text() for ax in fig.axes for t in ax.get_xticklabels() if t.get_text()}
    for lg in _legends(fig):
        panels = [lg.axes] if lg in (ax.get_legend() for ax in fig.axes) else fig.axes
        texts = [t.get_text() for t in lg.get_texts()]
        twice = {t for t in texts if texts.count(t) > 1} | (set(texts) & ticks)
        for t in set(texts):
            drawn = [ax for ax in panels if t in {lab for _, lab in _series(ax)}]
            if drawn and all(t in {x.get_text() for x in ax.texts} for ax in drawn):
                twice.add(t)
        if twice:
            out.append(f"{name}: named twice (legend and again): {_some(sorted(twice))} [once]")
    return out
