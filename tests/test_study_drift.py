"""Drift (C11): the gap between free-running and teacher-forced scores, the control, every
verdict on synthetic tables (inconclusive included), the section, and one real measurement."""

import math

import matplotlib
import pandas as pd
import pytest

from seqbench.report.plot import Figures
from seqbench.studies import drift as dr

matplotlib.use("Agg")

FAMILY = {"lstm": "recurrent", "mingru": "scan", "transformer": "attention"}
K = 24
TEACHER = 0.15  # teacher-forced KL at every position


def _rows(free: dict, teacher=TEACHER, seeds=(0, 1, 2), noise=0.005) -> pd.DataFrame:
    """A drift table: free[(model, decoding)] = f(k) -> KL on the model's own prefix; every
    model's teacher-forced KL is ``teacher`` (a dict per model, or one number); seeds scatter
    by +-noise around both."""
    rows = []
    models = sorted({m for m, _ in free})
    for m, seed, k in [(m, s, k) for m in models for s in seeds for k in range(1, K + 1)]:
        t = teacher[m] if isinstance(teacher, dict) else teacher
        jitter = noise * (seed - 1)
        base = {"study": "drift", "status": "complete", "model": m, "family": FAMILY[m],
                "seed": seed, "k": k, "position": 7 + k, "vocab_size": 16,
                "entropy_true": 0.88, "entropy_rate": 0.877, "lr": 1e-2, "train_steps": 300,
                "prefix_len": 8, "n": 1024}  # fmt: skip
        rows.append(base | {"decoding": "teacher", "kl": t + jitter, "nll_true": 0.88})
        for d in dr.FREE:
            f = free.get((m, d))
            if f is not None:  # at k = 1 every decoding has the true prefix: the same score
                kl = t + jitter if k == 1 else f(k) + 2 * jitter
                rows.append(base | {"decoding": d, "kl": kl, "nll_true": 0.88 + kl - t})
    return pd.DataFrame(rows)


def flat(level):
    return lambda k: level


def growing(start, per_k):
    return lambda k: start + per_k * k


DRIFTS = {(m, d): flat(TEACHER + 0.05) for m in FAMILY for d in dr.FREE}
HOLDS = {(m, d): flat(TEACHER - 0.05) for m in FAMILY for d in dr.FREE}
MIXED = {(m, "sampled"): flat(TEACHER + 0.05) for m in FAMILY} | {
    (m, "greedy"): flat(TEACHER - 0.05) for m in FAMILY
}
SAME = {(m, d): flat(TEACHER) for m in FAMILY for d in dr.FREE}
GROWS = {(m, d): growing(TEACHER, 0.01) for m in FAMILY for d in dr.FREE}


@pytest.mark.parametrize(
    "free,stat,expected",
    [
        (DRIFTS, "late", "supported"),
        (HOLDS, "late", "not supported"),
        (MIXED, "late", "nuanced"),
        (SAME, "late", "inconclusive"),  # the gap's interval contains 0
        (GROWS, "growth", "supported"),
        (DRIFTS, "growth", "not supported"),  # a constant gap: it does not compound
        (GROWS | {("lstm", "greedy"): flat(TEACHER + 0.05)}, "growth", "nuanced"),
        (GROWS, "late", "supported"),
    ],
)
def test_each_verdict(free, stat, expected):
    v, measured = dr.verdict(_rows(free), stat)
    assert v == expected, measured
    assert "(3 seeds)" in measured


def test_noisy_seeds_make_the_drift_inconclusive():
    v, _ = dr.verdict(_rows(DRIFTS, noise=0.2), "late")
    assert v == "inconclusive"


def test_a_model_that_failed_its_control_is_left_out():
    # the LSTM never learned the source (teacher-forced KL near the uniform guess's) and
    # "holds"; the others drift: without it every remaining cell drifts
    free = DRIFTS | {("lstm", d): flat(1.0) for d in dr.FREE}
    rows = _rows(free, teacher={"lstm": 1.5, "mingru": TEACHER, "transformer": TEACHER})
    v, measured = dr.verdict(rows, "late")
    assert v == "supported" and "failed the control (left out): lstm" in measured
    uniform = math.log(16) - 0.88
    assert dr.controls(rows)["lstm"][1] == pytest.approx(uniform)


