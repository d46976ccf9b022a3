"""Multi-query associative recall (C5; Arora et al. 2023, Zoology, Fig. 2).

Accuracy against model width d_model, one panel per (seq_len, kv pairs) setting, one line per
model: Zoology's figure with the RNN/LSTM/GRU rows it never ran. ``model.d_model`` overrides
every family's width, so parameter counts differ between families at the same d_model (the
table lists them). A cell (setting, d_model) counts for the verdict only when some model
has started to learn it (best accuracy >= 4x chance; chance = 2 / vocab_size, values come
from half the vocabulary): below that the budget, not the architecture, decides. Short
budgets (the CPU profile) measure which family starts to solve MQAR first; Zoology's
question, capacity at convergence, needs the GPU profile's longer training.
"""

import pandas as pd
from matplotlib.ticker import NullFormatter

from seqbench.report import Claim
from seqbench.report.collect import complete
from seqbench.report.plot import color, figure, md_table, save

ORDER = 32
TITLE = "Multi-query associative recall (C5, Zoology)"
STUDY = "mqar"
ATTENTION = "transformer"
LEARNED = 4  # a cell where no model reaches this many times chance is uninformative
MARGIN = 0.05  # the Transformer "wins" a cell when it beats every recurrent model by this


def accuracy_table(runs: pd.DataFrame) -> pd.DataFrame:
    ok = complete(runs, STUDY)
    if ok.empty:
        return pd.DataFrame()
    ok = ok[ok.task == "mqar"]
    width = ok.hp_d_model if "hp_d_model" in ok else ok.d_model_override
    ok = ok.assign(
        d_model=width.astype(int),
        setting=[f"T={int(t)}, kv={int(k)}" for t, k in zip(ok.seq_len, ok.num_kv_pairs)],
    )
    return (
        ok.groupby(["setting", "seq_len", "model", "d_model"])
        .agg(
            acc=("val_acc", "mean"),
            acc_std=("val_acc", "std"),
            seeds=("seed", "nunique"),
            params=("params_non_embedding", "first"),
            chance=("vocab_size", lambda v: 2 / float(v.iloc[0])),
        )
        .reset_index()
        .sort_values(["seq_len", "model", "d_model"])
    )


def verdict(acc: pd.DataFrame) -> tuple[str, str] | None:
    if ATTENTION not in set(acc.model) or len(set(acc.model)) < 2:
        return None
    wins, cells = 0, 0
    for _, cell in acc.groupby(["setting", "d_model"]):
        by = cell.set_index("model").acc
        if ATTENTION not in by or len(by) < 2 or by.max() < LEARNED * cell.chance.iloc[0]:
            continue
        cells += 1
        wins += by[ATTENTION] > by.drop(ATTENTION).max() + MARGIN
    if cells == 0:
        return None
    share = wins / cells
    means = acc.groupby("model").acc.mean()
    measured = f"Transformer ahead in {wins}/{cells} learned cells; mean accuracy " + ", ".join(
        f"{m} {a:.2f}" for m, a in means.items()
    )
    if share >= 0.8:
        return "supported", measured
    if share <= 0.2:
        return "not supported", measured
    return "nuanced", measured


def render(tables, out) -> str:
    acc = accuracy_table(tables["runs"])
    if acc.empty:
        return "_No completed runs of the MQAR study yet._"
    settings = list(dict.fromkeys(acc.sort_values("seq_len").setting))
    fig, axes = figure(ncols=len(settings), width=3.8)
    for ax, s in zip(axes, settings):
        for model, g in acc[acc.setting == s].groupby("model"):
            ax.errorbar(
                g.d_model,
                g.acc,
                yerr=g.acc_std.fillna(0),
                label=model,
                marker="o",
                color=color(model),
                capsize=3,
            )
        ax.set(xscale="log", title=s, xlabel="d_model", ylabel="held-out accuracy", ylim=(0, 1.05))
        ax.set_xticks(sorted(acc.d_model.unique()), [str(d) for d in sorted(acc.d_model.unique())])
        ax.xaxis.set_minor_formatter(NullFormatter())  # only the measured widths are labelled
    axes[0].legend(fontsize=8)
    table = acc[["setting", "model", "d_model", "params", "acc", "acc_std", "seeds"]]
    return "\n\n".join(
        [
            "Accuracy on the scored query positions against model width (one panel per Zoology "
            "setting). Every family gets the same d_model, so their parameter counts differ "
            "(column `params`: non-embedding parameters).",
            save(fig, out, "mqar_accuracy_vs_width"),
            md_table(table.round(3)),
        ]
    )


def claims(tables) -> list[Claim]:
    acc = accuracy_table(tables["runs"])
    result = verdict(acc) if not acc.empty else None
    if result is None:
        return []
    v, measured = result
    return [
        Claim(
            "C5",
            "mqar (accuracy vs d_model)",
            measured,
            f"over the (setting, d_model) cells some model has started to learn (best "
            f"accuracy >= {LEARNED}x chance), supported if the Transformer beats every "
            f"recurrent model by > {MARGIN} in >= 80% of them, not supported if in <= 20%, "
            "nuanced between",
            v,
        )
    ]
