"""The report reads run directories, tabulates them, computes every study's verdicts apart
from its figures, and never lets one study, one file or one runs folder hurt another."""

import pandas as pd
import pytest

from seqbench import studies
from seqbench.report.__main__ import main
from seqbench.report.claims import LECTURE, claims_table
from seqbench.report.verdict import Rule, Verdict
from seqbench.report.write import write_report
from seqbench.train import train


@pytest.fixture
def core_runs(make_cfg, tmp_path, monkeypatch):
    for model in ("gru", "transformer"):
        train(
            make_cfg(
                f"model={model}", "data=copy", "data.seq_len=12", "train.steps=10", "study=core"
            )
        )
    from seqbench.models.recurrent import Recurrent

    monkeypatch.setattr(Recurrent, "forward", lambda *a, **k: 1 / 0)
    train(make_cfg("model=lstm", "data=copy", "data.seq_len=12", "train.steps=10", "study=core"))
    monkeypatch.undo()
    return tmp_path / "runs"


def test_report_tables_figures_and_claims_from_real_runs(core_runs, tmp_path):
    out = tmp_path / "results"
    readme = write_report(core_runs, out).read_text()
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 3 and sorted(runs.status) == ["complete", "complete", "failed"]
    assert set(runs.family) == {"recurrent", "attention"}
    curves = pd.read_csv(out / "curves.csv")
    assert set(curves.model) == {"gru", "transformer"} and curves.step.max() == 10
    for cid in LECTURE:
        assert f"| {cid} |" in readme
    assert "1 of 3 training runs did not complete" in readme  # a pointer to runs.md
    assert "ZeroDivisionError" in (out / "runs.md").read_text()  # the table of them
    assert "](study_core.md)" in readme and (out / "study_core.md").is_file()


def test_a_study_whose_verdict_code_raises_says_failed_and_the_others_stand(
    core_runs, tmp_path, monkeypatch
):
    recall = studies.load("recall")
    monkeypatch.setattr(recall, "verdicts", lambda tables: 1 / 0)
    monkeypatch.setattr(recall, "section", lambda tables, figs: "recall text")
    readme = write_report(core_runs, tmp_path / "results").read_text()
    c5 = [line for line in readme.splitlines() if line.startswith("| C5 |")]
    assert any("**failed: ZeroDivisionError: division by zero**" in line for line in c5)
    page = (tmp_path / "results" / "study_recall.md").read_text()
    assert "recall text" in page  # its section still renders: verdicts and figures apart


def test_a_section_that_raises_is_contained(core_runs, tmp_path, monkeypatch):
    recall = studies.load("recall")
    monkeypatch.setattr(recall, "section", lambda tables, figs: [][1])
    write_report(core_runs, tmp_path / "results")
    page = (tmp_path / "results" / "study_recall.md").read_text()
    assert "_This section failed to render: IndexError: list index out of range_" in page


def test_stale_figures_are_removed_and_other_runs_folders_need_force(core_runs, tmp_path):
    out = tmp_path / "results"
    write_report(core_runs, out)
    manifest = (out / ".report.json").read_text()
    (out / "old_figure.png").write_bytes(b"x")
    import json

    data = json.loads(manifest)
    data["files"].append("old_figure.png")
    (out / ".report.json").write_text(json.dumps(data))
    write_report(core_runs, out)
    assert not (out / "old_figure.png").exists()  # written before, not now: removed
    other = tmp_path / "other_runs"
    other.mkdir()
    assert main(["--runs", str(other), "--results", str(out)]) == 2  # another folder's report
    assert (out / "runs.csv").exists()
    assert main(["--runs", str(other), "--results", str(out), "--force"]) == 0


def test_results_default_to_a_folder_inside_the_runs_dir(core_runs):
    assert main(["--runs", str(core_runs)]) == 0
    assert (core_runs / "report" / "README.md").is_file()


def test_adhoc_runs_get_a_table_and_loss_curves(make_cfg, tmp_path):
    train(make_cfg("model=gru", "data=copy", "data.seq_len=12", "train.steps=10"))  # adhoc
    readme = write_report(tmp_path / "runs", tmp_path / "results").read_text()
    assert "[Other runs](runs.md#other-runs)" in readme
    page = (tmp_path / "results" / "runs.md").read_text()
    assert "## Other runs" in page and "adhoc" in page and "other_runs_loss.png" in page
    assert (tmp_path / "results" / "other_runs_loss.png").exists()


def test_claims_table_marks_unmeasured_claims_and_adds_extra_ones():
    table = claims_table(
        [
            Verdict("C3", "span", "x", Rule("r {x}", x=1), "nuanced"),
            Verdict("C13", "span", "y", "r", "supported"),
        ],
        {"C13": "scans are shallow (a claim a study adds)"},
    )
    assert "| C3 |" in table and "**nuanced**" in table and "| C13 | scans are shallow |" in table
    assert table.count("**not measured**") == len(LECTURE) - 1


