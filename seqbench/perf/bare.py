"""The bare side of every comparison: what a user writes for the same recipe without seqbench.

    model   nn.Embedding + nn.LSTM + nn.Linear, or a minimal pre-LN Transformer block on
            F.scaled_dot_product_attention(is_causal=True) (Vaswani et al. 2017, pre-LN as in
            Xiong et al. 2020), with seqbench's parameter names and shapes so that
            ``bare.load_state_dict(seqbench_model.state_dict())`` is strict; the sizes a
            reproduction sets (embedding width, feed-forward width, dropout) as arguments;
    step    zero_grad, forward, cross-entropy, backward, clip_grad_norm_, optimiser step,
            LambdaLR with linear warm-up then cosine decay (or no schedule at a constant lr),
            the recurrent state carried and detached between windows when there is one.
            As a careful user writes it: the optimiser's fused kernel on CPU and CUDA (one
            kernel for all parameters, not a Python loop over them), bf16 autocast on CUDA.

Deliberately written again rather than imported from seqbench.train: this is the reference
the harness is timed against, so it must not share the harness's code.
"""

import contextlib
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from seqbench.data import IGNORE
from seqbench.models.transformer import sinusoidal


def _dropout(p):
    return nn.Dropout(p) if p else nn.Identity()  # a p=0 dropout still costs a kernel


class BareLSTM(nn.Module):
    def __init__(self, vocab_size, d, n_layers, d_embed=None, dropout=0.0):
        super().__init__()
        d_embed = d_embed or d
        self.embed = nn.Embedding(vocab_size, d_embed)
        between = dropout if n_layers > 1 else 0.0
        self.rnn = nn.LSTM(d_embed, d, n_layers, batch_first=True, dropout=between)
        self.drop = _dropout(dropout)
        self.head = nn.Linear(d, vocab_size, bias=False)

    def forward(self, tokens, state=None):
        y, state = self.rnn(self.drop(self.embed(tokens)), state)  # y: [B, T, D]
        return self.head(self.drop(y)), state  # [B, T, V]


class BareBlock(nn.Module):
    def __init__(self, d, n_heads, d_ff, dropout):
        super().__init__()
        self.n_heads, self.p = n_heads, dropout
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, d_ff), nn.GELU(), nn.Linear(d_ff, d))
        self.drop = _dropout(dropout)

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, self.n_heads, D // self.n_heads).unbind(2)
        y = F.scaled_dot_product_attention(
            q.transpose(1, 2),
            k.transpose(1, 2),
            v.transpose(1, 2),
            is_causal=True,
            dropout_p=self.p if self.training else 0.0,
        )  # [B, H, T, dh]
        x = x + self.drop(self.proj(y.transpose(1, 2).reshape(B, T, D)))
        return x + self.drop(self.mlp(self.ln2(x)))


class BareTransformer(nn.Module):
    def __init__(self, vocab_size, d, n_layers, n_heads, max_len, d_ff=None, dropout=0.0):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d)
        # the sinusoidal table once, as a buffer
        self.register_buffer("pe", sinusoidal(torch.arange(max_len), d), persistent=False)
        self.drop = _dropout(dropout)
        self.blocks = nn.ModuleList(
            BareBlock(d, n_heads, d_ff or 4 * d, dropout) for _ in range(n_layers)
        )
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab_size, bias=False)

    def forward(self, tokens, state=None):
        x = self.embed(tokens) * math.sqrt(self.embed.embedding_dim)  # [B, T, D], Vaswani 3.4
        x = self.drop(x + self.pe[: tokens.size(1)])
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x)), None  # a fixed window: nothing to carry


def bare_model(name, sb_model, vocab_size, seq_len, dropout=0.0):
    """The bare twin of a seqbench model, same shapes and parameter names."""
    d, L = sb_model.d_model, sb_model.n_layers
    if name == "lstm":
        return BareLSTM(vocab_size, d, L, sb_model.d_embed, dropout)
    heads = sb_model.blocks[0].n_heads
    return BareTransformer(vocab_size, d, L, heads, seq_len, sb_model.d_ff, dropout)


def bare_step(model, opt, sched, tokens, targets, clip, autocast, state=None):
    """-> (loss, state): the state detached for the next window (None for a fixed window)."""
    opt.zero_grad(set_to_none=True)
    with autocast:
        logits, state = model(tokens, state)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    if sched is not None:
        sched.step()
    if state is not None:
        state = tuple(s.detach() for s in state)  # the LSTM's (h, c)
    return loss, state


def warmup_cosine(opt, t):
    """The same schedule as the harness, as a user would write it: linear warm-up, cosine."""

    def factor(step):
        if step < t.warmup:
            return (step + 1) / t.warmup
        progress = min(1.0, (step - t.warmup) / max(1, t.steps - t.warmup))
        return t.min_lr_frac + (1 - t.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def make_opt(params, t, device):
    fused = device.type in ("cuda", "cpu") or None  # what a careful user asks for
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.lr, weight_decay=t.weight_decay, fused=fused)
    return torch.optim.AdamW(
        params, lr=t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay, fused=fused
    )


def autocast(device):
    """bf16 autocast on CUDA, as the harness; plain fp32 elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
