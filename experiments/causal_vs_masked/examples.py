"""Synthetic prefix-evaluation tables for this study's figure tests (tests/figure_tables.py
merges each study's ``tables(kit)`` over the shared synthetic tables; ``kit`` is that
module). Plausible shapes only: the loss falls with steps and prefix length, the masked
objective scores fewer targets per pass and ends higher."""

from itertools import product

from seqbench.studies._common import study_of

STUDY = study_of(__package__)


def tables(kit) -> dict:
    rows = []
    for obj, steps, p in product(("causal", "masked"), (250, 500, 1000, 2000), (4, 16, 63)):
        base = 2.0 if obj == "causal" else 2.4
        rows.append(
            {"model": "transformer", "family": "attention", "objective": obj, "steps": steps,
             "prefix_len": p, "prefix_loss": base + 200 / steps + 0.5 / p, "prefix_acc": 0.3,
             "train_flops": 4e8 * steps, "targets_per_pass": 1024 if obj == "causal" else 154,
             "tokens_per_pass": 1024, "val_loss": base + 200 / steps}
        )  # fmt: skip
    return {"objectives": kit.measured(STUDY, rows, task="text")}
