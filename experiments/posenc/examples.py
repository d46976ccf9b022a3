"""Synthetic order-check tables for this study's figure tests (tests/figure_tables.py merges
each study's ``tables(kit)`` over the shared synthetic tables, whose training runs already
hold posenc's cells; ``kit`` is that module). Without positions a bidirectional model is
permutation-equivariant (error ~0) and a causal one is not."""

from itertools import product

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
    return {"order": kit.measured(STUDY, rows, task="copy")}
