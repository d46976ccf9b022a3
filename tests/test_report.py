"""The report reads run directories, tabulates them and computes verdicts from the data."""

import pandas as pd

from seqbench.report import Claim
from seqbench.report.__main__ import CLAIMS, claims_table, write_report
from seqbench.report.sections import core
from seqbench.train import train


def test_report_tables_figures_and_claims_from_real_runs(make_cfg, tmp_path, monkeypatch):
    for model in ("gru", "transformer"):
        train(
            make_cfg(
                f"model={model}", "data=copy", "data.seq_len=12", "train.steps=10", "study=core"
            )
        )
    from seqbench.models.recurrent import Recurrent

    monkeypatch.setattr(Recurrent, "forward", lambda *a, **k: 1 / 0)
    train(make_cfg("model=lstm", "data=copy", "data.seq_len=12", "train.steps=10", "study=core"))
    out = tmp_path / "results"
    readme = write_report(tmp_path / "runs", out).read_text()
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 3 and sorted(runs.status) == ["complete", "complete", "failed"]
    curves = pd.read_csv(out / "curves.csv")
    assert set(curves.model) == {"gru", "transformer"} and curves.step.max() == 10
    for fig in ("core_loss_vs_step", "core_loss_vs_time", "core_final_accuracy"):
        assert (out / f"{fig}.png").stat().st_size > 1000
    for cid in CLAIMS:
        assert f"| {cid} |" in readme
    assert "1 of 3 training runs did not complete" in readme and "ZeroDivisionError" in readme
    assert "C1 |" in readme and "**not measured**" in readme  # no text runs: C1 unjudged


def _text_runs(losses, unigram=3.0):
    return {
        "runs": pd.DataFrame(
            {
                "study": "core",
                "status": "complete",
                "task": "text",
                "model": ["rnn", "lstm", "gru", "transformer"],
                "val_loss": losses,
                "unigram_xent": unigram,
            }
        )
    }


def test_c1_verdict_follows_the_data():
    assert core.claims(_text_runs([2.0, 2.1, 2.2, 1.9]))[0].verdict == "supported"
    assert core.claims(_text_runs([2.0, 2.9, 2.2, 1.9]))[0].verdict == "not supported"


def test_claims_table_marks_unmeasured_claims():
    table = claims_table([Claim("C3", "span", "x", "rule", "nuanced")])
    assert "| C3 |" in table and "**nuanced**" in table
    assert table.count("**not measured**") == len(CLAIMS) - 1
