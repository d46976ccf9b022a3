"""C6: a bidirectional Transformer without positions is permutation-equivariant (to 1e-5);
a causal mask or any positional encoding breaks that; a linear probe reads position only
where it is encoded (seqbench/measure/order.py); the exact order-blind floor on copy equals
an enumeration and sits where it should."""

from collections import defaultdict
from itertools import product

import pytest
import torch

from seqbench.data.synthetic import Copy
from seqbench.measure.order import (
    copy_posterior,
    equivariance_error,
    fair_accuracy,
    floor_rows,
    position_probe,
)
from seqbench.models.transformer import Transformer


@pytest.fixture(scope="module")
def copy_tokens():
    return Copy(seq_len=32).batch("val", 0, 32)[0]  # [32, 32]


def _model(pos, causal):
    torch.manual_seed(0)
    return Transformer(16, pos=pos, causal=causal, max_len=32)


def test_bidirectional_without_positions_is_permutation_equivariant(copy_tokens):
    assert equivariance_error(_model("none", False), copy_tokens) < 1e-5


@pytest.mark.parametrize(
    "pos,causal", [("none", True), ("sinusoidal", False), ("learned", False), ("rope", False)]
)
def test_causal_mask_or_positions_break_equivariance(copy_tokens, pos, causal):
    assert equivariance_error(_model(pos, causal), copy_tokens) > 1e-3


def test_position_probe_reads_position_only_when_it_is_there(copy_tokens):
    assert position_probe(_model("none", False), copy_tokens) < 0.1  # a bag of words
    assert position_probe(_model("sinusoidal", False), copy_tokens) > 0.9


def test_the_order_blind_posterior_is_exact_on_copy():
    """copy_posterior equals the frequencies over every segment of a small copy task (vocab 4,
    5-token segments): P(next symbol | the bag of the prefix), enumerated."""
    n, symbols = 5, 3
    seen = defaultdict(lambda: torch.zeros(symbols, dtype=torch.double))
    for seg in product(range(symbols), repeat=n):
        for k in range(n):  # k tokens copied; the prefix: the segment, then seg[:k] again
            bag = torch.bincount(torch.tensor(seg + seg[:k]), minlength=symbols)
            seen[(k, tuple(bag.tolist()))][seg[k]] += 1
    keys = list(seen)
    counts = torch.tensor([bag for _, bag in keys])  # [M, S]
    copied = torch.tensor([k for k, _ in keys])  # [M]
    want = torch.stack([seen[key] / seen[key].sum() for key in keys])
    assert torch.allclose(copy_posterior(counts, copied, n), want, atol=1e-12)


def test_the_floor_on_copy_is_measured_below_the_two_bag_reference():
    """On copy (vocab 16, 16-token segments) the best order-blind guess scores ~0.25, far above
    chance (1/15) and below the 0.32 of a guess that knows which side of the delimiter each
    token sits; ties split evenly."""
    exact, two = floor_rows(Copy(seq_len=32, vocab_size=16, seed=0))
    assert exact["predictor"].startswith("bag of the prefix") and exact["test_sequences"] == 1024
    assert 0.23 < exact["test_acc"] < 0.28 < 0.30 < two["test_acc"] < 0.35
    scores = torch.tensor([[[0.0, 1.0, 1.0, 0.0]]])  # a tie between symbols 1 and 2
    assert fair_accuracy(scores, torch.tensor([[1]])) == 0.5
    assert fair_accuracy(scores, torch.tensor([[3]])) == 0.0
