"""The test split (issue 22, item 3): selection and reporting on different data.

The split draws from its own seed and leaves every train, val and pool batch bit-identical
(checksums taken at commit 18a8620, before the split existed); what=test_set scores a trained
run on it without training anything; a study's verdict reads the test column, never the
validation accuracy the stopping rule selected on."""

import hashlib
from pathlib import Path

import pandas as pd
from conftest import TINY, compose_cfg, measured_test_set

from seqbench.data import TEST_SEQUENCES
from seqbench.data.synthetic import MQAR, Copy, LagRecall
from seqbench.measure.run import run_measurement
from seqbench.studies import recall
from seqbench.studies._common import with_test
from seqbench.train import train

# sha256[:16] of train and val batches 0 and 7 (batch 8) of each task, computed with the tree
# of commit 18a8620 (no test split): the split must not move a single token of them
BEFORE = {"lag_recall": "dcd6df4ea336f4a1", "mqar": "51055a2855eb858b", "copy": "6383221a825c4351"}


def _tasks():
    return {
        "lag_recall": LagRecall(seq_len=24, distance=16, seed=0),
        "mqar": MQAR(seq_len=32, num_kv_pairs=2, vocab_size=64, seed=1, n_train=300),
        "copy": Copy(seq_len=16, vocab_size=16, seed=2),
    }


def _digest(task) -> str:
    h = hashlib.sha256()
    for split in ("train", "val"):
        for i in (0, 7):
            for t in task.batch(split, i, 8):
                h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def test_train_and_val_batches_are_bit_identical_to_before_the_test_split():
    assert {name: _digest(task) for name, task in _tasks().items()} == BEFORE


def test_the_test_split_is_its_own_draw_of_at_least_1024_sequences():
    for name, task in _tasks().items():
        tokens, targets = task.test_examples(TEST_SEQUENCES)
        assert tokens.shape[0] == targets.shape[0] == TEST_SEQUENCES >= 1024, name
        seen = {tuple(r) for s in ("train", "val") for i in range(8)
                for r in task.batch(s, i, 128)[0].tolist()}  # fmt: skip
        shared = sum(tuple(r) in seen for r in tokens.tolist())
        # sequences of 16-32 random tokens: a repeat beyond chance would mean a shared seed
        assert shared <= 2, (name, shared)
        # the same sequences whatever reads them: chunked, not batch-size dependent
        again, _ = task.test_examples(300)
        assert (again == tokens[:300]).all()


def _tiny(tmp_path, *extra):
    return [*TINY, f"out_dir={tmp_path / 'runs'}", "model=lstm", "data=lag_recall",
            "data.seq_len=12", "data.distance=4", "train.steps=20", "study=recall",
            *extra]  # fmt: skip


def test_the_measurement_scores_a_trained_run_and_a_rerun_skips(tmp_path):
    trained = train(compose_cfg(_tiny(tmp_path)))
    assert trained["status"] == "complete"
    cfg = compose_cfg([*_tiny(tmp_path), "what=test_set"], config_name="measure")
    first = run_measurement(cfg)
    assert first["status"] == "complete", first
    (row,) = pd.read_csv(Path(first["run_dir"]) / "rows.csv").itertuples()
    assert row.train_run == Path(trained["run_dir"]).name and row.test_sequences == 1024
    assert row.test_scored == 1024 and row.test_acc == row.test_correct / 1024
    assert row.val_acc == trained["val_acc"]  # the selection figure rides along, apart
    assert run_measurement(cfg).get("skipped")  # complete: a rerun does nothing


def test_the_measurement_never_trains_a_missing_run(tmp_path):
    cfg = compose_cfg([*_tiny(tmp_path), "what=test_set"], config_name="measure")
    s = run_measurement(cfg)
    assert s["status"] == "failed" and "no complete training run" in s["error"]
    assert not list((tmp_path / "runs").glob("recall-lstm-*"))  # nothing was trained


