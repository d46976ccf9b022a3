"""What a command line may make seqbench do: build only seqbench's own classes, write only
inside out_dir, and use Hydra only as seqbench uses it. Checked on the composed config (so
every override that produced it, a whole node replaced included, meets the same checks)
before anything is imported from it, built or written.

- ``check_targets(cfg)``: a ``_target_`` only where seqbench builds one (model, data, what),
  each under its package (``TARGETS``); a user's model or task lives in seqbench/models or
  seqbench/data, or in a folder SEQBENCH_PATH names (seqbench.searchpath; README "Add your
  own model"). Hydra's ``instantiate`` builds any callable
  and importing a module runs its code, so the string is checked before either.
- ``check_hydra(cfg, multirun)``: the hydra node: launcher, sweeper and callbacks among the
  known plugins; logging without factories or files of its own; the run's folders
  (``hydra.run.dir``, ``hydra.sweep.dir``/``subdir``, ``hydra.output_subdir``) inside
  out_dir; no ``hydra.job.chdir`` and no environment set by the config; the launcher's and
  sweeper's own values (n_jobs, max_batch_size) and whether the launcher can run here.
- ``check_flags(argv)``: Hydra's command-line flags that bypass these checks are refused.
"""

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from seqbench import searchpath
from seqbench.errors import ConfigError
from seqbench.schema import need, plain
from seqbench.store import check_dir

TARGETS = {  # node -> the package its _target_ must lie in
    "model": "seqbench.models.",
    "data": "seqbench.data.",
    "what": "seqbench.measure.",
}
USER_NODES = ("model", "data")  # may also name a module of a SEQBENCH_PATH folder
PLUGINS = ("hydra._internal.core_plugins.", "hydra_plugins.")  # launchers and sweepers
SWEEPER = "hydra_plugins.seqbench_sweeper.seqbench_sweeper.SeqbenchSweeper"  # validates each job
CALLBACKS = ("seqbench.launch.", "hydra.experimental.callbacks.")
LOG_CLASSES = (
    "logging.StreamHandler",
    "logging.FileHandler",
    "logging.NullHandler",
    "logging.Formatter",
    "colorlog.ColoredFormatter",
)
LOG_STREAMS = ("ext://sys.stdout", "ext://sys.stderr")
LOG_FILE = "${hydra.runtime.output_dir}/"  # Hydra's own job log lies in the run's folder
CLUSTER_TOOLS = ("sbatch", "srun")  # what submitit's SLURM executor calls
REFUSED_FLAGS = {  # Hydra flag (argparse dest) -> why, and what to use instead
    "experimental_rerun": "it unpickles a saved job, which runs whatever the file holds; "
    "rerun the same command line instead",
    "config_dir": "seqbench composes its configs from seqbench/conf only; put the file "
    "under conf/<group>/ (e.g. conf/experiment/) and pick it with group=name",
    "config_path": "seqbench composes its configs from seqbench/conf only; put the file "
    "under conf/<group>/ and pick it with group=name",
    "config_name": "each entry point has its own config (python -m seqbench.train, "
    "seqbench.measure, seqbench.perf); pick an experiment with +experiment=name",
}


# --- _target_ ------------------------------------------------------------------------------
def dotted(target) -> bool:
    return isinstance(target, str) and all(p.isidentifier() for p in target.split("."))


def allowed_target(node: str, target) -> bool:
    """True when ``target`` may be built for the top-level ``node`` (model, data, what)."""
    package = TARGETS.get(node)
    if not (package and dotted(target)):
        return False
    if target.startswith(package):
        return True
    # a user's model or task: a module of a folder SEQBENCH_PATH names (the user's own trust)
    return node in USER_NODES and target.startswith(searchpath.target_prefixes())


def check_targets(cfg: DictConfig) -> None:
    """Every ``_target_`` outside the hydra node: only model, data and what name one, each
    under its package; nowhere else (a nested one would be built by ``instantiate``)."""
    for key in cfg:
        if key == "hydra":
            continue
        value = _resolved(cfg, key)
        if isinstance(value, dict) and "_target_" in value:
            target = value["_target_"]
            allowed = TARGETS.get(str(key))
            need(
                allowed_target(str(key), target),
                f"{key}._target_",
                target,
                f"a class in {allowed.rstrip('.')} (add your own there"
                + (", or in a folder SEQBENCH_PATH names)" if key in USER_NODES else ")")
                if allowed
                else f"only {', '.join(TARGETS)} name a class to build",
            )
            value = {k: v for k, v in value.items() if k != "_target_"}
        _no_nested_target(str(key), value)


