"""Studies: one folder per claim test, discovered by name.

A study ``X`` is the folder experiments/X/ (the package ``seqbench.studies.X``; seqbench/studies
is a link to experiments/, as seqbench/conf is to conf/):

    __init__.py        the study module: rule, verdicts, section
    X.yaml, X_*.yaml   its experiment configs (``+experiment=X``): `study: X` and the sweep
    profiles.yaml      which cells each bench profile runs (smoke, cpu, full, gpu)
    README.md          claim, method, exact commands

and the module holds

    TITLE: str                  the section heading
    ORDER: int                  position in the report
    DECIDES: tuple[str, ...]    the claims its verdicts speak to ("C5", ...)
    CLAIMS: dict (optional)     claims beyond the lecture it adds: {"C3*": "one line"}
    READS: tuple (optional)     other studies whose runs its verdicts read (for stability)
    RULE / *_RULE: Rule         thresholds, and the rule's sentence generated from them
    def verdicts(tables) -> list[Verdict]     pure: tables in, verdicts out
    def section(tables, figs) -> str          markdown; figures through figs (report.plot),
                                              each saved as X.png or X_<what>.png

profiles.yaml maps a profile (smoke, cpu, full, gpu) to its jobs, in order (``full`` lists
only what it adds to ``cpu``: its jobs are the cpu ones, then these); a job is

    - job: recall              the study's name, or <study>_<what>
      entry: train             train | measure | perf: python -m seqbench.<entry>
      args: [-m, +experiment=recall, hydra/launcher=joblib, hydra.launcher.n_jobs=2]
      cap_s: 600               optional: the bench stops it there (SIGTERM; it keeps its work)
      rank: 1                  optional (default 9): lower ranks run first across studies

and is checked as it is read (``study_jobs``): its args may run only this study's
experiments; ``model=@<set>`` names a model set (seqbench.sets). The bench reads the jobs
(``bench_jobs``, ``profile_names``) and the README's commands are written from them.

Adding a study adds its folder and edits nothing shared: the bench, the report, the claims
table and Hydra's ``+experiment=`` find it here. Studies share helpers through
experiments/_common.py only and never import each other. This module stays light (no pandas,
no torch): the command line registers the experiment configs through it.
"""

import importlib
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path

from seqbench import searchpath

HERE = Path(__file__).resolve().parent
PROFILES = "profiles.yaml"  # a study folder's bench cells, not an experiment config
__path__ = [*__path__, *searchpath.study_folders(HERE)]  # a user's studies/ (SEQBENCH_PATH)


@dataclass
class Job:
    """One bench command: ``python -m <module> <args> out_dir=<runs>``.

    ``cap_s``: its wall-clock cap (the bench stops it there with SIGTERM: a training run
    checkpoints, a measurement keeps the rows it wrote, complete runs stay complete).
    ``rank``: its place in the profile, lower first (a profile orders its jobs by what they
    decide); jobs of one rank run in the studies' report order."""

    name: str
    module: str
    args: list = field(default_factory=list)
    cap_s: float | None = None
    rank: int = 9

    def command(self) -> list[str]:
        return [self.module, *map(str, self.args)]

    @property
    def entry(self) -> str:
        """'train' for seqbench.train: the entry point's name."""
        return self.module.rsplit(".", 1)[-1]


def names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def load(name: str):
    return importlib.import_module(f"{__name__}.{name}")


def all_studies() -> list:
    """Every study module, in report order."""
    return sorted((load(n) for n in names()), key=lambda m: (m.ORDER, m.__name__))


def study_name(module) -> str:
    return module.__name__.rsplit(".", 1)[-1]


def folder(name: str) -> Path:
    """A study's folder: experiments/<name>/, or a SEQBENCH_PATH folder's studies/<name>/."""
    return next(Path(p) / name for p in __path__ if (Path(p) / name / "__init__.py").is_file())


def experiment_files() -> dict[str, Path]:
    """experiment name -> its YAML, over every study folder (``+experiment=<name>``)."""
    out = {}
    for study in names():
        for path in sorted(folder(study).glob("*.yaml")):
            if path.name != PROFILES:
                out[path.stem] = path
    return out


def register_experiments(only=None) -> None:
    """Make every study folder's experiment config Hydra's group ``experiment`` (as
    conf/experiment/ once was), so ``+experiment=<name>`` composes it; and a user's model
    configs (SEQBENCH_PATH) Hydra's group ``model``. Idempotent. ``only``: just these names
    (the command line's: loading all twenty costs ~0.2 s of every start-up)."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    searchpath.register_models()
    store = ConfigStore.instance()
    for name, path in experiment_files().items():
        if only is not None and name not in only:
            continue
        node = OmegaConf.load(path)
        store.store(
            group="experiment", name=name, node=node, package="_global_", provider="seqbench"
        )


# -- profiles: the jobs `make bench PROFILE=<p>` runs, from each study's profiles.yaml --------

PROFILE_NAMES = ("smoke", "cpu", "full", "gpu")  # quickest first; the bench offers those used
ENTRIES = ("train", "measure", "perf")  # a job runs python -m seqbench.<entry>
JOB_KEYS = {"job": str, "entry": str, "args": list, "cap_s": (int, float), "rank": int}
REQUIRED = ("job", "entry", "args")


def study_jobs(study: str) -> dict[str, list[Job]]:
    """profile -> the study's jobs (``study``: its name or its module's ``__name__``), in its
    profiles.yaml's order. The file is checked as it is read: a bad key, type, job name or
    another study's experiment is a ConfigError whose one line names the file and the key."""
    study = study.rsplit(".", 1)[-1]  # a module's __name__ serves too
    return read_profiles(folder(study) / PROFILES, study)


