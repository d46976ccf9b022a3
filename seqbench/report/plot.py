"""Shared figure helpers: one look for every figure in results/."""

from pathlib import Path

import matplotlib.pyplot as plt

# one colour per model family, stable across figures
COLORS = {
    "rnn": "tab:red",
    "lstm": "tab:orange",
    "gru": "tab:olive",
    "transformer": "tab:blue",
    "mingru": "tab:green",
    "minlstm": "tab:cyan",
    "bagofwords": "tab:gray",
}


def color(model: str):
    return COLORS.get(model)


def figure(ncols=1, width=5.0, height=3.6):
    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)
    return fig, axes[0]


def save(fig, out: Path, name: str) -> str:
    """Save as out/name.png and return the markdown that shows it."""
    fig.tight_layout()
    fig.savefig(Path(out) / f"{name}.png", dpi=110)
    plt.close(fig)
    return f"![{name}]({name}.png)"


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
