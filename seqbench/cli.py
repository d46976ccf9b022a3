"""The entry layer: the one place that turns a command line into composed, validated jobs.

    python -m seqbench.train  [-m] [key=value ...]     one run, or a sweep with -m
    python -m seqbench.measure what=<name> [...]       a traced or timed measurement
    python -m seqbench.perf   [key=value ...]          harness speed and MFU

``main`` answers ``--help`` with seqbench's own page (Hydra's stays at ``--hydra-help``),
writes model sets out (``model=@lecture``, seqbench.sets), parses the overrides with Hydra's
own parser, refuses a sweep larger than MAX_JOBS, and then validates each job exactly once:

- a single run (no -m): here, before Hydra starts (``preflight``);
- a sweep (-m): every job in seqbench's sweeper (hydra_plugins/seqbench_sweeper, which calls
  ``validate_sweep``), before the first is launched; here only what Hydra itself uses before
  the sweeper runs (the hydra node: sweeper, launcher, callbacks, logging, folders).

``validate_job(cfg, entry)`` is every check of one job: interpolations resolve, ``_target_``
strings are seqbench's own (seqbench.guard, before anything imports one), then the entry's
validator (ENTRIES). The engine below (train, measure, perf) receives a validated config and
never imports this module; a library caller validates through ``validate_job`` first.
"""

import importlib
import math
import os
import signal
import sys
from typing import NamedTuple

from seqbench import guard
from seqbench.errors import ConfigError, fail
from seqbench.store import check_dir

MAX_JOBS = 10_000  # a sweep larger than this is a typo (seed=range(0,100000)), not a plan


class Entry(NamedTuple):
    config: str  # its primary config, conf/<config>.yaml
    task: str  # "module:function" Hydra runs for each job
    check: str  # "module:function" that validates one composed job


ENTRIES = {
    "train": Entry("config", "seqbench.train:job", "seqbench.config:validate_training"),
    "measure": Entry("measure", "seqbench.measure.run:job", "seqbench.config:validate_measurement"),
    "perf": Entry("perf", "seqbench.perf:job", "seqbench.perf:check"),
}


def entry_of(config_name: str) -> str:
    """The entry whose primary config is ``config_name``."""
    return next(e for e, spec in ENTRIES.items() if spec.config == config_name)


def function(target: str):
    """The function ``target`` ("module:function") names, imported only when needed."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def main(entry: str, argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    config_name = ENTRIES[entry].config
    try:
        if any(a in ("-h", "--help") for a in argv):
            return show_help(entry, argv)
        guard.check_flags(argv)
        argv = expand_argv(argv)
        if not guard.shows_only(argv):  # --cfg, --info ...: Hydra prints, no job runs
            preflight(config_name, argv)
    except ConfigError as e:
        return fail(str(e))
    return launch(config_name, ENTRIES[entry].task, argv)


def show_help(entry: str, argv) -> int:
    print(help_page(entry, argv))
    return 0


def help_page(entry: str, argv) -> str:
    """seqbench's page for this command line: its first job's values (the defaults if it
    does not compose, with the reason)."""
    from seqbench import help

    config_name = ENTRIES[entry].config
    argv = [a for a in argv if a not in ("-h", "--help")]
    try:
        cfg, problem = compose_job(config_name, first_job(config_name, argv), hydra=True), None
    except ConfigError as e:
        cfg, problem = compose_job(config_name, [], hydra=True), str(e)
    return help.page(entry, cfg, problem)


# --- the command line ------------------------------------------------------------------------
def split_argv(argv):
    """(overrides, multirun): Hydra's flags taken out."""
    multirun = any(a in ("-m", "--multirun") for a in argv)
    return [a for a in argv if not a.startswith("-")], multirun


def expand_argv(argv) -> list[str]:
    """argv with every ``model=@set`` written out as the models it names (seqbench.sets)."""
    from seqbench.sets import expand_sets

    flags = [a for a in argv if a.startswith("-")]
    return flags + expand_sets([a for a in argv if not a.startswith("-")])


