"""Count n-gram baselines as the text studies read them (table ``ngram``, written by
``seqbench.measure.ngram``): the loss a unigram, bigram or trigram count model reaches on the
held-out windows a study's models were scored on, its spread over other held-out samples,
its loss by position, and the labelled reference lines the figures draw.

A bar that says a model "learned from context" is the count bigram's loss on the same
windows, not a multiple of the unigram (a bigram passes 0.9 x unigram easily: issue 22). A
study whose runs folder has no matching n-gram rows says ``NOT_MEASURED`` and decides
nothing on that bar: it never falls back to the old bar silently.
"""

import pandas as pd

from seqbench.report.axes import reference

TABLE = "ngram"
NOT_MEASURED = "count baselines not measured"
NAMES = {1: "unigram", 2: "bigram", 3: "trigram"}
HARNESS = 0  # sample 0: the windows the harness scored the models on


def order_name(order: int) -> str:
    return NAMES.get(int(order), f"{int(order)}-gram")


def rows_for(tables, study: str, **settings) -> pd.DataFrame:
    """The complete n-gram rows of ``study`` whose data settings equal ``settings`` (e.g.
    seq_len=256, eval_batches=32, batch_size=8, n_train=None); a setting given as None
    matches rows without one (no pool). Empty when there are none."""
    df = tables.get(TABLE)
    if df is None or df.empty or "study" not in df:
        return pd.DataFrame()
    ok = df[(df.get("status", "complete") == "complete") & (df.study == study)]
    for key, value in settings.items():
        if key not in ok:
            return pd.DataFrame()
        col = pd.to_numeric(ok[key], errors="coerce")
        ok = ok[col.isna()] if value is None or pd.isna(value) else ok[col == float(value)]
    return ok


def settings_of(runs: pd.DataFrame, n_train: bool = False) -> dict | None:
    """The held-out windows a set of training runs was scored on (seq_len, eval_batches,
    batch_size; n_train when asked), None where the runs disagree (no one bar fits them); a
    setting the runs do not record is not matched on."""
    keys = {"seq_len": "data.seq_len", "eval_batches": "train.eval_batches",
            "batch_size": "train.batch_size"}  # fmt: skip
    if n_train:
        keys["n_train"] = "data.n_train"
    out = {}
    for name, col in keys.items():
        values = runs[col].dropna().unique() if col in runs else []
        if len(values) > 1:
            return None
        if len(values):
            out[name] = float(values[0])
        elif name == "n_train" and col in runs:
            out[name] = None  # recorded as null: no pool
    return out


def levels(rows: pd.DataFrame, sample: int = HARNESS, scope: str = "windows") -> dict:
    """order -> mean held-out loss of that count model on ``sample`` of the held-out windows
    (``scope="stream"``: over the whole held-out stream; ``scope="test"``: the test windows
    what=test_set scores, ``test_loss``; ``scope="test_stream"``: the whole test stream),
    averaged over the data seeds present; {} without rows."""
    if rows.empty or "scope" not in rows:
        return {}
    w = rows[rows.scope == scope]
    w = w[w["sample"] == sample] if scope == "windows" else w
    column = "test_loss" if scope in ("test", "test_stream") else "val_loss"
    if column not in w:
        return {}
    return {int(o): float(g[column].mean()) for o, g in w.groupby("order")}


def position_loss(rows: pd.DataFrame, order: int, scope: str = "position") -> dict:
    """sample -> Series position -> loss of the order's count model (``scope=
    "test_position"``: on each data seed's test windows, sample = the data seed)."""
    if rows.empty or "scope" not in rows:
        return {}
    p = rows[(rows.scope == scope) & (rows.order == order)]
    return {int(s): g.groupby("position").loss.mean() for s, g in p.groupby("sample")}


def said(lv: dict, orders=(2, 3)) -> str:
    """'count bigram 2.37, trigram 1.83 nats (same windows)'; NOT_MEASURED without them."""
    shown = [f"{order_name(o)} {lv[o]:.2f}" for o in orders if o in lv]
    return f"count {', '.join(shown)} nats (same windows)" if shown else NOT_MEASURED


def draw(ax, lv: dict, orders=(2, 3)) -> None:
    """The count models' levels as labelled reference lines (dotted, as chance levels)."""
    for o in orders:
        if o in lv:
            reference(ax, lv[o], f"count {order_name(o)} {lv[o]:.2f}", kind="chance")
