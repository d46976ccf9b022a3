"""Figures a reader understands without the text, checked from the matplotlib objects.

Every study's ``section()`` is rendered from one synthetic table set (tests/figure_tables.py:
the shared training runs, and each study folder's own tables from its examples.py, so a new
study brings its tables and edits nothing here; a study that saves no figure passes),
and every figure it saves goes through ``figure_checks.problems`` before it is closed (axis
labels, readable log ticks, every line explained, distinct series and model colours, no
legend over the data, accuracy inside [0, 1], the claim in the title of a deciding figure).
The style's own helpers, the checks themselves (a figure with every fault the issue found)
and the contact sheet are tested here too.

The rules (issue 23) are listed at the top of tests/figure_checks.py; a rule that cannot hold
for a study's figure is an entry of its EXEMPT list (study, rule, reason), empty today. Sections
that fail are marked in XFAIL (strict=False) while they are rewritten: remove a study's mark
once its figures pass.
"""

import re
import types
from itertools import product
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from figure_checks import EXEMPT, exempt, is_timing, problems, rgba, style_colours  # noqa: E402
from figure_tables import FAMILIES, synthetic_tables  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from seqbench import studies  # noqa: E402
from seqbench.report import contact, generic  # noqa: E402
from seqbench.report.axes import (  # noqa: E402
    UNIT_RANGE,
    ReadableLogLocator,
    axis_label,
    band,
    log_axis,
    number,
    reference,
    si_number,
)
from seqbench.report.hardware import hardware_note  # noqa: E402
from seqbench.report.plot import Figures, palette, series_label  # noqa: E402

# study -> why its figures fail the checks today; phase 2 of issue 16 removes these one by one
XFAIL = {}


# --- every study's figures --------------------------------------------------------------------
@pytest.fixture(scope="module")
def tables():
    return synthetic_tables()


def _render(draw, tmp_path):
    """(figures written, problems found) of one section drawn through a checking Figures."""
    found = []

    def check(fig, name):
        found.extend(problems(fig, name, figs, decides=_decided(figs, name)))

    figs = Figures(tmp_path, FAMILIES, on_save=check)
    draw(figs)
    return figs.written, found


def _decided(figs, name) -> list[str]:
    return [c for c, names in figs.deciding.items() if f"{name}.png" in names]


CASES = [
    pytest.param(name, marks=[pytest.mark.xfail(strict=False, reason=XFAIL[name])])
    if name in XFAIL
    else name
    for name in [*studies.names(), "other_runs"]
]


@pytest.mark.parametrize("name", CASES)
def test_every_figure_reads_without_the_text(name, tables, tmp_path):
    if name == "other_runs":  # the report's own figure of runs no study claims
        draw = lambda figs: generic.other_runs(tables, set(studies.names()), figs)  # noqa: E731
    else:
        draw = lambda figs: studies.load(name).section(tables, figs.of(name))  # noqa: E731
    written, found = _render(draw, tmp_path)
    assert written or not _saves_figures(name), (
        f"{name} drew no figure from the synthetic tables: give its folder an examples.py "
        "(tables(kit), see tests/figure_tables.py)"
    )
    found = exempt(name, found)
    assert not found, "\n".join(found)


def _saves_figures(name) -> bool:
    """Whether a study's code saves a figure at all (one with none, a table or a verdict
    alone, passes without drawing); the report's own other_runs always does."""
    if name == "other_runs":
        return True
    folder = Path(studies.load(name).__file__).parent
    return any(".save(" in p.read_text() for p in folder.glob("*.py") if p.name != "examples.py")


def test_exemptions_name_a_study_a_rule_and_a_reason():
    import figure_checks

    rules = set(re.findall(r"\[([a-z-]+)\]", figure_checks.__doc__))
    assert {"title", "unit", "hardware", "distinct", "near", "categorical", "palette"} <= rules
    for study, rule, reason in EXEMPT:
        assert study in [*studies.names(), "other_runs"] and rule in rules and len(reason) > 20


def test_no_study_picks_its_own_colours():
    """Colours come from the style module (figs.color / figs.category / greys): a hard-coded
    matplotlib colour ('tab:blue', 'C0') clashes with the family palettes."""
    import seqbench

    root = Path(seqbench.__file__).parent
    bad = [
        f"{p.relative_to(root)}:{i}"
        for p in sorted((root / "studies").rglob("*.py")) + sorted((root / "report").glob("*.py"))
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if re.search(r"[\"']tab:[a-z]+[\"']|color\s*=\s*[\"']C\d[\"']", line)
    ]
    assert not bad, f"hard-coded matplotlib colours: {bad}"


