"""C6: a bidirectional Transformer without positions is permutation-equivariant (to 1e-5);
a causal mask or any positional encoding breaks that; a linear probe reads position only
where it is encoded (seqbench/measure/order.py)."""

import pytest
import torch

from seqbench.data.synthetic import Copy
from seqbench.measure.order import equivariance_error, position_probe
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
