"""The contact sheet: one small-multiples image of the figures that decide each claim.

results/README.md opens with the claims table; right after it, ``contact_sheet.png`` shows
every figure a verdict reads, shrunk to a tile and labelled by the claims it decides, so a
reader sees the evidence for the whole lecture before reading any section. The tiles are the
PNGs the sections saved (``Figures.deciding``: claim -> figures, from ``figs.save(...,
decides=...)``; a study that marks none lends all its figures to its DECIDES), so the sheet
can never show something the sections do not.
"""

import re
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.image import imread

NAME = "contact_sheet.png"
NCOLS = 3
TILE = (4.2, 2.9)  # inches per tile (image and its label)
DPI = 80


def claim_key(claim: str):
    """Lecture order (C1, C2, ..., C11), a starred claim right after its base (C3, C3*)."""
    from seqbench.report.claims import LECTURE

    base = (re.match(r"C\d+", claim) or [claim])[0]
    order = list(LECTURE)
    return (order.index(base) if base in order else len(order), claim != base, claim)


def tiles(deciding: dict[str, list[str]]) -> list[tuple[str, list[str]]]:
    """(png, the claims it decides) per figure, in the order of the first claim each decides."""
    claims_of: dict[str, list[str]] = {}
    for claim in sorted(deciding, key=claim_key):
        for png in deciding[claim]:
            claims_of.setdefault(png, [])
            if claim not in claims_of[png]:
                claims_of[png].append(claim)
    return list(claims_of.items())


def sheet(results, deciding: dict[str, list[str]]) -> str:
    """Write results/contact_sheet.png from the saved figures; the markdown that shows it, or
    '' when no figure decides a claim."""
    results = Path(results)
    found = [(png, claims) for png, claims in tiles(deciding) if (results / png).is_file()]
    if not found:
        return ""
    ncols = min(NCOLS, len(found))
    nrows = -(-len(found) // ncols)  # ceil
    fig, axes = plt.subplots(nrows, ncols, figsize=(TILE[0] * ncols, TILE[1] * nrows),
                             squeeze=False, layout="constrained")  # fmt: skip
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, (png, claims) in zip(axes.ravel(), found):
        ax.imshow(imread(results / png), interpolation="antialiased")
        ax.set_title(f"{', '.join(claims)}: {Path(png).stem}", fontsize=9, loc="left")
    fig.savefig(results / NAME, dpi=DPI)
    plt.close(fig)
    return (
        "The figures that decide each claim, at a glance (each tile is a figure of a section "
        f"below, labelled by the claims it decides):\n\n![contact sheet]({NAME})"
    )