def parse(overrides, parser=None):
    """Hydra's own parser; a malformed override is one line."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = parser or OverridesParser.create()
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

    from seqbench.config import GROUPS

    v = o.value()
    if isinstance(v, Glob):
        if o.key_or_group not in (*GROUPS, "what"):
            raise ConfigError(
                f"{o.input_line} is not allowed: glob() selects the files of a config group "
                f"({', '.join((*GROUPS, 'what'))})"
            )
        return v.filter(options_of(o.key_or_group))
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


def check_sweep_size(parsed) -> None:
    n = sweep_size(parsed)
    where = "the sweep " + " ".join(o.input_line for o in parsed if o.is_sweep_override())
    if n == 0:
        raise ConfigError(f"{where} is not allowed: it would launch no job")
    if n > MAX_JOBS:
        raise ConfigError(
            f"{where} is not allowed: it would launch {n} jobs, at most "
            f"{MAX_JOBS} per command (split the sweep)"
        )


def options_of(group: str) -> list[str]:
    """The options of a config group: its files in conf/, or every study folder's
    experiment configs."""
    from seqbench.config import group_options
    from seqbench.studies import experiment_files

    return sorted(experiment_files()) if group == "experiment" else group_options(group)


def group_choices(parsed) -> None:
    """model=<name>, data=<name>, ... must name a file of that group."""
    from seqbench.config import GROUPS

    for o in parsed:
        group = o.key_or_group
        if group not in GROUPS and group != "what" or o.is_delete():
            continue
        options = options_of(group)
        for v in sweep_values(o) if o.is_sweep_override() else [o.value()]:
            # a {k: v} mapping merges into the node and a list selects several: not a choice
            if v is None or isinstance(v, dict | list) or v in options:
                continue
            raise ConfigError(f"{group}={v!r} is not allowed: choose one of {', '.join(options)}")


# --- the sweep: one expansion for preflight, the sweeper and --help ---------------------------
def sweep_lines(params, overrides) -> list[str]:
    """The sweep of a command line as Hydra's basic sweeper expands it: the experiment's
    ``hydra.sweeper.params`` first, the command line over them, model sets written out."""
    from seqbench.sets import expand_sets

    return expand_sets([f"{k}={v}" for k, v in (params or {}).items()] + list(overrides))


def params_of(base):
    """The experiment's ``hydra.sweeper.params`` of a composed config (None: no sweep)."""
    from omegaconf import OmegaConf

    return OmegaConf.select(base, "hydra.sweeper.params")


def sweep_jobs(lines, parser=None) -> list[list[str]]:
    """Every job of a sweep (the override lines of each), counted before it is built: Hydra's
    expansion builds the whole product at once. glob() is listed as the files it selects."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.types import Glob

    parsed = parse(lines, parser)
    check_sweep_size(parsed)
    if parser is None:  # without Hydra's config loader, glob() is listed here
        listed = [
            f"{o.get_key_element()}={','.join(sweep_values(o))}"
            if isinstance(o.value(), Glob)
            else o.input_line
            for o in parsed
        ]
        parsed = parse(listed)
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def fixed(overrides) -> list[str]:
    """The overrides that are not sweeps: what Hydra composes a sweep's own config from."""
    return [o.input_line for o in parse(overrides) if not o.is_sweep_override()]


def first_job(config_name, argv) -> list[str]:
    """The overrides of the first job this command line runs (the sweep's first with -m)."""
    overrides, multirun = split_argv(expand_argv(argv))
    if not multirun:
        return overrides
    base = compose_job(config_name, fixed(overrides), hydra=True)
    return sweep_jobs(sweep_lines(params_of(base), overrides))[0]


def preflight(config_name: str, argv) -> None:
    """What is refused before Hydra starts (raises ConfigError): a malformed override, a
    group option that does not exist, a sweep without -m or too large; then, for a single
    run, the whole job; for a sweep, what Hydra uses before seqbench's sweeper validates every
    job (the hydra node of the sweep's own config, out_dir)."""
    overrides, multirun = split_argv(expand_argv(argv))
    parsed = parse(overrides)
    group_choices(parsed)
    sweeps = [o.input_line for o in parsed if o.is_sweep_override()]
    check_sweep_size(parsed)
    if not multirun and sweeps:
        raise ConfigError(f"{sweeps[0]} is not allowed: a sweep needs -m (--multirun)")
    if not multirun:
        cfg = compose_job(config_name, overrides, hydra=True)
        check_job(cfg, entry_of(config_name), multirun=False)
        return
    base = compose_job(config_name, fixed(overrides), hydra=True)
    check_sweep_size(parse(sweep_lines(params_of(base), overrides)))
    with guard.hydra_config(base):
        check_out_dir(base)
        guard.check_hydra(base, multirun=True)