def _resolved(cfg, key):
    """cfg[key] as Python data, interpolations resolved where they resolve (check_resolves
    reports the others) and left as written where they do not."""
    node = cfg._get_node(key)
    try:
        return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else cfg[key]
    except Exception:  # noqa: BLE001  an unresolvable interpolation: its text is checked
        return plain(node) if OmegaConf.is_config(node) else node._value()


def _no_nested_target(where: str, value) -> None:
    if not isinstance(value, dict | list):
        return
    for k, v in value.items() if isinstance(value, dict) else enumerate(value):
        key = f"{where}.{k}"
        if k == "_target_":
            need(False, key, v, f"only {', '.join(TARGETS)} name a class to build")
        _no_nested_target(key, v)


# --- the hydra node -------------------------------------------------------------------------
@contextmanager
def hydra_config(cfg: DictConfig):
    """``${hydra:...}`` resolvable outside Hydra's own run (as Hydra sets it for a job)."""
    from hydra.core.hydra_config import HydraConfig

    holder = HydraConfig.instance()
    saved = holder.cfg
    if "hydra" in cfg:
        holder.set_config(cfg)
    try:
        yield
    finally:
        holder.cfg = saved


def check_hydra(cfg: DictConfig, multirun: bool, job_num: int = 0) -> None:
    """The hydra node of one composed job (``return_hydra_config=True``)."""
    h = cfg.hydra
    _check_plugin("hydra.launcher", h.launcher, "hydra.plugins.launcher.Launcher")
    _check_plugin("hydra.sweeper", h.sweeper, "hydra.plugins.sweeper.Sweeper")
    for name, callback in (h.get("callbacks") or {}).items():
        target = callback.get("_target_") if isinstance(callback, DictConfig) else callback
        need(
            dotted(target) and target.startswith(CALLBACKS),
            f"hydra.callbacks.{name}._target_",
            target,
            f"a callback in {' or '.join(p.rstrip('.') for p in CALLBACKS)}",
        )
    for node in ("job_logging", "hydra_logging"):
        _check_logging(f"hydra.{node}", plain(h.get(node)))
    need(not h.job.get("chdir"), "hydra.job.chdir", h.job.get("chdir"),
         "false: seqbench reads every path relative to the folder it was started in")  # fmt: skip
    for key in ("env_set", "env_copy"):
        need(not h.job.get(key), f"hydra.job.{key}", h.job.get(key),
             "empty: set environment variables in the shell that starts seqbench")  # fmt: skip
    from seqbench.runs import check_name

    check_name("hydra.job.name", h.job.name)
    check_folders(cfg, multirun, job_num)
    if multirun:
        check_launcher(cfg)


def _check_plugin(key: str, node, base: str) -> None:
    """A launcher or sweeper: a class of an installed Hydra plugin (Hydra imports them all
    when it scans for plugins, so importing one here runs nothing new)."""
    from hydra.utils import get_class

    target = node.get("_target_") if isinstance(node, DictConfig) else None
    allowed = f"a Hydra {key.split('.')[1]} class (pick one with {key.replace('.', '/')}=NAME)"
    need(dotted(target) and target.startswith(PLUGINS), f"{key}._target_", target, allowed)
    module, _, name = base.rpartition(".")
    try:
        ok = issubclass(get_class(target), getattr(__import__(module, fromlist=[name]), name))
    except Exception:  # noqa: BLE001  not importable, not a class
        ok = False
    need(ok, f"{key}._target_", target, allowed)


def _check_logging(where: str, node) -> None:
    """Python's logging.config builds ``()`` factories, ``class`` names and ``ext://``
    objects, and opens ``filename``: only the plain handlers, the standard streams and
    Hydra's own log file in the run's folder."""
    if isinstance(node, list):
        for i, v in enumerate(node):
            _check_logging(f"{where}.{i}", v)
    if not isinstance(node, dict):
        return
    for k, v in node.items():
        key = f"{where}.{k}"
        need(k != "()", key, v, "a handler class, not a factory")
        if k == "class":
            need(v in LOG_CLASSES, key, v, "one of " + ", ".join(LOG_CLASSES))
        if isinstance(v, str) and v.startswith(("ext://", "cfg://")):
            need(v in LOG_STREAMS, key, v, "one of " + ", ".join(LOG_STREAMS))
        if k == "filename":
            rest = str(v)[len(LOG_FILE) :]
            need(
                str(v).startswith(LOG_FILE) and "/" not in rest and ".." not in rest,
                key,
                v,
                f"a file name in the run's folder ({LOG_FILE}<name>.log)",
            )
        _check_logging(key, v)


