"""The contact sheet: one tile per claim, the figure that decides it, readable at 100%.

results/README.md opens with the claims table; after it, ``contact_sheet.png`` shows for each
claim the figure its verdict reads, titled with the claim in plain words and its verdicts in
words and colour (green supported, red not supported, amber nuanced, blue inconclusive, grey
not measured), so a reader sees the evidence for the whole lecture before opening a page.

Readable at 100% on a laptop: the sheet is ``NCOLS * TILE[0] * DPI`` = 1200 px wide, titles at
``TITLE_PT`` (larger than body text), and a figure is never shrunk below ``MIN_SCALE`` of its
size: a wide (multi-panel) figure takes a whole row instead of a half. The tiles are PNGs the
sections saved (``Figures.deciding``: claim -> figures), so the sheet never shows something
the pages do not; a timing figure whose verdict is ``not measured on cpu`` is shown only
under a band saying it does not decide.
"""

from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.image import imread
from matplotlib.patches import Rectangle

from seqbench.report.claims import LECTURE, claim_key, short_claim

NAME = "contact_sheet.png"
NCOLS = 2
TILE = (6.0, 4.5)  # inches per half-row tile at DPI: 600 px wide
DPI = 100
TITLE_PT = 12.5  # 17 px at DPI: above a browser's 16 px body text
PAD = 10  # px around a tile's contents
LINE = 24  # px per title line
MIN_SCALE = 0.8  # a figure narrower than a tile at this scale takes half a row
COLOURS = {
    "supported": "#1a7f37",
    "not supported": "#cf222e",
    "nuanced": "#9a6700",
    "inconclusive": "#0550ae",
    "not measured": "#57606a",
}
UNDECIDED = "not measured on "  # a timing verdict this hardware cannot decide


def colour(verdict: str) -> str:
    """A verdict's colour; a failure purple, an undecided timing grey."""
    if verdict.startswith("failed"):
        return "#8250df"
    return COLOURS.get(verdict, COLOURS["not measured"])


def chosen(deciding: dict, evidence=(), made_by=None) -> dict[str, str]:
    """claim -> the one figure its tile shows: the figure of its first verdict (report order)
    that decides it, a verdict this hardware could decide first; else its first figure."""
    made_by = made_by or {}
    out = {}
    for claim, pngs in deciding.items():
        mine = [e for e in evidence if e.verdict.claim == claim]
        ranked = sorted(mine, key=lambda e: e.verdict.verdict.startswith(UNDECIDED))
        for e in ranked:
            own = [p for p in pngs if made_by.get(p) == e.study]
            if own:
                out[claim] = own[0]
                break
        else:
            if pngs:
                out[claim] = pngs[0]
    return out


def tiles(deciding: dict[str, list[str]], evidence=(), made_by=None) -> list:
    """(png, the claims it is the tile of) per figure, in claim order: one figure per claim,
    a figure chosen by several claims one tile."""
    pick = chosen(deciding, evidence, made_by)
    claims_of: dict[str, list[str]] = {}
    for claim in sorted(pick, key=claim_key):
        claims_of.setdefault(pick[claim], []).append(claim)
    return list(claims_of.items())


def sheet(results, deciding, evidence=(), made_by=None, extra=None) -> str:
    """Write results/contact_sheet.png from the saved figures; the markdown that shows it, or
    '' when no figure decides a claim. ``evidence``: claims.Evidence (verdict and study) per
    row of the claims table; ``made_by``: png -> the study that drew it."""
    fig = draw(results, deciding, evidence, made_by, extra)
    if fig is None:
        return ""
    fig.savefig(Path(results) / NAME, dpi=DPI)
    plt.close(fig)
    return (
        "One tile per claim: the figure its verdict reads, titled with the claim and its "
        "verdicts in words and colour (the figure is on the study's page, full size):"
        f"\n\n![contact sheet]({NAME})"
    )


