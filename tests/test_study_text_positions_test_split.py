"""C5 loss by position read on the test split (issue 22 items 3 and 4): what=test_set writes
each text run's loss by position on its test windows; the late gain, the count trigram's gain
and the verdict read those, and a run without them makes the verdict inconclusive, naming
the job (never a fallback to the validation curves that chose the lr)."""

import json
from pathlib import Path

import pandas as pd
import pytest

from seqbench.data import TEST_SEQUENCES
from seqbench.measure.run import run_measurement
from seqbench.report import baselines
from seqbench.report.plot import Figures
from seqbench.studies import text_positions as tp
from seqbench.train import train
from tests.conftest import FAMILY, TINY, compose_cfg
from tests.test_study_text_positions import _tables

SUPPORTED = {"transformer": 1.0, "lstm": 0.2}  # slopes: the Transformer keeps gaining
AGAINST = {"transformer": 0.1, "lstm": 0.5}


def test_the_verdict_follows_the_test_curves_where_validation_disagrees():
    v, measured, _ = tp.decide(_tables(AGAINST, test=SUPPORTED))
    assert v == "supported" and measured.startswith("late gain on the test split (T=256)")
    v, _, _ = tp.decide(_tables(SUPPORTED, test=AGAINST))
    assert v == "not supported"


@pytest.mark.parametrize("study,job", [("core", "core_text_test"),
                                       ("text_positions", "text_positions_test")])  # fmt: skip
def test_a_run_without_its_test_figures_makes_it_inconclusive_naming_the_job(study, job):
    tables = _tables(SUPPORTED, study=study)
    tables["test_set"] = tables["test_set"].iloc[1:]  # one run never scored on the test split
    v, measured, group = tp.decide(tables)
    assert v == "inconclusive" and group == f"{study}, T=256"
    assert measured.startswith(f"test set not measured for 1 of 6 runs (job {job}); ")
    assert "late gain on the validation split (T=256)" in measured
    assert tp.decide(_tables(SUPPORTED, test=False))[0] == "inconclusive"


def test_the_trigram_gain_is_read_on_the_same_test_windows():
    # on the test windows the trigram "gains" as much as the Transformer: no late gain
    same = {0: 0.45, 1: 0.46, 2: 0.44}
    v, measured, _ = tp.decide(_tables(SUPPORTED, count=same, test_count=same))
    assert v == "inconclusive" and "no late gain beyond the trigram's" in measured
    # on validation it gains nothing: the gain is still the test windows', and the gap
    # between the splits is sampling noise the difference must clear
    v, measured, _ = tp.decide(_tables(SUPPORTED, test_count=same))
    assert v == "inconclusive" and "count trigram +0.450, noise +-0.460 over 6" in measured
    # a data seed of the runs without the trigram's test rows: the baseline is not measured
    v, measured, _ = tp.decide(_tables(SUPPORTED, test_count={0: 0.0, 1: 0.01}))
    assert v == "inconclusive" and baselines.NOT_MEASURED in measured


def test_the_section_draws_the_split_it_reads(tmp_path):
    md = tp.section(_tables(SUPPORTED), Figures(tmp_path, FAMILY))
    assert "Read on the test split" in md and "Test loss against the position" in md
    md = tp.section(_tables(SUPPORTED, test=False), Figures(tmp_path, FAMILY))
    assert "**Test set not measured** for every run (job core_text_test)" in md
    assert "Validation loss against the position" in md


def test_test_set_writes_the_loss_by_position_of_a_text_run(tmp_path):
    """A real text run on a folder corpus with test.txt: what=test_set's row carries the
    mean loss at each of the T positions over the test windows, which averages to test_loss;
    a task that scores only some positions (lag_recall) writes none."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, text in (("train", "def f(x):\n    return x\n" * 60),
                       ("valid", "class A:\n    pass\n" * 20),
                       ("test", "for i in range(9):\n    print(i)\n" * 20)):  # fmt: skip
        (corpus / f"{name}.txt").write_text(text)
    base = [*TINY, f"out_dir={tmp_path / 'runs'}", "model=lstm", "data=text",
            f"data.path={corpus}", "data.tokenizer=char", "data.seq_len=16", "train.steps=5",
            "train.lr_grid=null", "study=core"]  # fmt: skip
    assert train(compose_cfg(base))["status"] == "complete"
    row = _measured(base)
    per_position = json.loads(row.test_position_loss)
    assert len(per_position) == 16 and row.test_sequences == TEST_SEQUENCES
    assert sum(per_position) / 16 == pytest.approx(row.test_loss, rel=1e-4)
    recall = [*TINY, f"out_dir={tmp_path / 'runs'}", "model=lstm", "data=lag_recall",
              "data.seq_len=12", "data.distance=4", "train.steps=5", "study=recall"]  # fmt: skip
    assert train(compose_cfg(recall))["status"] == "complete"
    assert pd.isna(_measured(recall).test_position_loss)


def _measured(overrides):
    summary = run_measurement(compose_cfg([*overrides, "what=test_set"], config_name="measure"))
    assert summary["status"] == "complete", summary
    (row,) = pd.read_csv(Path(summary["run_dir"]) / "rows.csv").itertuples()
    return row
