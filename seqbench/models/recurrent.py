"""Recurrent language models: Elman RNN, LSTM and GRU, with two execution paths.

    Elman (1990):   h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
    LSTM (Hochreiter & Schmidhuber 1997), PyTorch's gate order i, f, g, o:
                    c_t = σ(f) ⊙ c_{t-1} + σ(i) ⊙ tanh(g),   h_t = σ(o) ⊙ tanh(c_t)
    GRU (Cho et al. 2014), gate order r, z, n:
                    n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)),   h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}

Initialisation. PyTorch's default for every recurrent weight and bias, U(-1/sqrt(H), 1/sqrt(H))
(as Torch7's), except the LSTM's forget gate: its bias starts at ``forget_bias`` = 1 (Gers,
Schmidhuber & Cummins 2000; Jozefowicz, Zaremba & Sutskever 2015), so that the cell keeps its
memory from the first step; without it a stacked LSTM can sit at chance for thousands of
steps (tests/test_models.py reads the bias back from both execution paths).

Sizes. ``d_model`` is the hidden width, ``d_embed`` the token embedding's (the classic word
LMs decouple them), ``dropout`` applies to the embedding, between layers and before the head
(as in pytorch/examples' word_language_model).

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

from seqbench.models import SequenceModel, dropout_layer, size_presets


class Recurrent(SequenceModel):
    family = "recurrent"
    impls = ("fused", "unrolled")
    fused_cls: type = nn.RNN
    # width per preset, chosen so non-embedding parameters match the Transformer's within 10%
    presets: dict = {}

    def __init__(
        self,
        vocab_size: int,
        d_embed: int | None = None,
        impl: str = "fused",
        dropout: float = 0.0,
        tie_weights: bool = False,
        forget_bias: float | None = None,
        **shape,  # size, d_model, n_layers: SequenceModel
    ):
        super().__init__(**{"size": "xs", **shape})
        if impl not in self.impls:
            raise ValueError(f"model.impl={impl!r} is not allowed: one of ['fused', 'unrolled']")
        if not 0 <= dropout < 1:
            raise ValueError(f"model.dropout={dropout} is not allowed: 0 <= dropout < 1")
        self.impl = impl
        self.d_embed = d_embed or self.d_model
        if tie_weights and self.d_embed != self.d_model:
            raise ValueError(
                f"model.tie_weights=true is not allowed with model.d_embed={self.d_embed} != "
                f"model.d_model={self.d_model}: the head reads the hidden state"
            )
        self.embed = nn.Embedding(vocab_size, self.d_embed)
        between = dropout if self.n_layers > 1 else 0.0  # nn.RNN warns for one layer
        self.rnn = self.fused_cls(
            self.d_embed, self.d_model, self.n_layers, batch_first=True, dropout=between
        )
        self.drop = dropout_layer(dropout)
        self.head = nn.Linear(self.d_model, vocab_size, bias=False)
        if tie_weights:
            self.head.weight = self.embed.weight
        self.forget_bias = forget_bias
        if forget_bias is not None:
            self.init_forget_bias(forget_bias)

    def init_forget_bias(self, value):
        raise ValueError(
            f"model.forget_bias={value} is not allowed: {type(self).__name__} has no forget "
            "gate (null)"
        )

    def hparams(self):
        return {
            "d_model": self.d_model,
            "n_layers": self.n_layers,
            "d_embed": self.d_embed,
            "impl": self.impl,
            "forget_bias": self.forget_bias,
        }

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
                if i:  # between layers, as the fused module's dropout argument does
                    inp = self.drop(inp)
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
    presets = size_presets("40x1 60x1 99x1 118x2 158x2 316x2 472x4 628x4")

    def step(self, x, h, w_ih, b_ih, w_hh, b_hh):
        h = torch.tanh(F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh))
        return h, h


class GRU(Recurrent):
    fused_cls = nn.GRU
    presets = size_presets("22x1 34x1 57x1 68x2 90x2 182x2 272x4 362x4")

    def step(self, x, h, w_ih, b_ih, w_hh, b_hh):
        ir, iz, i_n = F.linear(x, w_ih, b_ih).chunk(3, dim=-1)  # 3 x [B, D]
        hr, hz, hn = F.linear(h, w_hh, b_hh).chunk(3, dim=-1)
        r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
        n = torch.tanh(i_n + r * hn)
        h = (1 - z) * n + z * h
        return h, h


class LSTM(Recurrent):
    fused_cls = nn.LSTM
    presets = size_presets("20x1 30x1 49x1 59x2 80x2 158x2 236x4 314x4")

    def init_forget_bias(self, value):
        """b_f = value: the forget slice (gate order i, f, g, o) of b_ih, with b_hh's slice 0,
        in every layer; both execution paths read these same tensors."""
        H = self.d_model
        with torch.no_grad():
            for i in range(self.n_layers):
                getattr(self.rnn, f"bias_ih_l{i}")[H : 2 * H].fill_(value)
                getattr(self.rnn, f"bias_hh_l{i}")[H : 2 * H].zero_()

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
