"""Synthetic influence tables for this study's figure tests (tests/figure_tables.py merges
each study's ``tables(kit)`` over the shared synthetic tables; ``kit`` is that module).
Plausible shapes only: a recurrence's influence fades geometrically with d, attention's is
flat; a model trained at a recall distance D that solved it (kit.skill) carries a path to
the value at D, one that did not keeps its fading curve. The training runs are this study's
own (``runs``), so the influence rows name them (``train_run``) and the shared test_set
table scores them."""

import pandas as pd

from seqbench.studies._common import study_of

STUDY = study_of(__package__)
T, DISTANCES = 64, (8, 24, 48)


def tables(kit) -> dict:
    cells = {"data.distance": list(DISTANCES), "data.seq_len": [T]}
    train = kit.training_tables([(STUDY, "lagrecall", kit.MODELS, cells)])["runs"]
    rows = []
    for run in train.to_dict("records"):
        m, seed, D = run["model"], run["seed"], run["data.distance"]
        family, learned = kit.FAMILIES[m], pd.notna(run["steps_to_criterion"])
        for trained, d in ((s, d) for s in (False, True) for d in range(T)):
            fade = 1.0 if family == "attention" else (1 - 0.5 / kit.REACH[m] ** 0.5) ** d
            peak = 3.0 / fade if trained and learned and d == D else 1.0
            rows.append(
                {"model": m, "family": family, "trained": trained, "seed": seed, "d": d,
                 "T": T, "grad_norm": fade * peak * (1 + kit.jitter(m, seed, d, D)),
                 "examples": 64, "distance": D, "split": "test",
                 "val_acc": run["val_acc"] if trained else None,
                 "criterion": "val_acc" if trained else None,
                 "steps_to_criterion": run["steps_to_criterion"] if trained and learned else None,
                 "lr": run["lr"] if trained else None,
                 "train_run": run["run"] if trained else None,
                 "run_key": f"{m}-{seed}-{D}"}
            )  # fmt: skip
    influence = kit.measured(STUDY, rows).assign(run=lambda t: t.pop("run_key"))
    return {"influence": influence, "runs": train}