def test_a_rule_states_every_threshold_it_has():
    assert Rule("above {a} and below {b:.0%}", a=2, b=0.5).text == "above 2 and below 50%"
    with pytest.raises(ValueError, match="not in its sentence"):
        Rule("above {a}", a=2, b=3)


def test_hardware_stamped_verdicts_of_another_report_are_shown_side_by_side(core_runs, tmp_path):
    gpu = tmp_path / "results" / "gpu"
    gpu.mkdir(parents=True)
    pd.DataFrame(
        [
            {
                "claim": "C9",
                "experiment": "decode_cost + time_vs_length",
                "measured": "training 3.1x, decoding 1.2x",
                "rule": "r",
                "verdict": "supported",
                "hardware": "NVIDIA H200, torch 2.11, bf16",
                "stability": "stable",
            }
        ]
    ).to_csv(gpu / "verdicts.csv", index=False)
    (gpu / ".report.json").write_text('{"files": ["verdicts.csv"]}')  # a report of its own
    here = pd.DataFrame(
        [
            {
                "claim": "C9",
                "experiment": "decode_cost + time_vs_length",
                "measured": "training 0.3x",
                "rule": "r",
                "verdict": "not measured on cpu",
                "hardware": "cpu, 1 thread",
                "stability": "n/a",
            }
        ]
    )
    from seqbench.report import generic

    md = generic.machines(here, {"gpu": pd.read_csv(gpu / "verdicts.csv")})
    row = next(line for line in md.splitlines() if line.startswith("| C9 |"))
    assert "**not measured on cpu**" in row and "**supported**" in row and "H200" in row
    readme = write_report(core_runs, tmp_path / "results").read_text()  # gpu/ found by default
    assert (tmp_path / "results" / "verdicts.csv").exists()
    c9 = readme.split("### On each machine")[1].split("\n\n")[2]  # the GPU verdict is quoted
    assert "| C9 |" in c9 and "not run" in c9 and "**supported**" in c9


def _drawing(*names):
    """A study module (``seqbench.studies.sketch``) whose section saves one figure per name."""
    import types

    module = types.ModuleType("seqbench.studies.sketch")
    module.DECIDES, module.verdicts = ("C7",), lambda tables: []

    def section(tables, figs):
        for name in names:
            fig, (ax,) = figs.figure()
            ax.plot([0, 1], [0, 1])
            figs.save(fig, name)
        return "drawn"

    module.section = section
    return module


@pytest.mark.parametrize(
    "names, ok",
    [
        (("sketch", "sketch_detail"), True),  # <study>.png and <study>_<what>.png
        (("sketch_detail", "latency"), False),  # another study's kind of name: refused
        (("sketches",), False),  # a prefix that is not the study's name plus "_"
    ],
)
def test_a_study_figure_is_named_after_its_study(names, ok, tmp_path):
    """The writer binds Figures to the study drawing (figs.of): a figure named otherwise is
    refused before it is written, and the page says why; the report's own figures (bound to
    no study after the section) keep any name."""
    from seqbench.report.plot import Figures
    from seqbench.report.write import study_parts

    figs = Figures(tmp_path, {})
    _, md = study_parts(_drawing(*names), {"runs": pd.DataFrame()}, figs)
    if ok:
        assert md == "drawn" and figs.written == [f"{n}.png" for n in names]
        assert all((tmp_path / f"{n}.png").is_file() for n in names)
    else:
        bad = next(n for n in names if n != "sketch" and not n.startswith("sketch_"))
        assert md.startswith("_This section failed to render: ValueError: figure")
        assert "sketch.png or sketch_<what>.png" in md and not (tmp_path / f"{bad}.png").exists()
    assert figs.study is None  # unbound again: other_runs_loss is the report's own
    fig, (ax,) = figs.figure()
    ax.plot([0, 1], [0, 1])
    assert figs.save(fig, "other_runs_loss") == "![other_runs_loss](other_runs_loss.png)"


def test_figure_titles_quote_the_claims_the_writer_passes(tmp_path):
    """A figure that decides a claim beyond the lecture is titled with that claim's words,
    handed in by the writer (the figure style never loads the studies to find them)."""
    from seqbench.report.plot import Figures

    figs = Figures(tmp_path, {}, claims=LECTURE | {"C3*": "a scan runs in log T steps"})
    fig, (ax,) = figs.figure()
    ax.plot([0, 1], [0, 1])
    figs.claim_title(fig, "C3*", "C5")
    assert (
        fig.get_suptitle().replace("\n", " ")
        == f"C3*, C5: a scan runs in log T steps; {LECTURE['C5']}"
    )
    bare = Figures(tmp_path, {})  # default: the lecture's claims only
    assert bare.claims == LECTURE and bare.claims is not LECTURE
