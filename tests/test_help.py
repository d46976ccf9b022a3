"""--help explains the command line: every group a user picks with every option, every key of
the chosen files with one line and its composed value, generated from conf/ and the schemas;
Hydra's page stays at --hydra-help; bench and report document their flags and profiles."""

import subprocess
import sys
from itertools import cycle

import pytest

from seqbench import studies
from seqbench.cli import help_page as page
from seqbench.config import CONF_DIR, group_options
from seqbench.help import first_sentence, group_file, shown, yaml_notes
from seqbench.sets import members


def _keys(path) -> list[str]:
    return [k for k in yaml_notes(path) if not k.startswith("_")]


def _line(text, key) -> str:
    """The help line of a key, its wrapped continuation joined ('' when it has none)."""
    lines = text.splitlines()
    starts = [i for i, ln in enumerate(lines) if ln.split()[:1] == [key]]
    if not starts:
        return ""
    out = [lines[starts[0]].strip()]
    for ln in lines[starts[0] + 1 :]:
        if not ln.startswith(" " * 10):  # continuations are indented past the key column
            break
        out.append(ln.strip())
    return " ".join(out)


def _experiments_of(entry) -> set[str]:
    names = set()
    for profile in studies.profile_names():
        for job in studies.bench_jobs(profile):
            if job.module == f"seqbench.{entry}":
                args = [str(a) for a in job.args]
                names |= {a.split("=", 1)[1] for a in args if a.startswith("+experiment=")}
    return names


@pytest.mark.parametrize("entry", ["train", "measure"])
def test_help_names_every_group_option_the_entry_takes(entry):
    text = page(entry, [])
    for group in ("model", "data", "train") + (("what",) if entry == "measure" else ()):
        assert f"  {group}=NAME" in text
        for option in group_options(group):
            assert f"\n    {option} " in text, f"{group}={option}"
    assert ("what=NAME" in text) == (entry == "measure")  # the internal group: measure only
    experiments = text.split("+experiment=NAME")[1].split("hydra/launcher=NAME")[0]
    for name in _experiments_of(entry):
        assert f"\n    {name} " in experiments, f"+experiment={name}"
    other = "measure" if entry == "train" else "train"
    for name in _experiments_of(other) - _experiments_of(entry):
        assert f"\n    {name} " not in experiments, f"{name} belongs to seqbench.{other}"
    for launcher in ("basic", "joblib", "local", "slurm", "slurm_local"):
        assert f"\n    {launcher} " in text
    assert "--hydra-help" in text


@pytest.mark.parametrize(
    "model, data", list(zip(group_options("model"), cycle(group_options("data"))))
)
def test_help_shows_every_key_of_the_chosen_files_with_its_line_and_value(model, data):
    text = page("train", [f"model={model}", f"data={data}", "seed=7"])
    for group, name in (("model", model), ("data", data), ("train", "default")):
        path = group_file(group, name)
        assert f"{group}={name} ({shown(path)}):" in text  # conf/<group>/<name>.yaml if shipped
        for key, (_, note) in yaml_notes(path).items():
            if key.startswith("_"):
                continue
            line = _line(text, f"{group}.{key}")
            assert "now " in line, line
            if note:  # the comment, word for word (wrapping aside)
                assert " ".join(note.split()[:3]) in line, (line, note)
    assert "now 7]" in _line(text, "seed")  # the value this command line composes to


def test_the_what_group_of_measure_lists_every_key():
    for name in group_options("what"):
        text = page("measure", [f"what={name}"])
        for key in _keys(CONF_DIR / "what" / f"{name}.yaml"):
            assert _line(text, f"what.{key}")


def test_schema_keys_say_what_they_accept():
    text = page("train", [])
    assert "[an integer in [1, 1000000000]; now 1000]" in _line(text, "train.steps")
    assert "one of null, val_acc, val_loss" in _line(text, "train.criterion")
    assert "true or false" in _line(text, "fresh")


def test_an_experiment_and_a_sweep_compose_as_the_run_would():
    text = page("train", ["-m", "+experiment=recall", "model=rnn,lstm"])
    assert "now recall]" in _line(text, "study")  # the experiment's study
    assert "model=rnn (conf/model/rnn.yaml):" in text  # a sweep: its first job
    lecture = page("train", ["-m", "+experiment=recall", "model=@lecture"])
    first = members("lecture")[0]
    assert f"model={first} (conf/model/{first}.yaml):" in lecture  # a set: its first model
    bad = page("train", ["train.nosuch=1"])
    assert bad.splitlines()[4].startswith("note: this command line does not compose")
    assert "train.nosuch='1' is not allowed: no such key" in " ".join(bad.split())