# --- the style itself ----------------------------------------------------------------------------
def test_every_model_gets_a_colour_of_its_own_stable_across_figures():
    families = {f"m{i:02d}": fam for i, fam in enumerate(["recurrent"] * 12 + ["scan"] * 5)}
    families |= {f"x{i}": f"family{i}" for i in range(9)}  # more new families than SPARE maps
    colours = palette(families)
    rgb = np.array([to_rgba(c)[:3] for c in colours.values()])
    gaps = np.linalg.norm(rgb[:, None] - rgb[None], axis=-1) + np.eye(len(rgb))
    assert gaps.min() > 0.02, "two models' colours are nearly the same"
    assert palette(dict(reversed(families.items()))) == colours  # order of discovery: no matter
    figs = Figures(".", families)
    extra = [figs.color(m) for m in ("new_a", "new_b", "new_c")]  # models no table named
    assert len({rgba(c) for c in [*extra, *colours.values()]}) == len(colours) + 3
    assert figs.color("new_a") == extra[0]


def test_paths_depths_and_labels():
    figs = Figures(".", FAMILIES)
    assert figs.linestyle("fused") == figs.linestyle("scan") == figs.linestyle("-") == "-"
    assert figs.linestyle("unrolled") == figs.linestyle("sequential") == "--"
    assert len({str(figs.linestyle(i)) for i in ("fused", "unrolled", "chunked", "graph")}) == 4
    assert len({figs.marker(d) for d in (1, 2, 3, 4, 5, 16)}) == 6
    assert figs.style("lstm", "unrolled", 2) == {
        "color": figs.color("lstm"),
        "ls": "--",
        "marker": figs.marker(2),
    }
    assert series_label("transformer", "-", 1) == "transformer, 1 layer"
    assert series_label("lstm", "unrolled", 4.0) == "lstm (unrolled), 4 layers"
    assert series_label("gru", float("nan")) == "gru"


@pytest.mark.parametrize(
    "lo, hi",
    [
        (6, 7),
        (6.2, 6.8),
        (0.9, 3.5),
        (16, 2048),
        (1e-4, 1e-2),
        (3e10, 9e11),
        (1, 1e12),
        (1e-18, 1),
        (1.3, 3.1),
    ],
)
def test_log_ticks_are_plain_and_never_alone(lo, hi):
    ticks = ReadableLogLocator().tick_values(lo, hi)
    inside = [t for t in ticks if lo * (1 - 1e-9) <= t <= hi * (1 + 1e-9)]
    assert 2 <= len(inside) <= 8, ticks
    labels = [number(t) for t in inside]
    assert all(re.fullmatch(r"-?[0-9.]+(e-?[0-9]+)?", t) for t in labels), labels


def test_log_ticks_reach_data_far_below_one_in_a_trillion():
    """Influence falls to 1e-18: the ticks follow it down (they stopped at 1e-12)."""
    assert min(ReadableLogLocator().tick_values(1e-18, 1)) <= 1e-17


def test_si_ticks_and_integer_ticks(tmp_path):
    assert [si_number(v) for v in (950, 2e4, 1.5e6, 3e9)] == ["950", "20k", "1.5M", "3G"]

    def draw(figs):  # whole distances 2..5: matplotlib's own ticks would say 2.5
        fig, (ax,) = figs.figure()
        ax.plot([2, 3, 4, 5], [0.9, 0.7, 0.5, 0.4], **figs.style("lstm"), label="lstm")
        ax.set(xlabel="distance (tokens)", ylabel="held-out accuracy", title="ticks")
        figs.label_ends(ax)
        return figs.save(fig, "ticks")

    _, found = _render(draw, tmp_path)
    assert found == []


def test_numbers_read_plainly():
    assert [number(v) for v in (16, 2048, 0.05, 3e11, 1e-4, 1.5e6)] == [
        "16", "2048", "0.05", "3e11", "1e-4", "1.5e6"
    ]  # fmt: skip