def check_folders(cfg: DictConfig, multirun: bool, job_num: int = 0) -> None:
    """Hydra's folder for this job, and its output_subdir, inside out_dir (Hydra writes
    config.yaml, hydra.yaml and overrides.yaml there, replacing what is there)."""
    h = cfg.hydra
    with read_write(h.job), open_dict(h.job):  # as the launcher numbers the job
        h.job.num = job_num if h.job.get("num") is None else h.job.num
        h.job.id = h.job.get("id") or str(job_num)
    out = Path(cfg.out_dir)
    if multirun:
        folder = _inside("hydra.sweep.dir", h.sweep.dir, out)
        subdir = str(h.sweep.subdir)  # joined as Hydra joins them: an absolute one replaces
        job = _inside("hydra.sweep.subdir", os.path.join(folder, subdir), folder, subdir)
    else:
        job = _inside("hydra.run.dir", h.run.dir, out)
    if h.output_subdir is not None:
        subdir = str(h.output_subdir)
        _inside("hydra.output_subdir", os.path.join(job, subdir), job, subdir, below=False)
    check_dir(f"out_dir={cfg.out_dir!r}", job)


def _inside(key: str, path, root, shown=None, below=True) -> str:
    """``path`` as a string when it lies under ``root`` (strictly ``below`` it, or equal),
    symbolic links followed; else the one-line refusal."""
    text, shown = str(path), path if shown is None else shown
    need(bool(str(shown).strip()), key, shown, "a non-empty path")
    real, top = Path(os.path.realpath(text)), Path(os.path.realpath(root))
    ok = real.is_relative_to(top) and (real != top or not below)
    where = "inside" if not below else "below"
    need(ok, key, shown, f"a path {where} {top} (seqbench writes only inside out_dir)")
    return text


def check_launcher(cfg: DictConfig) -> None:
    """The launcher's and sweeper's own values, and a cluster launcher only where its tools
    are (each otherwise ends in a traceback from the plugin)."""
    h = cfg.hydra
    need(
        h.sweeper.get("_target_") == SWEEPER,
        "hydra/sweeper",
        h.runtime.choices.get("hydra/sweeper"),
        "seqbench (the sweeper that validates every job before the first one runs)",
    )
    launcher = h.launcher
    target = str(launcher.get("_target_"))
    if "n_jobs" in launcher:  # joblib: 0 means nothing; negative counts back from the cores
        n = launcher.n_jobs
        need(
            isinstance(n, int) and not isinstance(n, bool) and n != 0,
            "hydra.launcher.n_jobs",
            n,
            "an integer >= 1 (jobs at once), or negative (-1: one per core)",
        )
    batch = h.sweeper.get("max_batch_size")
    need(
        batch is None or (isinstance(batch, int) and not isinstance(batch, bool) and batch >= 1),
        "hydra.sweeper.max_batch_size",
        batch,
        "null or an integer >= 1",
    )
    if target.endswith("SlurmLauncher"):
        missing = [t for t in CLUSTER_TOOLS if shutil.which(t) is None]
        choice = h.runtime.choices.get("hydra/launcher")
        need(
            not missing,
            "hydra/launcher",
            choice,
            f"SLURM is not available here ({', '.join(missing)} not on PATH); run it on the "
            "cluster, or try the same sweep here with hydra/launcher=slurm_local",
        )


# --- Hydra's flags ---------------------------------------------------------------------------
def parse_flags(argv):
    """Hydra's own argument parser over argv (its abbreviations included: --exp, -cdX);
    a malformed command line is one line."""
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()

    def error(message):
        raise ConfigError(f"the command line {' '.join(argv)!r} is not allowed: {message}")

    parser.error = error
    return parser.parse_known_args(argv)[0]


def check_flags(argv) -> None:
    """Hydra flags that would compose from elsewhere or run a pickled job are refused."""
    args = parse_flags(argv)
    for dest, why in REFUSED_FLAGS.items():
        value = getattr(args, dest, None)
        if value is not None:
            flag = "--" + dest.replace("_", "-")
            raise ConfigError(f"{flag}={value} is not allowed: {why}")


def shows_only(argv) -> bool:
    """True when Hydra only prints (--cfg, --info, --hydra-help, --shell-completion,
    --version): no job runs, so the job's checks do not apply."""
    args = parse_flags(argv)
    return bool(args.cfg or args.info or args.hydra_help or args.shell_completion)
