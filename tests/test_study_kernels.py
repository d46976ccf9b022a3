"""Study kernels (no claim of its own): the section quotes the measured counts and the
reasons rows were skipped, draws its figure, and decides nothing."""

import matplotlib
import numpy as np
import pandas as pd

from seqbench.report.plot import Figures
from seqbench.studies import kernels as study
from seqbench.studies import study_jobs

matplotlib.use("Agg")

FAMILIES = {"lstm": "recurrent", "gru": "recurrent", "transformer": "attention", "mingru": "scan"}
NO_CUDA = "skipped: cuda_graph=True is not allowed on device 'cpu': CUDA graphs need a CUDA device"


def _kernels(models=(("lstm", "fused", 9.0), ("lstm", "unrolled", 34.0), ("gru", "fused", 39.0),
                     ("mingru", "scan", 60.0), ("transformer", "-", 40.0))):  # fmt: skip
    """(model, impl, ops per token): an eager row measured on the CPU, a cuda_graph row
    skipped with its reason."""
    rows = []
    for m, impl, ops in models:
        base = {
            "run": f"{m}-{impl}", "study": "kernels", "status": "complete", "model": m,
            "family": FAMILIES[m], "impl": impl, "context": 64, "batch_size": 1, "steps": 16,
            "threads": 1, "device": "cpu", "dtype": "float32", "d_model": 64, "n_layers": 2,
        }  # fmt: skip
        s = ops * 3e-6  # three microseconds per op: launch-bound
        rows.append(base | {"path": "eager", "ops_per_step": ops, "kernels_per_step": np.nan,
                            "launches_per_step": np.nan, "s_per_step": s,
                            "iqr_s_per_step": s / 10, "us_per_op": 3.0, "note": ""})  # fmt: skip
        rows.append(base | {"path": "cuda_graph", "ops_per_step": np.nan, "note": NO_CUDA})
    return {"kernels": pd.DataFrame(rows)}


def test_section_quotes_the_measured_counts_and_draws_the_figure(tmp_path):
    md = study.section(_kernels(), Figures(tmp_path, FAMILIES))
    assert "| lstm | fused | eager |" in md and "| 9 |" in md
    assert "the fastest step is lstm's (27 us, 9 ops)" in md
    assert "the longest chain mingru's (60 ops, 180 us)" in md
    assert "Not measured: 5 rows (cuda_graph): " + NO_CUDA in md  # > 3 models: by reason
    assert "kernels_per_step" not in md.split("\n\n")[2]  # an all-empty column is dropped
    assert (tmp_path / "kernels.png").exists() and "(kernels.png)" in md


def test_few_skipped_rows_are_named_one_by_one(tmp_path):
    md = study.section(_kernels((("lstm", "fused", 9.0),)), Figures(tmp_path, FAMILIES))
    assert f"Not measured: lstm cuda_graph: {NO_CUDA}." in md


def test_no_measured_row(tmp_path):
    figs = Figures(tmp_path, FAMILIES)
    assert study.section({}, figs).startswith("_No completed kernels runs")
    skipped = _kernels()["kernels"].query("path == 'cuda_graph'")
    assert study.section({"kernels": skipped}, figs) == "_No kernels row was measured._"
    other = _kernels()["kernels"].assign(study="adhoc")
    assert study.section({"kernels": other}, figs).startswith("_No completed")


def test_decides_no_claim():
    assert study.DECIDES == () and study.verdicts(_kernels()) == []


def test_bench_jobs_cover_every_path():
    for profile, jobs in study_jobs(study.__name__).items():
        assert [j.name for j in jobs] == ["kernels", "kernels_scan"], profile
        assert all(j.command()[1:3] == ["-m", "+experiment=kernels"] for j in jobs)
        assert "what.impls=[fused,unrolled]" in jobs[0].args
        assert "what.impls=[scan,sequential]" in jobs[1].args