def read_profiles(path: Path, study: str) -> dict[str, list[Job]]:
    """One profiles.yaml of ``study``'s folder, checked (see ``study_jobs``)."""
    import yaml

    from seqbench.errors import ConfigError

    where = _shown(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        problem = " ".join(str(e).split())
        raise ConfigError(f"{where} is not allowed: it is not readable YAML ({problem})") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{where} is not allowed: it maps profile names to lists of jobs")
    own = {p.stem for p in path.parent.glob("*.yaml") if p.name != PROFILES}
    out = {}
    for profile, jobs in data.items():
        if profile not in PROFILE_NAMES:
            allowed = ", ".join(PROFILE_NAMES)
            raise ConfigError(f"{where}: {profile}= is not allowed: a profile is one of {allowed}")
        if not isinstance(jobs, list | None):
            raise ConfigError(f"{where}: {profile}={jobs!r} is not allowed: a list of jobs")
        out[profile] = [
            _job(item, f"{where}: {profile}[{i}]", study, own) for i, item in enumerate(jobs or [])
        ]
    return extend_full(out)


def extend_full(profiles: dict[str, list]) -> dict[str, list]:
    """The full profile extends the cpu one: every cpu job (reused by content key when the
    cpu profile ran into the same runs folder) and then the jobs listed under ``full`` (the
    longer budgets, neighbouring rates and per-cell sweeps), a name listed in both once."""
    if "cpu" not in profiles:
        return profiles
    cpu = profiles["cpu"]
    extra = [j for j in profiles.get("full", []) if j.name not in {c.name for c in cpu}]
    return profiles | {"full": [*cpu, *extra]}


def _job(item, where: str, study: str, experiments: set) -> Job:
    """One entry of a profile as a Job, or a ConfigError naming its key."""
    from seqbench.errors import ConfigError

    def refuse(key, value, why):
        raise ConfigError(f"{where}.{key}={value} is not allowed: {why}")

    if not isinstance(item, dict):
        raise ConfigError(f"{where}={item!r} is not allowed: a job maps {', '.join(JOB_KEYS)}")
    for key, value in item.items():
        if key not in JOB_KEYS:
            refuse(key, value, f"the keys of a job are {', '.join(JOB_KEYS)}")
        if not isinstance(value, JOB_KEYS[key]) or isinstance(value, bool):
            refuse(key, value, f"a {_kind(JOB_KEYS[key])}")
    for key in REQUIRED:
        if key not in item:
            refuse(key, "", "every job names its job, entry and args")
    name, entry, args = item["job"], item["entry"], item["args"]
    if name != study and not name.startswith(f"{study}_"):
        refuse("job", name, f"a job of study {study} is named {study} or {study}_<what>")
    if entry not in ENTRIES:
        refuse("entry", entry, f"choose one of {', '.join(ENTRIES)}")
    for i, arg in enumerate(args):
        if not isinstance(arg, str):
            refuse(f"args[{i}]", arg, "an argument is a string (quote it)")
        key, _, value = arg.partition("=")
        if key == "+experiment" and value not in experiments:
            refuse(
                f"args[{i}]",
                arg,
                f"study {study}'s experiments are {', '.join(sorted(experiments))}",
            )
    if item.get("cap_s", 1) <= 0:
        refuse("cap_s", item["cap_s"], "a number of seconds above 0")
    return Job(name, f"seqbench.{entry}", list(args), item.get("cap_s"), item.get("rank", 9))


def _kind(types) -> str:
    return {str: "string", list: "list", int: "whole number"}.get(types, "number")


def _shown(path: Path) -> str:
    """A study file's path as the user knows it: from the checkout, else absolute."""
    return str(path.relative_to(HERE.parent)) if path.is_relative_to(HERE.parent) else str(path)


def profile_names() -> list[str]:
    """The profiles some study's profiles.yaml lists (the bench's --profile choices)."""
    used = {p for study in names() for p in study_jobs(study)}
    return [p for p in PROFILE_NAMES if p in used]


def bench_jobs(profile: str, order: list[str] | None = None) -> list[Job]:
    """A profile's jobs in the order the bench runs them: by rank, then by study in ``order``
    (the report's order; default: by name), then as each profiles.yaml lists them."""
    jobs = [job for study in order or names() for job in study_jobs(study).get(profile, [])]
    return sorted(jobs, key=lambda j: j.rank)  # stable: the study order within a rank


def job_setting(study: str, profile: str, key: str, job: str | None = None) -> str | None:
    """The value a study's job (its first in the profile, or the one named) passes for
    ``key``, e.g. ``job_setting("scaling", "gpu", "model")`` -> the models the GPU trains;
    None when it passes none (the experiment's own value stands)."""
    for j in study_jobs(study).get(profile, []):
        if job in (None, j.name):
            values = [a.split("=", 1)[1] for a in j.args if a.split("=", 1)[0] == key]
            return values[-1] if values else None
    return None


def profile_settings(study: str, profile: str) -> str:
    """What a profile's jobs pass beyond the study's experiment files (the launcher left out),
    for a section to say what that profile ran: '`decode_cost`: `what.contexts=[16,64]` ...'."""
    skip = ("-m", "hydra/launcher=", "hydra.launcher.", "+experiment=")
    parts = []
    for job in study_jobs(study).get(profile, []):
        own = " ".join(f"`{a}`" for a in job.args if not a.startswith(skip))
        parts.append(f"`{job.name}`: {own or 'the experiment file as it stands'}")
    return "; ".join(parts) or "nothing"