def _good_figure(figs):
    """What a section should draw: units, bands clipped, chance, legend outside, claim."""
    fig, axes = figs.figure(ncols=2)
    d = np.array([4, 16, 64, 256])
    for m in ("lstm", "transformer", "mingru"):
        acc = {"lstm": [0.99, 0.8, 0.5, 0.2], "mingru": [0.99, 0.9, 0.6, 0.3]}.get(m, [0.98] * 4)
        acc = np.array(acc)
        figs.line(axes[0], d, acc, acc - 0.1, acc + 0.1, model=m, clip=UNIT_RANGE, marker="o")
        for impl in ("scan", "sequential") if m == "mingru" else ("-",):
            y = d * (3 if impl == "sequential" else 1) * (1 + len(m) / 4)
            figs.line(axes[1], d, y, model=m, impl=impl)
    reference(axes[0], 1 / 16, "chance 1/16")
    reference(axes[0], 0.9, "solved (0.9)", kind="threshold")
    axes[0].set(xlabel=axis_label("distance d", "tokens"), ylabel="held-out accuracy")
    axes[1].set(xlabel=axis_label("sequence length T", "tokens"), ylabel="time (s)")
    for ax in axes:
        log_axis(ax, "x", ticks=d)
    log_axis(axes[1], "y")
    figs.label_ends(axes[1])
    figs.legend(fig)
    rows = pd.DataFrame({"device": ["cpu"], "threads": [1], "load_1m": [0.7]})
    return figs.save(fig, "good", decides="C5", hardware=hardware_note(rows))


def test_a_figure_drawn_with_the_style_passes_every_check(tmp_path):
    written, found = _render(_good_figure, tmp_path)
    assert written == ["good.png"] and found == []


def _bad_figure(figs):
    """Every fault the issue found: the checks must name each."""
    fig, axes = figs.figure(ncols=2)
    x = np.linspace(6, 7, 20)
    for m in ("rnn", "lstm", "gru", "transformer"):
        axes[0].plot(x, x * 0 + 0.5, color="C0", label=m)  # one colour for all: not the palette
    axes[0].errorbar([6.5], [0.95], yerr=[0.2], color=figs.color("gru"))  # past 1.0, unlabelled
    axes[0].axhline(0.1, ls=":")  # an unexplained dotted line
    axes[0].set(xscale="log", ylabel="held-out accuracy", title="left")  # no x label, 6x10^0
    axes[0].legend(loc="center")  # on the lines
    axes[1].plot([1, 2], [1, 2], color=figs.color("mingru"), label="mingru (scan)")
    axes[1].plot([1, 2], [2, 3], color=figs.color("mingru"), label="mingru (sequential)")
    axes[1].set(xlabel="prefix p", ylabel="loss of x_{p+1}", title="right")  # no legend here
    fig.suptitle("results")  # says nothing of the claim it decides
    fig.legend([Line2D([], [], color="k")], ["a legend on the title"], loc="upper center")
    return figs.save(fig, "bad", decides="C5")


def _bad_figure_23(figs):
    """The faults of issue 23 the first checks missed: each rule must name its own."""
    fig, axes = figs.figure(ncols=2)
    d = np.array([2, 4, 6, 8])
    axes[0].plot(d, d * 0.1, color=figs.color("lstm"), label="lstm")  # ticks 2.5 for distances
    axes[0].plot(d, d * 0.3, color=figs.color("gru"), label="gru")
    axes[0].plot(d, d * 0.2, color="tab:orange", label="chosen lr")  # not a style colour
    axes[0].text(2, 2.2, "lstm")  # a direct label far from its line, and in the legend too
    axes[0].set(xlabel="distance", ylabel="time per token (ms)")  # no unit on x; a timing
    axes[0].set_xticks([2, 3.5, 5, 6.5, 8])  # fractional ticks for whole distances
    axes[1].plot([0, 1], [0.2, 0.6], color=figs.color("rnn"), marker="o", label="rnn")
    axes[1].set_xticks([0, 1], ["copy", "text"])  # categories joined by a line
    axes[1].bar([0], [0.5], 0.3, color=figs.color("lstm"), label="eager")
    axes[1].bar([1], [0.5], 0.3, color=figs.color("lstm"), label="graph")  # same colour, hatch
    axes[1].set(xlabel="task", ylabel="held-out accuracy")
    fig.legend(loc="outside right upper")  # every label, the directly labelled lstm too
    return figs.save(fig, "bad23")  # no title; no hardware note


