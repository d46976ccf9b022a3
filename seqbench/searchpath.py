"""Models and studies outside the checkout: the one way seqbench finds a user's own.

    SEQBENCH_PATH=<dir>[:<dir>...]     (os.pathsep between folders, as PATH)

Each folder may hold

    model/<name>.yaml      model configs, beside conf/model/ (``model=<name>``, the sets)
    studies/<name>/        study folders, the same shape as experiments/<name>/
    <module>.py, <pkg>/    Python code the model configs name in ``_target_``

The folders are appended to ``sys.path`` (never prepended: a user's file cannot stand in for
the standard library or seqbench), and a top-level module found in one of them becomes an
allowed ``_target_`` prefix for ``model`` and ``data`` (seqbench.guard): naming the folder in
SEQBENCH_PATH is the user's explicit trust, and nothing else widens the allow-list. A module
whose name resolves elsewhere (shadowed by an installed one) is not trusted. A user's model or
study may not reuse a shipped name: run keys and the report would no longer say which is
meant. Light on purpose (no torch, no Hydra at import): study discovery imports it.
"""

import importlib.util
import os
import sys
from pathlib import Path

from seqbench.errors import ConfigError

ENV = "SEQBENCH_PATH"
CONF_MODEL = Path(__file__).resolve().parent / "conf" / "model"


def folders() -> list[Path]:
    """The folders SEQBENCH_PATH names, in order; one that is not a folder is refused."""
    out = []
    for part in os.environ.get(ENV, "").split(os.pathsep):
        if not part.strip():
            continue
        folder = Path(part).expanduser().resolve()
        if not folder.is_dir():
            raise ConfigError(f"{ENV}={part} is not allowed: {folder} is not a folder")
        if folder not in out:
            out.append(folder)
    return out


def activate() -> list[Path]:
    """Put every SEQBENCH_PATH folder on sys.path (after what is there), once."""
    found = folders()
    for folder in found:
        if str(folder) not in sys.path:
            sys.path.append(str(folder))
    return found


def model_files() -> dict[str, Path]:
    """model name -> its YAML: conf/model/ first, then each SEQBENCH_PATH folder's model/."""
    out = {p.stem: p for p in sorted(CONF_MODEL.glob("*.yaml"))}
    for folder in activate():  # a model listed is a model its _target_ can be imported for
        for path in sorted((folder / "model").glob("*.yaml")):
            if path.stem in out:
                raise ConfigError(
                    f"{ENV}={folder} is not allowed: model/{path.name} reuses the name of "
                    f"{out[path.stem]}; give your model a name of its own"
                )
            out[path.stem] = path
    return out


def study_folders(shipped: Path) -> list[str]:
    """The studies/ folder of each SEQBENCH_PATH folder (for ``seqbench.studies.__path__``);
    a study that reuses a name of ``shipped`` (experiments/) is refused."""
    out = []
    for folder in activate():
        studies = folder / "studies"
        if not studies.is_dir():
            continue
        for study in sorted(p for p in studies.iterdir() if (p / "__init__.py").is_file()):
            if (shipped / study.name).exists():
                raise ConfigError(
                    f"{ENV}={folder} is not allowed: studies/{study.name} reuses the name of "
                    f"{shipped / study.name}; give your study a name of its own"
                )
        out.append(str(studies))
    return out


def target_prefixes() -> tuple[str, ...]:
    """``'<module>.'`` for every top-level module of a SEQBENCH_PATH folder that imports from
    there (the allowed ``_target_`` prefixes beyond seqbench's own packages)."""
    out = []
    for folder in activate():
        for entry in sorted(folder.iterdir()):
            name = entry.stem if entry.suffix == ".py" else entry.name
            is_module = entry.suffix == ".py" or (entry / "__init__.py").is_file()
            if is_module and name.isidentifier() and _imports_from(name, folder):
                out.append(f"{name}.")
    return tuple(out)


def _imports_from(name: str, folder: Path) -> bool:
    """True when ``import name`` would load the file in ``folder`` (found without importing)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    origin = getattr(spec, "origin", None)
    return bool(origin) and Path(origin).resolve().is_relative_to(folder)


def register_models() -> None:
    """Every SEQBENCH_PATH model YAML in Hydra's group ``model`` (conf/model/ is already
    there), so ``model=<name>`` composes it. Idempotent."""
    if not folders():
        return
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    store = ConfigStore.instance()
    for name, path in model_files().items():
        if path.parent != CONF_MODEL:
            store.store(group="model", name=name, node=OmegaConf.load(path), provider="seqbench")
