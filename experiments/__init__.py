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
    def section(tables, figs) -> str          markdown; figures through figs (report.plot)

Adding a study adds its folder and edits nothing shared: the bench, the report, the claims
table and Hydra's ``+experiment=`` find it here. Studies share helpers through
experiments/_common.py only and never import each other. This module stays light (no pandas,
no torch): the command line registers the experiment configs through it.
"""

import importlib
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROFILES = "profiles.yaml"  # a study folder's bench cells, not an experiment config


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


def train(name, *args, cap_s=None, rank=9) -> Job:
    return Job(name, "seqbench.train", list(args), cap_s, rank)


def measure(name, *args, cap_s=None, rank=9) -> Job:
    return Job(name, "seqbench.measure", list(args), cap_s, rank)


def perf(name, *args, cap_s=None, rank=9) -> Job:
    return Job(name, "seqbench.perf", list(args), cap_s, rank)


def names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def load(name: str):
    return importlib.import_module(f"{__name__}.{name}")


def all_studies() -> list:
    """Every study module, in report order."""
    return sorted((load(n) for n in names()), key=lambda m: (m.ORDER, m.__name__))


def study_name(module) -> str:
    return module.__name__.rsplit(".", 1)[-1]


def experiment_files() -> dict[str, Path]:
    """experiment name -> its YAML, over every study folder (``+experiment=<name>``)."""
    out = {}
    for study in names():
        for path in sorted((HERE / study).glob("*.yaml")):
            if path.name != PROFILES:
                out[path.stem] = path
    return out


def register_experiments() -> None:
    """Make every study folder's experiment config Hydra's group ``experiment`` (as
    conf/experiment/ once was), so ``+experiment=<name>`` composes it. Idempotent."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    store = ConfigStore.instance()
    for name, path in experiment_files().items():
        node = OmegaConf.load(path)
        store.store(
            group="experiment", name=name, node=node, package="_global_", provider="seqbench"
        )