# every fault the first checks found (issue 16) and those of issue 23: each rule names its own
FAULTS = {
    "bad": (
        "bad: models ['gru', 'lstm', 'rnn', 'transformer'] share the colour",
        "bad[left]: the x axis has no label",
        "bad[left]: log x axis ticks",
        "bad[left]: 2 line(s) have no legend entry or direct label: _container",
        "are not drawn in their model's palette colour: rnn, lstm, gru, transformer",
        "bad[left]: 3 pair(s) of lines look the same (colour, line style, marker): 'rnn' = 'lstm'",
        "bad[left]: accuracy drawn outside [0, 1]",
        "bad[left]: a legend covers",
        "bad[right]: the y label shows TeX as text: 'loss of x_{p+1}'",
        "bad[right]: 2 line(s) have no legend entry or direct label: mingru (scan), mingru (seq",
        "bad[right]: 1 pair(s) of lines look the same",
        "bad[left]: 3 line(s) are hidden under another",
        "bad: decides C5 but its title does not say so",
        "bad: a legend covers the title 'results'",
    ),
    "bad23": (
        "bad23: no title (neither the figure nor every panel has one) [title]",
        "bad23[0]: the x label 'distance' names no unit [unit]",
        "bad23: a timing figure that does not say its hardware and load [hardware]",
        "bad23[0]: whole-number x data with ticks",
        "bad23[1]: 'rnn' joins the x categories by a line [categorical]",
        "bad23[0]: the label 'lstm' is away from its line [near]",
        "bad23: named twice (legend and again): lstm [once]",
        "bad23: colour(s) not from the style module",
        "bad23[1]: bars 'eager' and 'graph' look the same (colour, hatch) [distinct]",
    ),
}


@pytest.mark.parametrize("name", list(FAULTS))
def test_the_checks_name_every_fault(name, tmp_path):
    draw = {"bad": _bad_figure, "bad23": _bad_figure_23}[name]
    _, found = _render(draw, tmp_path)
    text = "\n".join(found)
    for fault in FAULTS[name]:
        assert fault in text, f"missing: {fault}\n--- found:\n{text}"


def test_what_counts_as_a_timing_figure_and_a_style_colour():
    figs = Figures(".", FAMILIES)
    for label, timing in (("time (s)", True), ("throughput (tokens/s)", True),
                          ("latency per token (ms)", True), ("held-out loss (nats/token)", False),
                          ("span (ops)", False), ("wall-clock time (s)", True)):  # fmt: skip
        fig, (ax,) = figs.figure()
        ax.set_ylabel(label)
        assert is_timing(fig) == timing, label
        plt.close(fig)
    allowed = style_colours(figs)
    assert rgba(figs.color("lstm"))[:3] in allowed and rgba(figs.category("rope"))[:3] in allowed
    assert rgba("tab:orange")[:3] not in allowed and rgba("C0")[:3] not in allowed


def test_the_hardware_note_says_machine_threads_and_load():
    rows = pd.DataFrame({"device": ["cpu", "cpu"], "threads": [1, 1]})
    runs = pd.DataFrame({"device": ["cpu"], "cpu": ["AMD EPYC"]})
    assert hardware_note(rows, runs) == (
        "measured on cpu (AMD EPYC), 1 thread; load average not recorded"
    )
    rows = rows.assign(device=["cuda:0", "cuda:0"], gpu="NVIDIA H100", load_1m=[0.5, 2.25])
    assert hardware_note(rows) == "measured on cuda:0 (NVIDIA H100), 1 thread; load average 0.5-2.2"


def test_direct_labels_sit_at_their_line_ends(tmp_path):
    """lstm ends at 5 s and rnn at 13 s: each label beside its own end, not the panel's edge."""

    def draw(figs):
        fig, (ax,) = figs.figure()
        ax.plot([0, 5], [3.0, 1.0], **figs.style("lstm"), label="lstm")
        ax.plot([0, 13], [3.0, 1.02], **figs.style("rnn"), label="rnn")
        ax.plot([0, 13], [3.0, 1.04], **figs.style("gru"), label="gru")
        ax.set(xlabel="step (count)", ylabel="loss (nats/token)", title="labels")
        figs.label_ends(ax)
        figs.legend(fig)
        return figs.save(fig, "ends")

    _, found = _render(draw, tmp_path)
    assert found == []