def _recall_runs(val_of, test_of):
    """Synthetic recall run rows: attention reaches every d, the GRU only d=4, per val_of /
    test_of(model, d) -> accuracy (val: what the stopping rule read)."""
    rows = []
    for m, fam in (("transformer", "attention"), ("gru", "recurrent")):
        for d in (4, 16, 64):
            for s in (0, 1, 2):
                rows.append({
                    "run": f"{m}-{d}-{s}", "study": "recall", "status": "complete", "model": m,
                    "family": fam, "task": "lagrecall", "seed": s, "data.distance": d,
                    "train.steps": 400, "lr": 3e-3, "val_acc": val_of(m, d),
                    "test_acc": test_of(m, d) + 0.001 * s, "steps_to_criterion": 100,
                    "step": 100,
                })  # fmt: skip
    return pd.DataFrame(rows)


def test_the_verdict_reads_the_test_column_not_the_selection_set():
    # on the stopping set every cell looks solved (>= 0.9 by construction); on the test set
    # the GRU fails beyond d=4: the verdict must follow the test figures
    runs = _recall_runs(
        lambda m, d: 0.92, lambda m, d: 0.97 if m == "transformer" or d == 4 else 0.3
    )
    tables = {"runs": runs.drop(columns="test_acc"), "test_set": measured_test_set(runs)}
    (v,) = recall.verdicts(tables)
    assert v.verdict == "supported" and "test accuracy" in v.measured
    assert "1,024 test sequences the stopping rule never saw" in v.rule


def test_without_test_figures_the_verdict_is_inconclusive_and_says_why():
    runs = _recall_runs(lambda m, d: 0.92, lambda m, d: 0.97)
    (v,) = recall.verdicts({"runs": runs.drop(columns="test_acc")})
    assert v.verdict == "inconclusive" and v.measured.startswith("test set not measured")
    part = {"runs": runs.drop(columns="test_acc"), "test_set": measured_test_set(runs[:-1])}
    (v,) = recall.verdicts(part)
    assert v.verdict == "inconclusive" and "for 1 of 18 runs" in v.measured


def test_a_test_figure_of_another_model_state_is_not_used():
    runs = _recall_runs(lambda m, d: 0.92, lambda m, d: 0.97)
    tested = with_test(runs.drop(columns="test_acc").assign(step=50),
                       {"test_set": measured_test_set(runs)}, "recall")  # fmt: skip
    assert tested.test_acc.isna().all()  # scored at step 100, not the half budget's 50


def test_the_standard_library_corpus_has_a_test_split_of_other_files_outside_its_sha(
    monkeypatch,
):
    """Text: the default corpus's test split is other files of the same library. Its train
    and validation batches and its corpus_sha256 are those of the corpus without the split
    (the tree before it), so every earlier run stays this corpus's; the test files are
    recorded by their own sha256."""
    from seqbench.data import corpora, text

    def built(test_files):
        monkeypatch.setattr(corpora, "STDLIB_TEST_FILES", test_files)
        text._load_corpus.cache_clear()
        return text.Text(seq_len=32, seed=0)

    files = corpora.STDLIB_TEST_FILES
    before, task = built(()), built(files)
    text._load_corpus.cache_clear()
    assert task.has_test and not before.has_test
    assert not set(files) & set(corpora.STDLIB_FILES)
    assert _digest(task) == _digest(before) and task.itos == before.itos
    assert task.corpus["corpus_sha256"] == before.corpus["corpus_sha256"]
    assert task.changed_since(before.corpus) is None
    assert task.corpus["test_sha256"] != task.corpus["corpus_sha256"]
    assert len(task.streams["test"]) >= len(task.streams["val"])  # >= the validation tail
    tokens, targets = task.test_examples(TEST_SEQUENCES)  # [1024, 32] each
    assert tokens.shape == (TEST_SEQUENCES, 32) and (tokens[:, 1:] == targets[:, :-1]).all()
