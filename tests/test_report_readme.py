"""The first screen is the answer (issue 23): results/README.md is one short page (a paragraph,
a claims table of short rows, the contact sheet, pointers), every study's rule, figures and
tables are on its own page, and every table reads as numbers (no reprs, no nan, integers as
integers, sizes in size order, float noise as 0).

The whole report is rendered once from the synthetic tables every figure test uses
(tests/figure_tables.py), with real files written and read back."""

import re

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from figure_tables import synthetic_tables  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.image import imread  # noqa: E402

from seqbench.models import SIZES  # noqa: E402
from seqbench.report import contact  # noqa: E402
from seqbench.report import write as report  # noqa: E402
from seqbench.report.claims import LECTURE, ROW_MAX, Evidence, claims_table, deciding  # noqa: E402
from seqbench.report.markdown import md_table  # noqa: E402
from seqbench.report.verdict import Verdict  # noqa: E402
from seqbench.studies._common import lr_table  # noqa: E402

README_MAX = 15_000  # bytes
ROW = re.compile(r"^\| C\d+\*? \|")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """The report of the synthetic tables, as files: results/README.md and its pages."""
    tmp = tmp_path_factory.mktemp("report")
    tables = synthetic_tables()
    (tmp / "runs").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(report, "collect", lambda runs, reserved=(): tables)
        report.write_report(tmp / "runs", tmp / "results")
    return tmp / "results"


def pages(results) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(results.glob("*.md"))}


def table_rows(md: str) -> list[str]:
    return [line for line in md.splitlines() if line.startswith("|")]


def cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]


# --- the first screen ------------------------------------------------------------------------
def test_the_readme_is_one_short_page_that_opens_with_what_was_run(results):
    readme = (results / "README.md").read_text()
    assert len(readme.encode()) < README_MAX, len(readme.encode())
    opening = readme.split("\n\n")[1]  # the paragraph under the title
    assert re.match(r"This report reads \d+ training runs and \d+ measurement runs", opening)
    assert "cpu" in opening  # the hardware the runs name
    head = readme.split("## Studies")[0]
    assert head.index("| claim |") < head.index("![contact sheet](contact_sheet.png)")
    assert "## Hardware and versions" in readme and "**Reading.**" not in readme  # no prose


def test_every_claims_row_is_short_and_links_a_page_that_exists(results):
    readme = (results / "README.md").read_text()
    rows = [line for line in readme.splitlines() if ROW.match(line)]
    assert {cells(r)[0] for r in rows} >= set(LECTURE)  # every lecture claim has a row
    too_long = [r for r in rows if len(r) > ROW_MAX]
    assert not too_long, too_long[0]
    linked = {m for r in rows for m in re.findall(r"\]\((study_\w+\.md)\)", r)}
    assert linked and all((results / name).is_file() for name in linked)
    for name in linked:  # the rule and the figures moved to the page
        page = (results / name).read_text()
        assert "  - rule: " in page and "[All claims and verdicts](README.md)" in page
    words = [cells(r)[1] for r in rows]
    assert all(len(w.split()) <= 13 for w in words), words  # 12 words and an ellipsis
    assert all(f"]({name})" in readme for name in linked)


def test_every_study_page_and_figure_is_listed_and_present(results):
    manifest = (results / ".report.json").read_text()
    readme = (results / "README.md").read_text()
    for name in pages(results):
        assert f'"{name}"' in manifest
        if name.startswith("study_"):
            assert f"]({name})" in readme  # listed under Studies
    shown = {m for text in pages(results).values() for m in re.findall(r"\]\((\w+\.png)\)", text)}
    assert shown and all((results / png).is_file() for png in shown)
    assert not [
        line for line in readme.splitlines() if line.startswith("![") and "contact" not in line
    ]


# --- tables that read as numbers -------------------------------------------------------------
def test_no_python_repr_or_nan_cell_on_any_page(results):
    for name, text in pages(results).items():
        assert "np.float64(" not in text and "np.int64(" not in text, name
        for line in table_rows(text):
            for c in cells(line):
                # a list's repr (an interval '[0.12, 0.21]' is notation, not a repr)
                assert not re.fullmatch(r"\[[^,\]]*\]|\[.*'.*\]", c), (name, line)
                assert not re.search(r"(?<![\w.])(nan|None|NaN)(?![\w])", c), (name, line)


def test_the_size_table_reads_in_size_order(results):
    core = (results / "study_core.md").read_text()
    rows = [cells(line) for line in table_rows(core)]
    header = next(i for i, r in enumerate(rows) if r[0] == "size")
    sizes = [r[0] for r in rows[header + 2 :] if r[0] in SIZES]
    assert len(sizes) == len(SIZES) and sizes == list(SIZES)


