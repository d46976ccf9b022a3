"""Model contract: causality, fused == unrolled, stepping == full forward, matched sizes."""

import pytest
import torch
from omegaconf import OmegaConf

from seqbench.config import build_model, model_configs

V, B, T = 23, 3, 12
RECURRENT = ["rnn", "lstm", "gru"]
# every model file, plus the Transformer's positional variants and the unrolled recurrences
VARIANTS = (
    [(name, {}) for name in model_configs()]
    + [("transformer", {"pos": p}) for p in ("learned", "rope", "none")]
    + [(name, {"impl": "unrolled"}) for name in RECURRENT]
)


def make(name, **overrides):
    node = OmegaConf.merge(
        model_configs()[name], {"max_len": 64} if name == "transformer" else {}, overrides
    )
    torch.manual_seed(0)
    return build_model(node, V, device="cpu").eval()


def ids(v):
    return f"{v[0]}-{'-'.join(map(str, v[1].values()))}" if v[1] else v[0]


@pytest.mark.parametrize("variant", VARIANTS, ids=ids)
def test_causal(variant):
    """Changing token t+k never changes the logits at positions <= t."""
    model = make(variant[0], **variant[1])
    tokens = torch.randint(V, (B, T))
    logits, _ = model(tokens)
    for t in (0, 5, T - 2):
        changed = tokens.clone()
        changed[:, t + 1 :] = (changed[:, t + 1 :] + 1 + torch.randint(V - 1, (1,))) % V
        after, _ = model(changed)
        torch.testing.assert_close(after[:, : t + 1], logits[:, : t + 1], rtol=0, atol=1e-5)
        assert not torch.allclose(after[:, t + 1 :], logits[:, t + 1 :]), "later logits must move"


@pytest.mark.parametrize("variant", VARIANTS, ids=ids)
def test_stepping_with_state_equals_full_forward(variant):
    model = make(variant[0], **variant[1])
    tokens = torch.randint(V, (B, T))
    full, _ = model(tokens)
    state, steps = None, []
    for t in range(T):  # one token at a time
        out, state = model(tokens[:, t : t + 1], state)
        steps.append(out)
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-5, atol=1e-5)
    # and a prefix in one call, the rest continued with the state
    head, state = model(tokens[:, :7])
    tail, _ = model(tokens[:, 7:], state)
    torch.testing.assert_close(torch.cat([head, tail], 1), full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", RECURRENT)
def test_fused_and_unrolled_agree_in_outputs_and_gradients(name):
    fused = make(name)
    unrolled = make(name, impl="unrolled")
    unrolled.load_state_dict(fused.state_dict())
    tokens = torch.randint(V, (B, T))
    outs = []
    for model in (fused, unrolled):
        logits, state = model(tokens)
        logits.square().mean().backward()
        outs.append((logits, state, {n: p.grad.clone() for n, p in model.named_parameters()}))
    (lf, sf, gf), (lu, su, gu) = outs
    torch.testing.assert_close(lu, lf, rtol=0, atol=1e-5)
    torch.testing.assert_close(su, sf, rtol=0, atol=1e-5)
    assert gf.keys() == gu.keys()
    for n in gf:
        torch.testing.assert_close(gu[n], gf[n], rtol=0, atol=1e-5, msg=f"gradient of {n}")


def non_embedding(name, size, vocab_size=64) -> int:
    """Non-embedding parameters of a model file at a size preset, built on the meta device
    (config.param_table builds xs, s and m of every file, the bag of words included, which has
    no other presets)."""
    from seqbench.models import param_counts

    model = build_model(OmegaConf.merge(model_configs()[name], {"size": size}), vocab_size)
    return param_counts(model)["params_non_embedding"]


def test_size_presets_match_non_embedding_params_within_10_percent():
    from hydra.utils import get_class

    from seqbench.models.transformer import PRESETS

    compared = [n for n, node in model_configs().items() if n != "bow" and "size" in node]
    for name in compared:  # every family offers every size the Transformer does
        assert get_class(model_configs()[name]._target_).presets.keys() == PRESETS.keys(), name
    for size in PRESETS:
        counts = {name: non_embedding(name, size) for name in compared}
        assert {"rnn", "lstm", "gru", "mingru", "transformer"} <= counts.keys()
        ref = counts["transformer"]
        for model, n in counts.items():
            assert abs(n / ref - 1) <= 0.10, f"{model} at {size}: {n} vs transformer {ref}"


def test_the_size_presets_below_s_span_30x_for_every_family():
    """The scaling study's CPU range (C10): five sizes, >= 30x in non-embedding parameters."""
    from seqbench.studies.scaling import CPU_SIZES

    assert len(CPU_SIZES) >= 5
    for name in ("rnn", "lstm", "gru", "mingru", "minlstm", "transformer"):
        counts = [non_embedding(name, s) for s in CPU_SIZES]
        assert counts == sorted(counts), f"{name}: sizes out of order {counts}"
        assert counts[-1] / counts[0] >= 30, f"{name}: {counts[-1] / counts[0]:.1f}x"


def test_tied_weights_share_one_tensor_and_count_once():
    from seqbench.models import param_counts

    untied, tied = make("lstm"), make("lstm", tie_weights=True)
    assert tied.head.weight is tied.embed.weight
    diff = param_counts(untied)["params_total"] - param_counts(tied)["params_total"]
    assert diff == tied.head.weight.numel()


@pytest.mark.parametrize("impl", ["fused", "unrolled"])
def test_lstm_forget_gate_bias_starts_at_one_on_both_paths(impl):
    """Gers et al. 2000 / Jozefowicz et al. 2015: b_f = 1, read back from the weights each
    path computes with (the unrolled step reads the fused module's tensors)."""
    from omegaconf import OmegaConf

    from seqbench.config import build_model, model_configs

    node = OmegaConf.merge(model_configs()["lstm"], {"impl": impl})
    torch.manual_seed(0)
    model = build_model(node, 11, "cpu")
    H = model.d_model
    for i in range(model.n_layers):
        _, b_ih, _, b_hh = model.layer_weights(i)
        forget = (b_ih + b_hh)[H : 2 * H]  # gate order i, f, g, o
        torch.testing.assert_close(forget, torch.ones(H))
        assert not torch.allclose((b_ih + b_hh)[:H], torch.ones(H))  # only the forget gate
    # and the gate really sees it: zero input and state give sigma(1) for the forget gate
    x, h = torch.zeros(1, model.d_embed), torch.zeros(1, H)
    w_ih, b_ih, w_hh, b_hh = model.layer_weights(0)
    gates = torch.nn.functional.linear(x, w_ih, b_ih) + torch.nn.functional.linear(h, w_hh, b_hh)
    torch.testing.assert_close(torch.sigmoid(gates[0, H : 2 * H]), torch.sigmoid(torch.ones(H)))


def test_a_recurrence_without_a_forget_gate_refuses_a_forget_bias():
    from omegaconf import OmegaConf

    from seqbench.config import ConfigError, build_model, model_configs

    with pytest.raises(ConfigError, match="model.forget_bias=1.0 is not allowed: GRU has no"):
        build_model(OmegaConf.merge(model_configs()["gru"], {"forget_bias": 1.0}), 11)
