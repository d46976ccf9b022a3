"""Study span_vs_length (C3, C4, C3*): the span rules on synthetic span tables (every verdict
reachable, models picked by family), the stability column (n/a: deterministic counts), the
reading generated from the numbers, and the section's figures."""

import math

import matplotlib
import pandas as pd
import pytest

from seqbench.report import stability
from seqbench.report.plot import Figures
from seqbench.studies import span_vs_length as study
from seqbench.studies import study_jobs
from seqbench.studies.span_vs_length import examples
from tests.conftest import FAMILY

matplotlib.use("Agg")

FAMILIES = {m: f for m, f in FAMILY.items() if f != "baseline"}
LENGTHS = (16, 64, 128, 1024)


def _row(model, impl, L, T, span):
    """A complete span row of the study (the row shape its examples.py draws from)."""
    tag = {"run": f"{model}-{impl}-{L}", "study": study.STUDY, "status": "complete"}
    return tag | examples.row(model, FAMILIES[model], impl, L, T, span)


def _tables(rec_span=lambda T, L: 7 * (T + L), att_span=lambda T, L: 10 * L + 9, rec="lstm",
            scan_span=None, extra=()):  # fmt: skip
    """A span table: one recurrent and one attention model at depths 1 and 4 (and, given
    ``scan_span``, minGRU and minLSTM on their scan path at depth 2)."""
    rows = []
    for T in LENGTHS:
        for L in (1, 4):
            rows.append(_row(rec, "unrolled", L, T, rec_span(T, L)))
            rows.append(_row("transformer", "-", L, T, att_span(T, L)))
        if scan_span is not None:
            for m in ("mingru", "minlstm"):
                rows.append(_row(m, "scan", 2, T, scan_span(T)))
                rows.append(_row(m, "sequential", 2, T, 9 * T + 4))
    return {"span": pd.DataFrame(rows + list(extra))}


def _verdicts(tables) -> dict:
    return {v.claim: v.verdict for v in study.verdicts(tables)}


# --- C3 and C4 --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "rec_span, verdict",
    [
        (lambda T, L: 7 * (T + L), "supported"),  # linear in T, a wavefront in L
        (lambda T, L: 7 * T * L, "nuanced"),  # linear in T, but stacks multiply the chain
        (lambda T, L: 50 * L, "not supported"),  # the chain stopped growing with T
    ],
)
def test_c3_verdicts(rec_span, verdict):
    assert _verdicts(_tables(rec_span))["C3"] == verdict


def test_c3_reads_the_recurrent_family_not_a_name():
    # a GRU decides C3 as the LSTM did; a scan model's flat span does not count against it
    flat_scan = [_row("mingru", "sequential", 1, T, 5) for T in LENGTHS]
    got = _verdicts(_tables(rec="gru", extra=flat_scan))
    assert got["C3"] == "supported"
    (c3,) = [v for v in study.verdicts(_tables(rec="gru")) if v.claim == "C3"]
    assert "gru L=1" in c3.measured and "(rule: >= 8)" in c3.measured
    assert c3.rule == study.C3_RULE.text and "1.5x" in c3.rule


