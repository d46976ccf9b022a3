"""Synthetic timing tables for this study's figure tests (tests/figure_tables.py merges each
study's ``tables(kit)`` over the shared synthetic tables; ``kit`` is that module). Plausible
shapes only: time linear in the tokens of a batch, the per-step loops slower than the fused
and scan paths."""

from itertools import product

from seqbench.studies._common import study_of

STUDY = study_of(__package__)
COST = {"-": 1.0, "fused": 0.8, "scan": 1.2, "unrolled": 5.0, "sequential": 4.0}  # per token


def tables(kit) -> dict:
    rows = []
    modes, steps = ("fixed_batch", "fixed_tokens"), ("forward", "train_step")
    for m, mode, step, T in product(kit.MODELS, modes, steps, (32, 128, 512, 2048)):
        for impl in kit.PATHS[kit.FAMILIES[m]]:
            B = 8 if mode == "fixed_batch" else max(1, 4096 // T)
            s = COST[impl] * kit.SCALE[m] * 1e-6 * B * T * (1 + kit.jitter(m, impl, mode, step, T))
            rows.append(
                {"model": m, "family": kit.FAMILIES[m], "impl": impl, "mode": mode, "step": step,
                 "T": T, "batch_size": B, "tokens": B * T, "median_s": s, "iqr_s": 0.1 * s}
            )  # fmt: skip
    return {"timing": kit.measured(STUDY, rows)}
