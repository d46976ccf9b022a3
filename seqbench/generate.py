"""Autoregressive generation, one module for every model (C2, C11).

    x_{t+1} = argmax_v p(v | x_{<=t})                                   (greedy)
    x_{t+1} ~ softmax(top_k(logits_t) / temperature)                    (sampling)

Generation is sequential by construction: token t+1 is an input of step t+2. Two ways to run
a step, both through the one model contract ``forward(tokens, state) -> (logits, state)``:

- ``use_cache=True``: feed only the new token together with the carried state (the RNN's
  hidden state, the Transformer's KV cache, Pope et al. 2022), so a step costs O(1) for a
  recurrence and O(context) for attention;
- ``use_cache=False``: recompute the whole prefix every step (no state), O(context) for a
  recurrence and O(context^2) for attention: what a Transformer costs without its cache.

Both must produce the same tokens (tests/test_generate.py checks it for every model).
Sampling draws from a seeded ``torch.Generator`` so a run is reproducible.
"""

import torch

from seqbench.config import ConfigError


def check_sampling(temperature: float, top_k: int | None) -> None:
    if not (isinstance(temperature, int | float) and temperature >= 0):
        raise ConfigError(
            f"temperature={temperature!r} is not allowed: a number >= 0 (0 means greedy argmax)"
        )
    if top_k is not None and not (isinstance(top_k, int) and top_k > 0):
        raise ConfigError(f"top_k={top_k!r} is not allowed: null or a positive integer")


def next_token(logits, temperature=0.0, top_k=None, generator=None):
    """logits [B, V] -> next tokens [B]: argmax when temperature == 0, else a sample."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = logits.topk(top_k, dim=-1).values[:, -1:]  # [B, 1] the k-th largest
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)  # [B, V]
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


@torch.no_grad()
def prefill(model, prompt):
    """Run the prompt [B, T0] once; return (logits of its last position [B, V], state)."""
    logits, state = model(prompt)  # [B, T0, V]
    return logits[:, -1], state


@torch.no_grad()
def decode(model, logits, state, n_new, temperature=0.0, top_k=None, generator=None):
    """Continue from ``prefill``'s (logits, state) for ``n_new`` tokens, feeding one token and
    the carried state per step. Returns (new tokens [B, n_new], final state). The inputs are
    not modified, so a timer may call this repeatedly from the same prefilled state."""
    out = []
    for _ in range(n_new):
        tok = next_token(logits, temperature, top_k, generator)  # [B]
        out.append(tok)
        step_logits, state = model(tok[:, None], state)  # [B, 1, V]
        logits = step_logits[:, -1]
    return torch.stack(out, dim=1), state


@torch.no_grad()
def decode_recompute(model, prefix, n_new, temperature=0.0, top_k=None, generator=None):
    """Generate ``n_new`` tokens after ``prefix`` [B, T0] re-running the whole sequence each
    step (no state carried). Returns the new tokens [B, n_new]."""
    seq = prefix
    for _ in range(n_new):
        logits, _ = model(seq)  # [B, t, V]
        tok = next_token(logits[:, -1], temperature, top_k, generator)  # [B]
        seq = torch.cat([seq, tok[:, None]], dim=1)
    return seq[:, prefix.size(1) :]


def generate(model, prompt, n_new, temperature=0.0, top_k=None, seed=None, use_cache=True):
    """prompt [B, T0] -> prompt followed by ``n_new`` generated tokens [B, T0 + n_new].
    ``seed`` seeds the sampling generator (ignored by greedy decoding)."""
    check_sampling(temperature, top_k)
    if n_new < 0:
        raise ValueError(f"n_new={n_new!r} is not allowed: an integer >= 0")
    generator = None
    if temperature > 0:
        generator = torch.Generator(prompt.device)
        generator.manual_seed(0 if seed is None else seed)
    was_training = model.training
    model.eval()
    try:
        if use_cache:
            logits, state = prefill(model, prompt)
            new, _ = decode(model, logits, state, n_new, temperature, top_k, generator)
        else:
            new = decode_recompute(model, prompt, n_new, temperature, top_k, generator)
    finally:
        model.train(was_training)
    return torch.cat([prompt, new], dim=1)


def state_bytes(state) -> int:
    """Memory held by a state: RNN hidden (and cell) tensors or every K and V of the cache."""
    if state is None:
        return 0
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        return sum(state_bytes(v) for v in state.values())
    if isinstance(state, list | tuple):
        return sum(state_bytes(v) for v in state)
    return 0
