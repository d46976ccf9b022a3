"""Synthetic tables for this study's figure tests (tests/figure_tables.py merges each study's
``tables(kit)`` over the shared synthetic tables, whose training runs already hold posenc's
Transformer cells; ``kit`` is that module): the bag-of-words floor's copy runs, and the order
rows. Without positions a bidirectional model is permutation-equivariant (error ~0) and a
causal one is not; the exact order-blind floor on copy is ~0.25, the two-bag reference
~0.32."""

from itertools import product

import pandas as pd

from seqbench.studies._common import study_of

STUDY = study_of(__package__)


def tables(kit) -> dict:
    rows = []
    for pos, causal, state in product(kit.POS, (False, True), ("init", "trained")):
        if state == "trained" and not causal:
            continue  # only the causal models are trained
        error = (0.5 if causal else 1e-7) if pos == "none" else 0.3
        rows.append(
            {"model": "transformer", "family": "attention", "pos": pos, "causal": str(causal),
             "state": state, "seq_len": 32, "equivariance_error": error,
             "probe_r2": 0.1 if pos == "none" else 0.9,
             "val_acc": 0.5 if state == "trained" else None}
        )  # fmt: skip
    order = kit.measured(STUDY, rows, task="copy")
    floors = [
        {"model": "transformer", "pos": "none", "causal": "True", "state": "floor",
         "predictor": name, "test_acc": acc + kit.jitter(name, seed, scale=0.005), "seed": seed,
         "test_sequences": 1024, "seq_len": 32}
        for name, acc in (("bag of the prefix (exact)", 0.255),
                          ("two bags (which side of the delimiter)", 0.325))
        for seed in kit.SEEDS
    ]  # fmt: skip
    floor = kit.measured(STUDY, floors, task="copy").assign(
        run=lambda d: "order-" + d.seed.astype(str)
    )
    bow = kit.training_tables([(STUDY, "copy", ["bow"], {})])["runs"]
    return {"order": pd.concat([order, floor], ignore_index=True), "runs": bow}