def test_md_table_writes_numbers_not_reprs():
    df = pd.DataFrame(
        {
            "model": ["gru", "transformer", "lstm"],
            "span_ops": [8196.0, 45.0, np.nan],  # integers in a float column (nan made it so)
            "slope": [0.994, 6.09e-17, 0.98],  # float noise beside data
            "acc": [0.9312, 0.5, 0.7],
            "acc_lo": [0.90, 0.48, 0.7],
            "acc_hi": [0.96, 0.52, 0.7],
            "grid": [[np.float64(0.003)], [0.001, 0.003], []],
        }
    )
    lines = md_table(df).splitlines()
    assert lines[2] == "| gru | 8196 | 0.994 | 0.931 | 0.900 | 0.960 | 0.003 |"
    assert lines[3] == "| transformer | 45 | 0 | 0.500 | 0.480 | 0.520 | 0.001, 0.003 |"
    assert lines[4] == "| lstm | - | 0.98 | 0.7 | 0.7 | 0.7 | - |"  # no interval: 3 digits
    assert lines[-1].startswith("A cell -: ")  # the dash is explained under the table
    estimates = pd.DataFrame(
        {"wide": ["0.0211 [0.00176, 0.0928]"], "narrow": ["0.507 [0.505, 0.509]"]}
    )
    assert md_table(estimates).splitlines()[2] == "| 0.021 [0.002, 0.093] | 0.507 [0.505, 0.509] |"


def test_the_learning_rate_table_names_rates_not_numpy_reprs():
    runs = pd.DataFrame(
        {
            "model": ["gru", "gru"],
            "seed": [0, 1],
            "lr": [np.float64(0.003)] * 2,
            "val_loss": [1.0, 1.1],
        }  # fmt: skip
    )
    row = lr_table(runs).iloc[0]
    assert row.lr == "0.003" and row.grid == "0.003" and "np." not in md_table(lr_table(runs))


# --- the claims table and the contact sheet, in isolation ------------------------------------
def test_a_long_verdict_becomes_a_short_row_with_its_deciding_number():
    measured = "; ".join(
        f"held-out loss {m} 1.78 [1.77, 1.79], lstm 2.16 [2.11, 2.21] nats (3 seeds)" for m in "ab"
    )
    rule = "supported if " + "every model ends below the bar " * 20
    v = Verdict("C1", "core (text)", measured, rule, "supported", "cpu, torch 2.13, fp32",
                "without seed 1: inconclusive; without seed 2: inconclusive")  # fmt: skip
    table = claims_table([Evidence(v, "core", "400 steps, 3 seeds, cpu")])
    row = next(line for line in table.splitlines() if line.startswith("| C1 |"))
    assert len(row) <= ROW_MAX and rule[:40] not in row and "torch" not in row
    assert "held-out loss a 1.78 [1.77, 1.79]" in row and "**supported**" in row
    assert "flips: drop seed 1, 2" in row and "[core](study_core.md)" in row
    assert deciding("x (a, b, c) y; z") == "x (a, b, c) y …"


def test_the_contact_sheet_titles_each_claim_with_its_verdict_in_words_and_colour(tmp_path):
    import matplotlib.pyplot as plt

    for name, size in (("span", (4, 5)), ("timing", (4, 16))):
        fig = plt.figure(figsize=size, dpi=110)
        fig.savefig(tmp_path / f"{name}.png")
        plt.close(fig)
    deciding = {"C3": ["span.png"], "C4": ["span.png", "timing.png"], "C9": ["timing.png"]}
    evidence = [
        Evidence(Verdict("C3", "span", "m", "r", "supported"), "span_vs_length"),
        Evidence(Verdict("C4", "span", "m", "r", "supported"), "span_vs_length"),
        Evidence(Verdict("C4", "time", "m", "r", "not measured on cpu"), "time_vs_length"),
        Evidence(Verdict("C9", "time", "m", "r", "not measured on cpu"), "time_vs_length"),
    ]
    made_by = {"span.png": "span_vs_length", "timing.png": "time_vs_length"}
    fig = contact.draw(tmp_path, deciding, evidence, made_by)
    texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_text().strip()]
    px = [t.get_fontsize() * contact.DPI / 72 for t in texts]
    assert min(px) >= 16  # at least a browser's body text, at 100%
    said = {t.get_text(): t for t in texts}
    assert any(s.startswith("C3: ") for s in said) and any(s.startswith("C9: ") for s in said)
    green = [t for s, t in said.items() if "supported" in s and "not" not in s]
    assert green and to_rgba(green[0].get_color()) == to_rgba(contact.COLOURS["supported"])
    assert "timing on this hardware: does not decide the claim" in said  # C9's timing figure
    assert fig.get_figwidth() * contact.DPI == contact.NCOLS * contact.TILE[0] * contact.DPI
    plt.close(fig)
    assert contact.tiles(deciding, evidence, made_by) == [
        ("span.png", ["C3", "C4"]),  # C4 by the verdict this hardware decides
        ("timing.png", ["C9"]),
    ]
    both = [  # one figure decides C2 and cannot decide C9: it decides something, no band
        Evidence(Verdict("C2", "decode", "m", "r", "supported"), "decode_cost"),
        Evidence(Verdict("C9", "decode", "m", "r", "not measured on cpu"), "decode_cost"),
    ]
    fig = contact.draw(tmp_path, {"C2": ["span.png"], "C9": ["span.png"]}, both,
                       {"span.png": "decode_cost"})  # fmt: skip
    said = [t.get_text() for t in fig.findobj(matplotlib.text.Text)]
    assert "not measured on cpu" in said and not [s for s in said if "does not decide" in s]
    plt.close(fig)


def test_the_real_contact_sheet_is_a_laptop_screen_wide(results):
    image = imread(results / contact.NAME)
    assert image.shape[1] == contact.NCOLS * contact.TILE[0] * contact.DPI <= 1440
