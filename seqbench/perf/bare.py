"""The bare side of every comparison: what a user writes for the same recipe without seqbench.

    model   nn.Embedding + nn.LSTM + nn.Linear, or a minimal pre-LN Transformer block on
            F.scaled_dot_product_attention(is_causal=True) (Vaswani et al. 2017, pre-LN as in
            Xiong et al. 2020), with seqbench's parameter names and shapes so that
            ``bare.load_state_dict(seqbench_model.state_dict())`` is strict;
    step    zero_grad, forward, cross-entropy, backward, clip_grad_norm_, AdamW step,
            LambdaLR with linear warm-up then cosine decay (fused AdamW and bf16 autocast on
            CUDA, as the harness).

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


class BareLSTM(nn.Module):
    def __init__(self, vocab_size, d, n_layers):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d)
        self.rnn = nn.LSTM(d, d, n_layers, batch_first=True)
        self.head = nn.Linear(d, vocab_size, bias=False)

    def forward(self, tokens):
        return self.head(self.rnn(self.embed(tokens))[0])  # [B, T, V]


class BareBlock(nn.Module):
    def __init__(self, d, n_heads):
        super().__init__()
        self.n_heads = n_heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, self.n_heads, D // self.n_heads).unbind(2)
        y = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
        )  # [B, H, T, dh]
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, D))
        return x + self.mlp(self.ln2(x))


class BareTransformer(nn.Module):
    def __init__(self, vocab_size, d, n_layers, n_heads, max_len):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d)
        # the sinusoidal table once, as a buffer (seqbench recomputes it every call)
        self.register_buffer("pe", sinusoidal(torch.arange(max_len), d), persistent=False)
        self.blocks = nn.ModuleList(BareBlock(d, n_heads) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab_size, bias=False)

    def forward(self, tokens):
        x = self.embed(tokens) + self.pe[: tokens.size(1)]  # [B, T, D]
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def bare_model(name, sb_model, vocab_size, seq_len):
    """The bare twin of a seqbench model, same shapes and parameter names."""
    d, L = sb_model.d_model, sb_model.n_layers
    if name == "lstm":
        return BareLSTM(vocab_size, d, L)
    return BareTransformer(vocab_size, d, L, sb_model.blocks[0].n_heads, seq_len)


def bare_step(model, opt, sched, tokens, targets, clip, autocast):
    opt.zero_grad(set_to_none=True)
    with autocast:
        logits = model(tokens)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    sched.step()
    return loss


def warmup_cosine(opt, t):
    """The same schedule as the harness, as a user would write it: linear warm-up, cosine."""

    def factor(step):
        if step < t.warmup:
            return (step + 1) / t.warmup
        progress = min(1.0, (step - t.warmup) / max(1, t.steps - t.warmup))
        return t.min_lr_frac + (1 - t.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def make_opt(params, t, device):
    return torch.optim.AdamW(
        params,
        lr=t.lr,
        betas=tuple(t.betas),
        weight_decay=t.weight_decay,
        fused=(device.type == "cuda") or None,
    )


def autocast(device):
    """bf16 autocast on CUDA, as the harness; plain fp32 elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