def test_perf_help_lists_its_nested_keys():
    text = page("perf", [])
    for key, (value, note) in yaml_notes(CONF_DIR / "perf.yaml").items():
        if key.split(".")[0] in ("hydra", "defaults"):
            continue
        assert note, f"conf/perf.yaml: {key} has no comment of its own (--help shows it)"
        line = _line(text, key if value else f"{key}.*")
        assert " ".join(note.split()[:3]) in line, (key, line)  # its own words, not a neighbour's
    assert "model=NAME" not in text  # perf times fixed models: no model group


@pytest.mark.parametrize(
    "path",
    sorted(
        f"{g}/{f.name}" for g in ("model", "data", "what") for f in (CONF_DIR / g).glob("*.yaml")
    ),
)
def test_every_key_of_a_group_file_has_its_one_line(path):
    missing = [k for k, (_, note) in yaml_notes(CONF_DIR / path).items()
               if not k.startswith("_") and not note]  # fmt: skip
    assert not missing, f"conf/{path}: add a comment to {missing} (--help shows it)"
    assert first_sentence(CONF_DIR / path), f"conf/{path} opens with no comment"


def test_hydra_help_stays_reachable():
    out = subprocess.run(
        [sys.executable, "-m", "seqbench.train", "--hydra-help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        out.returncode == 0 and "Hydra" in out.stdout and "Groups (group=option" not in out.stdout
    )


def test_bench_help_lists_every_profile_and_job(capsys):
    from seqbench.bench import main, profile_jobs, profiles

    with pytest.raises(SystemExit) as e:
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert e.value.code == 0
    for p in profiles():
        jobs = ", ".join(j.name for j in profile_jobs(p))
        assert f"{p}: {jobs}" in text


def test_report_help_explains_its_flags_and_sections(capsys):
    from seqbench.report.__main__ import main

    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "contact_sheet.png" in text and "--runs DIR" in text and "--force" in text
    assert ", ".join(studies.study_name(m) for m in studies.all_studies()) in text


# --- progress: a bar over a measurement's grid on a terminal, quiet otherwise ----------------
MEASURED = {  # (overrides, grid points): one measurement bar by hand, one by the decorator
    "span": (["what=span", "what.lengths=[4,8]", "what.layers=[1]"], 2 * 1 * 2),  # T, L, pass
    "decode": (["what=decode", "what.contexts=[4,8]", "what.new_tokens=2",
                "what.min_run_time=0.001", "what.min_blocks=2", "what.warmup=1"], 3 * 2),  # mode, c
}  # fmt: skip


@pytest.mark.parametrize("what", list(MEASURED))
@pytest.mark.parametrize("setting, shown", [("true", True), ("false", False), ("auto", False)])
def test_a_measurement_shows_a_bar_over_its_grid_only_when_asked(what, setting, shown, capsys):
    """train.progress as for training: true always, false never, auto only on a terminal
    (pytest's captured stderr is none)."""
    from conftest import compose_cfg

    from seqbench.config import measurement, validate_measurement

    overrides, points = MEASURED[what]
    base = ["device=cpu", "train.threads=1", "data.seq_len=16", "data.distance=4", "model=lstm"]
    cfg = compose_cfg([*base, f"train.progress={setting}", *overrides], "measure")
    rows = []
    fn, _ = measurement(cfg)
    fn(cfg, validate_measurement(cfg), rows.append)
    err = capsys.readouterr().err
    assert rows, "the measurement logged nothing"
    assert (f"{cfg.what.table} lstm" in err and f"/{points}" in err) == shown, err[-300:]


def test_a_first_sentence_runs_past_a_figure_reference(tmp_path):
    """'Fig. 7' or 'Eq. 3' is not a full stop: the description goes on to the sentence's end."""
    from seqbench.help import first_sentence

    path = tmp_path / "x.yaml"
    path.write_text("# C10 (Kaplan et al. 2020, Fig. 7 left, Eq. 1.5): a sweep. More text.\nk: 1\n")
    assert first_sentence(path) == "C10 (Kaplan et al. 2020, Fig. 7 left, Eq. 1.5): a sweep."
