"""Typed schemas: what every configuration key accepts, in one table per node.

A ``Spec`` gives a key's type, its range or choices and one line of help; ``check(node,
schema, prefix)`` refuses the first bad value, and any key the schema does not name, with
one line (``train.steps=1.5 is not allowed: an integer >= 1``). The same tables print
``--help``. Model and task classes need no table: their constructor's annotations are the
schema (``Spec.of_parameter``), and their own checks run when they are built.
"""

import inspect
import math
import types
import typing
from dataclasses import dataclass

from omegaconf import DictConfig, ListConfig, OmegaConf

from seqbench.errors import ConfigError

# sizes beyond these are typos, not experiments: refused at once instead of hanging
LIMITS = {
    "n_layers": 256,
    "d_model": 65536,
    "d_ff": 262144,
    "d_embed": 65536,
    "n_heads": 1024,
    "seq_len": 1 << 20,
    "seq_lens": 1 << 20,  # a list of seq_len values (perf mfu.seq_lens): each gets the limit
    "max_len": 1 << 20,
    "vocab_size": 1 << 22,
    "batch_size": 1 << 20,
    "steps": 10**9,
    "n_train": 1 << 24,  # a fixed pool of examples, generated at once
    "eval_batches": 1 << 16,  # held-out batches per evaluation
}
SEED_MAX = 2**63 - 1
# keys every class receiving them reads as a probability: refused here with the key's name,
# before a constructor (nn.Dropout) says "probability has to be between 0 and 1" without it
PROBABILITIES = ("dropout",)


@dataclass(frozen=True)
class Spec:
    kind: type  # int, float, bool, str, list (of item), dict, or object (anything)
    help: str = ""
    low: float | None = None  # inclusive lower bound
    positive: bool = False  # > 0 (floats)
    high: float | None = None  # inclusive upper bound
    choices: tuple = ()
    nullable: bool = False
    item: type | None = None  # element type of a list
    length: int | None = None  # exact list length

    def allowed(self) -> str:
        """The 'what is allowed' half of an error message."""
        if self.choices:
            text = "one of " + ", ".join(map(_show, self.choices))
        elif self.kind is bool:
            text = "true or false"
        elif self.kind is list:
            n = f"{self.length} " if self.length else "a list of "
            text = f"{n}{_noun(self.item, plural=True)}" + _range(self)
        else:
            text = _noun(self.kind) + _range(self)
        return f"null or {text}" if self.nullable else text

    def ok(self, value) -> bool:
        if value is None:
            return self.nullable or None in self.choices
        if self.choices:
            return value in self.choices
        if self.kind is list:
            if not isinstance(value, list | tuple | ListConfig):
                return False
            items = list(value)
            if self.length is not None and len(items) != self.length:
                return False
            return bool(items) and all(_scalar_ok(self.item, v, self) for v in items)
        return _scalar_ok(self.kind, value, self)

    @staticmethod
    def of_parameter(param: inspect.Parameter, hint) -> "Spec":
        """The Spec a constructor annotation implies (int, float | None, bool, str ...)."""
        nullable = param.default is None
        args = typing.get_args(hint)
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            nullable = nullable or type(None) in args
            hint = next((a for a in args if a is not type(None)), object)
        if typing.get_origin(hint) is typing.Literal:
            return Spec(str, choices=typing.get_args(hint), nullable=nullable)
        kind = hint if hint in (int, float, bool, str) else object
        return Spec(kind, nullable=nullable)


def _scalar_ok(kind, v, spec) -> bool:
    if kind is object:
        return True
    if kind is bool:
        return isinstance(v, bool)
    if kind is int:
        good = isinstance(v, int) and not isinstance(v, bool)
    elif kind is float:
        good = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    elif kind is str:
        return isinstance(v, str) and bool(v)
    elif kind is dict:
        return isinstance(v, dict | DictConfig)
    else:
        return isinstance(v, kind)
    if not good:
        return False
    if spec.positive and not v > 0:
        return False
    if spec.low is not None and v < spec.low:
        return False
    return spec.high is None or v <= spec.high


