"""Decoder-only Transformer (Vaswani et al. 2017; GPT-2's pre-LN arrangement, Radford 2019).

    x = embed(tokens) [+ positions]
    per block:  x = x + Attn(LN(x)),  x = x + MLP(LN(x))
    Attn(x) = softmax(Q K^T / sqrt(d_head) + causal mask) V      (F.scaled_dot_product_attention)

Positional encoding (C6): ``sinusoidal`` (Vaswani), ``learned`` (GPT-2), ``rope`` (Su et al.
2021, rotates Q and K) or ``none`` (Haviv et al. 2022: a causal model can still infer order).
``causal=False`` gives the bidirectional encoder used for the masked objective (C8) and the
permutation-equivariance check.

The state is the KV cache: a list with one (K, V) pair per layer, each [B, H, T_past, d_head].
Feeding tokens together with a cache continues the sequence at position T_past.

Initialisation (GPT-2, Radford et al. 2019, as nanoGPT): every Linear and Embedding weight
N(0, 0.02), biases 0, and the two projections that write into the residual stream (attention
out, MLP out) N(0, 0.02 / sqrt(2 n_layers)), so the residual's variance does not grow with
depth. With the sinusoidal table the token embeddings are scaled by sqrt(d_model) (Vaswani et
al. 2017, sec. 3.4), so the table does not drown them. ``d_ff`` is the MLP's hidden width
(4 d_model by default, Vaswani et al.).
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from seqbench.models import SequenceModel, dropout_layer, size_presets

# 5xs .. xs span 30x in non-embedding parameters (the CPU range of the scaling study, C10);
# s .. l extend it to ~950x on a GPU. Every other family's presets match these within 10%.
PRESETS = size_presets("16x1 24x1 40x1 48x2 64x2 128x2 192x4 256x4")
POSITIONS = ("sinusoidal", "learned", "rope", "none")


class Transformer(SequenceModel):
    family = "attention"
    presets = PRESETS

    def __init__(
        self,
        vocab_size: int,
        n_heads: int = 4,
        d_ff: int | None = None,
        pos: str = "sinusoidal",
        max_len: int = 1024,
        causal: bool = True,
        dropout: float = 0.0,
        tie_weights: bool = False,
        **shape,  # size, d_model, n_layers: SequenceModel
    ):
        super().__init__(**{"size": "xs", **shape})
        if self.d_model % n_heads:
            raise ValueError(
                f"model.n_heads={n_heads} is not allowed: it must divide "
                f"model.d_model={self.d_model}"
            )
        if pos not in POSITIONS:
            raise ValueError(f"model.pos={pos!r} is not allowed: one of {list(POSITIONS)}")
        self.pos, self.max_len, self.causal = pos, max_len, causal
        self.embed = nn.Embedding(vocab_size, self.d_model)
        if pos == "learned":
            self.pos_embed = nn.Embedding(max_len, self.d_model)
        if pos == "sinusoidal":  # the table once, not ~10 small ops every call (seqbench.perf)
            table = sinusoidal(torch.arange(max_len), self.d_model)  # [max_len, D]
            self.register_buffer("pe", table, persistent=False)  # not in the state_dict
        self.drop = dropout_layer(dropout)
        self.d_ff = d_ff or 4 * self.d_model
        self.blocks = nn.ModuleList(
            Block(self.d_model, n_heads, self.d_ff, dropout, rope=(pos == "rope"))
            for _ in range(self.n_layers)
        )
        self.ln_f = nn.LayerNorm(self.d_model)
        self.head = nn.Linear(self.d_model, vocab_size, bias=False)
        self.apply(_gpt2_init)
        for block in self.blocks:  # the residual projections, scaled for depth
            for proj in (block.proj, block.mlp[2]):
                nn.init.normal_(proj.weight, std=0.02 / math.sqrt(2 * self.n_layers))
        if tie_weights:
            self.head.weight = self.embed.weight

    def hparams(self):
        return {
            "d_model": self.d_model,
            "n_layers": self.n_layers,
            "n_heads": self.blocks[0].n_heads if self.n_layers else None,
            "d_ff": self.d_ff,
            "pos": self.pos,
            "causal": self.causal,
            "max_len": self.max_len,
        }

    def forward(self, tokens, state=None):
        B, T = tokens.shape
        past = 0 if state is None else state[0][0].size(2)
        positions = torch.arange(past, past + T, device=tokens.device)  # [T]
        x = self.embed(tokens)  # [B, T, D]
        if self.pos == "learned":
            if past + T > self.max_len:
                raise ValueError(f"position {past + T - 1} exceeds model.max_len={self.max_len}")
            x = x + self.pos_embed(positions)
        elif self.pos == "sinusoidal":
            fits = past + T <= self.pe.size(0)
            pe = self.pe[past : past + T] if fits else sinusoidal(positions, self.d_model)
            # Vaswani et al. (2017, sec. 3.4) scale the embeddings by sqrt(d_model): the table's
            # entries are ~1, a GPT-2-initialised embedding's 0.02, which it would drown
            x = x * math.sqrt(self.d_model) + pe.to(x.dtype)
        x = self.drop(x)
        cache = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, positions, None if state is None else state[i], self.causal)
            cache.append(kv)
        return self.head(self.ln_f(x)), cache  # [B, T, V]


def _gpt2_init(module):
    if isinstance(module, nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


class Block(nn.Module):
    def __init__(self, d, n_heads, d_ff, dropout, rope):
        super().__init__()
        self.n_heads, self.rope = n_heads, rope
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, d_ff), nn.GELU(), nn.Linear(d_ff, d))
        self.drop = dropout_layer(dropout)
        self.p_attn = dropout

    def forward(self, x, positions, kv, causal):
        B, T, D = x.shape
        H = self.n_heads
        qkv = self.qkv(self.ln1(x)).view(B, T, 3, H, D // H)  # [B, T, 3, H, dh]
        q, k, v = (t.transpose(1, 2) for t in qkv.unbind(2))  # 3 x [B, H, T, dh], views
        if self.rope:
            q, k = rotate(q, positions), rotate(k, positions)
        if kv is not None:  # continue after a cached prefix
            k, v = torch.cat([kv[0], k], dim=2), torch.cat([kv[1], v], dim=2)  # [B, H, S, dh]
        S = k.size(2)
        # one new query (a decoding step) sees every cached position: no mask at all
        mask, is_causal = None, causal and T > 1
        if is_causal and S != T:  # query i sits at absolute position S - T + i
            mask = torch.ones(T, S, dtype=torch.bool, device=x.device).tril(S - T)
            is_causal = False
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            is_causal=is_causal,
            dropout_p=self.p_attn if self.training else 0.0,
        )
        y = y.transpose(1, 2).reshape(B, T, D)  # [B, T, D]
        x = x + self.drop(self.proj(y))
        x = x + self.drop(self.mlp(self.ln2(x)))
        return x, (k, v)


def sinusoidal(positions, d):
    """PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(...)  ->  [T, d]"""
    freqs = torch.exp(torch.arange(0, d, 2, device=positions.device) * (-math.log(10000.0) / d))
    angles = positions.float()[:, None] * freqs[None]  # [T, d/2]
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)  # [T, d]


def rotate(x, positions):
    """RoPE: rotate channel pairs of x [B, H, T, dh] by angle p * theta_i."""
    dh = x.size(-1)
    theta = torch.exp(torch.arange(0, dh, 2, device=x.device) * (-math.log(10000.0) / dh))
    angles = positions.float()[:, None] * theta[None]  # [T, dh/2]
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x[..., 0::2], x[..., 1::2]  # [B, H, T, dh/2] each
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)
