"""Synthetic influence tables for this study's figure tests (tests/figure_tables.py merges
each study's ``tables(kit)`` over the shared synthetic tables; ``kit`` is that module).
Plausible shapes only: a recurrence's influence fades geometrically with d, attention's is
flat; a trained model carries a path to the value at the recall distance (40)."""

from itertools import product

from seqbench.studies._common import study_of

STUDY = study_of(__package__)
T, DISTANCE = 48, 40


def tables(kit) -> dict:
    rows = []
    for m, trained, seed, d in product(kit.MODELS, (False, True), kit.SEEDS, range(T)):
        family = kit.FAMILIES[m]
        fade = 1.0 if family == "attention" else (1 - 0.5 / kit.REACH[m] ** 0.5) ** d
        peak = 3.0 if trained and d == DISTANCE else 1.0
        acc = kit.skill(m, {"data.distance": DISTANCE}) if trained else None
        learned = trained and acc > 0.9
        rows.append(
            {"model": m, "family": family, "trained": trained, "seed": seed, "d": d, "T": T,
             "grad_norm": fade * peak * (1 + kit.jitter(m, seed, d)), "examples": 64,
             "distance": DISTANCE, "val_acc": acc,
             "criterion": "val_acc" if trained else None,
             "steps_to_criterion": 300 if learned else None, "lr": 3e-3 if trained else None,
             "run_key": f"{m}-{trained}-{seed}"}
        )  # fmt: skip
    return {"influence": kit.measured(STUDY, rows).assign(run=lambda t: t.pop("run_key"))}
