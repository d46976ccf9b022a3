"""The smoke bench end to end (slow): make bench PROFILE=smoke into a temp dir."""

import subprocess
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_smoke_bench_writes_a_report_with_one_row_per_run(tmp_path):
    runs, results = tmp_path / "runs", tmp_path / "results"
    proc = subprocess.run(
        ["make", "bench", "PROFILE=smoke", f"RUNS={runs}", f"RESULTS={results}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    readme = (results / "README.md").read_text()
    assert readme.startswith("# seqbench results") and "| C1 |" in readme
    training = [p for p in runs.glob("*/run.json") if '"kind": "measure"' not in p.read_text()]
    table = pd.read_csv(results / "runs.csv")
    assert len(table) == len(training) > 0
    assert (results / "core_loss_vs_step.png").exists()
