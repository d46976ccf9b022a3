"""Helpers shared by the measurements: model variants, inputs, config checks.

A measurement sweeps things a training run fixes (sequence length, depth, execution path),
so it builds *variants* of ``cfg.model``: the same config with a few keys overridden, only
where the model's config has that key (a model without ``n_layers`` is simply not swept in
depth). Inputs are uniform random tokens from a seeded generator: the dataflow graph and the
run time of every seqbench model do not depend on token values.
"""

import torch
from omegaconf import DictConfig, OmegaConf

from seqbench.config import ConfigError, build_model

# the recurrent path the tracer can see into; the fused kernel is one opaque op
OPAQUE_IMPL = {"fused": "unrolled"}


def model_name(cfg: DictConfig) -> str:
    return cfg.model._target_.rsplit(".", 1)[-1].lower()


def variant(model_cfg: DictConfig, **overrides) -> DictConfig:
    """``model_cfg`` with each override applied where the model has that key (None: skip)."""
    node = OmegaConf.to_container(model_cfg, resolve=True)
    for k, v in overrides.items():
        if v is not None and k in node:
            node[k] = v
    return OmegaConf.create(node)


def build_variant(
    cfg: DictConfig, vocab_size: int, device, max_len: int | None = None, **overrides
):
    """Build a model variant on ``device`` seeded by ``cfg.seed``; ``max_len`` raises the
    learned position table to the longest sequence the measurement will feed."""
    node = variant(cfg.model, **overrides)
    if max_len is not None and "max_len" in node and (node.max_len or 0) < max_len:
        node.max_len = max_len
    torch.manual_seed(cfg.seed)
    return build_model(node, vocab_size, device), node


def impls(cfg: DictConfig) -> list:
    """The execution paths to measure: what.impls for models that have an impl, else the
    model's own (None for a model without one)."""
    if "impl" not in cfg.model or cfg.what.get("impls") is None:
        return [cfg.model.get("impl")]
    return list(cfg.what.impls)


def impl_of(node: DictConfig) -> str:
    return str(node.get("impl", "-"))


def model_columns(cfg: DictConfig, model, node=None) -> dict:
    """The columns that name a measured model in every table: name, family, execution path,
    width and depth as built."""
    hp = model.hparams()
    return {
        "model": model_name(cfg),
        "family": model.family,
        "impl": impl_of(node if node is not None else cfg.model),
        "d_model": hp.get("d_model"),
        "n_layers": hp.get("n_layers"),
    }


def random_tokens(vocab_size: int, batch: int, length: int, seed: int, device) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size, (batch, length), generator=g).to(device)  # [B, T]


# --- checks of the `what` node: one line naming key, value and what is allowed -------------
def need(ok, key, value, allowed) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed: {allowed}")


def positive_int(w, key) -> None:
    v = w.get(key)
    need(
        isinstance(v, int) and not isinstance(v, bool) and v > 0,
        f"what.{key}",
        v,
        "a positive integer",
    )


def positive_number(w, key) -> None:
    v = w.get(key)
    need(
        isinstance(v, int | float) and not isinstance(v, bool) and v > 0,
        f"what.{key}",
        v,
        "a number > 0",
    )


def int_list(w, key, minimum=1) -> None:
    v = w.get(key)
    items = list(v) if OmegaConf.is_list(v) or isinstance(v, list | tuple) else None
    need(
        items
        and all(isinstance(x, int) and not isinstance(x, bool) and x >= minimum for x in items),
        f"what.{key}",
        v,
        f"a non-empty list of integers >= {minimum}",
    )


def choice_list(w, key, allowed) -> None:
    v = w.get(key)
    items = list(v) if OmegaConf.is_list(v) or isinstance(v, list | tuple) else None
    need(
        items and all(x in allowed for x in items),
        f"what.{key}",
        v,
        f"a non-empty list drawn from {list(allowed)}",
    )


def check_variants(cfg: DictConfig, vocab_size: int, **overrides) -> None:
    """Build each variant on the meta device (free) so its own checks run before any work."""
    keys = list(overrides)
    values = [list(v) if v is not None else [None] for v in overrides.values()]
    for combo in _product(values):
        build_model(variant(cfg.model, **dict(zip(keys, combo))), vocab_size)


def _product(lists):
    if not lists:
        yield ()
        return
    for head in lists[0]:
        for rest in _product(lists[1:]):
            yield (head, *rest)
