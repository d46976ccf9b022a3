"""The command line of every Hydra entry point (train, measure, perf): help, checks, launch.

    python -m seqbench.train  [-m] [key=value ...]     one run, or a sweep with -m
    python -m seqbench.measure what=<name> [...]       a traced or timed measurement
    python -m seqbench.perf   [key=value ...]          harness speed and MFU

Before Hydra starts, ``main`` answers ``--help`` with seqbench's own page (Hydra's stays at
``--hydra-help``), parses the overrides with Hydra's own parser, refuses a sweep larger than
MAX_JOBS, composes the first job and validates it (``seqbench.config.validate``), so a bad
value costs one line and exit code 2 before any directory is made. With ``-m`` the seqbench
sweeper then validates every job of the sweep, Hydra's expansion of it, before launching.
"""

import math
import os
import sys
from pathlib import Path

from seqbench.errors import ConfigError

MAX_JOBS = 10_000  # a sweep larger than this is a typo (seed=range(0,100000)), not a plan
HYDRA_FLAGS = (
    "--cfg",
    "-c",
    "--info",
    "-i",
    "--hydra-help",
    "--shell-completion",
    "-sc",
    "--resolve",
    "-p",
    "--package",
    "--config-dir",
    "-cd",
    "--config-name",
    "-cn",
    "--config-path",
    "-cp",
    "--version",
    "--experimental-rerun",
)
ENTRIES = {  # entry -> (primary config, task function)
    "train": ("config", "seqbench.train:job"),
    "measure": ("measure", "seqbench.measure.run:job"),
    "perf": ("perf", "seqbench.perf:job"),
}


def fail(message: str) -> int:
    print(f"seqbench: error: {message}", file=sys.stderr)
    return 2


def main(entry: str, argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        from seqbench.help import page

        print(page(entry, argv))
        return 0
    config_name, target = ENTRIES[entry]
    if not any(a.split("=")[0] in HYDRA_FLAGS for a in argv):
        try:
            preflight(config_name, argv)
        except ConfigError as e:
            return fail(str(e))
    return launch(config_name, target, argv)


def split_argv(argv):
    """(overrides, multirun): Hydra's flags taken out."""
    multirun = any(a in ("-m", "--multirun") for a in argv)
    return [a for a in argv if not a.startswith("-")], multirun


def parse(overrides):
    """Hydra's own parser; a malformed override is one line."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    parsed = []
    for o in overrides:
        try:
            parsed += parser.parse_overrides([o])
        except OverrideParseException as e:
            reason = str(e).strip().splitlines()[0]
            raise ConfigError(f"{o!r} is not allowed: not a valid override ({reason})") from None
    return parsed


def sweep_size(parsed) -> int:
    n = 1
    for o in parsed:
        if o.is_sweep_override():
            v = o.value()
            if hasattr(v, "start") and hasattr(v, "stop"):  # range(a, b, step)
                n *= max(0, math.ceil((v.stop - v.start) / (v.step or 1)))
            else:
                n *= sum(1 for _ in o.sweep_string_iterator())
    return n


def check_sweep_size(n: int, where: str) -> None:
    if n > MAX_JOBS:
        raise ConfigError(
            f"{where} is not allowed: it would launch {n} jobs, at most "
            f"{MAX_JOBS} per command (split the sweep)"
        )


def group_choices(parsed) -> None:
    """model=<name>, data=<name>, ... must name a file of that group."""
    from seqbench.config import GROUPS, group_options

    for o in parsed:
        group = o.key_or_group
        if group not in GROUPS and group != "what" or o.is_delete():
            continue
        options = group_options(group)
        for v in o.sweep_string_iterator() if o.is_sweep_override() else [o.value()]:
            if isinstance(v, str):  # a {k: v} mapping merges into the node: not a choice
                if v not in options:
                    raise ConfigError(
                        f"{group}={v!r} is not allowed: choose one of {', '.join(options)}"
                    )


def preflight(config_name: str, argv) -> None:
    """Validate the first job of the command line (all of it, without -m); raise ConfigError.
    With -m the first job is taken as the sweeper will take it: the experiment's
    ``hydra.sweeper.params`` first, the command line's sweeps over them (Hydra's expansion)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from omegaconf import OmegaConf

    overrides, multirun = split_argv(argv)
    parsed = parse(overrides)
    group_choices(parsed)
    sweeps = [o.input_line for o in parsed if o.is_sweep_override()]
    check_sweep_size(sweep_size(parsed), "the sweep " + " ".join(sweeps))
    if not multirun and sweeps:
        raise ConfigError(f"{sweeps[0]} is not allowed: a sweep needs -m (--multirun)")
    first = overrides
    if multirun:
        fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
        base = compose_job(config_name, fixed, hydra=True)
        params = OmegaConf.select(base, "hydra.sweeper.params") or {}
        merged = parse([f"{k}={v}" for k, v in params.items()] + overrides)
        first = BasicSweeper.split_arguments(merged, max_batch_size=1)[0][0]
    cfg = compose_job(config_name, first)
    check_out_dir(cfg)
    validate_job(cfg)


