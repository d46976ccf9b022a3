"""Synthetic kernel tables for this study's figure tests (tests/figure_tables.py merges each
study's ``tables(kit)`` over the shared synthetic tables; ``kit`` is that module). Off CUDA
the graph path is skipped with its reason, as the real measurement logs it."""

from itertools import product

from seqbench.studies._common import study_of

STUDY = study_of(__package__)


def tables(kit) -> dict:
    rows = []
    for m in kit.MODELS:
        for impl, path in product(kit.PATHS[kit.FAMILIES[m]], ("eager", "cuda_graph")):
            ops = 10.0 + 30 * (impl in ("unrolled", "sequential")) + len(m)
            ok = path == "eager"
            rows.append(
                {"model": m, "family": kit.FAMILIES[m], "impl": impl, "path": path,
                 "context": 64, "batch_size": 1, "steps": 16,
                 "ops_per_step": ops if ok else None, "kernels_per_step": None,
                 "launches_per_step": None, "s_per_step": ops * 3e-6 if ok else None,
                 "iqr_s_per_step": ops * 3e-7 if ok else None, "us_per_op": 3.0,
                 "note": "" if ok else "skipped: CUDA graphs need a CUDA device"}
            )  # fmt: skip
    return {"kernels": kit.measured(STUDY, rows)}
