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

On a GPU a sequential step is a chain of small kernels, and each launch costs a few
microseconds of CPU time whatever the kernel does: for a small model the launches *are* the
step. ``cuda_graph=True`` captures one state-carrying step once (``GraphedStep``, a
``torch.cuda.CUDAGraph``) and replays it, one launch per token (Nvidia's CUDA graphs; the
same trick as vLLM's and gpt-fast's decoding). A graph replays fixed shapes and addresses,
so it needs a state whose shapes do not change from step to step: the recurrent models'
hidden state, not the Transformer's growing KV cache (``GraphedStep`` says so in one line).
seqbench.measure.kernels counts kernels and launches per step with torch.profiler.
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
def decode(model, logits, state, n_new, temperature=0.0, top_k=None, generator=None, graph=None):
    """Continue from ``prefill``'s (logits, state) for ``n_new`` tokens, feeding one token and
    the carried state per step; with ``graph`` (a ``GraphedStep`` of this model) each step is
    one replay of the captured step. Returns (new tokens [B, n_new], final state). The inputs
    are not modified, so a timer may call this repeatedly from the same prefilled state."""
    step = graph.start(state) if graph is not None else _EagerStep(model, state)
    out = []
    for _ in range(n_new):
        tok = next_token(logits, temperature, top_k, generator)  # [B]
        out.append(tok)
        logits = step(tok)  # [B, V]
    return torch.stack(out, dim=1), step.state


class _EagerStep:
    """One step as plain calls: model(token, state), the state replaced by the returned one."""

    def __init__(self, model, state):
        self.model, self.state = model, state

    def __call__(self, tok):  # tok [B] -> logits [B, V]
        logits, self.state = self.model(tok[:, None], self.state)  # [B, 1, V]
        return logits[:, -1]


class GraphedStep:
    """One decode step ``model(token, state)`` captured as a CUDA graph, for a model whose
    state keeps its shapes from step to step.

    The graph reads the token from ``self.tok`` [B] and the state from ``self.state`` (static
    buffers, fixed addresses), writes the logits to ``self.logits`` [B, V] and copies the new
    state back into ``self.state`` inside the graph, so a step is: copy the token in, replay.
    ``start(state)`` copies a prefilled state in (the caller's tensors are not touched)."""

    def __init__(self, model, state, batch_size):
        device = _first_tensor(state).device
        self.tok = torch.zeros(batch_size, dtype=torch.long, device=device)  # [B]
        self.state = _clone(state)
        with torch.no_grad():  # one eager step: does the state keep its shapes?
            _, new = model(self.tok[:, None], _clone(self.state))
        if _shapes(new) != _shapes(self.state):
            raise ConfigError(
                f"cuda_graph=True is not allowed for {type(model).__name__}: its state changes "
                f"shape every step (first tensor {_shapes(self.state)[0]} -> {_shapes(new)[0]}, "
                "e.g. a growing KV cache) and a CUDA graph replays fixed shapes"
            )
        if device.type != "cuda":
            raise ConfigError(
                f"cuda_graph=True is not allowed on device {device.type!r}: CUDA graphs need "
                "a CUDA device"
            )
        # the caller's autocast, without its weight-cast cache (cached casts made during a
        # capture would be freed under the graph's feet)
        amp = torch.autocast(
            "cuda",
            dtype=torch.get_autocast_dtype("cuda"),
            enabled=torch.is_autocast_enabled("cuda"),
            cache_enabled=False,
        )
        side = torch.cuda.Stream(device)  # warm-up off the capturing stream, as torch asks
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side), torch.no_grad(), amp:
            for _ in range(3):
                model(self.tok[:, None], _clone(self.state))
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), torch.no_grad(), amp:
            logits, new = model(self.tok[:, None], self.state)  # [B, 1, V]
            self.logits = logits[:, -1]  # [B, V]
            _copy_into(self.state, new)

    def start(self, state):
        _copy_into(self.state, state)
        return self

    def __call__(self, tok):  # tok [B] -> logits [B, V] (a view of the graph's buffer)
        self.tok.copy_(tok)
        self.graph.replay()
        return self.logits


def _tensors(state):
    """The tensors of a state (a tensor, or nested tuples/lists/dicts of them), in order."""
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, dict):
        return [t for v in state.values() for t in _tensors(v)]
    if isinstance(state, list | tuple):
        return [t for v in state for t in _tensors(v)]
    return []


def _first_tensor(state):
    tensors = _tensors(state)
    if not tensors:
        raise ConfigError("cuda_graph=True is not allowed for a model without a state to carry")
    return tensors[0]


def _shapes(state):
    return [tuple(t.shape) for t in _tensors(state)]


def _clone(state):
    if isinstance(state, torch.Tensor):
        return state.clone()
    if isinstance(state, dict):
        return {k: _clone(v) for k, v in state.items()}
    if isinstance(state, list | tuple):
        return type(state)(_clone(v) for v in state)
    return state


def _copy_into(dst, src):
    for d, s in zip(_tensors(dst), _tensors(src), strict=True):
        d.copy_(s)


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


def generate(
    model,
    prompt,
    n_new,
    temperature=0.0,
    top_k=None,
    seed=None,
    use_cache=True,
    cuda_graph=False,
):
    """prompt [B, T0] -> prompt followed by ``n_new`` generated tokens [B, T0 + n_new].
    ``seed`` seeds the sampling generator (ignored by greedy decoding); ``cuda_graph``
    replays each state-carrying step as one captured CUDA graph (``GraphedStep``)."""
    check_sampling(temperature, top_k)
    if n_new < 0:
        raise ValueError(f"n_new={n_new!r} is not allowed: an integer >= 0")
    if cuda_graph and not use_cache:
        raise ConfigError(
            "cuda_graph=True is not allowed with use_cache=False: a graph "
            "replays the state-carrying step"
        )
    if cuda_graph and prompt.device.type != "cuda":
        raise ConfigError(
            f"cuda_graph=True is not allowed on device {prompt.device.type!r}: CUDA graphs "
            "need a CUDA device"
        )
    generator = None
    if temperature > 0:
        generator = torch.Generator(prompt.device)
        generator.manual_seed(0 if seed is None else seed)
    was_training = model.training
    model.eval()
    try:
        if use_cache:
            logits, state = prefill(model, prompt)
            graph = GraphedStep(model, state, prompt.size(0)) if cuda_graph else None
            new, _ = decode(model, logits, state, n_new, temperature, top_k, generator, graph)
        else:
            new = decode_recompute(model, prompt, n_new, temperature, top_k, generator)
    finally:
        model.train(was_training)
    return torch.cat([prompt, new], dim=1)


def state_bytes(state) -> int:
    """Memory held by a state: RNN hidden (and cell) tensors or every K and V of the cache."""
    return sum(t.numel() * t.element_size() for t in _tensors(state))
