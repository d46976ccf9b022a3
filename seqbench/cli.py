"""The command line of every Hydra entry point (train, measure, perf): help, checks, launch.

    python -m seqbench.train  [-m] [key=value ...]     one run, or a sweep with -m
    python -m seqbench.measure what=<name> [...]       a traced or timed measurement
    python -m seqbench.perf   [key=value ...]          harness speed and MFU

Before Hydra starts, ``main`` answers ``--help`` with seqbench's own page (Hydra's stays at
``--hydra-help``), parses the overrides with Hydra's own parser, refuses a sweep larger than
MAX_JOBS, composes the first job and validates it (``seqbench.config.validate``), so a bad
value costs one line and exit code 2 before any directory is made. With ``-m`` the seqbench
sweeper then validates every job of the sweep, Hydra's expansion of it, before launching.
What the command line may make seqbench build, write or run (``_target_``, Hydra's folders,
launcher and flags) is checked first, on the composed config (seqbench.guard).
"""

import math
import os
import signal
import sys

from seqbench import guard
from seqbench.errors import ConfigError
from seqbench.guard import check_dir  # noqa: F401  (report and bench check their folders)

MAX_JOBS = 10_000  # a sweep larger than this is a typo (seed=range(0,100000)), not a plan
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
    try:
        guard.check_flags(argv)
        if not guard.shows_only(argv):  # --cfg, --info ...: Hydra prints, no job runs
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


def sweep_values(o) -> list[str]:
    """The values a sweep override takes, as strings; glob() over a config group's files
    (Hydra lists them only with its config loader), range() without building it."""
    from hydra.core.override_parser.types import Glob

    from seqbench.config import GROUPS, group_options

    v = o.value()
    if isinstance(v, Glob):
        if o.key_or_group not in (*GROUPS, "what"):
            raise ConfigError(
                f"{o.input_line} is not allowed: glob() selects the files of a config group "
                f"({', '.join((*GROUPS, 'what'))})"
            )
        return v.filter(group_options(o.key_or_group))
    if not o.is_discrete_sweep():
        raise ConfigError(
            f"{o.input_line} is not allowed: seqbench's sweeper takes lists, choice(), "
            "range() and glob(), not interval()"
        )
    if hasattr(v, "start") and hasattr(v, "stop") and not v.step:
        raise ConfigError(f"{o.input_line} is not allowed: a range() step must not be 0")
    return list(o.sweep_string_iterator())


def sweep_size(parsed) -> int:
    """The number of jobs Hydra's basic sweeper makes of ``parsed``, counted without making
    them (BasicSweeper.split_arguments builds the whole product first): a later override of
    a key replaces an earlier one, as there."""
    sizes = {}
    for o in parsed:
        n = 1
        if o.is_sweep_override():
            v = o.value()
            if hasattr(v, "start") and hasattr(v, "stop") and v.step:  # range(a, b, step)
                n = max(0, math.ceil((v.stop - v.start) / v.step))
            else:
                n = len(sweep_values(o))
        sizes[o.get_key_element()] = n
    return math.prod(sizes.values())


def check_sweep_size(n: int, where: str) -> None:
    if n == 0:
        raise ConfigError(f"{where} is not allowed: it would launch no job")
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
        for v in sweep_values(o) if o.is_sweep_override() else [o.value()]:
            # a {k: v} mapping merges into the node and a list selects several: not a choice
            if v is None or isinstance(v, dict | list) or v in options:
                continue
            raise ConfigError(f"{group}={v!r} is not allowed: choose one of {', '.join(options)}")


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
        everything = [o.input_line for o in merged if o.is_sweep_override()]
        check_sweep_size(sweep_size(merged), "the sweep " + " ".join(everything))
        listed = [  # glob() as the list it selects: Hydra expands it only with its loader
            f"{o.get_key_element()}={','.join(sweep_values(o))}" if _is_glob(o) else o.input_line
            for o in merged
        ]
        first = BasicSweeper.split_arguments(parse(listed), max_batch_size=1)[0][0]
    cfg = compose_job(config_name, first, hydra=True)
    with guard.hydra_config(cfg):  # ${hydra:runtime.cwd} resolves as in Hydra's own run
        check_out_dir(cfg)
        guard.check_targets(cfg)  # before anything below imports a _target_
        guard.check_hydra(cfg, multirun)
        validate_job(cfg)


