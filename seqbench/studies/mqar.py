"""Multi-query associative recall (C5; Arora et al. 2023, Zoology, Fig. 2).

Accuracy against model width d_model, one panel per (seq_len, kv pairs) setting, one line per
model: Zoology's figure with the RNN/LSTM/GRU rows it never ran. ``model.d_model`` overrides
every family's width, so parameter counts differ between families at the same d_model (the
table lists them). A cell (setting, d_model) counts for the verdict only when some model has
started to learn it (best accuracy >= RULE.learned x chance; chance = 2 / vocab_size, values
come from half the vocabulary): below that the budget, not the architecture, decides. In a
cell the attention family "wins" when every attention model beats every recurrence (families
``recurrent`` and ``scan``) by RULE.margin. Short budgets (the CPU profile) measure which
family starts to solve MQAR first; Zoology's question, capacity at convergence, needs the GPU
profile's longer training.
"""

import pandas as pd
from matplotlib.ticker import NullFormatter

from seqbench.report.plot import md_table
from seqbench.studies import Rule, Verdict, complete, in_family, train

TITLE = "Multi-query associative recall (C5, Zoology)"
ORDER = 32
DECIDES = ("C5",)
ATTENTION, RECURRENCES = ("attention",), ("recurrent", "scan")
RULE = Rule(
    "over the (setting, d_model) cells some model has started to learn (best accuracy >= "
    "{learned}x chance), supported if the attention model beats every recurrent model by > "
    "{margin} in >= {supported:.0%} of them, not supported if in <= {refuted:.0%}, nuanced "
    "between",
    learned=4,
    margin=0.05,
    supported=0.8,
    refuted=0.2,
)
BENCH = {
    "smoke": [
        train(
            "mqar",
            "-m",
            "+experiment=mqar",
            "hydra.sweeper.params.data='{seq_len:64,num_kv_pairs:4}'",
            "model.d_model=32",
            "train.steps=10",
            "train.eval_batches=2",
        ),
    ],
    "cpu": [
        train("mqar", "-m", "+experiment=mqar", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"),
        # minGRU/minLSTM: their scan is ~3x an LSTM step on this CPU, so fewer settings
        train(
            "mqar_scan",
            "-m",
            "+experiment=mqar",
            "model=mingru,minlstm",
            "model.d_model=64",
            "hydra.sweeper.params.data='{seq_len:64,num_kv_pairs:4},{seq_len:128,num_kv_pairs:8}'",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
        ),
    ],
    "gpu": [
        train(
            "mqar",
            "-m",
            "+experiment=mqar",
            "train.steps=2000",
            "train.batch_size=64",
            "train.threads=2",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=4",
            "model.d_model=64,128,256",
        ),
    ],
}


def accuracy_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and seed count of held-out accuracy per (setting, model, d_model)."""
    ok = complete(runs, "mqar")
    if ok.empty:
        return pd.DataFrame()
    ok = ok[ok.task == "mqar"]
    # the width as built; the override where an older run did not record its hparams
    width = ok.hp_d_model if "hp_d_model" in ok else ok["model.d_model"]
    ok = ok.assign(
        seq_len=ok["data.seq_len"],
        d_model=width.astype(int),
        setting=[
            f"T={int(t)}, kv={int(k)}" for t, k in zip(ok["data.seq_len"], ok["data.num_kv_pairs"])
        ],
    )
    return (
        ok.groupby(["setting", "seq_len", "model", "family", "d_model"])
        .agg(
            acc=("val_acc", "mean"),
            acc_std=("val_acc", "std"),
            seeds=("seed", "nunique"),
            params=("params_non_embedding", "first"),
            chance=("vocab_size", lambda v: 2 / float(v.iloc[0])),  # values: half the vocab
        )
        .reset_index()
        .sort_values(["seq_len", "model", "d_model"])
    )


def verdict(acc: pd.DataFrame) -> tuple[str, str] | None:
    """(verdict, measured); None without an attention model and a recurrence, or when no
    cell has been learned by any model (the budget decides nothing)."""
    attention, recurrences = in_family(acc, *ATTENTION), in_family(acc, *RECURRENCES)
    if not attention or not recurrences:
        return None
    wins, cells = 0, 0
    for _, cell in acc.groupby(["setting", "d_model"]):
        by = cell.set_index("model").acc
        att, rec = by[by.index.isin(attention)], by[by.index.isin(recurrences)]
        if att.empty or rec.empty or by.max() < RULE.learned * cell.chance.iloc[0]:
            continue
        cells += 1
        wins += att.min() > rec.max() + RULE.margin
    if cells == 0:
        return None
    share = wins / cells
    means = acc.groupby("model").acc.mean()
    measured = (
        f"{'/'.join(attention)} ahead in {wins}/{cells} learned cells; mean accuracy "
        + ", ".join(f"{m} {a:.2f}" for m, a in means.items())
    )
    if share >= RULE.supported:
        return "supported", measured
    if share <= RULE.refuted:
        return "not supported", measured
    return "nuanced", measured


def verdicts(tables) -> list[Verdict]:
    acc = accuracy_table(tables["runs"])
    result = verdict(acc) if not acc.empty else None
    if result is None:
        return []
    v, measured = result
    return [Verdict("C5", "mqar (accuracy vs d_model)", measured, RULE, v)]


def section(tables, figs) -> str:
    acc = accuracy_table(tables["runs"])
    if acc.empty:
        return "_No completed runs of the MQAR study yet._"
    settings = list(dict.fromkeys(acc.sort_values("seq_len").setting))
    widths = sorted(acc.d_model.unique())
    fig, axes = figs.figure(ncols=len(settings), width=3.8)
    for ax, s in zip(axes, settings):
        for model, g in acc[acc.setting == s].groupby("model"):
            ax.errorbar(
                g.d_model,
                g.acc,
                yerr=g.acc_std.fillna(0),
                label=model,
                marker="o",
                color=figs.color(model),
                capsize=3,
            )
        ax.set(xscale="log", title=s, xlabel="d_model", ylabel="held-out accuracy", ylim=(0, 1.05))
        ax.set_xticks(widths, [str(d) for d in widths])
        ax.xaxis.set_minor_formatter(NullFormatter())  # only the measured widths are labelled
    axes[0].legend(fontsize=8)
    table = acc[["setting", "model", "d_model", "params", "acc", "acc_std", "seeds"]]
    return "\n\n".join(
        [
            "Accuracy on the scored query positions against model width (one panel per Zoology "
            "setting). Every family gets the same d_model, so their parameter counts differ "
            "(column `params`: non-embedding parameters).",
            figs.save(fig, "mqar_accuracy_vs_width"),
            md_table(table.round(3)),
        ]
    )
