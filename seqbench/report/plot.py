"""One look for every figure in results/: colours by model family, saving, markdown tables.

Every study section draws through a ``Figures`` object: ``figs.color(model)`` gives each model
a colour of its own from its family's palette (recurrent models reds and oranges, attention
blues, scans greens, baselines greys, any other family a palette of its own), assigned once
per report over every model of every table, so a model keeps its colour in every figure.
``figs.save(fig, name)`` writes ``<out>/<name>.png``, remembers it (the report removes the
figures it no longer writes) and returns the markdown that shows it.
"""

from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib import colormaps

# family -> colormap; shades are spread over the middle of the map (never near-white)
PALETTES = {
    "recurrent": "Reds",
    "attention": "Blues",
    "scan": "Greens",
    "baseline": "Greys",
}
SPARE = ("Purples", "Oranges", "YlOrBr", "PuRd", "BuGn", "GnBu")  # families nobody listed


class Figures:
    def __init__(self, out, families: dict[str, str]):
        """``families``: model -> family for every model the report will draw."""
        self.out = Path(out)
        self.written: list[str] = []
        self.colors = palette(families)

    def color(self, model):
        return self.colors.get(model, "black")

    def figure(self, ncols=1, width=5.0, height=3.6):
        fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)
        return fig, axes[0]

    def save(self, fig, name: str) -> str:
        """Save as out/name.png and return the markdown that shows it."""
        fig.tight_layout()
        fig.savefig(self.out / f"{name}.png", dpi=110)
        plt.close(fig)
        self.written.append(f"{name}.png")
        return f"![{name}]({name}.png)"


def palette(families: dict[str, str]) -> dict:
    """model -> colour: within a family, models in name order take evenly spaced shades of
    the family's colormap, so any number of models stays distinct and the mapping is stable."""
    by_family: dict[str, list[str]] = {}
    for model, fam in sorted(families.items()):
        by_family.setdefault(str(fam), []).append(model)
    spare = iter(SPARE)
    colors = {}
    for fam in sorted(by_family):
        cmap = colormaps[PALETTES.get(fam) or next(spare, "viridis")]
        models = by_family[fam]
        for i, model in enumerate(models):
            shade = 0.85 if len(models) == 1 else 0.45 + 0.5 * i / (len(models) - 1)
            colors[model] = cmap(shade)
    return colors


def md_table(df, floatfmt=".3g") -> str:
    """A DataFrame as a GitHub markdown table (no tabulate dependency)."""

    def fmt(v):
        if isinstance(v, float):
            return format(v, floatfmt)
        return str(v)

    cols = list(df.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)