def test_every_model_failing_its_control_is_inconclusive():
    rows = _rows(DRIFTS, teacher=1.5)
    assert dr.verdict(rows, "late")[0] == "inconclusive"


def test_one_seed_left_is_inconclusive_and_the_verdicts_still_run():
    rows = _rows(DRIFTS, seeds=(2,))
    assert {v.verdict for v in dr.verdicts({"drift": rows})} == {"inconclusive"}
    assert dr.verdicts({"drift": pd.DataFrame()}) == []


def test_the_gap_is_free_minus_teacher_and_zero_at_k_1():
    g = dr.gaps(_rows(DRIFTS))
    assert (g[g.k == 1].gap.abs() < 1e-12).all()
    assert g[g.k == 5].gap.mean() == pytest.approx(0.05)
    early, late = dr.windows(K)
    assert list(early) == list(range(2, 10)) and list(late) == list(range(17, 25))


def test_verdicts_name_both_rules():
    out = dr.verdicts({"drift": _rows(GROWS)})
    assert [v.experiment for v in out] == [
        "drift (source, free vs teacher-forced)",
        "drift (source, compounding with k)",
    ]
    assert {v.claim for v in out} == {"C11"}
    assert "25% of a uniform guess" in out[0].rule


def test_the_section_draws_the_gap_and_names_the_families(tmp_path):
    figs = Figures(tmp_path, FAMILY)
    md = dr.section({"drift": _rows(MIXED)}, figs)
    assert figs.written == ["drift_gap_vs_k.png"]
    assert "| transformer |" in md and "late KL gap" in md
    assert "entropy rate is 0.877" in md
    assert "Measured: lstm, mingru, transformer, 24 generated tokens after 8 true ones" in md


@pytest.mark.parametrize("model", ["lstm", "transformer"])
def test_a_real_measurement_scores_teacher_and_free_rows_against_the_truth(tmp_path, model):
    """Train a tiny model on the source through the harness, measure, read the table back
    as the report does: at k = 1 every decoding has the true prefix (the same scores), KL is
    never negative, and teacher-forced the true log-loss averages to the source's entropy."""
    from conftest import compose_cfg

    from seqbench.measure.run import run_measurement
    from seqbench.report.collect import collect

    cfg = compose_cfg(
        ["+experiment=drift", f"model={model}", "model.size=5xs", "device=cpu", "data.seq_len=12",
         "train.steps=30", "train.eval_every=30", "train.eval_batches=1", "train.batch_size=8",
         "train.warmup=2", "train.lr_grid=null", "train.lr=1e-2", "what.batch_size=64",
         f"out_dir={tmp_path / 'runs'}"],
        config_name="measure",
    )  # fmt: skip
    summary = run_measurement(cfg)
    assert summary["status"] == "complete", summary
    rows = dr.drift_rows(collect(tmp_path / "runs"))
    assert set(rows.decoding) == {"teacher", *dr.FREE} and rows.k.max() == 12 - 8
    first = rows[rows.k == 1].set_index("decoding")
    for d in dr.FREE:
        assert first.loc[d, "kl"] == pytest.approx(first.loc["teacher", "kl"], abs=1e-9)
    assert (rows.kl >= -1e-12).all() and (rows.kl_reverse >= -1e-12).all()
    teacher = rows[rows.decoding == "teacher"]
    assert teacher.nll_true.mean() == pytest.approx(teacher.entropy_true.mean(), abs=0.15)
    trained = list((tmp_path / "runs").glob(f"drift-{model}-source-*/model.pt"))
    assert len(trained) == 1  # the training run belongs to the study and is reused


def test_the_figure_titles_each_row_and_keeps_its_words_off_the_data(tmp_path):
    """Issue 23: no row titles, the 'teacher-forced' label written on the data, and jargon
    ('growth: from') in the legend."""
    seen = []
    dr.section(
        {"drift": _rows(MIXED)}, Figures(tmp_path, FAMILY, on_save=lambda f, _: seen.append(f))
    )
    (fig,) = seen
    for ax, (_, _, what) in zip(fig.axes, [r for r in dr.ROWS for _ in dr.FREE]):
        assert ax.get_title().startswith(what) and "decoding" in ax.get_title()
        assert not ax.texts  # every word in a title, an axis label or the legend
    legend = " ".join(t.get_text() for t in fig.legends[0].get_texts())
    assert "growth: from" not in legend and "no drift" in legend and "95% interval" in legend