@pytest.mark.parametrize(
    "att_span, verdict",
    [
        (lambda T, L: 10 * L + 9, "supported"),  # depth only
        (lambda T, L: 10 * L + 9 + T // 64, "not supported"),  # grows with T beyond 1.1x
    ],
)
def test_c4_verdicts(att_span, verdict):
    got = study.verdicts(_tables(att_span=att_span))
    (c4,) = [v for v in got if v.claim == "C4"]
    assert c4.verdict == verdict and "transformer L=1" in c4.measured
    assert "FLOPs per dependent step grow transformer ×" in c4.measured


def test_no_rows_decides_only_that_c3_star_was_not_measured():
    assert _verdicts({}) == {"C3*": "not measured"}
    other_study = _tables()["span"].assign(study="adhoc")
    assert _verdicts({"span": other_study}) == {"C3*": "not measured"}


def test_stability_is_not_applicable_to_deterministic_counts():
    tables = _tables(scan_span=lambda T: 5 * math.log2(T) + 10)
    tables["span"] = tables["span"].assign(seed=0)  # the run's seed, as collect adds it
    tables["runs"] = pd.DataFrame({"run": ["a", "b", "c"], "seed": [0, 1, 2]})  # other studies
    annotated = stability.annotate(study, study.STUDY, tables, study.verdicts(tables))
    assert {v.claim: v.verdict for v in annotated} == {
        "C3": "supported", "C4": "supported", "C3*": "supported"}  # fmt: skip
    # leaving out seed 0 would leave no rows at all: not a stability check, so n/a
    assert {v.stability for v in annotated} == {study.DETERMINISTIC}


def test_t_lo_is_the_rules_length():
    # T_lo = the shortest shared T >= 64, so the 16-token point does not enter the ratio
    (c3,) = [v for v in study.verdicts(_tables()) if v.claim == "C3"]
    assert c3.measured.startswith(f"span(T=1024)/span(T={study.T_LO})")


# --- C3*: the parallel scan -------------------------------------------------------------------
@pytest.mark.parametrize(
    "scan_span, verdict",
    [
        (lambda T: 40 + 6 * math.log2(T), "supported"),  # constant per doubling: log T
        (lambda T: 3 * T + 10, "not supported"),  # linear like a per-step recurrence
        (lambda T: 20 * T**0.4, "nuanced"),  # sublinear, not logarithmic
    ],
)
def test_c3_star_verdicts(scan_span, verdict):
    (star,) = [v for v in study.verdicts(_tables(scan_span=scan_span)) if v.claim == "C3*"]
    assert star.verdict == verdict, star
    assert "mingru/scan/2/forward" in star.measured and "per-step paths: " in star.measured
    assert star.rule == study.SCAN_RULE.text


def test_c3_star_needs_every_scan_model_on_its_scan_path():
    span = _tables(scan_span=lambda T: 40 + 6 * math.log2(T))["span"]
    no_minlstm_scan = span[~((span.model == "minlstm") & (span.impl == "scan"))]
    assert _verdicts({"span": no_minlstm_scan})["C3*"] == "not measured"
    short = span[~span["T"].isin([128, 1024])]  # two lengths only: below the rule's minimum
    assert _verdicts({"span": short})["C3*"] == "not measured"


# --- the reading and the section --------------------------------------------------------------
def test_reading_names_the_wavefront_only_when_the_numbers_show_it():
    fwd = study._table(_tables())
    fwd = fwd[fwd["pass"] == "forward"]
    text = study._reading(fwd)
    assert "the lecture's diagonal wavefront" in text
    assert "Every recurrent chain grows at least 0.5x as fast as T" in text
    assert "its span does not move" in text
    product = study._table(_tables(rec_span=lambda T, L: 7 * T * L))
    text = study._reading(product[product["pass"] == "forward"])
    assert "wavefront" in text and "the lecture's diagonal wavefront" not in text
    assert "no wavefront" in text
    flat = study._table(_tables(rec_span=lambda T, L: 50 * L, att_span=lambda T, L: T))
    text = study._reading(flat[flat["pass"] == "forward"])
    assert "The chain of lstm grows less than 0.5x as fast as T" in text
    assert "its span grows with T too" in text and "does not move" not in text


def test_section_draws_the_figures(tmp_path):
    tables = _tables(scan_span=lambda T: 40 + 6 * math.log2(T))
    back = tables["span"].assign(**{"pass": "forward_backward"})
    tables["span"] = pd.concat([tables["span"], back], ignore_index=True)
    md = study.section(tables, Figures(tmp_path, FAMILIES))
    for png in ("span_vs_length", "span_vs_length_parallelism", "span_vs_length_scan"):
        assert (tmp_path / f"{png}.png").exists() and f"({png}.png)" in md
    assert "**Reading.**" in md and "| lstm | unrolled |" in md and "nan" not in md
    assert study.section({}, Figures(tmp_path, FAMILIES)).startswith("_No completed")


def test_bench_jobs_use_the_renamed_experiment():
    for profile in ("smoke", "cpu", "gpu"):
        (job,) = study_jobs(study.__name__)[profile]
        assert job.name == "span_vs_length" and job.module == "seqbench.measure"
        assert job.command()[1:3] == ["-m", "+experiment=span_vs_length"]
