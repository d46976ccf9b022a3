"""minGRU and minLSTM (Feng et al. 2024, "Were RNNs All We Needed?"): recurrences whose gates
read only the input, so training need not walk the sequence step by step.

    minGRU:   z_t = σ(W_z x_t),   h̃_t = g(W_h x_t),
              h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t
    minLSTM:  f_t = σ(W_f x_t),   i_t = σ(W_i x_t),   h̃_t = g(W_h x_t),
              f'_t = f_t / (f_t + i_t),   i'_t = i_t / (f_t + i_t)     (length-independent scale)
              h_t = f'_t ⊙ h_{t-1} + i'_t ⊙ h̃_t

with g(x) = x + 0.5 for x >= 0, σ(x) otherwise (the paper's positive activation, so h_t > 0 and
log h_t exists). Both are the linear recurrence h_t = a_t ⊙ h_{t-1} + b_t with a_t, b_t
functions of x_t alone, so two execution paths compute the *same* function with the *same*
parameters:
- ``impl="sequential"``: the paper's sequential mode, a Python loop over time steps (and,
  inside it, over layers: layer l at step t needs only layer l-1 at step t and layer l at step
  t-1, the same diagonal wavefront as the unrolled LSTM);
- ``impl="scan"``: the parallel mode, in log space (Heinsen 2023): the pairs (log a_t, log b_t)
  are combined by the associative operator
      (A1, B1) then (A2, B2)  =  (A1 + A2,  logaddexp(A2 + B1, B2))
  in an explicit Hillis & Steele (1986) inclusive scan over the time axis: ceil(log2 T) rounds
  of whole-tensor ops, so the dataflow depth grows like log T (work T log T; a Blelloch scan
  would do O(T) work at twice the depth). We do not use torch.cumsum/logcumsumexp, which
  are one opaque op each and would show a span that does not depend on T at all.
tests/test_minrnn.py proves the two paths equal in values and gradients. Initialisation:
PyTorch's defaults (Kaiming-uniform Linear, as the paper's reference code uses).

Layer stack (the paper's language-model arrangement, kept small): pre-LN residual blocks,
    x = x + minRNN(LN(x)),   x = x + MLP(LN(x))      (MLP: d -> 4d -> d, GELU)
no output projection inside the minRNN (the paper's expansion factor 1). The state is the last
hidden state of every layer, [L, B, D], so feeding tokens one at a time with the returned
state reproduces the full forward.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from seqbench.models import SequenceModel, dropout_layer, size_presets

IMPLS = ("sequential", "scan")


def g(x):
    """The paper's positive activation: x + 0.5 for x >= 0, σ(x) below (continuous at 0)."""
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


def log_g(x):
    """log g(x), computed without ever taking the log of a tiny number."""
    return torch.where(x >= 0, torch.log(F.relu(x) + 0.5), -F.softplus(-x))


def log_scan(log_a, log_b):
    """Inclusive scan of h_t = a_t h_{t-1} + b_t (from h_{-1} = 0) in log space.

    log_a, log_b: [B, T, D]. Returns (log of a_1...a_t, log h_t), both [B, T, D].
    Round k combines element t with element t - 2^k (Hillis & Steele 1986), so after
    ceil(log2 T) rounds element t holds the composition of steps 0..t."""
    T, offset = log_a.size(1), 1
    while offset < T:
        a_prev, b_prev = log_a[:, :-offset], log_b[:, :-offset]  # steps t - offset
        a_now, b_now = log_a[:, offset:], log_b[:, offset:]  # steps t >= offset
        log_b = torch.cat([log_b[:, :offset], torch.logaddexp(a_now + b_prev, b_now)], 1)
        log_a = torch.cat([log_a[:, :offset], a_now + a_prev], 1)
        offset *= 2
    return log_a, log_b


class MinGRUCell(nn.Module):
    """One minGRU layer: a single Linear gives the update gate and the candidate."""

    n_parts = 2

    def __init__(self, d):
        super().__init__()
        self.gates = nn.Linear(d, self.n_parts * d)

    def coefficients(self, x):
        """a, b of h_t = a h_{t-1} + b, in linear space (sequential path)."""
        k, h_tilde = self.gates(x).chunk(2, dim=-1)
        z = torch.sigmoid(k)
        return 1 - z, z * g(h_tilde)

    def log_coefficients(self, x):
        """log a, log b (scan path): log(1 - σ(k)) = -softplus(k), log σ(k) = -softplus(-k)."""
        k, h_tilde = self.gates(x).chunk(2, dim=-1)
        return -F.softplus(k), -F.softplus(-k) + log_g(h_tilde)


