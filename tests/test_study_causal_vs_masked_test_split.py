"""C8 on the test split (issue 22 item 3): what=prefix_eval reads the test windows of the
replicate's data seed by default (what.split), refuses a corpus without a test split before any
work, and the verdict follows the test rows, never the validation rows that chose the lr."""

from pathlib import Path

import pandas as pd
import pytest

from seqbench.config import build_task
from seqbench.data import TEST_SEQUENCES
from seqbench.measure.objectives import prefix_loss, training_config
from seqbench.measure.run import run_measurement
from seqbench.report.plot import Figures
from seqbench.studies import causal_vs_masked as cvm
from seqbench.train import trained_model
from tests.bad_inputs import Bad, attempt
from tests.conftest import compose_cfg
from tests.test_study_causal_vs_masked import _ngram, _objectives

TRAIN = "def add(a, b):\n    return a + b\n" * 60
VALID = "class Point:\n    x = 0\n" * 20
TEST = "for i in range(10):\n    print(i * i)\n" * 20


def _corpus(folder: Path, test: str | None = TEST) -> Path:
    folder.mkdir(parents=True)
    (folder / "train.txt").write_text(TRAIN)
    (folder / "valid.txt").write_text(VALID)
    if test is not None:
        (folder / "test.txt").write_text(test)
    return folder


def _overrides(tmp_path, corpus, *extra):
    return ["what=prefix_eval", "+experiment=causal_vs_masked", f"data.path={corpus}",
            "data.seq_len=16", "train.steps=3", "train.batch_size=4", "train.eval_batches=1",
            "train.lr_control={train.steps:2,train.eval_every:2}", "what.eval_batches=1",
            "what.batch_size=64", "what.prefixes=[4,15]", f"out_dir={tmp_path / 'runs'}",
            *extra]  # fmt: skip


def _rows(summary) -> pd.DataFrame:
    assert summary["status"] == "complete", summary
    return pd.read_csv(Path(summary["run_dir"]) / "rows.csv")


def test_prefix_eval_reads_the_test_split_of_a_folder_corpus(tmp_path):
    corpus = _corpus(tmp_path / "corpus")
    cfg = compose_cfg(_overrides(tmp_path, corpus), config_name="measure")
    assert cfg.what.split == "test"  # the default: reported figures on the test split
    test = _rows(run_measurement(cfg))
    val = _rows(run_measurement(compose_cfg(_overrides(tmp_path, corpus, "what.split=val"),
                                            config_name="measure")))  # fmt: skip
    assert set(test.split) == {"test"} and set(val.split) == {"val"}
    assert set(test.train_run) == set(val.train_run)  # the same trained models, read twice
    assert (test.n_eval == TEST_SEQUENCES).all() and (val.n_eval == 64).all()
    causal = test[test.objective == "causal"].iloc[0]
    assert causal.own_n == TEST_SEQUENCES * 16  # what=test_set's and the count models' windows
    # the test split is other text: the figures differ from validation's
    assert not (test.prefix_loss.to_numpy() == val.prefix_loss.to_numpy()).any()
    assert not (test.own_loss.to_numpy() == val.own_loss.to_numpy()).any()
    # and they are the test windows of this data seed (task.test_examples), read directly
    tcfg = training_config(cfg, "causal")
    model, _ = trained_model(tcfg, "cpu")  # the complete run, not trained again
    task = build_task(tcfg.data)
    loss, _, n = prefix_loss(model, task, 4, 1, 64, "cpu", split="test")
    assert n == TEST_SEQUENCES and loss == pytest.approx(causal.prefix_loss, rel=1e-5)


def test_a_corpus_without_a_test_split_is_refused_before_any_work(tmp_path):
    corpus = _corpus(tmp_path / "corpus", test=None)
    args = _overrides(tmp_path, corpus)[:-1]  # the row gets its own out_dir
    for extra, says in (((), "no test split"), (("what.split=train",), "one of val, test")):
        scratch = tmp_path / f"scratch{len(extra)}"
        scratch.mkdir()
        outcome, said = attempt(Bad("measure", (*args, *extra), "what.split", says), scratch)
        assert outcome == "refused", said


# --- the verdict reads the test rows ---------------------------------------------------------
def test_the_verdict_follows_the_test_rows_where_validation_disagrees():
    # on validation the masked model looks better; on the test split the causal one is
    val = _objectives((3.0, 2.9), (2.4, 2.2), split="val")
    test = _objectives((2.4, 2.2), (3.0, 2.9))
    v, measured = cvm.verdicts_of({"objectives": pd.concat([val, test]), "ngram": _ngram()})
    assert v == "supported", measured
    assert "nats at 200 steps" in measured and "not measured" not in measured
    assert cvm.verdicts_of({"objectives": val, "ngram": _ngram()})[0] == "inconclusive"


def test_without_test_rows_the_verdict_is_inconclusive_and_names_the_job():
    val = _objectives((2.4, 2.2), (3.0, 2.9), split="val")
    v, measured = cvm.verdicts_of({"objectives": val, "ngram": _ngram()})
    assert v == "inconclusive"
    assert measured.startswith("test split not measured (job causal_vs_masked")
    assert "on the validation split, which chose the lr: next-word" in measured
    old = val.drop(columns="split")  # rows written before what.split: validation
    assert cvm.verdicts_of({"objectives": old, "ngram": _ngram()})[0] == "inconclusive"


def test_a_budget_measured_on_validation_only_is_named_not_dropped():
    val = _objectives((2.4, 2.2), (3.0, 2.9), split="val")  # 100 and 200 steps
    test = _objectives((2.4,), (3.0,))  # 100 steps only
    v, measured = cvm.verdicts_of({"objectives": pd.concat([val, test]), "ngram": _ngram()})
    assert v == "inconclusive"
    assert "test split not measured at 200 steps (causal), 200 steps (masked)" in measured


def test_the_control_reads_the_count_bigram_on_the_test_windows():
    rows = _objectives((2.4, 2.2), (3.0, 2.9))  # the masked model's own loss: 2.5
    counts = _ngram()
    on_test = counts.scope == "test"
    # a bigram of 2.4 on validation windows does not matter: the test windows' 2.6 does
    counts.loc[~on_test & (counts.order == 2), "val_loss"] = 2.4
    assert cvm.verdicts_of({"objectives": rows, "ngram": counts})[0] == "supported"
    counts.loc[on_test & (counts.order == 2), "test_loss"] = 2.4
    v, measured = cvm.verdicts_of({"objectives": rows, "ngram": counts})
    assert v == "inconclusive" and "none compared" in measured
    no_test = _ngram()[lambda d: d.scope != "test"]
    v, measured = cvm.verdicts_of({"objectives": rows, "ngram": no_test})
    assert v == "inconclusive" and "count baselines not measured" in measured


def test_the_section_says_which_split_it_draws(tmp_path):
    both = pd.concat([_objectives((2.4, 2.2), (3.0, 2.9), split="val"),
                      _objectives((2.0, 1.9), (2.6, 2.5))])  # fmt: skip
    md = cvm.section({"objectives": both, "ngram": _ngram()}, Figures(tmp_path, {}))
    assert "Read on the test split" in md and "| causal | 100 | 3 | 1e+11 | 2.03 [" in md
    val = _objectives((2.4, 2.2), (3.0, 2.9), split="val")
    md = cvm.section({"objectives": val, "ngram": _ngram()}, Figures(tmp_path, {}))
    assert "**Test split not measured** (job causal_vs_masked" in md
    assert "| causal | 100 | 3 | 1e+11 | 2.43 [" in md  # the validation figures, so labelled
