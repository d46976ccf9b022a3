"""Synthetic perf and MFU tables for this study's figure tests (tests/figure_tables.py merges
each study's ``tables(kit)`` over the shared synthetic tables; ``kit`` is that module)."""

from itertools import product

from seqbench.studies._common import study_of

STUDY = study_of(__package__)
RATIOS = (("lstm_step", 0.99), ("transformer_step", 0.93), ("train_loop", 0.97))


def tables(kit) -> dict:
    perf = [
        {"model": "-", "family": None, "comparison": c, "ratio_median": r, "ratio_q25": r - 0.01,
         "ratio_q75": r + 0.01, "ratio_iqr": 0.02, "seq_len": 64, "batch_size": 32,
         "steps_per_block": 1, "repeats": 101, "seqbench_tokens_per_s": 1e5,
         "bare_tokens_per_s": 1e5 / r, "overhead_us_per_step": 12.5, "loss_diff": 0.0}
        for c, r in RATIOS
    ]  # fmt: skip
    mfu = [
        {"model": m, "family": f, "impl": kit.PATHS[f][0], "seq_len": T,
         "mfu_measured": 0.05 + 0.1 * (f == "attention") + T / 1e4,
         "batch_size": 2048 // T, "flops_counted_on": "unrolled", "flops_per_step": 2e9,
         "step_s_median": 0.01, "step_s_iqr": 0.001, "flops_per_s": 2e11,
         "peak_measured_flops_per_s": 1e12, "peak_measured_how": "fp32 matmul n=1024",
         "mfu_nominal": float("nan")}
        for m, T in product(kit.MODELS, (64, 256))
        for f in [kit.FAMILIES[m]]
    ]  # fmt: skip
    return {"perf": kit.measured(STUDY, perf), "mfu": kit.measured(STUDY, mfu)}
