"""Data invariants: what is scored, exact distances, disjoint vocabularies, determinism."""

import pytest
import torch

from seqbench.data import IGNORE
from seqbench.data.synthetic import MQAR, Copy, LagRecall
from seqbench.data.text import Text, load_corpus


@pytest.mark.parametrize("distance", [1, 7, 30, 62])
def test_lag_recall_query_is_exactly_distance_after_the_pair(distance):
    task = LagRecall(seq_len=64, distance=distance, vocab_size=64, n_keys=16)
    tokens, targets = task.batch("train", 3, 64)
    K = task.n_keys
    for x, y in zip(tokens, targets):
        scored = (y != IGNORE).nonzero().flatten()
        assert len(scored) == 1  # only the answer is scored
        q = int(scored[0])
        keys = (x < K).nonzero().flatten()  # the key appears twice: in the pair and as query
        assert len(keys) == 2 and int(keys[1]) == q
        p = int(keys[0])
        assert q - (p + 1) == distance
        assert K <= int(x[p + 1]) < 2 * K and int(y[q]) == int(x[p + 1])  # answer = value
        others = torch.ones_like(x, dtype=torch.bool)
        others[[p, p + 1, q]] = False
        if q + 1 < len(x):  # the answer also follows the query as the next input token
            assert x[q + 1] == y[q]
            others[q + 1] = False
        assert (x[others] >= 2 * K).all()  # everything else is a distractor


def test_mqar_keys_values_disjoint_unique_and_only_answers_scored():
    """Zoology's generator: keys from [1, V/2) and values from [V/2, V), each drawn without
    replacement; the context first; each key queried once at an even offset after it, the
    label at the query position."""
    task = MQAR(seq_len=128, num_kv_pairs=8, vocab_size=256)
    tokens, targets = task.batch("train", 0, 32)
    half, P = 128, 8
    for x, y in zip(tokens, targets):
        keys, values = x[0 : 2 * P : 2], x[1 : 2 * P : 2]
        assert ((keys >= 1) & (keys < half)).all() and (values >= half).all()
        assert len(set(keys.tolist())) == P and len(set(values.tolist())) == P  # no repeats
        scored = (y != IGNORE).nonzero().flatten()
        assert len(scored) == P and (scored >= 2 * P).all() and ((scored - 2 * P) % 2 == 0).all()
        lookup = dict(zip(keys.tolist(), values.tolist()))
        for q in scored.tolist():
            assert y[q] == lookup[int(x[q])]  # the answer is the value bound to the queried key
        assert sorted(x[scored].tolist()) == sorted(keys.tolist())  # each key asked once


def test_mqar_never_feeds_the_answer_back_and_fills_with_random_tokens():
    P, V = 4, 64
    x, y = MQAR(seq_len=64, num_kv_pairs=P, vocab_size=V, random_non_queries=False).batch(
        "val", 0, 64
    )
    scored = y != IGNORE  # [B, T]
    filler = scored.clone()
    filler[:, : 2 * P] = True
    assert (x[~filler] == 0).all()  # random_non_queries=False: 0 wherever nothing is asked
    after = scored.roll(1, dims=1)  # the input right after each query
    assert (x[after] == 0).all()  # ... including the position after the query: no answer
    x, y = MQAR(seq_len=64, num_kv_pairs=P, vocab_size=V).batch("val", 0, 256)
    scored = y != IGNORE
    filler = ~scored
    filler[:, : 2 * P] = False
    assert len(x[filler].unique()) == V  # Zoology's default: random tokens from the vocabulary
    after = scored.roll(1, dims=1)
    answers = y[scored]
    assert (x[after] == answers).float().mean() < 0.1  # the next input is not the answer


