"""what=ngram: count n-gram baselines equal a hand computation, score the harness's own held-out
windows, and run as a durable measurement (complete rows, a rerun skips)."""

import csv
import json
import math
import random
import subprocess
import sys

import pytest
import torch

from seqbench.data.text import Text
from seqbench.evaluate import held_out
from seqbench.measure import ngram

# the ten-word corpus: the cat sat on the mat the cat ate dog
THE, CAT, SAT, ON, MAT, ATE, DOG = range(7)
CORPUS = torch.tensor([THE, CAT, SAT, ON, THE, MAT, THE, CAT, ATE, DOG])
V, K = 7, 0.1


def test_losses_equal_a_hand_computation_on_a_ten_word_corpus():
    """Held-out window 'the cat sat dog the': targets cat, sat, dog, the after contexts
    the | the cat | cat sat | sat dog. Counts: the x3 (followed 3 times: cat, mat, cat),
    cat x2 (sat, ate), sat -> on, dog never followed; trigrams 'the cat' x2 (sat, ate),
    'cat sat' -> on, 'sat dog' never seen."""
    counts = ngram.Counts([CORPUS], V, 3)
    tokens, targets = torch.tensor([[THE, CAT, SAT, DOG]]), torch.tensor([[CAT, SAT, DOG, THE]])
    uni = {w: (c + K) / (10 + K * V) for w, c in {CAT: 2, SAT: 1, DOG: 1, THE: 3}.items()}
    unigram = [uni[CAT], uni[SAT], uni[DOG], uni[THE]]
    bigram = [
        (2 + K) / (3 + K * V),  # the -> cat: 2 of the 3 times 'the' is followed
        (1 + K) / (2 + K * V),  # cat -> sat
        (0 + K) / (1 + K * V),  # sat -> dog: seen context, unseen pair
        uni[THE],  # 'dog' is never followed in training: back off to the unigram
    ]
    trigram = [
        bigram[0],  # t = 0: one token of context, the trigram backs off to the bigram
        (1 + K) / (2 + K * V),  # the cat -> sat
        (0 + K) / (1 + K * V),  # cat sat -> dog
        uni[THE],  # 'sat dog' unseen -> bigram 'dog' unseen -> unigram
    ]
    for order, p in ((1, unigram), (2, bigram), (3, trigram)):
        got = ngram.loss(counts, order, K, tokens, targets)[0].tolist()
        assert got == pytest.approx([-math.log(x) for x in p], rel=1e-12), order


def test_each_order_is_a_distribution_over_the_vocabulary():
    counts = ngram.Counts([CORPUS], V, 3)
    for context in ([THE, CAT], [SAT, DOG], [MAT, THE]):
        tokens = torch.tensor([context] * V)  # [V, 2]: every next token after this context
        targets = torch.stack([torch.zeros(V, dtype=torch.long), torch.arange(V)], 1)
        for order in (1, 2, 3):
            p = ngram.loss(counts, order, K, tokens, targets)[:, 1].neg().exp()
            assert float(p.sum()) == pytest.approx(1.0)


def _corpus(tmp_path, words=600):
    rng = random.Random(0)
    vocab = "alpha beta gamma delta eps zeta eta theta".split()
    text = " ".join(rng.choice(vocab[: 2 + i % 6]) for i in range(words))
    path = tmp_path / "corpus.txt"
    path.write_text(text)
    return path


class CountBigram(torch.nn.Module):
    """The count bigram as a next-token model: logits = log p_2(. | x_t). Scored by the
    harness's own evaluate.held_out, it must give the loss the measurement gives."""

    def __init__(self, counts):
        super().__init__()
        every = torch.arange(V_TEXT[0])
        tokens = every.repeat_interleave(len(every))[:, None]  # [V V, 1]: context a
        targets = every.repeat(len(every))[:, None]  # [V V, 1]: next token w
        logp = -ngram.loss(counts, 2, K, tokens, targets)  # [V V, 1]
        self.table = logp.view(len(every), len(every)).float()  # [V, V]: log p(w | a)

    def forward(self, tokens, state=None):
        return self.table[tokens], state  # [B, T, V]


V_TEXT = [0]


def test_the_windows_scored_are_the_harness_own(tmp_path):
    task = Text(seq_len=8, tokenizer="word", path=str(_corpus(tmp_path)))
    V_TEXT[0] = task.vocab_size
    counts = ngram.Counts(ngram.training_sequences(task), task.vocab_size, 2)
    metrics, _ = held_out(CountBigram(counts), task, 3, 4, "cpu")
    mine, per_position, n = ngram.scored(counts, 2, K, task, 0, 3, 4)
    assert mine == pytest.approx(metrics["val_loss"], rel=1e-6)
    assert n == [12] * 8 and len(per_position) == 8  # 3 batches of 4 windows at each position
    other, _, _ = ngram.scored(counts, 2, K, task, 1, 3, 4)
    assert other != pytest.approx(mine, rel=1e-9)  # another held-out sample: other windows


