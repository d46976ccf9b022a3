"""Validation, in one place for training, every measurement and the perf benchmark: every bad
value stops before any model is built or any file is written, with one line naming the key,
the value and what is allowed.

``validate_training(cfg)`` and ``validate_measurement(cfg)`` check one composed config: the
top-level and ``train`` keys against their schemas (seqbench/schema.py), the ``model`` and
``data`` keys against the constructor of their ``_target_`` class (its signature and
annotations are the schema, its own checks run when it is built: the model on the ``meta``
device with initialisers skipped, so it costs microseconds and allocates nothing), and a
measurement's ``what`` node against its function's module. The entry layer (seqbench.cli)
calls them once per job, before the job runs; the engine trusts its input.
"""

import functools
import importlib
import importlib.resources
import inspect
import logging
import math
import os
import typing
from pathlib import Path

import torch
from hydra.utils import get_class, get_method, instantiate
from omegaconf import DictConfig, OmegaConf
from torch.overrides import TorchFunctionMode

from seqbench import schema, store
from seqbench.errors import ConfigError
from seqbench.evaluate import check_evaluation
from seqbench.schema import need, plain
from seqbench.searchpath import model_files

__all__ = [
    "CONF_DIR",
    "ConfigError",
    "build_model",
    "build_task",
    "validate_measurement",
    "validate_training",
]

CONF_DIR = Path(str(importlib.resources.files("seqbench.conf")))
GROUPS = ("model", "data", "train", "experiment")
MEASUREMENTS = "seqbench.measure."  # what._target_ must name a function in this package


def group_options(group: str) -> list[str]:
    """The options of a config group of conf/ (the experiments live in the study folders:
    seqbench.studies.experiment_files, a layer above)."""
    if group == "model":  # conf/model and a user's SEQBENCH_PATH folders (seqbench.searchpath)
        return sorted(model_files())
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def quietly(lookup, path):
    """hydra.utils.get_class / get_method, without the line Hydra logs before it raises (our
    refusal is the one line a user sees)."""
    logger = logging.getLogger("hydra.utils")
    was, logger.disabled = logger.disabled, True
    try:
        return lookup(path)
    finally:
        logger.disabled = was


# --- model and task ----------------------------------------------------------------------
def _signature_schema(cls, group: str) -> dict:
    """The Specs a class's constructor implies, keyed by parameter (vocab_size is supplied
    by the task for models)."""
    params = inspect.signature(cls).parameters
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # unresolvable annotations: accept any value, the class still checks
        hints = {}
    out = {}
    for name, p in params.items():
        if p.kind == p.VAR_KEYWORD and cls.__mro__[1] is not object:
            # the rest is handed on to the base class (LagRecall -> Task, MaskedText -> Text):
            # the base's keys are keys here too, after the class's own
            base = _signature_schema(cls.__mro__[1], group)
            out |= {k: spec for k, spec in base.items() if k not in out}
            continue
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or (
            group == "model" and name == "vocab_size"
        ):
            continue
        out[name] = schema.Spec.of_parameter(p, hints.get(name, object))
    return out


def _check_node(group: str, node: DictConfig):
    """_target_ names a class, every key is one of its parameters and has the right type."""
    target = node.get("_target_") if isinstance(node, DictConfig) else None
    need(isinstance(target, str), f"{group}._target_", target, "a dotted class path")
    try:
        cls = quietly(get_class, target)
    except Exception:
        raise ConfigError(f"{group}._target_={target!r} is not allowed: no such class") from None
    if group == "model":  # a class attribute of every model: ask the class, before its keys
        family = getattr(cls, "family", None)
        need(
            isinstance(family, str) and bool(family),
            "model._target_",
            target,
            "a model class that declares its family (a class attribute, e.g. "
            "family = 'recurrent' | 'attention' | 'scan' | 'conv' | 'baseline')",
        )
    specs = _signature_schema(cls, group)
    for key, value in node.items():
        if str(key).startswith("_"):
            continue
        spec = specs.get(key)
        need(
            spec is not None,
            f"{group}.{key}",
            value,
            f"not a parameter of {target} (parameters: {', '.join(specs)})",
        )
        need(spec.ok(value), f"{group}.{key}", value, spec.allowed())
        schema.check_size(f"{group}.{key}", value)
    return cls


