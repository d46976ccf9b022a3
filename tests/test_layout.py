"""The shape of the tree: every study is one name in three places (experiment configs, its
module, its README), every bench job names its own study's experiments, every config file
composes, and every package is installed by a plain `pip install .`."""

import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from seqbench import studies
from seqbench.config import CONF_DIR
from seqbench.studies import experiment_files

ROOT = Path(__file__).resolve().parents[1]
PROFILES = {"smoke", "cpu", "gpu"}
EXPERIMENTS = sorted(experiment_files())


def experiment_study(name: str) -> str:
    return OmegaConf.load(experiment_files()[name]).study


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_file_is_named_after_its_study(name):
    study = experiment_study(name)
    assert study in studies.names(), f"{name}.yaml: study {study!r} has no module"
    assert name == study or name.startswith(f"{study}_"), f"{name}.yaml sets study {study!r}"


@pytest.mark.parametrize("name", studies.names())
def test_every_study_has_its_module_parts_readme_and_bench_jobs(name):
    module = studies.load(name)
    for attr in ("TITLE", "ORDER", "DECIDES", "BENCH", "verdicts", "section"):
        assert hasattr(module, attr), f"studies/{name}.py has no {attr}"
    assert (ROOT / "experiments" / name / "README.md").is_file()
    assert set(module.BENCH) == PROFILES
    for jobs in module.BENCH.values():
        for job in jobs:
            assert job.name == name or job.name.startswith(f"{name}_"), job.name
            for arg in map(str, job.args):
                key, _, value = arg.partition("=")
                if key == "+experiment":
                    assert experiment_study(value) == name, f"{job.name} runs {value}"
                if key == "what":
                    assert (CONF_DIR / "what" / f"{value}.yaml").is_file()


def test_every_experiments_folder_belongs_to_a_study():
    folders = {p.name for p in (ROOT / "experiments").iterdir() if p.is_dir()}
    assert folders == set(studies.names())


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_job_names_are_unique_within_a_profile(profile):
    from seqbench.bench import profile_jobs

    names = [j.name for j in profile_jobs(profile)]
    assert len(names) == len(set(names))


def primary_config(name: str) -> str:
    """The entry point's config an experiment file is written for."""
    text = experiment_files()[name].read_text()
    if experiment_study(name) == "harness_overhead":
        return "perf"
    return "measure" if "override /what" in text else "config"


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes_and_the_first_job_of_its_sweep_validates(name):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from seqbench.cli import validate_job

    config = primary_config(name)
    studies.register_experiments()
    with initialize_config_dir(str(CONF_DIR), version_base=None):
        cfg = compose(config, overrides=[f"+experiment={name}"], return_hydra_config=True)
        params = OmegaConf.select(cfg, "hydra.sweeper.params") or {}
        parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
        first = [
            f"{o.get_key_element()}={next(iter(o.sweep_string_iterator()))}"
            if o.is_sweep_override()
            else o.input_line
            for o in parsed
        ]
        job = compose(config, overrides=[f"+experiment={name}", *first])
    validate_job(job)


def test_pyproject_installs_every_package():
    """setuptools' discovery, as pyproject.toml configures it, finds every folder of the tree
    that holds code or configs (through the conf and studies links), and nothing else."""
    from setuptools import find_namespace_packages

    spec = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    find = spec["packages"]["find"]
    listed = set(
        find_namespace_packages(str(ROOT), include=find["include"], exclude=find["exclude"])
    )
    found = {
        ".".join(d.relative_to(ROOT).parts)
        for top in ("seqbench", "hydra_plugins")
        for d in [ROOT / top, *(ROOT / top).rglob("*")]
        if d.is_dir()
        and "__pycache__" not in d.parts
        and any(d.glob("*.py")) | any(d.glob("*.yaml"))
    }
    assert found <= listed, sorted(found - listed)
    assert {"seqbench.studies.recall", "seqbench.conf.model"} <= listed


def test_a_plain_install_finds_its_configs_and_sweeper(tmp_path):
    """pip install . (not editable) into a folder; from elsewhere, a sweep composes with the
    packaged configs (pkg://seqbench.conf) and the packaged validating sweeper."""
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert (target / "seqbench" / "conf" / "model" / "lstm.yaml").is_file()
    assert (target / "seqbench" / "studies" / "recall" / "recall.yaml").is_file()
    argv = ["-m", "+experiment=recall", "hydra.sweeper.dry_run=true", f"out_dir={tmp_path}/r"]
    code = (
        f"import sys; sys.path = [p for p in sys.path if p not in ({str(ROOT)!r}, '')]; "
        f"sys.path.insert(0, {str(target)!r}); import seqbench; print(seqbench.__file__); "
        f"from seqbench import cli; sys.exit(cli.main('train', {argv!r}))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(str(target))  # the installed copy, not the checkout
    assert "jobs validated, none launched" in proc.stdout
