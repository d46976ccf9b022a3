"""The dataflow tracer on hand-built graphs, then on the real models (work/span scaling)."""

import pytest
import torch

from seqbench.measure.trace import Tracer, trace, trace_model
from seqbench.models.recurrent import GRU, LSTM, RNN
from seqbench.models.transformer import Transformer

X = torch.randn(64)


def test_chain_of_n_ops_has_span_n():
    def chain(n):
        y = X
        for _ in range(n):
            y = y.sin()

    for n in (1, 5, 17):
        s = trace(chain, n)
        assert (s.work_ops, s.span_ops) == (n, n)
        assert s.parallelism == 1


def test_independent_ops_have_span_one():
    s = trace(lambda: [X.sin() for _ in range(9)])
    assert (s.work_ops, s.span_ops, s.parallelism) == (9, 1, 9)


def test_views_and_detach_are_free():
    def f():
        y = X.sin()  # depth 1
        z = y.view(8, 8).t()[::2].unsqueeze(0).detach().expand(3, -1, -1).unbind(0)[1]
        return z.cos()  # depth 2: the views between added nothing

    s = trace(f)
    assert (s.work_ops, s.span_ops) == (2, 2)
    # reshape of a transposed tensor must copy: one real op (clone), its relabel is free
    s = trace(lambda: X.sin().view(8, 8).t().reshape(-1).cos())
    assert (s.work_ops, s.span_ops, s.ops_by_name["aten.clone"]) == (3, 3, 1)


def test_inplace_extends_the_producers_chain():
    def f():
        y = X.sin()  # 1
        y.mul_(2)  # 2: depends on sin
        y.view(8, 8)[0].add_(1)  # 3: written through a view, still y's storage
        return y.cos()  # 4: must see both writes

    s = trace(f)
    assert (s.work_ops, s.span_ops, s.unseen_writes) == (4, 4, 0)


def test_a_write_behind_the_tracers_back_is_noticed():
    tracer = Tracer()
    with tracer:
        y = X.sin()
    y.add_(1)  # outside the trace
    with tracer:
        y.cos()
    assert tracer.stats.unseen_writes == 1


def test_reused_memory_address_does_not_fake_a_dependency():
    """Two storages over the same bytes, one after the other: the second must start as a
    leaf, although its data pointer equals the first one's (which sat at depth 11)."""
    memory = bytearray(4 * 64)  # torch.frombuffer wraps it without copying: a fixed address
    tracer = Tracer()
    with tracer:
        y = X
        for _ in range(10):
            y = y.sin()  # depth 10
        a = torch.frombuffer(memory, dtype=torch.float32)
        a.copy_(y)  # depth 11, written into `memory`
        ptr = a.data_ptr()
        del a  # its storage object dies, and with it the record
        b = torch.frombuffer(memory, dtype=torch.float32)  # a new storage, same address
        assert b.data_ptr() == ptr
        b.cos()
    # a data-pointer tracker would put cos at depth 12; tracked by identity it is depth 1
    assert tracer.stats.span_ops == 11
    assert tracer.stats.work_ops == 12
    assert tracer.stats.ops_by_name["aten.cos"] == 1


def test_matmul_flops_and_flop_weighted_span():
    a, b = torch.randn(4, 8), torch.randn(8, 16)

    def f():
        c = a @ b  # 2*4*8*16 FLOPs
        return (c.tanh() @ torch.randn(16, 2)).relu()  # + 2*4*16*2 on the same chain

    s = trace(f)
    assert s.work_flops == 2 * 4 * 8 * 16 + 2 * 4 * 16 * 2
    assert s.span_flops == s.work_flops  # one chain carries every FLOP


@pytest.mark.parametrize("cls", [RNN, LSTM, GRU])
@pytest.mark.parametrize("backward", [False, True])
def test_recurrent_span_is_linear_in_length(cls, backward):
    torch.manual_seed(0)
    model = cls(16, d_model=8, n_layers=2, impl="unrolled")
    spans = [
        trace_model(model, torch.randint(0, 16, (2, T)), backward).span_ops for T in (4, 8, 12)
    ]
    assert spans[1] - spans[0] == spans[2] - spans[1] > 0
    assert all(p.grad is None for p in model.parameters())  # trace_model cleaned up


def test_stacked_recurrence_is_a_wavefront_not_a_product():
    """span(T, L) = c*(T + L - 1) + const: adding a layer costs one step, not T steps."""
    torch.manual_seed(0)
    tokens = torch.randint(0, 16, (2, 12))
    spans = [
        trace_model(LSTM(16, d_model=8, n_layers=L, impl="unrolled"), tokens).span_ops
        for L in (1, 2, 3)
    ]
    per_step = (
        trace_model(
            LSTM(16, d_model=8, n_layers=1, impl="unrolled"), torch.randint(0, 16, (2, 13))
        ).span_ops
        - spans[0]
    )
    assert spans[1] - spans[0] == spans[2] - spans[1]
    assert spans[1] - spans[0] <= per_step + 2  # ~one extra cell step per layer, not T


@pytest.mark.parametrize("backward", [False, True])
def test_transformer_span_is_constant_in_length_and_attention_flops_quadruple(backward):
    torch.manual_seed(0)
    model = Transformer(16, d_model=16, n_layers=2, max_len=256)
    stats = [trace_model(model, torch.randint(0, 16, (2, T)), backward) for T in (16, 32, 64)]
    assert len({s.span_ops for s in stats}) == 1
    att = [s.attention_flops for s in stats]
    assert att[0] > 0 and att[1] == 4 * att[0] and att[2] == 4 * att[1]
    assert stats[2].work_ops == stats[0].work_ops  # same ops, just wider tensors