def test_a_key_legend_explains_lines_by_colour_path_and_depth(tmp_path):
    def draw(figs):
        fig, (ax,) = figs.figure()
        for m, impl, L in product(("lstm", "mingru"), ("fused", "unrolled"), (1, 4)):
            x = np.array([16, 64, 256])
            y = x * L * (3 if impl == "unrolled" else 1) * len(m)
            ax.plot(x, y, **figs.style(m, impl, L))
        ax.set(xlabel=axis_label("sequence length T", "tokens"), ylabel="span (ops)", title="key")
        log_axis(ax, "x", ticks=[16, 64, 256])
        log_axis(ax, "y")
        figs.legend(fig, key=True)
        return figs.save(fig, "key")

    _, found = _render(draw, tmp_path)
    assert found == []


def test_bands_are_clipped_to_the_metric_range():
    fig, ax = plt.subplots()
    poly = band(ax, [1, 2, 3], [-0.2, 0.5, 0.9], [0.3, 0.8, 1.3], "k", clip=UNIT_RANGE)
    ys = np.concatenate([p.vertices[:, 1] for p in poly.get_paths()])
    assert ys.min() >= 0 and ys.max() <= 1
    plt.close(fig)


# --- the contact sheet ------------------------------------------------------------------------
def test_the_contact_sheet_shows_each_deciding_figure_once_in_claim_order(tmp_path):
    figs = Figures(tmp_path, FAMILIES)
    for name, decides in (("b", ("C5",)), ("a", ("C3", "C3*")), ("c", ()), ("d", ("C11",))):
        fig, (ax,) = figs.figure()
        ax.plot([0, 1], [0, 1])
        figs.save(fig, name, decides=decides)
    assert contact.tiles(figs.deciding) == [
        ("a.png", ["C3", "C3*"]),
        ("b.png", ["C5"]),
        ("d.png", ["C11"]),
    ]
    md = contact.sheet(tmp_path, figs.deciding)
    assert md.endswith("![contact sheet](contact_sheet.png)")
    image = plt.imread(tmp_path / contact.NAME)
    assert image.shape[1] == round(contact.NCOLS * contact.TILE[0] * contact.DPI)  # 3 a row
    assert contact.sheet(tmp_path, {"C1": ["missing.png"]}) == ""  # never a tile of nothing


def test_the_report_opens_with_the_claims_table_then_the_contact_sheet(
    tables, tmp_path, monkeypatch
):
    """The whole report from the recall study's synthetic runs (a small slice, so the report
    stays quick; collect itself is test_report.py's): its figures decide C5."""
    from seqbench.report import write as report

    recall = tables["runs"][tables["runs"].study == "recall"]
    keep = {"runs": recall, "unreadable": tables["unreadable"]}
    keep |= {k: tables[k][tables[k].run.isin(recall.run)] for k in ("curves", "positions")}
    monkeypatch.setattr(report, "collect", lambda runs, **kw: keep)
    (tmp_path / "runs").mkdir()
    readme = report.write_report(tmp_path / "runs", tmp_path / "results").read_text()
    head = readme.split("## Hardware and versions")[0]
    assert head.index("| C1 |") < head.index("![contact sheet](contact_sheet.png)")
    assert (tmp_path / "results" / contact.NAME).is_file()
    manifest = (tmp_path / "results" / ".report.json").read_text()
    assert contact.NAME in manifest


def _study(marks):
    """A study module whose section saves one figure per entry of ``marks`` (its decides)."""
    module = types.ModuleType("seqbench.studies.sketch")
    module.DECIDES, module.verdicts = ("C7",), lambda tables: []

    def section(tables, figs):
        for i, decides in enumerate(marks):
            fig, (ax,) = figs.figure()
            ax.plot([0, 1], [0, 1])
            figs.save(fig, f"sketch_{i}", decides=decides)
        return "text"

    module.section = section
    return module


@pytest.mark.parametrize(
    "marks, deciding",
    [
        (((), ()), {"C7": ["sketch_0.png", "sketch_1.png"]}),  # none marked: all lend to DECIDES
        (((), "C7"), {"C7": ["sketch_1.png"]}),  # marked: only those
    ],
)
def test_the_contact_sheet_takes_the_figures_a_study_marks(marks, deciding, tmp_path):
    from seqbench.report.write import study_parts

    figs = Figures(tmp_path, FAMILIES)
    study_parts(_study(marks), {"runs": pd.DataFrame()}, figs)
    assert figs.deciding == deciding
