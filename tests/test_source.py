"""The synthetic source (C11): its exact likelihood, conditionals and entropy against brute
force on a tiny alphabet, and its samples against those probabilities."""

import itertools
import math

import pytest
import torch

from seqbench.data.source import Source

V, K, N = 3, 2, 4  # 3 tokens, order 2, sequences of 4: 81 of them, every one enumerable


@pytest.fixture(scope="module")
def tiny():
    return Source(seq_len=N - 1, vocab_size=V, order=K, support=2, smoothing=0.05, seed=7)


def every_sequence(n=N) -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(V), repeat=n)))  # [V^n, n]


def by_hand(src, seq) -> float:
    """p(seq) by a literal reading of the definition: the table row of the last K tokens,
    zeros before the start, looked up by a tuple (not by the context index arithmetic)."""
    rows = {c: src.table[sum(t * V**j for j, t in enumerate(reversed(c)))] for c in
            itertools.product(range(V), repeat=K)}  # fmt: skip
    history, p = [0] * K, 1.0
    for x in seq:
        p *= float(rows[tuple(history[-K:])][x])
        history.append(x)
    return p


def test_the_table_is_sparse_plus_smoothing_and_each_row_sums_to_one(tiny):
    assert tiny.table.shape == (V**K, V)
    torch.testing.assert_close(tiny.table.sum(1), torch.ones(V**K, dtype=torch.float64))
    floor = tiny.smoothing / V
    assert ((tiny.table > floor + 1e-12).sum(1) == tiny.support).all()  # support tokens each
    assert torch.allclose(tiny.table.min(1).values, torch.full((V**K,), floor, dtype=torch.float64))


def test_the_exact_likelihood_is_the_definition_and_sums_to_one(tiny):
    seqs = every_sequence()
    p = tiny.log_likelihood(seqs).exp()
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-12)
    for seq, q in zip(seqs.tolist()[::7], p[::7].tolist()):
        assert q == pytest.approx(by_hand(tiny, seq), rel=1e-12)


def test_the_exact_likelihood_matches_a_brute_force_count_of_samples(tiny):
    """Every one of the 81 sequences drawn as often as its exact probability says (each
    frequency within 5 binomial standard deviations of 200 000 draws)."""
    n = 200_000
    tokens, targets = tiny.batch("train", 0, n)  # [n, N-1] each
    seqs = torch.cat([tokens[:, :1], targets], dim=1)  # x_0 .. x_{N-1}
    ids = (seqs * V ** torch.arange(N - 1, -1, -1)).sum(1)
    freq = torch.bincount(ids, minlength=V**N).double() / n
    p = tiny.log_likelihood(every_sequence()).exp()  # every_sequence is in the same order
    sd = (p * (1 - p) / n).sqrt()
    assert ((freq - p).abs() <= 5 * sd + 1e-9).all(), float(((freq - p).abs() / sd).max())


def test_the_conditional_is_the_ratio_of_brute_force_marginals(tiny):
    """p(x_{t+1} = v | x_<=t) = sum of p over sequences starting x_<=t v / sum over x_<=t."""
    seqs = every_sequence()
    p = tiny.log_likelihood(seqs).exp()
    cond = tiny.conditional(seqs)  # [V^N, N, V]
    for t in range(N - 1):
        for i in range(0, len(seqs), 5):
            prefix = seqs[i, : t + 1]
            match = (seqs[:, : t + 1] == prefix).all(1)
            for v in range(V):
                num = p[match & (seqs[:, t + 1] == v)].sum()
                assert float(cond[i, t, v]) == pytest.approx(float(num / p[match].sum()))


def test_the_position_entropy_is_the_expected_true_loss(tiny):
    """E[-log p(x_{t+1} | x_<=t)] summed exactly over all sequences, against the context
    distribution's propagation."""
    seqs = every_sequence()
    p = tiny.log_likelihood(seqs).exp()
    cond = tiny.conditional(seqs[:, :-1])  # [V^N, N-1, V]
    nll = -cond.gather(2, seqs[:, 1:, None]).squeeze(2).log()  # [V^N, N-1]
    first = -(tiny.table[0] * tiny.table[0].log()).sum()  # H(x_0)
    exact = torch.cat([first[None], (p[:, None] * nll).sum(0)])  # H(x_t | x_<t), t = 0..N-1
    # position_entropy(t) is H(x_{t+1} | x_<=t); H(x_0) is the step before it
    torch.testing.assert_close(tiny.position_entropy(N - 1), exact[1:])
    assert 0 < tiny.entropy_rate < math.log(V)


def test_the_language_is_fixed_by_its_own_seed_and_the_samples_by_the_data_seed():
    a, b = Source(vocab_size=8, seed=0), Source(vocab_size=8, seed=1)
    assert torch.equal(a.table, b.table)
    assert not torch.equal(a.batch("train", 0, 4)[0], b.batch("train", 0, 4)[0])
    assert torch.equal(a.batch("val", 3, 4)[0], Source(vocab_size=8, seed=0).batch("val", 3, 4)[0])
    c = Source(vocab_size=8, language_seed=1)
    assert not torch.equal(a.table, c.table)


def test_targets_are_the_next_tokens_and_every_position_is_scored():
    src = Source(seq_len=10, vocab_size=5)
    tokens, targets = src.batch("train", 0, 6)
    assert tokens.shape == targets.shape == (6, 10)
    assert torch.equal(tokens[:, 1:], targets[:, :-1]) and (targets >= 0).all()


@pytest.mark.parametrize(
    "kwargs,key",
    [
        ({"smoothing": 0.0}, "smoothing"),
        ({"support": 17}, "support"),
        ({"order": 0}, "order"),
        ({"order": 6, "vocab_size": 32}, "order"),
        ({"sharpness": 0}, "sharpness"),
    ],
)
def test_bad_settings_name_their_key(kwargs, key):
    with pytest.raises(ValueError, match=f"data.{key}="):
        Source(**kwargs)