def test_the_test_rows_score_the_windows_what_test_set_scores_each_data_seed_on(tmp_path):
    """A folder corpus with test.txt: scope=test rows of data seed s are the count bigram
    scored, by the harness's own test_set.score, on the test windows of data.seed = s."""
    from types import SimpleNamespace

    from seqbench.data import TEST_SEQUENCES
    from seqbench.measure.test_set import score

    folder = tmp_path / "folder"
    folder.mkdir()
    for split, words in (("train", 600), ("valid", 300), ("test", 300)):
        (folder / f"{split}.txt").write_text(_corpus(tmp_path, words).read_text())
    task = Text(seq_len=8, tokenizer="word", path=str(folder), seed=0)
    V_TEXT[0] = task.vocab_size
    counts = ngram.Counts(ngram.training_sequences(task), task.vocab_size, 3)
    rows = []
    w = SimpleNamespace(orders=[1, 2, 3], k=K, test_seeds=[0, 1])
    for seed in w.test_seeds:
        ngram._test_rows(w, task, seed, counts, {}, rows.append)
    test = {(r["order"], r["sample"]): r["test_loss"] for r in rows if r["scope"] == "test"}
    for seed in (0, 1):
        tokens, targets = Text(seq_len=8, tokenizer="word", path=str(folder),
                               seed=seed).test_examples(TEST_SEQUENCES)  # fmt: skip
        total, _, scored, _ = score(CountBigram(counts), tokens, targets, 256, "cpu")
        assert test[(2, seed)] == pytest.approx(total / scored, rel=1e-6)
    assert test[(2, 0)] != pytest.approx(test[(2, 1)], rel=1e-9)  # each seed its own windows
    per = [r for r in rows if r["scope"] == "test_position" and (r["order"], r["sample"]) == (2, 0)]
    assert len(per) == 8 and sum(r["loss"] for r in per) / 8 == pytest.approx(test[(2, 0)])


def test_a_pool_is_what_is_counted(tmp_path):
    task = Text(seq_len=8, tokenizer="word", path=str(_corpus(tmp_path)), n_train=5)
    seqs = ngram.training_sequences(task)
    assert len(seqs) == 5 and all(len(s) == 9 for s in seqs)  # seq_len + 1 tokens each
    x, y = task._pool_example(3)
    assert torch.equal(seqs[3][:-1], x) and torch.equal(seqs[3][1:], y)


def _measure(tmp_path, *extra):
    cmd = [sys.executable, "-m", "seqbench.measure", "what=ngram", "data=text", "model=bow",
           f"data.path={_corpus(tmp_path)}", "data.tokenizer=word", "data.seq_len=8",
           "train.eval_batches=2", "train.batch_size=4", "what.samples=2", "device=cpu",
           "train.progress=false", f"out_dir={tmp_path / 'runs'}", *extra]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_the_measurement_writes_complete_rows_and_a_rerun_skips(tmp_path):
    first = _measure(tmp_path)
    assert first.returncode == 0, first.stderr
    (run,) = (tmp_path / "runs").glob("measure-ngram-*")
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "complete" and record["table"] == "ngram"
    rows = list(csv.DictReader((run / "rows.csv").open()))
    windows = [r for r in rows if r["scope"] == "windows"]
    assert len(windows) == 3 * 3  # three orders, the harness's sample and two more
    assert len([r for r in rows if r["scope"] == "position"]) == 3 * 3 * 8
    assert len([r for r in rows if r["scope"] == "stream"]) == 3
    loss = {(r["order"], r["sample"]): float(r["val_loss"]) for r in windows}
    assert all(0 < v < math.log(8) + 1 for v in loss.values()) and len(set(loss.values())) == 9
    assert {r["model"] for r in rows} == {"unigram-count", "bigram-count", "trigram-count"}
    assert {r["windows"] for r in rows} == {"8"} and {r["family"] for r in rows} == {"count"}
    mtime = (run / "rows.csv").stat().st_mtime_ns
    again = _measure(tmp_path)
    assert again.returncode == 0 and "'status': 'complete'" in again.stdout
    assert (run / "rows.csv").stat().st_mtime_ns == mtime  # skipped, not redone


@pytest.mark.parametrize(
    "bad,key",
    [("what.k=0", "what.k=0"), ("what.orders=[0,2]", "what.orders"),
     ("what.samples=-1", "what.samples=-1"), ("what.test_seeds=[-1]", "what.test_seeds")],
)  # fmt: skip
def test_bad_settings_are_refused_before_any_work(tmp_path, bad, key):
    out = _measure(tmp_path, bad)
    assert out.returncode == 2 and "seqbench: error:" in out.stderr and key in out.stderr
    assert not list((tmp_path / "runs").glob("*-ngram-*"))


def test_a_task_that_is_not_text_is_refused(tmp_path):
    cmd = [sys.executable, "-m", "seqbench.measure", "what=ngram", "data=copy", "model=bow",
           f"out_dir={tmp_path}"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "what=ngram counts text" in out.stderr
    assert not list(tmp_path.glob("*-ngram-*"))
