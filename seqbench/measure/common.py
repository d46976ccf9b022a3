"""Helpers shared by the measurements: model variants, inputs, config checks, progress.

A measurement sweeps things a training run fixes (sequence length, depth, execution path),
so it builds *variants* of ``cfg.model``: the same config with a few keys overridden, only
where the model's config has that key (a model without ``n_layers`` is simply not swept in
depth). Inputs are uniform random tokens from a seeded generator: the dataflow graph and the
run time of every seqbench model do not depend on token values.
"""

import functools
import math

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from seqbench.config import ConfigError, build_model
from seqbench.env import HARDWARE, show_progress
from seqbench.schema import LIMITS

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


def timed_columns(own: str, machine=HARDWARE) -> list:
    """The columns of a timed table, in the order every one has them: the model (name,
    family, execution path), the measurement's ``own`` (space-separated), the machine
    (env.hardware's columns), the model as built (width, depth), and a note for a skipped
    point."""
    return ["model", "family", "impl", *own.split(), *machine, "d_model", "n_layers", "note"]


def progress(cfg: DictConfig, total: int, unit: str = "point") -> tqdm:
    """A bar over a measurement's grid of ``total`` points, on stderr, named after the table
    and model: shown on a terminal under train.progress=auto, always under true, never under
    false, as the training loop's bar. ``bar.update()`` after each point, measured or
    skipped; use it as a context manager so it closes on an error too."""
    what = OmegaConf.select(cfg, "what.table", default="measure")
    show = show_progress(OmegaConf.select(cfg, "train.progress", default="auto"))
    return tqdm(total=total, desc=f"{what} {model_name(cfg)}", unit=unit, leave=False,
                disable=not show)  # fmt: skip


def progress_over(points):
    """Decorate a ``measure(cfg, task, log)`` that logs one row per grid point (measured or
    skipped) with a bar over its ``points(cfg, task)`` points, advanced by every row."""

    def wrap(measure):
        @functools.wraps(measure)
        def measured(cfg, task, log):
            with progress(cfg, points(cfg, task)) as bar:

                def log_point(row: dict) -> None:
                    log(row)
                    bar.update()

                return measure(cfg, task, log_point)

        return measured

    return wrap


def random_tokens(vocab_size: int, batch: int, length: int, seed: int, device) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size, (batch, length), generator=g).to(device)  # [B, T]


# --- checks of the `what` node: one line naming key, value and what is allowed -------------
# Sanity limits, as seqbench.schema.LIMITS for the model and data keys: a count, a length or a
# time beyond these is a typo, and would sit silent for hours (what.min_run_time=inf never ends)
MAX_COUNT = LIMITS["batch_size"]  # batch sizes, warm-up calls, blocks, lengths
MAX_SECONDS = 3600.0  # min_run_time, max_call_s: seconds per measured point


def need(ok, key, value, allowed) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed: {allowed}")


def _int(x, low, high) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and low <= x <= high


def positive_int(w, key, high=MAX_COUNT) -> None:
    v = w.get(key)
    need(_int(v, 1, high), f"what.{key}", v, f"an integer in [1, {high}]")


def positive_number(w, key, high=MAX_SECONDS) -> None:
    """Seconds (every use is one): finite, > 0 and at most an hour per point."""
    v = w.get(key)
    need(
        isinstance(v, int | float)
        and not isinstance(v, bool)
        and math.isfinite(v)
        and 0 < v <= high,
        f"what.{key}",
        v,
        f"a finite number in (0, {high:g}]",
    )


def int_list(w, key, minimum=1, high=MAX_COUNT) -> None:
    v = w.get(key)
    items = list(v) if OmegaConf.is_list(v) or isinstance(v, list | tuple) else None
    need(
        items and all(_int(x, minimum, high) for x in items),
        f"what.{key}",
        OmegaConf.to_container(v) if OmegaConf.is_list(v) else v,
        f"a non-empty list of integers in [{minimum}, {high}]",
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


def check_timed(w, series: str | None, choices: dict, counts: tuple, grows=True) -> None:
    """What every timed measurement checks: the lengths it sweeps (``what.<series>``), its
    choice lists, its counts, and the keys of the timer it hands to seqbench.timer.time_call
    (untimed calls, timed blocks, seconds per point). ``grows``: a series that grows a length
    also caps a call (``max_call_s``) and reports the spread of its blocks."""
    if series is not None:
        int_list(w, series)
    for key, allowed in choices.items():
        choice_list(w, key, allowed)
    for key in (*counts, "warmup", "min_blocks"):
        positive_int(w, key)
    positive_number(w, "min_run_time")
    if grows:
        positive_number(w, "max_call_s")
        check_spread(w)


def check_spread(w) -> None:
    """Three groups at least: two cannot show which of them is the odd one."""
    v = w.get("spread_blocks")
    need(_int(v, 3, 100), "what.spread_blocks", v, "an integer in [3, 100]")


def check_variants(cfg: DictConfig, vocab_size: int, **overrides) -> None:
    """Build each variant on the meta device (free) so its own checks run before any work; a
    refused value is blamed on the what key that lists it (what.impls, what.layers)."""
    keys = list(overrides)
    values = [list(v) if v is not None else [None] for v in overrides.values()]
    for combo in _product(values):
        try:
            build_model(variant(cfg.model, **dict(zip(keys, combo))), vocab_size)
        except ConfigError as e:
            for k, v in zip(keys, values):
                source = _listing(cfg.what, v)
                if source and str(e).startswith(f"model.{k}="):
                    raise ConfigError(f"what.{source}={v!r} is not allowed: {e}") from None
            raise


def _listing(what, values) -> str | None:
    """The what key whose list is ``values``."""
    for key, v in what.items():
        if OmegaConf.is_list(v) and list(v) == values:
            return str(key)
    return None


def _product(lists):
    if not lists:
        yield ()
        return
    for head in lists[0]:
        for rest in _product(lists[1:]):
            yield (head, *rest)


# --- measurements of trained models ------------------------------------------------------------
def check_train_study(w) -> None:
    need(
        isinstance(w.get("train_study"), str) and bool(w.train_study),
        "what.train_study",
        w.get("train_study"),
        "a study name for the training runs",
    )


def training_config(cfg: DictConfig) -> DictConfig:
    """The training run behind a measured model: this config without ``what``, under
    ``what.train_study`` (same keys as conf/config.yaml, so the same content key as the
    equivalent ``python -m seqbench.train`` command). ``fresh`` redoes the measurement, not
    the training it reads: a complete training run is reused (retrain with seqbench.train)."""
    node = OmegaConf.to_container(cfg, resolve=False)
    node.pop("what")
    node.pop("hydra", None)
    node["study"], node["fresh"] = cfg.what.train_study, False
    return OmegaConf.create(node)


SPLITS = ("val", "test")  # what.split of a text measurement: selection's, or the reports'


def held_out_split(w, task) -> str:
    """``what.split``, refused unless it is one of SPLITS and the corpus has it: a corpus
    without a test split has no figure to report, and val in its place would be the data
    that selected (the lr, the stopping step)."""
    split = w.get("split")
    if split not in SPLITS:
        raise ConfigError(f"what.split={split} is not allowed: one of {', '.join(SPLITS)}")
    if split == "test" and not task.has_test:
        setting, _ = task.held_out_source("val")
        raise ConfigError(
            f"what.split=test is not allowed: {setting} has no test split (a corpus folder "
            "with test.txt, or the standard-library corpus, has one); what.split=val scores "
            "the validation split"
        )
    return split