def compose_job(config_name: str, overrides, hydra=False):
    """One job's config, composed as Hydra will (``hydra``: with its hydra node); Hydra's and
    OmegaConf's errors become one line naming the key."""
    from hydra import compose, initialize_config_module

    with initialize_config_module("seqbench.conf", version_base=None):
        try:
            return compose(config_name, overrides=list(overrides), return_hydra_config=hydra)
        except Exception as e:
            raise ConfigError(explain(config_name, overrides, e)) from None


def explain(config_name, overrides, err) -> str:
    """One line for a composition error: an unknown key gets the keys that exist there."""
    from hydra import compose
    from omegaconf import DictConfig, OmegaConf

    from seqbench.config import GROUPS

    kept = [o for o in overrides if o.split("=")[0].lstrip("+~") in (*GROUPS, "what")]
    try:
        base = compose(config_name, overrides=kept)
    except Exception:
        base = None
    for o in overrides:
        key, _, value = o.partition("=")
        if base is None or key.startswith(("+", "~", "hydra")) or key in (*GROUPS, "what"):
            continue
        if OmegaConf.select(base, key, default="__missing__") == "__missing__":
            parent = key.rpartition(".")[0]
            node = OmegaConf.select(base, parent) if parent else base
            keys = ", ".join(map(str, node.keys())) if isinstance(node, DictConfig) else "none"
            return f"{key}={value!r} is not allowed: no such key (keys here: {keys})"
    cause = err.__cause__ or err
    lines = [ln for ln in str(cause).strip().splitlines() if ln.strip()]
    return lines[0] if lines else type(err).__name__


def check_out_dir(cfg) -> None:
    """out_dir must be creatable and writable: checked before Hydra makes its folder there."""
    out = cfg.get("out_dir")
    if not isinstance(out, str) or not out:
        raise ConfigError(f"out_dir={out!r} is not allowed: a directory path")
    path = Path(out).expanduser().absolute()
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"out_dir={out!r} is not allowed: {probe} is a file, not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"out_dir={out!r} is not allowed: {probe} is not writable")


def validate_job(cfg) -> None:
    """The checks of one job, whatever entry point it belongs to."""
    if "tables" in cfg:  # the perf benchmark's config
        from seqbench.perf import check

        check(cfg)
    else:
        from seqbench.config import validate

        validate(cfg)


def launch(config_name: str, target: str, argv) -> int:
    """Hand the command line to Hydra with the entry's task function."""
    import importlib

    import hydra

    module, _, name = target.partition(":")
    task = getattr(importlib.import_module(module), name)
    sys.argv = [sys.argv[0], *argv]
    hydra.main(config_path="pkg://seqbench.conf", config_name=config_name, version_base=None)(
        task
    )()
    return 0