def _is_glob(o) -> bool:
    from hydra.core.override_parser.types import Glob

    return isinstance(o.value(), Glob)


def compose_job(config_name: str, overrides, hydra=False):
    """One job's config, composed as Hydra will (``hydra``: with its hydra node); Hydra's and
    OmegaConf's errors become one line naming the key."""
    from hydra import compose, initialize_config_module

    from seqbench.studies import register_experiments

    register_experiments()
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
    reason = lines[0] if lines else type(err).__name__
    culprit = _culprit(config_name, overrides)
    if not culprit:
        return reason
    if "is not in struct" in reason and not culprit.startswith("+"):
        reason += f" (a mapping with new keys merges in with +{culprit})"
    return f"{culprit} is not allowed: {reason}"


def _culprit(config_name, overrides) -> str | None:
    """The first override whose addition breaks composition (the message names it)."""
    from hydra import compose

    for i in range(len(overrides)):
        try:
            compose(config_name, overrides=list(overrides[: i + 1]))
        except Exception:
            return overrides[i]
    return None


def check_out_dir(cfg) -> None:
    """out_dir must be creatable and writable: checked before Hydra makes its folder there."""
    out = cfg.get("out_dir")
    if not isinstance(out, str) or not out:
        raise ConfigError(f"out_dir={out!r} is not allowed: a directory path")
    check_dir(f"out_dir={out!r}", out)


def validate_job(cfg) -> None:
    """The checks of one job, whatever entry point it belongs to; its ``_target_`` strings
    first, before any check imports one."""
    from seqbench.config import check_resolves

    check_resolves(cfg)
    guard.check_targets(cfg)
    if "tables" in cfg:  # the perf benchmark's config
        from seqbench.perf import check

        check(cfg)
    else:
        from seqbench.config import validate

        validate(cfg)


class Job:
    """The entry's task function as Hydra runs it, in every job process. A ConfigError that
    only a job can meet (its run record cannot be written: a full disk, a read-only folder)
    is told like any bad input, one line and exit 2, instead of Hydra's traceback; a
    sweep stops there, since every later job would meet it too. In a launcher's worker the
    job is watched: the worker ends when the launching process dies (seqbench.launch). A
    class, not a closure, so the joblib and submitit launchers can pickle it (by reference)."""

    def __init__(self, target: str):
        import importlib

        module, _, name = target.partition(":")
        self.__wrapped__ = getattr(importlib.import_module(module), name)  # Hydra's job name

    def __call__(self, cfg):
        from seqbench import launch

        launch.watch_parent()  # in a launcher's worker: end when the launching process dies
        try:
            guard.check_targets(cfg)  # whatever path led here, nothing foreign is built
            with launch.job_running():
                return self.__wrapped__(cfg)
        except ConfigError as e:
            fail(str(e))
            sys.stderr.flush()
            sys.exit(2)


def launch(config_name: str, target: str, argv) -> int:
    """Hand the command line to Hydra with the entry's task function."""
    import hydra

    from seqbench.launch import LAUNCH_PID
    from seqbench.studies import register_experiments

    register_experiments()
    os.environ[LAUNCH_PID] = str(os.getpid())  # inherited by launcher workers (watchdog)
    sys.argv = [sys.argv[0], *argv]
    try:
        hydra.main(config_path="pkg://seqbench.conf", config_name=config_name, version_base=None)(
            Job(target)
        )()
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: the run is recorded interrupted
        return interrupted(e)
    return 0


def interrupted(e: KeyboardInterrupt) -> int:
    """One line and the shell's code for a signal (128 + its number), no traceback."""
    signum = getattr(e, "signum", signal.SIGINT)
    name = signal.Signals(signum).name
    print(
        f"seqbench: interrupted by {name}: the run is recorded `interrupted`; the same "
        "command starts it again",
        file=sys.stderr,
    )
    return 128 + signum