def draw(results, deciding, evidence=(), made_by=None, extra=None):
    """The contact sheet as a live figure (None when no figure decides a claim)."""
    results = Path(results)
    found = [(png, cs) for png, cs in tiles(deciding, evidence, made_by)
             if (results / png).is_file()]  # fmt: skip
    if not found:
        return None
    texts = LECTURE | (extra or {})
    boxes = [_tile(results / png, cs, evidence, made_by or {}, png, texts) for png, cs in found]
    rows = _rows(boxes)
    width = round(NCOLS * TILE[0] * DPI)
    height = sum(max(b["height"] for b in row) for row in rows) + PAD
    fig = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    top = height - PAD / 2
    for row in rows:
        left = 0
        for b in row:
            _draw(fig, b, left, top, width, height)
            left += b["span"] * width / NCOLS
        top -= max(b["height"] for b in row)
    return fig


def _tile(path, claims, evidence, made_by, png, texts) -> dict:
    """What one tile shows: its title lines, its image, how many columns it spans."""
    image = imread(path)
    h, w = image.shape[:2]
    half = TILE[0] * DPI - 2 * PAD
    span = 1 if w * MIN_SCALE <= half else NCOLS
    scale = min(1.0, (span * TILE[0] * DPI - 2 * PAD) / w)
    lines, own = [], []
    for claim in claims:
        mine = [e for e in evidence if e.verdict.claim == claim]
        words = short_claim(claim, texts)
        verdicts = [(e.verdict.verdict, e.study == made_by.get(png)) for e in mine]
        if evidence and not verdicts:  # a figure drawn, no verdict computed from it
            verdicts = [("not measured", False)]
        own += [v for v, is_own in verdicts if is_own]
        lines.append((f"{claim}: {words}", verdicts))
    title_h = sum(LINE * (1 + bool(v)) for _, v in lines) + PAD
    return {"image": image, "scale": scale, "span": span, "lines": lines,
            # the figure decides nothing when every verdict drawn from it is an undecided timing
            "undecided": bool(own) and all(v.startswith(UNDECIDED) for v in own),
            "height": title_h + h * scale + 2 * PAD}  # fmt: skip


def _rows(boxes: list) -> list[list]:
    """Tiles in order into rows of NCOLS columns; a tile that spans the row gets one alone."""
    rows, row = [], []
    for b in boxes:
        if row and sum(x["span"] for x in row) + b["span"] > NCOLS:
            rows.append(row)
            row = []
        row.append(b)
    return rows + ([row] if row else [])


def _draw(fig, b, left, top, width, height):
    """One tile, its top-left corner at (left, top) in pixels from the bottom-left."""
    tile_w = b["span"] * width / NCOLS
    corner = ((left + 3) / width, (top - b["height"] + 3) / height)
    size = ((tile_w - 6) / width, (b["height"] - 6) / height)
    fig.add_artist(Rectangle(corner, *size, transform=fig.transFigure, fill=False,
                             ec="#d0d7de", lw=1))  # fmt: skip
    renderer = fig.canvas.get_renderer()
    y = top - PAD - LINE * 0.75
    for text, verdicts in b["lines"]:
        fig.text((left + PAD) / width, y / height, text, fontsize=TITLE_PT, weight="bold",
                 color="#1f2328", va="baseline")  # fmt: skip
        y -= LINE
        x = left + PAD
        counts = {pair: verdicts.count(pair) for pair in verdicts}  # the same words once
        for i, ((verdict, own), n) in enumerate(counts.items()):
            said = f"{n}x {verdict}" if n > 1 else verdict
            said += " (this figure)" if own and len(counts) > 1 else ""
            t = fig.text(x / width, y / height, ("· " if i else "") + said, fontsize=TITLE_PT,
                         color=colour(verdict), weight="bold" if own else "normal",
                         va="baseline")  # fmt: skip
            x = t.get_window_extent(renderer).x1 + 6
        y -= LINE * bool(verdicts)
    h, w = b["image"].shape[:2]
    img_w, img_h = w * b["scale"], h * b["scale"]
    x0, y0 = left + PAD, y + LINE * 0.4 - img_h
    ax = fig.add_axes((x0 / width, y0 / height, img_w / width, img_h / height))
    ax.imshow(b["image"], interpolation="antialiased")
    ax.set_axis_off()
    if b["undecided"]:
        ax.text(0.5, 0.5, "timing on this hardware: does not decide the claim",
                transform=ax.transAxes, ha="center", va="center", fontsize=TITLE_PT,
                color="#57606a", weight="bold",
                bbox=dict(fc="white", ec="#57606a", alpha=0.85))  # fmt: skip