def check_job(cfg, entry: str, multirun: bool, job_num: int = 0) -> None:
    """One composed job with its hydra node: out_dir, _target_ strings, the hydra node (as
    Hydra resolves ``${hydra:...}`` in its own run), then ``validate_job``."""
    with guard.hydra_config(cfg):
        check_out_dir(cfg)
        guard.check_targets(cfg)  # before anything below imports a _target_
        guard.check_hydra(cfg, multirun, job_num)
        validate_job(cfg, entry)


def validate_sweep(config_name: str, jobs, compose) -> None:
    """Every job of a sweep (``compose(job)``: its config, as the launcher will compose it),
    before the first is launched; the refusal names the job."""
    entry = entry_of(config_name)
    for i, job in enumerate(jobs):
        try:
            cfg = compose(job)
        except Exception as e:
            raise ConfigError(explain(config_name, job, e)) from None
        try:
            check_job(cfg, entry, multirun=True, job_num=i)
        except ConfigError as e:
            raise ConfigError(f"{e} (job {i + 1} of {len(jobs)}: {' '.join(job)})") from None


def validate_job(cfg, entry: str) -> None:
    """The checks of one composed job of ``entry``; its ``_target_`` strings first, before
    any check imports one."""
    from seqbench.config import check_resolves

    check_resolves(cfg)
    guard.check_targets(cfg)
    function(ENTRIES[entry].check)(cfg)


def check_out_dir(cfg) -> None:
    """out_dir must be creatable and writable: checked before Hydra makes its folder there."""
    out = cfg.get("out_dir")
    if not isinstance(out, str) or not out:
        raise ConfigError(f"out_dir={out!r} is not allowed: a directory path")
    check_dir(f"out_dir={out!r}", out)


# --- composition and its errors --------------------------------------------------------------
def experiments_named(overrides) -> set[str] | None:
    """The experiment names a command line picks (``+experiment=a`` or ``a,b``), so only those
    are registered with Hydra; None (all of them) where a sweep function picks them."""
    names: set[str] = set()
    for line in overrides:
        key, _, value = str(line).partition("=")
        if key.lstrip("+~") == "experiment":
            if "(" in value or "*" in value:
                return None
            names |= {v.strip() for v in value.split(",")}
    return names


def compose_job(config_name: str, overrides, hydra=False):
    """One job's config, composed as Hydra will (``hydra``: with its hydra node); Hydra's and
    OmegaConf's errors become one line naming the key."""
    from hydra import compose, initialize_config_module

    from seqbench.studies import register_experiments

    register_experiments(experiments_named(overrides))
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


# --- handing the jobs to Hydra ---------------------------------------------------------------
class Job:
    """The entry's task function as Hydra runs it, in every job process. A ConfigError that
    only a job can meet (its run record cannot be written: a full disk, a read-only folder)
    is told like any bad input, one line and exit 2, instead of Hydra's traceback; a
    sweep stops there, since every later job would meet it too. In a launcher's worker the
    job is watched: the worker ends when the launching process dies (seqbench.launch). A
    class, not a closure, so the joblib and submitit launchers can pickle it (by reference)."""

    def __init__(self, target: str):
        self.__wrapped__ = function(target)  # Hydra names the job after it

    def __call__(self, cfg):
        from seqbench import launch

        launch.watch_parent()  # in a launcher's worker: end when the launching process dies
        try:
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

    register_experiments(experiments_named(split_argv(argv)[0]))
    os.environ[LAUNCH_PID] = str(os.getpid())  # inherited by launcher workers (watchdog)
    sys.argv = [sys.argv[0], *argv]
    try:
        hydra.main(config_path="pkg://seqbench.conf", config_name=config_name, version_base=None)(
            Job(target)
        )()
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: the run is recorded interrupted
        return interrupted(e)
    except SystemExit as e:  # the sweeper's refusal (its line is printed): the code, returned
        return e.code if isinstance(e.code, int) else 1
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
