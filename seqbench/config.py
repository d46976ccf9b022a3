"""Validation: every bad value stops before any model is built, with one line naming the key,
the value and what is allowed.

``validate(cfg)`` checks one composed config (``train()`` calls it first). ``preflight(argv)``
runs before Hydra starts: it expands a command line, multirun sweeps included, composes every
combination and validates each one, so a typo in the 40th job of a sweep fails in a second
instead of after 39 jobs. Model and task constructors are run for real (the model on the
``meta`` device, which allocates nothing) so their own checks apply without duplicating them.
"""

import functools
import inspect
import itertools
import math
import sys
from pathlib import Path

import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
GROUPS = ("model", "data", "train", "experiment")
DEVICES = "auto, cpu, cuda, cuda:N, mps"


class ConfigError(ValueError):
    """A bad configuration value; its message is one line."""


def _need(ok, key, value, allowed):
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed: {allowed}")


def _int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v):
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def check_device(device: str) -> None:
    _need(isinstance(device, str), "device", device, DEVICES)
    kind = device.split(":")[0]
    _need(kind in ("auto", "cpu", "cuda", "mps"), "device", device, DEVICES)
    if kind == "cuda":
        _need(
            torch.cuda.is_available(),
            "device",
            device,
            "no CUDA GPU is visible here; use device=cpu or device=auto",
        )
        if ":" in device:
            idx = device.split(":")[1]
            _need(
                idx.isdigit() and int(idx) < torch.cuda.device_count(),
                "device",
                device,
                f"cuda:0 .. cuda:{torch.cuda.device_count() - 1}",
            )
    if kind == "mps":
        _need(torch.backends.mps.is_available(), "device", device, "MPS is not available here")


def check_train(t: DictConfig) -> None:
    positive_ints = ("steps", "batch_size", "log_every", "eval_every", "eval_batches", "ckpt_every")
    for k in positive_ints:
        _need(_int(t[k]) and t[k] > 0, f"train.{k}", t[k], "a positive integer")
    _need(_int(t.warmup) and t.warmup >= 0, "train.warmup", t.warmup, "an integer >= 0")
    _need(_number(t.lr) and t.lr > 0, "train.lr", t.lr, "a finite number > 0")
    _need(
        _number(t.weight_decay) and t.weight_decay >= 0,
        "train.weight_decay",
        t.weight_decay,
        "a finite number >= 0",
    )
    _need(
        _number(t.min_lr_frac) and 0 <= t.min_lr_frac <= 1,
        "train.min_lr_frac",
        t.min_lr_frac,
        "a number in [0, 1]",
    )
    _need(
        t.grad_clip is None or (_number(t.grad_clip) and t.grad_clip > 0),
        "train.grad_clip",
        t.grad_clip,
        "null or a number > 0",
    )
    _need(
        t.threads is None or (_int(t.threads) and t.threads > 0),
        "train.threads",
        t.threads,
        "null (torch's default) or a positive integer",
    )
    _need(t.progress in ("auto", True, False), "train.progress", t.progress, "auto, true or false")
    betas = list(t.betas)
    _need(
        len(betas) == 2 and all(_number(b) and 0 <= b < 1 for b in betas),
        "train.betas",
        betas,
        "two numbers in [0, 1)",
    )


@functools.lru_cache(maxsize=32)
def _build_task(data_yaml: str):
    return instantiate(OmegaConf.create(data_yaml))


def build_task(data_cfg: DictConfig):
    """Instantiate the task, turning its constructor's ValueError into a ConfigError."""
    _check_keys("data", data_cfg)
    try:
        return _build_task(OmegaConf.to_yaml(data_cfg, resolve=True))
    except ValueError as e:
        raise ConfigError(str(e).splitlines()[0]) from None
    except Exception as e:  # Hydra wraps constructor errors in InstantiationException
        cause = e.__cause__ if isinstance(e.__cause__, ValueError) else e
        raise ConfigError(str(cause).splitlines()[-1]) from None


def build_model(model_cfg: DictConfig, vocab_size: int, device="meta"):
    """Instantiate the model (on ``meta`` for a free dry run); errors become ConfigErrors."""
    _check_keys("model", model_cfg)
    try:
        with torch.device(device):
            return instantiate(model_cfg, vocab_size=vocab_size)
    except ValueError as e:
        raise ConfigError(str(e).splitlines()[0]) from None
    except Exception as e:
        cause = e.__cause__ if isinstance(e.__cause__, ValueError) else e
        raise ConfigError(str(cause).splitlines()[-1]) from None


def _check_keys(group: str, node: DictConfig) -> None:
    """Every key under a group must be a parameter of its _target_ class."""
    target = node.get("_target_")
    _need(isinstance(target, str), f"{group}._target_", target, "a dotted class path")
    try:
        cls = get_class(target)
    except Exception:
        raise ConfigError(f"{group}._target_={target!r} is not allowed: no such class") from None
    params = inspect.signature(cls).parameters
    allowed = [p for p in params if p != "vocab_size" or group == "data"]
    for k, v in node.items():
        if k.startswith("_"):
            continue
        _need(
            k in allowed,
            f"{group}.{k}",
            v,
            f"not a parameter of {target} (parameters: {', '.join(allowed)})",
        )
        if (
            k
            in (
                "d_model",
                "n_layers",
                "n_heads",
                "seq_len",
                "vocab_size",
                "distance",
                "num_kv_pairs",
                "max_len",
            )
            and v is not None
        ):
            _need(_int(v) and v > 0, f"{group}.{k}", v, "a positive integer")


