"""Synthetic decode tables for this study's figure tests (tests/figure_tables.py merges each
study's ``tables(kit)`` over the shared synthetic tables; ``kit`` is that module). Plausible
shapes only: recomputing the prefix slows with the context, a KV cache grows with it, a
recurrent state does not."""

from itertools import product

from seqbench.studies._common import study_of

STUDY = study_of(__package__)
MODES = ("state", "recompute", "teacher_forced")


def tables(kit) -> dict:
    rows = []
    for m, mode, c in product(kit.MODELS, MODES, (16, 64, 256)):
        family = kit.FAMILIES[m]
        att = family == "attention"
        tps = {"state": 300.0 if att else 500.0, "recompute": 3e4 / c, "teacher_forced": 5e3}[mode]
        tps /= kit.SCALE[m] ** (0.5 if mode == "teacher_forced" else 1)  # speed-ups differ too
        same = {"rnn": 1, "gru": 1, "lstm": 2}.get(m, 1.5)  # rnn and gru: one state vector
        state = (128 * c if att else 512 * same) if mode == "state" else None
        rows.append(
            {"model": m, "family": family, "impl": kit.PATHS[family][0], "mode": mode,
             "context": c, "batch_size": 1, "tokens_per_s": tps, "s_per_token": 1 / tps,
             "iqr_s_per_token": 0.1 / tps, "state_bytes": state}
        )  # fmt: skip
    return {"decode": kit.measured(STUDY, rows)}
