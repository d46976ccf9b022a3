"""Masked-token prediction on real text (C8): BERT's objective through the one next-token harness.

Devlin et al. 2019 (BERT) pick ~15% of the positions of a sequence, replace them by a [MASK]
token and predict the original tokens there, from both sides:

    input   x_1 .. [M] .. x_t .. [M] .. x_T          targets  -100 .. x_i .. -100 .. x_j .. -100

Used with ``model=transformer model.causal=false`` it needs no change to the harness: the
loss is cross-entropy on the scored positions, exactly as for every other task. The text,
tokenizer and train/validation split are those of :class:`seqbench.data.text.Text` with the
same arguments; the MASK id is the text vocabulary size, so ``vocab_size`` grows by one.

How many positions: each row masks ``floor(r T)`` or ``floor(r T) + 1`` positions (the extra one
with probability ``frac(r T)``), at least one, chosen uniformly without replacement. The
expected mask rate is therefore exactly ``mask_rate`` (BERT rounds to a fixed count per
sequence, which at T = 64 would mean 10/64 = 15.6%), and the supervised targets per pass are
an exact count, never an estimate. (With mask_rate * T < 1 every row still masks one
position, so the rate is then 1/T.) Every masked position becomes [MASK]; BERT's 80/10/10
random/keep replacement is left out so that the objectives differ in one thing only.
"""

import torch

from seqbench.data import IGNORE
from seqbench.data.text import Text


class MaskedText(Text):
    """Text's keys (handed on whole: seqbench.config reads them from Text) and mask_rate."""

    def __init__(self, mask_rate: float = 0.15, **text):
        if not (isinstance(mask_rate, int | float) and 0 < mask_rate < 1):
            raise ValueError(f"data.mask_rate={mask_rate!r} is not allowed: a number in (0, 1)")
        if text.get("stream"):  # a masked row sees both sides: no state to carry along a stream
            raise ValueError(
                "data.stream=true is not allowed with masked_text: random windows only"
            )
        super().__init__(**text)
        self.mask_rate = float(mask_rate)
        self.mask_id = self.vocab_size  # one past the text vocabulary
        self.vocab_size += 1

    def _generate(self, gen, n, split):
        window, _ = super()._generate(gen, n, split)  # [n, T]: the original tokens
        return self.mask(window, gen)

    def mask(self, tokens, gen):
        """(masked tokens, targets): a fresh mask for every row of tokens [n, T]."""
        n, T = tokens.shape
        base, frac = divmod(self.mask_rate * T, 1.0)
        counts = int(base) + (torch.rand(n, generator=gen) < frac).long()  # [n]
        counts = counts.clamp(min=1, max=T)
        # a uniformly random order of positions per row; its first counts[i] are masked
        order = torch.rand(n, T, generator=gen).argsort(dim=1)  # [n, T]
        rank = torch.empty_like(order).scatter_(1, order, torch.arange(T).expand(n, T))
        masked = rank < counts[:, None]  # [n, T] bool
        inputs = tokens.masked_fill(masked, self.mask_id)
        targets = tokens.masked_fill(~masked, IGNORE)
        return inputs, targets

    def eval_streams(self) -> dict:
        return {}  # the masked objective is scored on its windows, not as a stream

    def fingerprint(self):
        return super().fingerprint() | {"mask_rate": self.mask_rate, "mask_id": self.mask_id}
