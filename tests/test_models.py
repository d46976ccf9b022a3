"""Model contract, for every model file (conf/model/ and a user's SEQBENCH_PATH folders):
causality, every execution path equal to the file's own, stepping == full forward, matched
sizes. Nothing here names a model but the Transformer's positional variants and the anchors
of the size presets (the Transformer's)."""

from inspect import signature

import pytest
import torch
from hydra.utils import get_class
from omegaconf import OmegaConf

from seqbench.config import build_model, model_configs

V, B, T = 23, 3, 12
CONFIGS = model_configs()


def model_class(name):
    return get_class(CONFIGS[name]._target_)


def other_impls(name) -> list[str]:
    """The execution paths a model declares (``impls``) beside the one its file picks."""
    own = CONFIGS[name].get("impl")
    return [i for i in model_class(name).impls if own is not None and i != own]


def compared() -> list[str]:
    """Every model file with size presets whose family is not a baseline: the studies
    compare these at matched size (seqbench.sets @compared)."""
    return [
        n for n, node in CONFIGS.items() if model_class(n).family != "baseline" and "size" in node
    ]


# every model file, plus the Transformer's positional variants and every other execution path
VARIANTS = (
    [(name, {}) for name in CONFIGS]
    + [("transformer", {"pos": p}) for p in ("learned", "rope", "none")]
    + [(name, {"impl": impl}) for name in CONFIGS for impl in other_impls(name)]
)
PATHS = [(name, impl) for name in CONFIGS for impl in other_impls(name)]


def make(name, **overrides):
    """A model file built on the CPU (a length table, where the class has one, of 64)."""
    short = {"max_len": 64} if "max_len" in signature(model_class(name)).parameters else {}
    node = OmegaConf.merge(CONFIGS[name], short, overrides)
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


def test_every_recurrence_declares_a_second_path_the_tracer_can_read():
    """Two paths for recurrences (DESIGN.md): each shipped recurrent and scan model declares
    one beside its file's own, so PATHS below is never empty."""
    assert {n for n, _ in PATHS} >= {"rnn", "lstm", "gru", "mingru", "minlstm"}


@pytest.mark.parametrize("name, impl", PATHS, ids=[f"{n}-{i}" for n, i in PATHS])
def test_every_execution_path_agrees_in_outputs_state_and_gradients(name, impl):
    """The fused kernel and the unrolled loop, the parallel scan and the per-step loop: the
    same parameters (loaded across) give the same logits, state and gradients."""
    own = make(name)
    other = make(name, impl=impl)
    other.load_state_dict(own.state_dict())
    tokens = torch.randint(V, (B, T))
    outs = []
    for model in (own, other):
        logits, state = model(tokens)
        logits.square().mean().backward()
        outs.append((logits, state, {n: p.grad.clone() for n, p in model.named_parameters()}))
    (lf, sf, gf), (lu, su, gu) = outs
    torch.testing.assert_close(lu, lf, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(su, sf, rtol=1e-5, atol=1e-5)
    assert gf.keys() == gu.keys()
    for n in gf:
        torch.testing.assert_close(gu[n], gf[n], rtol=1e-5, atol=1e-5, msg=f"gradient of {n}")
        assert gf[n].abs().sum() > 0, f"{n} got no gradient"


def non_embedding(name, size, vocab_size=64) -> int:
    """Non-embedding parameters of a model file at a size preset, built on the meta device
    (config.param_table builds xs, s and m of every file, the bag of words included, which has
    no other presets)."""
    from seqbench.models import param_counts

    model = build_model(OmegaConf.merge(CONFIGS[name], {"size": size}), vocab_size)
    return param_counts(model)["params_non_embedding"]


def test_size_presets_match_non_embedding_params_within_10_percent():
    """Every compared model offers every size the Transformer does, each within 10% of its
    non-embedding parameters (a baseline is exempt: its family says so, not its name)."""
    from seqbench.models.transformer import PRESETS

    for name in compared():
        assert model_class(name).presets.keys() == PRESETS.keys(), name
    for size in PRESETS:
        counts = {name: non_embedding(name, size) for name in compared()}
        assert "transformer" in counts
        ref = counts["transformer"]
        for model, n in counts.items():
            assert abs(n / ref - 1) <= 0.10, f"{model} at {size}: {n} vs transformer {ref}"


def test_the_size_presets_below_s_span_30x_for_every_family():
    """The scaling study's CPU range (C10): five sizes, >= 30x in non-embedding parameters."""
    from seqbench.studies.scaling import CPU_SIZES

    assert len(CPU_SIZES) >= 5
    for name in compared():
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
