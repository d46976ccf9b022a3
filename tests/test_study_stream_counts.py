"""The count levels the stream study draws beside its test-split scores (what=ngram's
``scope=test_stream`` rows, read by baselines.levels): on a corpus folder with test.txt, each
order's loss over the whole test stream read as one sequence, equal to the count bigram read
as a next-token model by the harness's own whole-stream evaluation; none without a test
split."""

import pandas as pd
import pytest
import torch
from conftest import compose_cfg

from seqbench.config import build_task
from seqbench.evaluate import stream_loss
from seqbench.measure import ngram
from seqbench.report import baselines

K = 0.1
WORDS = "alpha beta gamma delta eps zeta".split()


def _write(path, n, shift):
    path.write_text(" ".join(WORDS[(i * i + shift * i) % (2 + i % 5)] for i in range(n)))


class CountBigram(torch.nn.Module):
    """logits = log p_2(. | x_t) of the count bigram: a next-token model without state."""

    def __init__(self, counts: ngram.Counts):
        super().__init__()
        every = torch.arange(counts.V)
        tokens = every.repeat_interleave(counts.V)[:, None]  # [V V, 1]: context a
        targets = every.repeat(counts.V)[:, None]  # [V V, 1]: next token w
        logp = -ngram.loss(counts, 2, K, tokens, targets)  # [V V, 1]
        self.table = logp.view(counts.V, counts.V).float()  # [V, V]: log p(w | a)

    def forward(self, tokens, state=None):
        return self.table[tokens], state  # [B, T, V]


def _measured(tmp_path, corpus: str):
    cfg = compose_cfg(["what=ngram", "data=text", "model=bow", f"data.path={corpus}",
                       "data.tokenizer=word", "data.seq_len=8", "train.eval_batches=2",
                       "train.batch_size=4", "what.samples=0", "what.test_seeds=[0]",
                       f"what.k={K}", f"out_dir={tmp_path / 'runs'}"],
                      config_name="measure")  # fmt: skip
    task, rows = build_task(cfg.data), []
    ngram.measure(cfg, task, rows.append)
    return task, pd.DataFrame(rows)


def test_the_test_stream_rows_score_the_whole_test_stream(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name, n, shift in (("train", 800, 0), ("valid", 300, 1), ("test", 400, 2)):
        _write(folder / f"{name}.txt", n, shift)
    task, rows = _measured(tmp_path, str(folder))
    test_stream = rows[rows.scope == "test_stream"].set_index("order")
    assert sorted(test_stream.index) == [1, 2, 3] and test_stream.val_loss.isna().all()
    ids = task.streams["test"]
    assert (test_stream["count"] == len(ids) - 1).all()
    counts = ngram.Counts(ngram.training_sequences(task), task.vocab_size, 2)
    # one column, windows of 8, no state: a bigram needs only the token before each target
    harness, _ = stream_loss(CountBigram(counts), ids, 1, 8, "cpu", carry=False)
    assert test_stream.test_loss[2] == pytest.approx(harness, rel=1e-6)
    val = rows[rows.scope == "stream"].set_index("order").val_loss
    assert test_stream.test_loss[2] != pytest.approx(val[2], rel=1e-6)  # another stream
    levels = baselines.levels(rows.assign(study="stream"), scope="test_stream")
    assert levels == pytest.approx(test_stream.test_loss.to_dict())


def test_a_corpus_without_a_test_split_has_no_test_stream_rows(tmp_path):
    _write(tmp_path / "one.txt", 1200, 0)
    _, rows = _measured(tmp_path, str(tmp_path / "one.txt"))
    assert "test_stream" not in set(rows.scope) and "stream" in set(rows.scope)