def _constructor_error(e: Exception) -> ConfigError:
    """A constructor's ValueError (possibly wrapped by Hydra's instantiate) as one line."""
    cause = e.__cause__ if isinstance(e.__cause__, ValueError) else e
    lines = str(cause).strip().splitlines() or [type(cause).__name__]
    return ConfigError(lines[0] if isinstance(cause, ValueError) and cause is e else lines[-1])


@functools.lru_cache(maxsize=32)
def _build_task(data_yaml: str):
    return instantiate(OmegaConf.create(data_yaml))


def build_task(data_cfg: DictConfig):
    """Instantiate the task (cached per config: a corpus is read once per process)."""
    _check_node("data", data_cfg)
    try:
        return _build_task(OmegaConf.to_yaml(data_cfg, resolve=True))
    except (ValueError, Exception) as e:  # Hydra wraps constructor errors
        raise _constructor_error(e) from None


class _SkipInit(TorchFunctionMode):
    """Inside a module constructor on the meta device: skip torch.nn.init's initialisers
    (on meta they would only import torch._dynamo, ~1 s, to fill nothing)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__module__", None) == "torch.nn.init":
            return args[0] if args else None
        return func(*args, **(kwargs or {}))


def build_model(model_cfg: DictConfig, vocab_size: int, device="meta"):
    """Instantiate the model; on ``meta`` (the default) it is a free dry run of its checks.
    Out of memory while building (Hydra wraps the constructor's MemoryError) is a
    MemoryError that says how big the model is, so the run is recorded ``oom``."""
    _check_node("model", model_cfg)
    try:
        if str(device) == "meta":
            with torch.device("meta"), _SkipInit():
                return instantiate(model_cfg, vocab_size=vocab_size)
        with torch.device(device):
            return instantiate(model_cfg, vocab_size=vocab_size)
    except (ValueError, Exception) as e:
        from seqbench.runs import first_line, out_of_memory

        cause = e.__cause__ or e
        if out_of_memory(e) or out_of_memory(cause):
            n = n_params(build_model(model_cfg, vocab_size))
            raise MemoryError(
                f"the model is too big to build on {device}: {n:,} parameters, "
                f"{_gib(4 * n)} of float32 weights ({first_line(cause)[:120]})"
            ) from None
        raise _constructor_error(e) from None


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:,.1f} GiB"


def device_memory(device: str) -> int | None:
    """Bytes of memory a model can live in on ``device`` (the machine's RAM for the CPU);
    None where it cannot be asked (MPS)."""
    from seqbench.env import pick_device

    dev = pick_device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_properties(dev).total_memory
    if dev.type == "cpu" and hasattr(os, "sysconf"):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return None


def check_fits(cfg: DictConfig, model, training: bool) -> None:
    """A model whose float32 weights (and, to train, gradients and AdamW's two moments)
    exceed the device's memory is refused now, named as too big, not left to fail later."""
    n = n_params(model)
    per_param = 16 if training else 4
    have = device_memory(cfg.device)
    if have is None or n * per_param <= have:
        return
    what = "float32 weights, gradients and AdamW state" if training else "float32 weights"
    keys = {k: v for k, v in plain(cfg.model).items() if not str(k).startswith("_")}
    raise ConfigError(
        f"model={keys!r} is not allowed: too big for this machine: {n:,} parameters need "
        f"{_gib(n * per_param)} of {what}, more than the {_gib(have)} of memory here"
    )


def describe_model(model, model_cfg: DictConfig) -> dict:
    """What run.json records of a model: its family, every argument it received, and those
    with presets resolved (``hparams()``: d_model, n_layers ... as built)."""
    received = {
        k: v
        for k, v in OmegaConf.to_container(model_cfg, resolve=True).items()
        if not k.startswith("_")
    }
    return {
        "family": model.family,
        "model_args": received,
        "model_hparams": received | model.hparams(),
    }


# --- the whole config ----------------------------------------------------------------------
def check_device(device) -> None:
    allowed = "auto, cpu, cuda, cuda:N, mps"
    need(isinstance(device, str), "device", device, allowed)
    kind, _, index = device.partition(":")
    need(kind in ("auto", "cpu", "cuda", "mps"), "device", device, allowed)
    if kind == "cuda":
        need(
            torch.cuda.is_available(),
            "device",
            device,
            "no CUDA GPU is visible here; use device=cpu or device=auto",
        )
        n = torch.cuda.device_count()
        need(
            not index or (index.isdigit() and int(index) < n),
            "device",
            device,
            f"cuda:0 .. cuda:{n - 1}",
        )
    if kind == "mps":
        need(torch.backends.mps.is_available(), "device", device, "MPS is not available here")


def check_top(cfg: DictConfig, groups=("model", "data", "train")) -> None:
    """The top-level keys and the train node (schema.TOP, schema.TRAIN)."""
    from seqbench.runs import check_name

    for group in groups:
        need(
            group in cfg and cfg[group] is not None,
            group,
            None,
            f"a {group} node (do not delete it with ~{group})",
        )
    schema.check(cfg, schema.TOP, extra=(*groups, "hydra"))
    check_device(cfg.device)
    check_name("study", cfg.study)
    if "train" in groups:
        t = cfg.train
        schema.check(t, schema.TRAIN, "train.")
        for key, value in t.items():  # the sanity limits (LIMITS) of every node's sizes
            schema.check_size(f"train.{key}", value)
        need(
            (t.criterion is None) == (t.target is None),
            "train.target",
            t.target,
            "a number together with train.criterion, null without it",
        )
        if t.criterion is not None:
            spec = schema.CRITERIA[t.criterion]
            need(
                spec.ok(t.target),
                "train.target",
                t.target,
                f"{spec.allowed()} for train.criterion={t.criterion} ({spec.help})",
            )
        for key, value in t.lr_control.items():
            need(
                str(key).split(".")[0] in ("model", "data", "train"),
                f"train.lr_control.{key}",
                value,
                "an override of a model, data or train key (e.g. data.distance)",
            )


def check_target_reachable(cfg: DictConfig, task) -> None:
    """A val_loss target at or above a uniform guess's loss, ln(vocab_size), is met by an
    untrained model: the criterion would stop a run before it learnt anything."""
    t = cfg.train
    if t.get("criterion") != "val_loss":
        return
    uniform = math.log(task.vocab_size)
    need(
        t.target < uniform,
        "train.target",
        t.target,
        f"below ln(vocab_size) = {uniform:.3g}, the loss of a uniform guess over "
        f"{task.vocab_size} tokens (a higher target is met at once)",
    )


def measurement(cfg: DictConfig):
    """(function, module) named by what._target_, restricted to seqbench.measure."""
    target = cfg.what.get("_target_") if isinstance(cfg.what, DictConfig) else None
    allowed = f"a measurement function in {MEASUREMENTS.rstrip('.')} (e.g. pick what=span)"
    need(
        isinstance(target, str) and target.startswith(MEASUREMENTS),
        "what._target_",
        target,
        allowed,
    )
    problem = store.table_problem(cfg.what.get("table"))  # <results>/<table>.csv in the report
    if problem:
        raise ConfigError(f"what.{problem}")
    try:
        fn = quietly(get_method, target)
    except Exception:
        raise ConfigError(f"what._target_={target!r} is not allowed: {allowed}") from None
    return fn, importlib.import_module(fn.__module__)


def check_resolves(cfg: DictConfig) -> None:
    """Every ${...} interpolation resolves: a missing key or a loop is one line naming it."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        for key in cfg:  # the hydra node resolves only inside Hydra's own run
            if key != "hydra":
                value = cfg[key]
                if OmegaConf.is_config(value):
                    OmegaConf.to_container(value, resolve=True)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "config"
        raw = OmegaConf.to_container(cfg, resolve=False)  # the ${...} as written
        for part in key.split("."):
            raw = raw.get(part) if isinstance(raw, dict) else None
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"{key}={raw!r} is not allowed: {reason}") from None


def check_calibration(cfg: DictConfig, validate) -> None:
    """With train.lr_grid the control setting's runs start first: checked now (by
    ``validate``, the config's own validator), each bad value named under train.lr_control."""
    if not cfg.train.get("lr_grid"):
        return
    from seqbench.calibrate import calibration_config

    try:
        validate(calibration_config(cfg, cfg.train.lr_grid[0]))
    except ConfigError as e:
        message = str(e)
        if any(message.startswith(f"{k}=") for k in cfg.train.lr_control):
            message = "train.lr_control." + message
        raise ConfigError(f"{message} (the control setting of train.lr_grid)") from None
    except Exception as e:  # an override OmegaConf cannot apply (a key under a number)
        value = plain(cfg.train.lr_control)
        raise ConfigError(f"train.lr_control={value!r} is not allowed: {e}") from None


def validate_training(cfg: DictConfig):
    """Check everything in a training config; return the built task or raise ConfigError."""
    check_resolves(cfg)
    check_top(cfg, groups=GROUPS[:3])
    check_calibration(cfg, validate_training)
    task = build_task(cfg.data)
    model = build_model(cfg.model, task.vocab_size)
    check_fits(cfg, model, training=True)
    check_target_reachable(cfg, task)
    check_evaluation(cfg, task)  # a held-out stream too short to score: refused before any run
    check_max_len(task, model)
    return task


def validate_measurement(cfg: DictConfig):
    """Check everything in a measurement config (its ``what`` node by the measurement's own
    ``check``); return the built task or raise ConfigError."""
    from seqbench.runs import check_name

    check_resolves(cfg)
    check_top(cfg, groups=("model", "data", "train", "what"))
    check_calibration(cfg, validate_measurement)
    task = build_task(cfg.data)
    model = build_model(cfg.model, task.vocab_size)
    check_fits(cfg, model, training=False)
    check_target_reachable(cfg, task)
    check_max_len(task, model)
    for key, value in cfg.what.items():
        if str(key).endswith("study"):  # what.train_study: the study of its training runs
            check_name(f"what.{key}", value)
    _, module = measurement(cfg)
    table = cfg.what.get("table")
    need(isinstance(table, str) and table.isidentifier(), "what.table", table,
         "a table name (an identifier)")  # fmt: skip
    module.check(cfg, task)  # the measurement's own keys
    return task


def check_max_len(task, model) -> None:
    """A model with a longest sequence (hparams' max_len: a position table) must take the
    task's, or every run ends `failed` at its first forward."""
    longest = model.hparams().get("max_len")
    need(
        longest is None or longest >= task.seq_len,
        "model.max_len",
        longest,
        f"at least data.seq_len={task.seq_len}, the length of every training sequence",
    )


# --- every model file, for tests and the report's parameter table ----------------------------
def model_configs() -> dict[str, DictConfig]:
    """Every model YAML (conf/model/ and a user's SEQBENCH_PATH folders), loaded on its own
    (interpolations into other groups dropped)."""
    out = {}
    for name, path in model_files().items():
        node = OmegaConf.load(path)
        for k in list(node.keys()):
            if OmegaConf.is_interpolation(node, k):
                del node[k]  # e.g. max_len: ${data.seq_len}; the class default serves here
        out[name] = node
    return out


def param_table(vocab_size: int = 64, sizes=None) -> list[dict]:
    """Parameter counts of every model file at each size preset its class has (of ``sizes``
    when given), built on the meta device."""
    from seqbench.models import param_counts

    rows = []
    for name, node in model_configs().items():
        presets = getattr(get_class(node._target_), "presets", None) or {}  # a class constant
        for size in [s for s in presets if sizes is None or s in sizes]:
            if "size" not in node:
                continue
            model = build_model(OmegaConf.merge(node, {"size": size}), vocab_size)
            hp = model.hparams()
            rows.append(
                {"model": name, "family": model.family, "size": size}
                | {k: hp.get(k) for k in ("d_model", "n_layers")}
                | param_counts(model)
            )
    return rows
