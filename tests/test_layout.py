"""The shape of the tree: every study is one folder (its module, experiment configs,
profiles.yaml and README), every bench job runs its own study's experiments and validates, a
bad profiles.yaml is refused in one line, the READMEs' generated blocks are fresh, every
config file composes, and every package is installed by a plain `pip install .`."""

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from omegaconf import OmegaConf

from seqbench import readmes, studies
from seqbench.config import CONF_DIR
from seqbench.errors import ConfigError
from seqbench.studies import experiment_files

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(experiment_files())
PROFILES = studies.profile_names()


def experiment_study(name: str) -> str:
    return OmegaConf.load(experiment_files()[name]).study


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_file_is_named_after_its_study(name):
    study = experiment_study(name)
    assert study in studies.names(), f"{name}.yaml: study {study!r} has no module"
    assert name == study or name.startswith(f"{study}_"), f"{name}.yaml sets study {study!r}"


@pytest.mark.parametrize("name", studies.names())
def test_every_study_folder_has_its_module_configs_profiles_and_readme(name):
    folder = studies.folder(name)
    for part in ("__init__.py", "README.md", "profiles.yaml"):
        assert (folder / part).is_file(), f"{folder} has no {part}"
    own = [p.stem for p in folder.glob("*.yaml") if p.name != "profiles.yaml"]
    assert any(e == name or e.startswith(f"{name}_") for e in own), f"{folder}: no {name}.yaml"
    module = studies.load(name)
    for attr in ("TITLE", "ORDER", "DECIDES", "verdicts", "section"):
        assert hasattr(module, attr), f"{folder}/__init__.py has no {attr}"
    assert not hasattr(module, "BENCH"), "the bench jobs live in profiles.yaml, not the module"


@pytest.mark.parametrize("name", studies.names())
def test_every_job_runs_its_own_studys_experiments(name):
    for profile, jobs in studies.study_jobs(name).items():
        for job in jobs:
            assert job.name == name or job.name.startswith(f"{name}_"), job.name
            for arg in map(str, job.args):
                key, _, value = arg.partition("=")
                if key == "+experiment":
                    assert experiment_study(value) == name, f"{profile}: {job.name} runs {value}"
                if key == "what":
                    assert (CONF_DIR / "what" / f"{value}.yaml").is_file(), arg


def test_every_experiments_folder_belongs_to_a_study():
    folders = {p.name for p in (ROOT / "experiments").iterdir() if p.is_dir()}
    assert folders - {"__pycache__"} <= set(studies.names())


@pytest.mark.parametrize("profile", PROFILES)
def test_job_names_are_unique_within_a_profile(profile):
    from seqbench.bench import profile_jobs, profiles

    assert profiles() == PROFILES  # the bench offers the profiles the folders list
    names = [j.name for j in profile_jobs(profile)]
    assert names and len(names) == len(set(names))


@pytest.mark.parametrize("profile", [p for p in PROFILES if p != "gpu"])  # gpu: test_gpu.py
def test_every_job_of_a_profile_composes_and_validates(profile):
    from seqbench import gpu
    from seqbench.bench import profile_jobs

    counts = gpu.dry_run(profile)
    assert set(counts) == {j.name for j in profile_jobs(profile)}
    assert all(n >= 1 for n in counts.values())


GOOD_JOB = "  - {job: recall, entry: train, args: [-m, +experiment=recall]}"
BAD_PROFILES = {  # profiles.yaml text -> what its one-line refusal names
    "cpu:\n  - {job: recall, entry: train, args: [-m], seeds: 3}": "cpu[0].seeds=3",
    "cpu:\n  - {job: recall, entry: train, args: -m}": "cpu[0].args=-m",
    "cpu:\n  - {job: recall, entry: train, args: [-m], cap_s: fast}": "cpu[0].cap_s=fast",
    "cpu:\n  - {job: recall, entry: train, args: [-m], rank: 1.5}": "cpu[0].rank=1.5",
    "cpu:\n  - {job: recall, entry: trian, args: [-m]}": "cpu[0].entry=trian",
    "cpu:\n  - {job: recall, entry: train}": "cpu[0].args=",
    "cpu:\n  - {job: mqar, entry: train, args: [-m]}": "cpu[0].job=mqar",
    "cpu:\n" + GOOD_JOB + "\n  - {job: recall_x, entry: train, args: [+experiment=mqar]}": (
        "cpu[1].args[0]=+experiment=mqar"
    ),
    "cpu:\n  - {job: recall, entry: train, args: [-m, 3]}": "cpu[0].args[1]=3",
    "fast:\n" + GOOD_JOB: "fast=",
    "cpu: -m +experiment=recall": "cpu=",
    "cpu: [": "not readable YAML",
}


