"""Synthetic span tables for this study's figure tests (tests/figure_tables.py merges each
study's ``tables(kit)`` over the shared synthetic tables; ``kit`` is that module: the models,
their families, paths and scales, ``jitter`` and ``measured``). Plausible shapes only: the
recurrent chain grows with T + L, attention's with L alone, the scan's with log T."""

import math
from itertools import product

from seqbench.studies._common import study_of

STUDY = study_of(__package__)


def row(model, family, impl, n_layers, T, span, pass_="forward") -> dict:
    """One traced (model, path, depth, pass, T) as seqbench.measure.span logs it."""
    return {
        "model": model,
        "family": family,
        "impl": impl,
        "n_layers": n_layers,
        "pass": pass_,
        "T": T,
        "span_ops": span,
        "work_ops": 100 * T * n_layers,
        "work_flops": 1e3 * T * n_layers,
        "parallelism": 100 * T * n_layers / span,
        "attention_flops": 2 * T * T * n_layers if family == "attention" else 0,
    }


def tables(kit) -> dict:
    rows = []
    passes = ("forward", "forward_backward")
    for m, L, p, T in product(kit.MODELS, (1, 2, 4), passes, (16, 64, 256)):
        family = kit.FAMILIES[m]
        for impl in kit.TRACED[family]:
            span = {"-": 10 * L + 9, "scan": 6 * math.log2(T) + 3 * L}.get(impl, 7 * (T + L))
            span *= kit.SCALE[m] * (2.1 if p == "forward_backward" else 1)  # a 2nd chain back
            rows.append(row(m, family, impl, L, T, span, p))
    return {"span": kit.measured(STUDY, rows)}
