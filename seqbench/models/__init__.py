"""Sequence models behind one contract.

Every model is a ``SequenceModel`` built by Hydra from ``conf/model/<name>.yaml`` (``_target_``)
with ``vocab_size`` supplied by the task, declares its ``family`` and implements

    forward(tokens[B, T], state=None) -> (logits[B, T, V], state)

``state`` is whatever the model carries between calls: the recurrent hidden state, or the
Transformer's KV cache. One call therefore serves training (whole sequence, ``state=None``)
and generation (one token at a time, feeding the returned state back in). No caller ever
branches on the model family: the report groups and colours models by ``family``, a
property the class declares, never by its name.

Parameter naming convention, used for the fairness figures: token embeddings live in
``embed``, learned positions in ``pos_embed`` and the output projection in ``head``; those
count as *embedding* parameters, everything else as *non-embedding* (Kaplan et al. 2020).
"""

import torch.nn as nn

EMBEDDING_PREFIXES = ("embed.", "pos_embed.", "head.")


class SequenceModel(nn.Module):
    """Base of every seqbench model: the contract above, a family, and its hyperparameters."""

    # the report groups and colours by this: recurrent, attention, scan, conv, baseline, ...
    family: str = ""
    # the execution paths (``impl=``) that compute the same function from the same parameters,
    # e.g. a fused kernel for speed and a per-step loop for the tracer; tests/test_models.py
    # checks every one against the model file's own, in values, state and gradients
    impls: tuple = ()

    presets: dict = {}  # size -> {"d_model": ..., "n_layers": ...} (size_presets)

    def __init__(
        self, size: str | None = None, d_model: int | None = None, n_layers: int | None = None
    ):
        """Width and depth, one way for every model: a size preset (``presets``, chosen so
        non-embedding parameters match the Transformer's within 10%) or ``d_model`` /
        ``n_layers`` given outright. A model hands these keys on with ``**shape`` (the
        validator reads them from here); ``size=None``: the model sets its own."""
        super().__init__()
        if size is not None:
            hp = resolve_size(size, self.presets, d_model=d_model, n_layers=n_layers)
            self.d_model, self.n_layers = hp["d_model"], hp["n_layers"]

    def hparams(self) -> dict:
        """Hyperparameters as built (size presets resolved); run.json records them beside
        the arguments the constructor received."""
        return {}


def param_counts(model: nn.Module) -> dict:
    """Total / embedding / non-embedding parameter counts (tied weights counted once)."""
    seen, total, emb = set(), 0, 0
    for name, p in model.named_parameters():  # named_parameters already skips tied duplicates
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        if name.startswith(EMBEDDING_PREFIXES):
            emb += p.numel()
    return {"params_total": total, "params_embedding": emb, "params_non_embedding": total - emb}


def dropout_layer(p: float) -> nn.Module:
    """nn.Dropout(p), or nn.Identity() when p == 0: a p=0 dropout still runs in training mode,
    ~20 us forward and backward per call on CPU (``_tiny`` rows of python -m seqbench.perf)."""
    return nn.Dropout(p) if p > 0 else nn.Identity()


SIZES = ("5xs", "4xs", "3xs", "2xs", "xs", "s", "m", "l")


def size_presets(spec: str) -> dict:
    """'40x1 60x1 ...' (d_model x n_layers, one per size of SIZES, in order) -> presets."""
    pairs = [tuple(map(int, p.split("x"))) for p in spec.split()]
    if len(pairs) != len(SIZES):
        raise ValueError(f"size presets {spec!r}: one width x depth for each of {SIZES}")
    return {s: {"d_model": d, "n_layers": n} for s, (d, n) in zip(SIZES, pairs)}


def resolve_size(size: str, presets: dict, **explicit) -> dict:
    """Preset (d_model, n_layers, ...) for ``size``, with any explicitly given value winning."""
    if size not in presets:
        raise ValueError(f"model.size={size!r} is not allowed: one of {sorted(presets)}")
    out = dict(presets[size])
    out.update({k: v for k, v in explicit.items() if v is not None})
    return out
