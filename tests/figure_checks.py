"""What a reader without the text could not read in a drawn figure, from its matplotlib
objects (tests/test_figures.py runs every study's figures through ``problems``).

- every axis has a label, and no label shows TeX as literal text (``x_{p+1}``);
- a log axis shows at least two tick labels, none of them "6x10^0";
- every line is explained: a legend entry (its panel's or the figure's), a direct label, or
  a key that names its colour, line style and marker; no two series in a panel look the
  same; none is hidden under another with nothing to tell it is there; no two models share a
  colour, and a model's line is drawn in its palette colour;
- no legend covers a data point, line, band or bar, or a title (display coordinates);
- an accuracy axis holds no point, bar or band outside [0, 1];
- a figure that decides a claim says which in its title.
"""

import re

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.colors import to_rgba
from matplotlib.container import BarContainer, ErrorbarContainer
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.transforms import Bbox

TEX = re.compile(r"[_^]\{|\\times|\\mathdefault")


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
    if not label.startswith("_") and (label in legend_texts or label in texts):
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
            out += _covered(ax, fig, f"{name}[{ax.get_title() or fig.axes.index(ax)}]", renderer)
    heads = [t for t in (fig._suptitle, *(ax.title for ax in fig.axes)) if t and t.get_text()]
    for lg in _legends(fig):
        box = lg.get_window_extent(renderer).expanded(0.98, 0.95)
        out += [f"{name}: a legend covers the title {t.get_text()[:40]!r}"
                for t in heads if box.overlaps(t.get_window_extent(renderer))]  # fmt: skip
    titles = [fig.get_suptitle() or "", *(ax.get_title() for ax in fig.axes)]
    out += [f"{name}: decides {c} but its title does not say so"
            for c in decides if not any(c in t for t in titles)]  # fmt: skip
    return out


def _shared_colours(fig, name, figs) -> list[str]:
    """Legend entries naming different models in one colour, or a model off its palette."""
    by_colour, out = {}, []
    for lg in _legends(fig):
        for h, t in zip(lg.legend_handles, lg.get_texts()):
            model, colour = _model(t.get_text(), figs), _handle_props(h)["color"]
            if model is not None and colour is not None:
                by_colour.setdefault(colour, set()).add(model)
    return out + [f"{name}: models {sorted(ms)} share the colour {c}"
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
            out.append(f"{where}: the {which} axis has no label")
        if TEX.search(label) and "$" not in label:
            out.append(f"{where}: the {which} label shows TeX as text: {label!r}")
        axis = getattr(ax, f"{which}axis")
        if axis.get_scale() == "log":
            labels = _tick_labels(axis)
            if len(labels) < 2 or any("\\times" in t for t in labels):
                out.append(
                    f"{where}: log {which} axis ticks {labels} (need >= 2, no mantissa x 10^k)"
                )
    legends = [lg for lg in (ax.get_legend(), *fig.legends) if lg]  # its own, or the figure's
    legend_texts = {t.get_text() for lg in legends for t in lg.get_texts()}
    handles = [_handle_props(h) for lg in legends for h in lg.legend_handles]
    texts = {t.get_text() for t in (*fig.texts, *ax.texts)}
    looks, unexplained, alike, off_palette = {}, [], [], []
    hidden = [h for h in _hidden(_series(ax)) if h not in texts]  # a direct label still shows it
    for ln, label in _series(ax):
        if not _explained(ln, label, ax, legend_texts, handles, texts):
            unexplained.append(label)
        look = (rgba(ln.get_color()), _ls(ln), _marker(ln))
        if looks.setdefault(look, label) != label and not label.startswith("_"):
            alike.append(f"{looks[look]!r} = {label!r}")
        model = _model(label, figs)
        if model is not None and look[0] != rgba(figs.colors[model]):
            off_palette.append(label)
    for what, names in (
        ("line(s) have no legend entry or direct label", unexplained),
        ("pair(s) of lines look the same (colour, line style, marker)", alike),
        ("line(s) are not drawn in their model's palette colour", off_palette),
        ("line(s) are hidden under another (same points, nothing to tell them apart)", hidden),
    ):
        if names:
            out.append(f"{where}: {len(names)} {what}: {_some(names)}")
    categorical = any(not _numeric(t.get_text()) for t in ax.get_xticklabels())
    for c in ax.containers:
        if isinstance(c, BarContainer) and c.get_label() not in legend_texts | texts:
            if not categorical and not handles:
                out.append(f"{where}: bars {c.get_label()!r} are not explained")
    if "accuracy" in ax.get_ylabel():
        ys = [v for a in _data_artists(ax) for v in _data_y(a)]
        if ys and (min(ys) < -1e-9 or max(ys) > 1 + 1e-9):
            out.append(f"{where}: accuracy drawn outside [0, 1] ({min(ys):.4g}..{max(ys):.4g})")
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
            out.append(f"{where}: a legend covers {len(hit)} data artist(s)")
    return out


def _some(names, n=4) -> str:
    return ", ".join(map(str, names[:n])) + (
        f" and {len(names) - n} more" if len(names) > n else ""
    )


def _numeric(text) -> bool:
    try:
        float(text.replace("−", "-"))
        return True
    except ValueError:
        return not text  # an empty label is no category


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
