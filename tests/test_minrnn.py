"""minGRU / minLSTM: the log-space parallel scan equals the sequential loop (values and
gradients), the scan is a real prefix scan, and its traced span grows like log T."""

import math

import pytest
import torch
from omegaconf import OmegaConf

from seqbench.config import ConfigError, build_model, model_configs
from seqbench.models.minrnn import g, log_g, log_scan

V, B, T = 19, 3, 13  # T not a power of two: the last scan round is partial
MODELS = ["mingru", "minlstm"]


def make(name, impl, **overrides):
    node = OmegaConf.merge(model_configs()[name], {"impl": impl}, overrides)
    torch.manual_seed(0)
    return build_model(node, V, device="cpu")


def test_log_scan_matches_the_recurrence():
    torch.manual_seed(0)
    a, b = torch.rand(2, 37, 5) * 0.98 + 0.01, torch.rand(2, 37, 5) + 0.1
    h, prod, hs, prods = torch.zeros(2, 5), torch.ones(2, 5), [], []
    for t in range(37):
        h, prod = a[:, t] * h + b[:, t], prod * a[:, t]
        hs.append(h)
        prods.append(prod)
    log_prod, log_h = log_scan(a.log(), b.log())
    torch.testing.assert_close(log_h.exp(), torch.stack(hs, 1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(log_prod.exp(), torch.stack(prods, 1), rtol=1e-5, atol=1e-6)


def test_positive_activation_and_its_log():
    x = torch.linspace(-30, 30, 601, dtype=torch.float64)
    assert (g(x) > 0).all()
    torch.testing.assert_close(log_g(x), g(x).log())
    assert abs(float(g(torch.tensor(0.0))) - 0.5) < 1e-7  # continuous at 0


@pytest.mark.parametrize("name", MODELS)
def test_scan_equals_sequential_in_values_and_gradients(name):
    scan, seq = make(name, "scan"), make(name, "sequential")
    seq.load_state_dict(scan.state_dict())  # same parameters, by construction and by load
    tokens = torch.randint(V, (B, T))
    out_scan, h_scan = scan(tokens)
    out_seq, h_seq = seq(tokens)
    torch.testing.assert_close(out_scan, out_seq, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h_scan, h_seq, rtol=1e-5, atol=1e-5)
    out_scan.square().mean().backward()
    out_seq.square().mean().backward()
    grads = dict(seq.named_parameters())
    for n, p in scan.named_parameters():
        torch.testing.assert_close(p.grad, grads[n].grad, rtol=1e-5, atol=1e-5, msg=n)
        assert p.grad.abs().sum() > 0, f"{n} got no gradient"


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("impl", ["scan", "sequential"])
def test_state_continues_across_calls_and_paths(name, impl):
    """A prefix through one path, the rest through the other, equals one full call."""
    model = make(name, impl)
    other = make(name, "sequential" if impl == "scan" else "scan")
    tokens = torch.randint(V, (B, T))
    full, _ = model(tokens)
    head, state = model(tokens[:, :5])
    assert state.shape == (model.n_layers, B, model.d_model) and (state > 0).all()
    tail, _ = other(tokens[:, 5:], state)
    torch.testing.assert_close(torch.cat([head, tail], 1), full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_gates_read_only_the_input(name):
    """The property that makes the scan possible: a_t, b_t depend on x_t alone, so shuffling
    the other positions of the layer input leaves the coefficients at t unchanged."""
    cell = make(name, "scan").blocks[0].cell
    x = torch.randn(B, T, cell.gates.in_features)
    a, b = cell.coefficients(x)
    perm = torch.randperm(T)
    a2, b2 = cell.coefficients(x[:, perm])
    torch.testing.assert_close(a2, a[:, perm])
    torch.testing.assert_close(b2, b[:, perm])


def test_bad_impl_is_one_clear_line():
    with pytest.raises(ConfigError, match=r"model.impl='fused' is not one of"):
        make("mingru", "fused")


# --- the dataflow tracer (seqbench/measure/trace.py) sees log T, not T --------------------
def _span(model, tokens, backward=False):
    trace = pytest.importorskip("seqbench.measure.trace")
    stats = trace.trace_model(model, tokens, backward=backward)
    return stats["span_ops"] if isinstance(stats, dict) else stats.span_ops


@pytest.mark.parametrize("name", MODELS)
def test_scan_span_grows_by_a_bounded_amount_per_4x_length(name):
    """Span at T and 4T: the scan adds two rounds of a fixed op count per layer (log2 4 = 2),
    so span(4T) - span(T) is the same constant at every T; a per-step recurrence (the same
    model's sequential path, and the unrolled LSTM) grows in proportion to T."""
    scan = make(name, "scan", d_model=8, n_layers=2)
    spans = {t: _span(scan, torch.randint(V, (1, t))) for t in (16, 64, 256)}
    extra_16, extra_64 = spans[64] - spans[16], spans[256] - spans[64]
    assert extra_16 == extra_64, spans  # additive and constant per 4x: logarithmic
    assert 0 < extra_64 <= 2 * 8 * scan.n_layers, spans  # <= 8 ops per round per layer
    seq = make(name, "sequential", d_model=8, n_layers=2)
    seq_spans = {t: _span(seq, torch.randint(V, (1, t))) for t in (16, 64)}
    assert seq_spans[64] - seq_spans[16] > 4 * extra_64, (seq_spans, spans)
    lstm = build_model(
        OmegaConf.merge(model_configs()["lstm"], {"impl": "unrolled", "d_model": 8}), V, "cpu"
    )
    lstm_spans = {t: _span(lstm, torch.randint(V, (1, t))) for t in (16, 64)}
    assert lstm_spans[64] - lstm_spans[16] > 4 * extra_64, (lstm_spans, spans)
    # and the scan's growth really is ~ log2: spans(256)/spans(16) far below 256/16
    assert spans[256] / spans[16] < math.log2(256) / math.log2(16) + 1