@pytest.mark.parametrize("text", BAD_PROFILES)
def test_a_bad_profiles_file_is_refused_in_one_line_naming_the_file_and_key(tmp_path, text):
    folder = tmp_path / "recall"
    folder.mkdir()
    (folder / "recall.yaml").write_text("study: recall\n")
    (folder / "profiles.yaml").write_text(text + "\n")
    with pytest.raises(ConfigError) as refused:
        studies.read_profiles(folder / "profiles.yaml", "recall")
    message = str(refused.value)
    assert "\n" not in message and str(folder / "profiles.yaml") in message
    assert BAD_PROFILES[text] in message and "is not allowed" in message


def test_a_good_profiles_file_reads_as_the_bench_runs_it(tmp_path):
    folder = tmp_path / "recall"
    folder.mkdir()
    (folder / "recall.yaml").write_text("study: recall\n")
    text = "smoke: []\ngpu:\n" + GOOD_JOB + "\n  - {job: recall_b, entry: measure, args: []"
    (folder / "profiles.yaml").write_text(text + ", cap_s: 30, rank: 2}\n")
    jobs = studies.read_profiles(folder / "profiles.yaml", "recall")
    assert jobs["smoke"] == [] and [j.name for j in jobs["gpu"]] == ["recall", "recall_b"]
    assert jobs["gpu"][0].command() == ["seqbench.train", "-m", "+experiment=recall"]
    assert (jobs["gpu"][1].cap_s, jobs["gpu"][1].rank, jobs["gpu"][0].rank) == (30, 2, 9)


STUB = "TITLE = 'mine'\nORDER = 99\nDECIDES = ()\n"


def test_the_bench_refuses_a_bad_profiles_file_before_running_anything(tmp_path):
    """A user's study (SEQBENCH_PATH) whose profiles.yaml does not check out: the bench says
    which file and key in one line and exits 2, with nothing run or written."""
    folder = tmp_path / "user" / "studies" / "mine"
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text(STUB)
    (folder / "mine.yaml").write_text("study: mine\n")
    (folder / "profiles.yaml").write_text("smoke:\n  - {job: mine, entry: bench, args: []}\n")
    runs = tmp_path / "runs"
    argv = ["--profile", "smoke", "--runs", str(runs)]
    proc = subprocess.run(
        [sys.executable, "-m", "seqbench.bench", *argv],
        env={**os.environ, "SEQBENCH_PATH": str(tmp_path / "user")},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1, proc.stderr[-2000:]
    assert str(folder / "profiles.yaml") in err[0] and "smoke[0].entry=bench" in err[0]
    assert not runs.exists()


@pytest.mark.parametrize("name", studies.names())
def test_every_readme_quotes_its_profiles_and_rules_as_generated(name):
    path = readmes.readme_path(name)
    assert readmes.render(name) == path.read_text(), (
        f"{path}: its generated blocks are stale; run `{readmes.COMMAND}` "
        "(python -m seqbench.bench --write-readmes)"
    )


@pytest.mark.parametrize("name", studies.names())
def test_the_readme_commands_are_the_bench_jobs_word_for_word(name):
    """The shell words of each generated command (quotes and line breaks undone) are the
    job's own: a reader who pastes one runs what the bench runs."""
    for jobs in studies.study_jobs(name).values():
        for job in jobs:
            pasted = "\n".join(readmes.command_lines(job)).replace("\\\n", " ")
            assert shlex.split(pasted) == ["python", "-m", *job.command()]


def test_a_readme_without_a_block_gets_it_and_an_old_block_is_replaced():
    start, end = "<!-- generated: commands -->", readmes.END
    fresh = readmes._replace("# x\n\nprose\n", "commands", "new")
    assert fresh == f"# x\n\nprose\n\n{start}\nnew\n{end}\n"
    old = f"# x\n{start}\nold\nlines\n{end}\nafter\n"
    assert readmes._replace(old, "commands", "new") == f"# x\n{start}\nnew\n{end}\nafter\n"
    assert readmes._replace(old, "commands", None) == "# x\n\nafter\n"


def primary_config(name: str) -> str:
    """The entry point's config an experiment file is written for."""
    text = experiment_files()[name].read_text()
    if experiment_study(name) == "harness_overhead":
        return "perf"
    return "measure" if "override /what" in text else "config"


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes_and_the_first_job_of_its_sweep_validates(name):
    """The first job as the entry layer expands it (model sets written out), validated as
    its entry validates it."""
    from seqbench import cli

    config = primary_config(name)
    first = cli.first_job(config, ["-m", f"+experiment={name}"])
    cli.validate_job(cli.compose_job(config, first), cli.entry_of(config))


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