class MinLSTMCell(MinGRUCell):
    """One minLSTM layer: forget and input gates normalised to sum to one."""

    n_parts = 3

    def coefficients(self, x):
        kf, ki, h_tilde = self.gates(x).chunk(3, dim=-1)
        f, i = torch.sigmoid(kf), torch.sigmoid(ki)
        return f / (f + i), i / (f + i) * g(h_tilde)

    def log_coefficients(self, x):
        # log(f / (f + i)) = -softplus(log i - log f), with log σ(k) = -softplus(-k)
        kf, ki, h_tilde = self.gates(x).chunk(3, dim=-1)
        diff = F.softplus(-kf) - F.softplus(-ki)  # log i - log f
        return -F.softplus(diff), -F.softplus(-diff) + log_g(h_tilde)


class Block(nn.Module):
    def __init__(self, cell_cls, d, dropout):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.cell = cell_cls(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.drop = dropout_layer(dropout)

    def scan(self, x, h0):
        """Whole sequence at once. x: [B, T, D]; h0: [B, D] or None -> (x, h_T)."""
        log_a, log_b = self.cell.log_coefficients(self.ln1(x))  # [B, T, D] each
        log_a, log_h = log_scan(log_a, log_b)
        if h0 is not None:  # h_t += (a_1...a_t) h0; h0 > 0 because every h_t is
            log_h = torch.logaddexp(log_h, log_a + torch.log(h0).unsqueeze(1))
        h = torch.exp(log_h)  # [B, T, D]
        x = x + self.drop(h)
        return x + self.drop(self.mlp(self.ln2(x))), h[:, -1]

    def step(self, x, h):
        """One position. x: [B, D]; h: [B, D] -> (x, h)."""
        a, b = self.cell.coefficients(self.ln1(x))
        h = a * h + b
        x = x + self.drop(h)
        return x + self.drop(self.mlp(self.ln2(x))), h


class MinRNN(SequenceModel):
    family = "scan"
    impls = IMPLS
    cell_cls: type = MinGRUCell
    # width per preset, chosen so non-embedding parameters match the Transformer's within 10%
    presets: dict = {}

    def __init__(
        self,
        vocab_size: int,
        impl: str = "scan",
        dropout: float = 0.0,
        tie_weights: bool = False,
        **shape,  # size, d_model, n_layers: SequenceModel
    ):
        super().__init__(**{"size": "xs", **shape})
        if impl not in IMPLS:
            raise ValueError(f"model.impl={impl!r} is not one of {list(IMPLS)}")
        self.impl = impl
        self.embed = nn.Embedding(vocab_size, self.d_model)
        self.drop = dropout_layer(dropout)
        self.blocks = nn.ModuleList(
            Block(self.cell_cls, self.d_model, dropout) for _ in range(self.n_layers)
        )
        self.ln_f = nn.LayerNorm(self.d_model)
        self.head = nn.Linear(self.d_model, vocab_size, bias=False)
        if tie_weights:
            self.head.weight = self.embed.weight

    def hparams(self):
        return {"d_model": self.d_model, "n_layers": self.n_layers, "impl": self.impl}

    def forward(self, tokens, state=None):
        x = self.drop(self.embed(tokens))  # [B, T, D]
        run = self.scan if self.impl == "scan" else self.sequential
        y, state = run(x, state)  # y: [B, T, D]; state: [L, B, D]
        return self.head(self.ln_f(y)), state

    def scan(self, x, state=None):
        last = []
        for i, block in enumerate(self.blocks):
            x, h = block.scan(x, None if state is None else state[i])
            last.append(h)
        return x, torch.stack(last)

    def sequential(self, x, state=None):
        B, T, D = x.shape
        hs = list(x.new_zeros(self.n_layers, B, D) if state is None else state.unbind(0))
        outputs = []
        for t in range(T):
            inp = x[:, t]  # [B, D]
            for i, block in enumerate(self.blocks):
                inp, hs[i] = block.step(inp, hs[i])
            outputs.append(inp)
        return torch.stack(outputs, dim=1), torch.stack(hs)  # [B, T, D], [L, B, D]


class MinGRU(MinRNN):
    cell_cls = MinGRUCell
    presets = size_presets("17x1 26x1 44x1 53x2 70x2 140x2 210x4 280x4")


class MinLSTM(MinRNN):
    cell_cls = MinLSTMCell
    presets = size_presets("16x1 25x1 42x1 50x2 67x2 134x2 201x4 267x4")
