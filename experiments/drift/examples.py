"""Synthetic drift tables for this study's figure tests (tests/figure_tables.py merges each
study's ``tables(kit)`` over the shared synthetic tables; ``kit`` is that module):
free-running generation scored by the known source, KL and true log-likelihood at each
generated position k, teacher-forced beside greedy, sampled and the source's own second
continuation (the gap grows with k; greedy text visits contexts far from the source's)."""

from itertools import product

from seqbench.studies._common import study_of

STUDY = study_of(__package__)
DECODINGS = ("teacher", "greedy", "sampled", "source")
CONTEXT_TV = {"teacher": 0.0, "greedy": 0.5, "sampled": 0.1, "source": 0.08}


def tables(kit) -> dict:
    rows = []
    for m, seed, decoding, k in product(kit.MODELS, kit.SEEDS, DECODINGS, range(1, 17)):
        slope = {"greedy": 0.01, "sampled": 0.02}.get(decoding, 0.0)
        grow = slope * k * kit.SCALE[m]
        tv = CONTEXT_TV[decoding] + (decoding != "teacher") * kit.jitter(m, seed, decoding)
        rows.append(
            {"model": m, "family": kit.FAMILIES[m], "seed": seed, "decoding": decoding, "k": k,
             "kl": 0.1 + grow + kit.jitter(m, seed, decoding, k), "nll_true": 1.5 + grow,
             "entropy_true": 1.2, "entropy_rate": 1.2, "vocab_size": 16, "lr": 3e-3,
             "train_steps": kit.STEPS, "kl_reverse": 0.1 + grow, "nll_model": 1.4 + grow,
             "context_tv": tv, "train.budget": 1, "train.lr_step": 0, "n": 64,
             "prefix_len": 16, "position": 16 + k, "temperature": 1.0, "val_loss": 1.3,
             "train_run": f"{STUDY}-{m}-{seed}"}
        )  # fmt: skip
    table = kit.measured(STUDY, rows, task="source")
    return {"drift": table.assign(run=lambda t: t.model + "-" + t.seed.astype(str))}
