"""Synthetic drift tables for this study's figure tests (tests/figure_tables.py merges each
study's ``tables(kit)`` over the shared synthetic tables; ``kit`` is that module):
free-running generation scored by the known source, KL and true log-likelihood at each
generated position k, teacher-forced beside greedy and sampled (the gap grows with k)."""

from itertools import product

from seqbench.studies._common import study_of

STUDY = study_of(__package__)
DECODINGS = ("teacher", "greedy", "sampled")


def tables(kit) -> dict:
    rows = []
    for m, seed, decoding, k in product(kit.MODELS, kit.SEEDS, DECODINGS, range(1, 17)):
        slope = 0.0 if decoding == "teacher" else 0.02 / (2 if decoding == "greedy" else 1)
        grow = slope * k * kit.SCALE[m]
        rows.append(
            {"model": m, "family": kit.FAMILIES[m], "seed": seed, "decoding": decoding, "k": k,
             "kl": 0.1 + grow + kit.jitter(m, seed, decoding, k), "nll_true": 1.5 + grow,
             "entropy_true": 1.2, "entropy_rate": 1.2, "vocab_size": 16, "lr": 3e-3,
             "train_steps": kit.STEPS, "kl_reverse": 0.1 + grow, "nll_model": 1.4 + grow,
             "n": 64, "prefix_len": 16, "position": 16 + k, "temperature": 1.0,
             "val_loss": 1.3, "train_run": f"{STUDY}-{m}-{seed}"}
        )  # fmt: skip
    table = kit.measured(STUDY, rows, task="source")
    return {"drift": table.assign(run=lambda t: t.model + "-" + t.seed.astype(str))}
