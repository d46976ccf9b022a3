"""The one decoding module: cached decoding equals recomputing the prefix, for every model."""

import pytest
import torch
from omegaconf import OmegaConf

from seqbench.config import ConfigError, build_model, model_configs
from seqbench.generate import generate, next_token, state_bytes

V = 24


def _models():
    """Every conf/model file (recurrent ones on both paths), tiny, in float64 so that argmax
    never flips on a rounding difference between the cached and the recomputed path."""
    out = []
    for name, node in model_configs().items():
        variants = [{}]
        if node._target_.startswith("seqbench.models.recurrent."):
            variants = [{"impl": "fused"}, {"impl": "unrolled"}]
        for extra in variants:
            label = name + (f"-{extra['impl']}" if extra else "")
            out.append(pytest.param(OmegaConf.merge(node, extra), id=label))
    return out


def _build(node):
    torch.manual_seed(0)
    return build_model(node, V, "cpu").double().eval()


@pytest.mark.parametrize("node", _models())
def test_greedy_with_state_equals_recomputing_the_prefix(node):
    model = _build(node)
    prompt = torch.randint(0, V, (3, 5))
    cached = generate(model, prompt, 12, use_cache=True)
    recomputed = generate(model, prompt, 12, use_cache=False)
    assert cached.shape == (3, 17)
    assert torch.equal(cached[:, :5], prompt)
    assert torch.equal(cached, recomputed)


@pytest.mark.parametrize("node", _models())
def test_sampling_is_reproducible_and_seed_dependent(node):
    model = _build(node)
    prompt = torch.randint(0, V, (4, 3))
    a = generate(model, prompt, 10, temperature=1.5, top_k=8, seed=7)
    b = generate(model, prompt, 10, temperature=1.5, top_k=8, seed=7)
    c = generate(model, prompt, 10, temperature=1.5, top_k=8, seed=8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # the recompute path draws the same random numbers in the same order
    d = generate(model, prompt, 10, temperature=1.5, top_k=8, seed=7, use_cache=False)
    assert torch.equal(a, d)


def test_top_k_only_samples_the_k_most_likely():
    logits = torch.tensor([[0.0, 5.0, 4.0, -1.0, 3.0]]).repeat(500, 1)
    g = torch.Generator().manual_seed(0)
    drawn = set(next_token(logits, temperature=3.0, top_k=2, generator=g).tolist())
    assert drawn == {1, 2}
    assert next_token(logits[:1]).item() == 1  # greedy


def test_state_bytes_counts_every_tensor():
    h = torch.zeros(2, 3, 4)
    assert state_bytes(h) == 2 * 3 * 4 * 4
    assert state_bytes((h, h)) == 2 * 96
    kv = [(torch.zeros(1, 2, 5, 8), torch.zeros(1, 2, 5, 8))]
    assert state_bytes(kv) == 2 * 80 * 4
    assert state_bytes(None) == 0


@pytest.mark.parametrize("bad", [dict(temperature=-1.0), dict(top_k=0)])
def test_bad_sampling_settings_are_refused(bad):
    model = _build(model_configs()["lstm"])
    with pytest.raises(ConfigError, match=next(iter(bad))):
        generate(model, torch.zeros(1, 2, dtype=torch.long), 3, **bad)


def test_cuda_graph_needs_a_cuda_device_and_the_cache():
    model = _build(model_configs()["rnn"])
    prompt = torch.randint(0, V, (2, 4))
    with pytest.raises(ConfigError, match="cuda_graph=True is not allowed on device 'cpu'"):
        generate(model, prompt, 3, cuda_graph=True)
    with pytest.raises(ConfigError, match="use_cache=False"):
        generate(model, prompt, 3, cuda_graph=True, use_cache=False)


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru", "mingru", "minlstm", "transformer"])
def test_graphed_step_checks_the_state_shape_then_the_device(name):
    """A recurrent state keeps its shapes (only the device stops it here); the Transformer's
    KV cache grows a position per step, so it can never be replayed at fixed shapes."""
    from seqbench.generate import GraphedStep, prefill

    model = _build(model_configs()[name])
    _, state = prefill(model, torch.randint(0, V, (2, 5)))
    reason = "changes shape every step" if name == "transformer" else "need a CUDA device"
    with pytest.raises(ConfigError, match=reason):
        GraphedStep(model, state, 2)


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")


@CUDA
@pytest.mark.parametrize("node", _models())
def test_cuda_graph_decoding_equals_eager_or_refuses_a_growing_state(node):
    torch.manual_seed(0)
    model = build_model(node, V, "cuda").double().eval()
    prompt = torch.randint(0, V, (3, 5), device="cuda")
    eager = generate(model, prompt, 12)
    try:
        graphed = generate(model, prompt, 12, cuda_graph=True)
    except ConfigError as e:  # the Transformer's KV cache grows: said in one line
        assert "changes shape every step" in str(e)
        return
    assert torch.equal(graphed, eager)
