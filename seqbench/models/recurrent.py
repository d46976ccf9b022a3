"""Recurrent language models: Elman RNN, LSTM and GRU, with two execution paths.

    Elman (1990):   h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
    LSTM (Hochreiter & Schmidhuber 1997), PyTorch's gate order i, f, g, o:
                    c_t = σ(f) ⊙ c_{t-1} + σ(i) ⊙ tanh(g),   h_t = σ(o) ⊙ tanh(c_t)
    GRU (Cho et al. 2014), gate order r, z, n:
                    n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)),   h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}

Both paths use the *same* parameters (those of the fused ``nn.RNN``/``nn.LSTM``/``nn.GRU``):
- ``impl="fused"`` calls the cuDNN/oneDNN kernel: what you time for speed;
- ``impl="unrolled"`` is an explicit loop over time steps and layers in plain tensor ops: what
  the dataflow tracer reads. Layer l at step t consumes only layer l-1 at step t and layer l at
  step t-1, so the real dependency graph is the lecture's diagonal wavefront (C3).
tests/test_models.py proves the two paths equal in outputs and gradients.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from seqbench.models import SequenceModel, dropout_layer, resolve_size


class Recurrent(SequenceModel):
    family = "recurrent"
    fused_cls: type = nn.RNN
    # width per preset, chosen so non-embedding parameters match the Transformer's within 10%
    presets: dict = {}

    def __init__(
        self,
        vocab_size: int,
        size: str = "xs",
        d_model: int | None = None,
        n_layers: int | None = None,
        impl: str = "fused",
        dropout: float = 0.0,
        tie_weights: bool = False,
    ):
        super().__init__()
        if impl not in ("fused", "unrolled"):
            raise ValueError(f"model.impl={impl!r} is not allowed: one of ['fused', 'unrolled']")
        hp = resolve_size(size, self.presets, d_model=d_model, n_layers=n_layers)
        self.d_model, self.n_layers, self.impl = hp["d_model"], hp["n_layers"], impl
        self.embed = nn.Embedding(vocab_size, self.d_model)
        self.rnn = self.fused_cls(self.d_model, self.d_model, self.n_layers, batch_first=True)
        self.drop = dropout_layer(dropout)
        self.head = nn.Linear(self.d_model, vocab_size, bias=False)
        if tie_weights:
            self.head.weight = self.embed.weight

    def hparams(self):
        return {"d_model": self.d_model, "n_layers": self.n_layers, "impl": self.impl}

    def forward(self, tokens, state=None):
        x = self.drop(self.embed(tokens))  # [B, T, D]
        run = self.rnn if self.impl == "fused" else self.unrolled
        y, state = run(x, state)  # y: [B, T, D]; state: [L, B, D] (LSTM: a pair of them)
        return self.head(self.drop(y)), state

    # --- the explicit per-step path -------------------------------------------------------
    def unrolled(self, x, state=None):
        B, T, D = x.shape
        if state is None:
            state = self.zero_state(B, x)
        layers = _split(state)  # one state per layer
        weights = [self.layer_weights(i) for i in range(self.n_layers)]
        outputs = []
        for t in range(T):
            inp = x[:, t]  # [B, D]
            for i in range(self.n_layers):
                inp, layers[i] = self.step(inp, layers[i], *weights[i])
            outputs.append(inp)
        return torch.stack(outputs, dim=1), _merge(layers)  # [B, T, D]

    def layer_weights(self, i):
        return tuple(
            getattr(self.rnn, f"{n}_l{i}") for n in ("weight_ih", "bias_ih", "weight_hh", "bias_hh")
        )

    def zero_state(self, B, like):
        return like.new_zeros(self.n_layers, B, self.d_model)  # [L, B, D]

    def step(self, x, h, w_ih, b_ih, w_hh, b_hh):
        raise NotImplementedError  # each subclass states its cell equation


class RNN(Recurrent):
    fused_cls = nn.RNN
    presets = {
        "xs": dict(d_model=158, n_layers=2),
        "s": dict(d_model=316, n_layers=2),
        "m": dict(d_model=472, n_layers=4),
    }

    def step(self, x, h, w_ih, b_ih, w_hh, b_hh):
        h = torch.tanh(F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh))
        return h, h


class GRU(Recurrent):
    fused_cls = nn.GRU
    presets = {
        "xs": dict(d_model=90, n_layers=2),
        "s": dict(d_model=182, n_layers=2),
        "m": dict(d_model=272, n_layers=4),
    }

    def step(self, x, h, w_ih, b_ih, w_hh, b_hh):
        ir, iz, i_n = F.linear(x, w_ih, b_ih).chunk(3, dim=-1)  # 3 x [B, D]
        hr, hz, hn = F.linear(h, w_hh, b_hh).chunk(3, dim=-1)
        r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
        n = torch.tanh(i_n + r * hn)
        h = (1 - z) * n + z * h
        return h, h


class LSTM(Recurrent):
    fused_cls = nn.LSTM
    presets = {
        "xs": dict(d_model=80, n_layers=2),
        "s": dict(d_model=158, n_layers=2),
        "m": dict(d_model=236, n_layers=4),
    }

    def zero_state(self, B, like):
        h = like.new_zeros(self.n_layers, B, self.d_model)  # [L, B, D]
        return (h, h.clone())

    def step(self, x, hc, w_ih, b_ih, w_hh, b_hh):
        h, c = hc
        gates = F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)  # [B, 4D]
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)


def _split(state):
    """[L, B, D] (or a tuple of them) -> a list of L per-layer states (views, no copies)."""
    if isinstance(state, tuple):
        return list(zip(*(s.unbind(0) for s in state)))
    return list(state.unbind(0))


def _merge(layers):
    """Inverse of _split: stack per-layer states back into [L, B, D] (or a tuple)."""
    if isinstance(layers[0], tuple):
        return tuple(torch.stack(s) for s in zip(*layers))
    return torch.stack(layers)