def test_mqar_pairs_the_ith_key_with_the_ith_gap_drawn():
    """numpy's choice without replacement draws in order, the smallest gaps most likely
    first; Zoology gives the i-th drawn gap to the i-th key of the context, so the first key
    is asked before the last more often than not (numpy and torch alike: 0.55, not 0.5)."""
    P = 4
    x, y = MQAR(seq_len=256, num_kv_pairs=P, vocab_size=256).batch("train", 0, 4000)
    scored = y != IGNORE
    first_key, last_key = x[:, 0:1], x[:, 2 * P - 2 : 2 * P - 1]  # [B, 1]
    pos = torch.arange(x.size(1)).expand_as(x)
    where_first = torch.where(scored & (x == first_key), pos, -1).max(1).values
    where_last = torch.where(scored & (x == last_key), pos, -1).max(1).values
    assert (where_first < where_last).float().mean() > 0.53  # a random pairing: 0.5


def test_mqar_rejects_bad_settings_in_one_line():
    for kwargs, key in [
        ({"seq_len": 12, "num_kv_pairs": 4}, "data.num_kv_pairs=4"),
        ({"vocab_size": 8, "num_kv_pairs": 4}, "data.vocab_size=8"),
        ({"power_a": 0.0}, "data.power_a=0.0"),
    ]:
        with pytest.raises(ValueError) as e:
            MQAR(**kwargs)
        text = str(e.value)
        assert text.startswith(f"{key} is not allowed: ") and "\n" not in text


def test_mqar_gaps_follow_a_decreasing_power_law():
    task = MQAR(seq_len=256, num_kv_pairs=4, vocab_size=256, power_a=0.01)
    _, targets = task.batch("train", 0, 2000)
    first = (targets != IGNORE).float().argmax(1) - 8  # offset of the earliest query
    near, far = (first < 40).float().mean(), ((first >= 200) & (first < 240)).float().mean()
    assert near > 2 * far


def test_copy_scores_exactly_the_second_half():
    task = Copy(seq_len=20, vocab_size=10)
    tokens, targets = task.batch("val", 0, 16)
    assert (tokens[:, 10] == 0).all()  # the delimiter
    assert (targets[:, :10] == IGNORE).all()
    assert torch.equal(targets[:, 10:], tokens[:, :10])


def test_batches_are_a_pure_function_of_seed_split_and_index():
    task = LagRecall(seq_len=32, distance=8)
    a, b = task.batch("train", 5, 8), task.batch("train", 5, 8)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(task.batch("train", 6, 8)[0], a[0])
    assert not torch.equal(task.batch("val", 5, 8)[0], a[0])
    other_seed = LagRecall(seq_len=32, distance=8, seed=1)
    assert not torch.equal(other_seed.batch("train", 5, 8)[0], a[0])


def test_n_train_limits_training_to_a_pool_of_unique_examples():
    task = Copy(seq_len=16, vocab_size=12, n_train=5)
    seen = {tuple(x.tolist()) for i in range(40) for x in task.batch("train", i, 8)[0]}
    assert len(seen) == 5
    fresh = Copy(seq_len=16, vocab_size=12)
    assert len({tuple(x.tolist()) for x in fresh.batch("train", 0, 64)[0]}) == 64


@pytest.mark.parametrize("tokenizer", ["char", "word"])
def test_text_windows_are_next_token_pairs_and_vocab_is_capped(tokenizer):
    task = Text(seq_len=32, tokenizer=tokenizer, vocab_size=300)
    tokens, targets = task.batch("train", 0, 4)
    assert torch.equal(tokens[:, 1:], targets[:, :-1])  # targets are the next tokens
    assert task.vocab_size <= 300 and int(tokens.max()) < task.vocab_size
    fp = task.fingerprint()
    assert len(fp["corpus_sha256"]) == 64 and fp["corpus_bytes"] > 100_000
    assert 0 < fp["unigram_xent"] < 10


def test_text_rejects_empty_binary_and_non_utf8_files(tmp_path):
    cases = {
        "empty.txt": b"  \n",
        "bin.dat": b"\x7fELF\x00\x01\x02",
        "latin1.txt": b"caf\xe9 " * 50,
    }
    for name, raw in cases.items():
        (tmp_path / name).write_bytes(raw)
        with pytest.raises(ValueError, match="data.path="):
            load_corpus(str(tmp_path / name))
