"""Bag-of-words baseline: the README's "Add your own model" example, in one file.

Predicts the next token from the *average* of the embeddings seen so far:

    h_t = (1 / t) * sum_{s <= t} E[x_s],     logits_t = W h_t

It is causal, ignores word order entirely (the lecture's "bag of words", C6) and carries a
two-tensor state (running sum [B, D], count [B, 1]) so it generates token by token like any
other seqbench model.
"""

import torch
import torch.nn as nn

from seqbench.models import SequenceModel, resolve_size

PRESETS = {"xs": dict(d_model=64), "s": dict(d_model=128), "m": dict(d_model=192)}


class BagOfWords(SequenceModel):
    family = "baseline"
    presets = PRESETS

    def __init__(self, vocab_size: int, size: str = "xs", d_model: int | None = None):
        super().__init__()
        self.d_model = resolve_size(size, self.presets, d_model=d_model)["d_model"]
        self.embed = nn.Embedding(vocab_size, self.d_model)
        self.mix = nn.Linear(self.d_model, self.d_model)  # the only non-embedding weights
        self.head = nn.Linear(self.d_model, vocab_size, bias=False)

    def hparams(self):
        return {"d_model": self.d_model}

    def forward(self, tokens, state=None):
        B, T = tokens.shape
        x = self.embed(tokens)  # [B, T, D]
        total, count = (x.new_zeros(B, self.d_model), 0) if state is None else state
        sums = total[:, None] + x.cumsum(dim=1)  # [B, T, D] running sums
        counts = count + torch.arange(1, T + 1, device=x.device, dtype=x.dtype)  # [T]
        h = torch.relu(self.mix(sums / counts[None, :, None]))  # [B, T, D]
        return self.head(h), (sums[:, -1], count + T)
