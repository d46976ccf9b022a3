"""Model sets: a sweep names a set, never a list, so adding a model edits no sweep. (Entry
layer, beside seqbench.cli, its one user: it rewrites command lines and sweeps.)

    model=@lecture        the lecture's families: every recurrent and attention model
    model=@compared       every model but the baselines: what the studies compare
    model=@all            every model in conf/model (and a user's, seqbench.searchpath)
    model=@<family>       every model whose class declares that family (@recurrent, @scan, ...)
    model=@lecture,bow    sets and names mix; the result keeps the first place of each model

A set resolves from conf/model/*.yaml and the ``family`` each model's class declares
(seqbench.models.SequenceModel), so a new model joins @all and its family's set by existing.
The entry layer rewrites ``model=@...`` (command line and an experiment's
``hydra.sweeper.params``) before Hydra expands the sweep.
"""

import importlib

from seqbench.errors import ConfigError

# named sets beyond the families: set -> whether it takes a family (a new family joins
# @compared and @all by existing, never @lecture)
SETS = {
    "lecture": lambda family: family in ("recurrent", "attention"),
    "compared": lambda family: family != "baseline",
    "all": lambda family: True,
}
FAMILY_ORDER = ("baseline", "recurrent", "scan", "attention")  # others follow, by name


def families() -> dict[str, str]:
    """model name -> the family its class declares, for every model config (a ``_target_``
    the guard refuses is never imported: its family is "unknown")."""
    from seqbench.config import model_configs
    from seqbench.guard import allowed_target

    out = {}
    for name, node in model_configs().items():
        target = str(node.get("_target_", ""))
        module, _, cls = target.rpartition(".")
        try:
            if not allowed_target("model", target):
                raise ImportError(target)
            out[name] = getattr(importlib.import_module(module), cls).family or "unknown"
        except (ImportError, AttributeError, ValueError):
            out[name] = "unknown"  # validation names the broken _target_ when it is used
    return out


def _rank(item) -> tuple:
    name, family = item
    known = FAMILY_ORDER.index(family) if family in FAMILY_ORDER else len(FAMILY_ORDER)
    return known, family, name


def members(set_name: str) -> list[str]:
    """The models of one set, in family order (baseline, recurrent, scan, attention, others)."""
    fam = families()
    takes = SETS.get(set_name, lambda family: family == set_name)
    chosen = [m for m, f in sorted(fam.items(), key=_rank) if takes(f)]
    if not chosen:
        allowed = ", ".join(f"@{s}" for s in sorted({*SETS, *fam.values()}))
        raise ConfigError(f"model=@{set_name} is not allowed: choose one of {allowed}")
    return chosen


def expand_value(value: str) -> str:
    """'@lecture,bow' -> 'rnn,lstm,gru,transformer,bow' (a value without '@' is unchanged)."""
    if "@" not in value:
        return value
    out = []
    for part in value.split(","):
        part = part.strip()
        for name in members(part[1:]) if part.startswith("@") else [part]:
            if name not in out:
                out.append(name)
    return ",".join(out)


def expand_sets(lines: list[str]) -> list[str]:
    """Override lines with every ``model=@set`` written out as the models it names."""
    out = []
    for line in lines:
        key, eq, value = line.partition("=")
        out.append(f"{key}={expand_value(value)}" if eq and key.lstrip("+~") == "model" else line)
    return out