def validate(cfg: DictConfig):
    """Check everything; return the built task (reused by train) or raise ConfigError."""
    check_device(cfg.device)
    _need(_int(cfg.seed) and cfg.seed >= 0, "seed", cfg.seed, "an integer >= 0")
    check_train(cfg.train)
    task = build_task(cfg.data)
    build_model(cfg.model, task.vocab_size)
    return task


# --- before Hydra starts ----------------------------------------------------------------
def _combinations(overrides: list[str]) -> list[list[str]]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    choices = []
    for o in parsed:
        if o.is_sweep_override():
            key = o.get_key_element()
            choices.append([f"{key}={v}" for v in o.sweep_string_iterator()])
        else:
            choices.append([o.input_line])
    return [list(c) for c in itertools.product(*choices)]


def _group_choice_error(overrides: list[str]) -> None:
    for o in overrides:
        key, _, value = o.lstrip("+~").partition("=")
        if key in GROUPS and value and not value.startswith("{"):  # {k: v} merges into it
            options = sorted(p.stem for p in (CONF_DIR / key).glob("*.yaml"))
            for v in value.split(","):
                _need(v in options, key, v, f"choose one of {', '.join(options)}")


def _explain_compose_error(config_name, overrides, err) -> str:
    from hydra import compose

    base = compose(
        config_name,
        overrides=[
            o for o in overrides if o.split("=")[0] in GROUPS or o.startswith("+experiment")
        ],
    )
    for o in overrides:
        key, _, value = o.partition("=")
        if key.startswith(("+", "~", "hydra")) or key in GROUPS:
            continue
        if OmegaConf.select(base, key, default="__missing__") == "__missing__":
            parent = key.rpartition(".")[0]
            node = OmegaConf.select(base, parent) if parent else base
            keys = ", ".join(node.keys()) if isinstance(node, DictConfig) else "none"
            return f"{key}={value!r} is not allowed: no such key (keys here: {keys})"
    return str(err).strip().splitlines()[0]


def preflight(argv: list[str], config_name: str = "config") -> None:
    """Validate every job a command line would launch; exit 2 with one line on the first
    bad value. Hydra's own flags (--cfg, --help, -m ...) pass through untouched."""
    from hydra import compose, initialize_config_dir

    flags = {"-m", "--multirun"}
    if any(
        a.startswith(
            ("--help", "-h", "--cfg", "-c", "--info", "--hydra-help", "--shell-completion", "-sc")
        )
        for a in argv
    ):
        return
    # launcher choices and settings do not change a job; sweeper params (a sweep given on
    # the command line in place of an experiment's own) do, so those are kept
    overrides = [
        a
        for a in argv
        if a not in flags
        and not a.startswith("-")
        and (not a.startswith(("hydra.", "hydra/")) or a.startswith("hydra.sweeper.params."))
    ]
    multirun = any(a in flags for a in argv)
    try:
        _group_choice_error(overrides)
        combos = _combinations(overrides) if multirun else [overrides]
        with initialize_config_dir(str(CONF_DIR), version_base=None):
            for combo in combos:
                try:
                    cfg = compose(config_name, overrides=combo, return_hydra_config=True)
                except Exception as e:
                    raise ConfigError(_explain_compose_error(config_name, combo, e)) from None
                jobs = _experiment_sweeps(cfg, combo) if multirun else [_job_keys(combo)]
                for job in jobs:
                    validate(compose(config_name, overrides=job))
    except ConfigError as e:
        print(f"seqbench: error: {e}", file=sys.stderr)
        sys.exit(2)


def _job_keys(overrides):
    """The overrides a job's own config sees (hydra.* ones were read by the sweep already)."""
    return [o for o in overrides if not o.startswith("hydra.")]


def _experiment_sweeps(cfg, combo):
    """Sweeps declared in an experiment file (hydra.sweeper.params), command line first."""
    params = OmegaConf.select(cfg, "hydra.sweeper.params") or {}
    given = {o.lstrip("+").split("=")[0] for o in combo}
    extra = [f"{k}={v}" for k, v in params.items() if k not in given]
    combo = _job_keys(combo)
    if not extra:
        return [combo]
    return [combo + c for c in _combinations(extra)]


def model_configs() -> dict[str, DictConfig]:
    """Every conf/model/*.yaml, loaded on its own (interpolations into other groups dropped)."""
    out = {}
    for path in sorted((CONF_DIR / "model").glob("*.yaml")):
        node = OmegaConf.load(path)
        for k in list(node.keys()):
            if OmegaConf.is_interpolation(node, k):
                del node[k]  # e.g. max_len: ${data.seq_len}; the class default serves here
        out[path.stem] = node
    return out


def param_table(vocab_size: int = 64, sizes=("xs", "s", "m")) -> list[dict]:
    """Parameter counts of every model file at every size preset, built on the meta device."""
    from seqbench.models import param_counts

    rows = []
    for name, node in model_configs().items():
        for size in sizes:
            if "size" not in node:
                continue
            model = build_model(OmegaConf.merge(node, {"size": size}), vocab_size)
            hp = {k: getattr(model, k) for k in ("d_model", "n_layers") if hasattr(model, k)}
            rows.append({"model": name, "size": size, **hp, **param_counts(model)})
    return rows