def _noun(kind, plural=False) -> str:
    names = {int: "integer", float: "finite number", str: "non-empty string", dict: "mapping"}
    name = names.get(kind, "value")
    if plural:
        return name + "s"
    return ("an " if name[0] in "aeiou" else "a ") + name


def _range(spec) -> str:
    low, high = _num(spec.low), _num(spec.high)
    if spec.positive:
        return " > 0" if high is None else f" in (0, {high}]"
    if low is not None and high is not None:
        return f" in [{low}, {high}]"
    if low is not None:
        return f" >= {low}"
    if high is not None:
        return f" <= {high}"
    return ""


def _num(v):
    if v is None:
        return None
    if v == SEED_MAX:
        return "2**63 - 1"
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else f"{v:g}"


def _show(v) -> str:
    return "null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)


def plain(value):
    """A config value as Python data (lists and dicts unwrapped), for messages and checks."""
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def need(ok: bool, key: str, value, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={plain(value)!r} is not allowed: {allowed}")


def check(node, schema: dict, prefix: str = "", extra=()) -> None:
    """Every key of ``node`` must be in ``schema`` (or ``extra``, checked elsewhere) and
    every value must pass its Spec; nested dicts of Specs are nested nodes."""
    if not isinstance(node, DictConfig | dict):
        raise ConfigError(
            f"{prefix.rstrip('.') or 'config'}={plain(node)!r} is not allowed: a mapping of keys"
        )
    for key in node:
        key = str(key)
        if key not in schema and key not in extra:
            known = ", ".join(sorted([*schema, *extra]))
            raise ConfigError(
                f"{prefix}{key}={plain(node[key])!r} is not allowed: no such key "
                f"(keys here: {known})"
            )
    for key, spec in schema.items():
        if key not in node:
            raise ConfigError(f"{prefix}{key} is missing: {_describe(spec)}")
        value = node[key]
        if isinstance(spec, dict):
            check(value, spec, f"{prefix}{key}.")
        else:
            need(spec.ok(value), f"{prefix}{key}", value, spec.allowed())


def _describe(spec) -> str:
    return "a mapping" if isinstance(spec, dict) else spec.allowed()


def check_size(key: str, value) -> None:
    """Sizes with a sanity limit (LIMITS) get it, whatever class receives them."""
    name = key.rsplit(".", 1)[-1]
    if name == "seed":
        need(
            isinstance(value, int) and 0 <= value <= SEED_MAX,
            key,
            value,
            "an integer in [0, 2**63 - 1]",
        )
    if name in PROBABILITIES:
        need(
            isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1,
            key,
            value,
            "a probability, a number in [0, 1]",
        )
    limit = LIMITS.get(name)
    if limit is None:
        return
    many = isinstance(value, list | tuple | ListConfig)
    for v in value if many else [value]:
        if isinstance(v, int) and not isinstance(v, bool):
            need(
                1 <= v <= limit,
                key,
                value,
                f"{'integers' if many else 'an integer'} in [1, {limit}]",
            )


# --- the schemas -----------------------------------------------------------------------------
TOP = {  # conf/config.yaml's own keys (model, data, train are their own nodes)
    "seed": Spec(
        int,
        "the replicate: model initialisation, and the data stream (data.seed follows it)",
        low=0,
        high=SEED_MAX,
    ),
    "device": Spec(str, "auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps"),
    "study": Spec(str, "groups runs in the report; experiments set it"),
    "out_dir": Spec(str, "root of the run directories"),
    "fresh": Spec(bool, "true: discard an existing run with the same content key"),
}

TRAIN = {
    "steps": Spec(
        int,
        "optimisation steps (the cap when stopping at a criterion)",
        low=1,
        high=LIMITS["steps"],
    ),
    "batch_size": Spec(int, "sequences per step", low=1, high=LIMITS["batch_size"]),
    "lr": Spec(float, "peak learning rate", positive=True),
    "optimizer": Spec(
        str,
        "adamw (the studies' recipe) or sgd (plain SGD, pytorch/examples' word_language_model; "
        "betas unused); fused kernels on CPU and CUDA",
        choices=("adamw", "sgd"),
    ),
    "betas": Spec(list, "AdamW betas", item=float, low=0, high=0.9999, length=2),
    "weight_decay": Spec(float, "AdamW decoupled weight decay", low=0),
    "warmup": Spec(
        int, "linear warm-up steps, then cosine decay (constant with a criterion)", low=0
    ),
    "min_lr_frac": Spec(float, "the cosine ends at lr * min_lr_frac", low=0, high=1),
    "grad_clip": Spec(
        float, "global gradient-norm clip; null disables it", positive=True, nullable=True
    ),
    "log_every": Spec(int, "steps between logged training rows", low=1),
    "eval_every": Spec(int, "steps between held-out evaluations (the last step always is)", low=1),
    "eval_batches": Spec(int, "held-out batches per evaluation", low=1),
    "eval_batch_size": Spec(
        int,
        "columns of a held-out stream in whole-stream evaluation (text corpora); null: "
        "train.batch_size",
        low=1,
        high=LIMITS["batch_size"],
        nullable=True,
    ),
    "plateau_factor": Spec(
        float,
        "divide the lr by this at every evaluation that does not beat the best held-out loss "
        "(pytorch/examples: 4); null: never",
        low=1,
        nullable=True,
    ),
    "ckpt_every": Spec(int, "steps between checkpoints (resume points)", low=1),
    "threads": Spec(
        int, "torch intra-op threads; null keeps torch's default", low=1, high=4096, nullable=True
    ),
    "deterministic": Spec(bool, "torch.use_deterministic_algorithms + cuDNN flags"),
    "compile": Spec(bool, "torch.compile the model"),
    "progress": Spec(
        object,
        "progress bar: auto (only on a terminal), true or false",
        choices=("auto", True, False),
    ),
    "inject_nan_at": Spec(
        int, "fault injection for tests: a NaN loss at this step", low=0, nullable=True
    ),
    "criterion": Spec(
        object,
        "stop at the first evaluation where this held-out metric reaches train.target "
        "(val_acc >=, val_loss <=); null: train for train.steps",
        choices=(None, "val_acc", "val_loss"),
    ),
    "target": Spec(float, "the criterion's value (e.g. 0.99 for val_acc)", nullable=True),
    "patience": Spec(
        int,
        "early stopping: stop after this many evaluations without a new best held-out loss; "
        "null: never",
        low=1,
        nullable=True,
    ),
    "lr_grid": Spec(
        list,
        "learning rates to calibrate on first (one short run each on the control setting, "
        "per model and task; the lowest held-out loss at the end wins, and a best rate at an edge "
        "extends the grid x3 on that side, twice at most); null: use train.lr",
        item=float,
        positive=True,
        nullable=True,
    ),
    "budget": Spec(
        int,
        "the step cap as a multiple of train.steps (the full profile's longer runs: 4); "
        "evaluations keep their interval, calibration runs stay at 1",
        low=1,
        high=64,
    ),
    "lr_step": Spec(
        int,
        "train at a neighbour of the calibrated lr: -1 the next smaller rate of the grid, +1 "
        "the next larger (x3 per step beyond it); 0: the choice",
        low=-4,
        high=4,
    ),
    "lr_control": Spec(
        dict,
        "overrides of the calibration runs (the study's control setting), e.g. "
        "{data.distance: 4, train.steps: 300}",
    ),
}

CRITERIA = {  # train.criterion -> the range of train.target that can be met, but not at once
    "val_acc": Spec(
        float, "an accuracy, reached from below: 0 is met at once", positive=True, high=1
    ),
    "val_loss": Spec(float, "a loss in nats, reached from above: 0 is never met", positive=True),
}
