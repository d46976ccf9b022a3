"""Synthetic rows of the ``ngram`` table (seqbench.measure.ngram) for the text studies' verdict
tests: a count model's loss on the harness's windows and on other held-out samples, and its
loss by position with a chosen late gain."""

import pandas as pd

ORDERS = {1: "unigram-count", 2: "bigram-count", 3: "trigram-count"}


def table(study: str, levels: dict, gains=None, T=256, shift=0.01, **settings) -> pd.DataFrame:
    """Complete ngram rows of ``study``: per order in ``levels`` (order -> loss on sample 0) one
    windows row per sample (sample s scores ``shift * s`` higher) and, where ``gains`` (sample
    -> late gain, see text_positions.windows) is given, the order's loss at each position
    (raised by the gain over the early window of the late gain). ``settings``: seq_len,
    eval_batches, batch_size, n_train, ... as columns (seq_len defaults to T)."""
    from seqbench.studies.text_positions import windows

    settings = {"seq_len": T, "eval_batches": 32, "batch_size": 8} | settings
    settings["windows"] = settings["eval_batches"] * settings["batch_size"]
    samples = sorted(gains) if gains else [0, 1, 2]
    early = set(windows(T)[0]) if windows(T) else set()
    rows = []
    for order, level in levels.items():
        base = {"model": ORDERS[order], "family": "count", "order": order, "k": 0.1} | settings
        for s in samples:
            rows.append(base | {"sample": s, "scope": "windows", "val_loss": level + shift * s})
            for t in range(T) if gains else ():
                loss = level + (gains[s] if t in early else 0.0)
                rows.append(base | {"sample": s, "scope": "position", "position": t, "loss": loss})
        rows.append(base | {"scope": "stream", "val_loss": level - shift})
    df = pd.DataFrame(rows)
    return df.assign(study=study, status="complete", run=df.model + "-" + study, task="text")
