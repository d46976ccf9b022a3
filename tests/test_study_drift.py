"""Drift (C11): the gap between free-running and teacher-forced scores, the control, both
verdicts (free text leaves the source's contexts; errors compound against each model's own
teacher-forced KL) on synthetic tables producing each verdict, the noise floor drawn from
the source itself, the section, and one real measurement."""

import math

import matplotlib
import pandas as pd
import pytest
import torch

from seqbench.data.source import Source
from seqbench.measure import drift as measure
from seqbench.report.plot import Figures
from seqbench.studies import drift as dr

matplotlib.use("Agg")

FAMILY = {"lstm": "recurrent", "mingru": "scan", "transformer": "attention"}
K = 24
TEACHER = 0.15  # teacher-forced KL at every position
FLOOR = 0.05  # context TV of the source's own second continuation


def _rows(free, teacher=TEACHER, seeds=(0, 1, 2), noise=0.005, tv=None) -> pd.DataFrame:
    """A drift table: free[(model, decoding)] = f(k) -> KL on the model's own prefix; every
    model's teacher-forced KL is ``teacher`` (a dict per model, or one number); tv[(model,
    decoding)] the context TV of its continuations (default: the floor, FLOOR); seeds
    scatter by +-noise around each."""
    rows, tv = [], tv or {}
    models = sorted({m for m, _ in free})
    for m, seed, k in [(m, s, k) for m in models for s in seeds for k in range(1, K + 1)]:
        t = teacher[m] if isinstance(teacher, dict) else teacher
        jitter = noise * (seed - 1)
        base = {"study": "drift", "status": "complete", "model": m, "family": FAMILY[m],
                "seed": seed, "k": k, "position": 7 + k, "vocab_size": 16,
                "entropy_true": 0.88, "entropy_rate": 0.877, "lr": 1e-2, "train_steps": 300,
                "prefix_len": 8, "n": 1024, "train.budget": 1, "train.lr_step": 0}  # fmt: skip
        rows.append(base | {"decoding": "teacher", "kl": t + jitter, "nll_true": 0.88,
                            "context_tv": 0.0})  # fmt: skip
        rows.append(base | {"decoding": dr.REFERENCE, "kl": t + jitter, "nll_true": 0.88,
                            "context_tv": FLOOR + jitter})  # fmt: skip
        for d in dr.FREE:
            f = free.get((m, d))
            if f is not None:  # at k = 1 every decoding has the true prefix: the same score
                kl = t + jitter if k == 1 else f(k) + 2 * jitter
                rows.append(base | {"decoding": d, "kl": kl, "nll_true": 0.88 + kl - t,
                                    "context_tv": tv.get((m, d), FLOOR) + 2 * jitter})  # fmt: skip
    return pd.DataFrame(rows)


def flat(level):
    return lambda k: level


def growing(start, per_k):
    return lambda k: start + per_k * k


DRIFTS = {(m, d): flat(TEACHER + 0.05) for m in FAMILY for d in dr.FREE}
MIXED = {(m, "sampled"): flat(TEACHER + 0.05) for m in FAMILY} | {
    (m, "greedy"): flat(TEACHER - 0.05) for m in FAMILY
}
GROWS = {(m, d): growing(TEACHER, 0.01) for m in FAMILY for d in dr.FREE}  # growth 0.15 = 1x KL
FAR = {(m, d): 0.5 for m in FAMILY for d in dr.FREE}  # 10x the floor
NEAR = {(m, d): 0.06 for m in FAMILY for d in dr.FREE}  # inside 2x the floor's upper bound
GREEDY_FAR = {(m, "greedy"): 0.5 for m in FAMILY} | {(m, "sampled"): 0.06 for m in FAMILY}
AT_BAR = {(m, d): 0.125 for m in FAMILY for d in dr.FREE}  # 2x the floor's upper bound, +-0.025


@pytest.mark.parametrize(
    "tv,expected",
    [
        (FAR, "supported"),
        (NEAR, "not supported"),
        (GREEDY_FAR, "nuanced"),  # greedy text leaves the source's contexts, sampled stays
        (AT_BAR, "inconclusive"),  # every interval straddles 2x the floor's upper bound
    ],
)
def test_each_leave_verdict(tv, expected):
    v, measured = dr.verdict(_rows(DRIFTS, tv=tv), "leaves")
    assert v == expected, measured
    assert "(3 seeds)" in measured and "floor upper bound 0.0624" in measured


@pytest.mark.parametrize(
    "free,expected",
    [
        (GROWS, "supported"),  # growth 1x the teacher-forced KL, above the 0.5x bar
        (DRIFTS, "not supported"),  # a constant gap: it does not compound
        (GROWS | {(m, "greedy"): flat(TEACHER + 0.05) for m in FAMILY}, "nuanced"),
        ({(m, d): growing(TEACHER, 0.005) for m in FAMILY for d in dr.FREE}, "inconclusive"),
    ],
)
def test_each_compound_verdict(free, expected):
    """The last case grows by 0.5x the teacher-forced KL: every interval straddles the bar."""
    v, measured = dr.verdict(_rows(free), "compounds")
    assert v == expected, measured
    assert "(3 seeds)" in measured and "bar 0.5" in measured


def test_the_bar_is_scaled_to_each_models_own_teacher_forced_kl():
    """The same growth (0.02 nats from the first third to the last) compounds for the LSTM,
    which came within 0.01 nats of the truth, and not for the Transformer at 0.2 nats: the
    fixed 0.01-nat bar would have called both compounding."""
    per_k = 0.02 / 15  # the windows' centres are 15 positions apart (k = 5.5 and 20.5)
    free = {(m, d): growing(0.0, per_k) for m in ("lstm", "transformer") for d in dr.FREE}
    teacher = {"lstm": 0.01, "transformer": 0.2}
    rows = _rows(free, teacher=teacher, noise=0.001)
    cells = {(c.model, c.decoding): c for c in dr.compound_cells(rows)}
    assert cells["lstm", "greedy"].value.mean == pytest.approx(2.0, rel=0.02)
    assert cells["transformer", "greedy"].value.mean == pytest.approx(0.1, rel=0.02)
    v, measured = dr.verdict(rows, "compounds")
    assert v == "nuanced", measured
    assert "recurrent: lstm greedy" in measured and "attention: transformer greedy" in measured
    assert {c.sign for c in cells.values() if c.model == "lstm"} == {1}
    assert {c.sign for c in cells.values() if c.model == "transformer"} == {-1}


def test_noisy_seeds_make_both_verdicts_inconclusive():
    rows = _rows(GROWS, noise=0.2, tv=FAR)
    assert dr.verdict(rows, "compounds")[0] == "inconclusive"
    assert dr.verdict(_rows(DRIFTS, noise=0.1, tv=FAR), "leaves")[0] == "inconclusive"


def test_the_measured_text_names_every_family_and_the_kl_each_model_reached():
    _, measured = dr.verdict(_rows(GROWS, tv=GREEDY_FAR), "leaves")
    for family, model in (("recurrent", "lstm"), ("scan", "mingru"), ("attention", "transformer")):
        assert f"{family}: {model} greedy 0.5" in measured
    assert "mingru sampled 0.06" in measured and "stays" in measured and "leaves" in measured
    assert "teacher-forced KL from the truth (nats): lstm 0.15 [" in measured


def test_a_model_that_failed_its_control_is_left_out():
    # the LSTM never learned the source (teacher-forced KL near the uniform guess's) and its
    # text stays near the source's contexts; the others leave: without it every cell leaves
    tv = FAR | {("lstm", d): 0.06 for d in dr.FREE}
    rows = _rows(DRIFTS, teacher={"lstm": 1.5, "mingru": TEACHER, "transformer": TEACHER}, tv=tv)
    v, measured = dr.verdict(rows, "leaves")
    assert v == "supported" and "failed the control (left out): lstm (recurrent)" in measured
    uniform = math.log(16) - 0.88
    assert dr.controls(rows)["lstm"].uniform == pytest.approx(uniform)


def test_every_model_failing_its_control_is_inconclusive():
    rows = _rows(DRIFTS, teacher=1.5, tv=FAR)
    assert dr.verdict(rows, "leaves")[0] == "inconclusive"
    assert dr.verdict(rows, "compounds")[0] == "inconclusive"


def test_one_seed_left_is_inconclusive_and_the_verdicts_still_run():
    rows = _rows(GROWS, seeds=(2,), tv=FAR)
    assert {v.verdict for v in dr.verdicts({"drift": rows})} == {"inconclusive"}
    assert dr.verdicts({"drift": pd.DataFrame()}) == []


def test_rows_without_a_noise_floor_leave_the_distance_inconclusive():
    """Rows measured before the source's second continuation (no floor, no context_tv)."""
    rows = _rows(GROWS, tv=FAR)
    old = rows[rows.decoding != dr.REFERENCE].drop(columns=["context_tv", "train.budget"])
    got = {v.experiment: v.verdict for v in dr.verdicts({"drift": old})}
    assert list(got.values()) == ["inconclusive", "supported"]


def test_the_report_reads_each_training_setting_from_the_rows_own_columns():
    """Rows at 4x the budget (models closer to the truth, smaller growth) sit beside the base
    rows in one table: the report's setting filter (stability.at) reads each row's own
    train.budget, so the verdicts and the stability column see one setting at a time."""
    from seqbench.report.stability import at

    base = _rows(GROWS, tv=FAR)
    longer = _rows(DRIFTS, tv=NEAR).assign(**{"train.budget": 4, "train_steps": 1200})
    both = {"drift": pd.concat([base, longer], ignore_index=True)}
    assert [v.verdict for v in dr.verdicts(at(both))] == ["supported", "supported"]
    assert [v.verdict for v in dr.verdicts(at(both, budget=4))] == ["not supported"] * 2


def test_the_gap_is_free_minus_teacher_and_zero_at_k_1():
    g = dr.gaps(_rows(DRIFTS))
    assert (g[g.k == 1].gap.abs() < 1e-12).all()
    assert g[g.k == 5].gap.mean() == pytest.approx(0.05)
    early, late = dr.windows(K)
    assert list(early) == list(range(2, 10)) and list(late) == list(range(17, 25))


def test_verdicts_name_both_rules():
    out = dr.verdicts({"drift": _rows(GROWS, tv=FAR)})
    assert [v.experiment for v in out] == [e for _, e in dr.EXPERIMENTS.values()]
    assert {v.claim for v in out} == {"C11"}
    assert "25% of a uniform guess" in out[0].rule and "2x the floor's upper bound" in out[0].rule
    assert "above 0.5, does not if below 0.5" in out[1].rule


def test_the_noise_floor_is_the_distance_between_two_source_samples():
    """The source's second continuation follows the truth (its tokens' mean true log-loss is
    the conditionals' entropy), two independent draws differ by a floor that shrinks with
    the sample, and text that always takes the likeliest token lies far above it."""
    task = Source(seq_len=24, seed=0)
    P, n = 8, 16
    tokens, targets = task.batch("val", 0, 2048)
    truth = torch.cat([tokens[:, :1], targets], dim=1)[:, : P + n]  # [B, P + n]
    again = measure.source_continuation(task, truth[:, :P], n, torch.Generator().manual_seed(1))
    assert torch.equal(again[:, :P], truth[:, :P]) and again.shape == truth.shape
    p = task.conditional(again[:, :-1])[:, P - 1 :]  # [B, n, V]
    nll = -p.gather(2, again[:, P:, None]).log().mean()
    assert float(nll) == pytest.approx(float(-(p * p.log()).sum(-1).mean()), abs=0.03)

    def floor(b):
        counts = [measure.context_counts(task, s[:b], P) for s in (truth, again)]
        return measure.total_variation(*counts)

    greedy = truth[:, :P]
    for _ in range(n):  # the truth's argmax: what greedy decoding of a perfect model writes
        greedy = torch.cat([greedy, task.conditional(greedy)[:, -1:].argmax(-1)], dim=1)
    same = measure.context_counts(task, truth, P)
    assert measure.total_variation(same, same) == 0.0
    assert floor(2048) < floor(128) / 2  # a sampling floor: ~1/sqrt(size)
    far = measure.total_variation(measure.context_counts(task, greedy, P), same)
    assert far > 3 * floor(2048)


def test_the_section_draws_the_gap_and_names_the_families(tmp_path):
    figs = Figures(tmp_path, FAMILY)
    md = dr.section({"drift": _rows(MIXED)}, figs)
    assert figs.written == ["drift_gap_vs_k.png"]
    assert "| transformer |" in md and "late KL gap" in md and "greedy: context TV" in md
    assert "entropy rate is 0.877" in md
    assert "Measured: lstm, mingru, transformer, 24 generated tokens after 8 true ones" in md


@pytest.mark.parametrize("model", ["lstm", "transformer"])
def test_a_real_measurement_scores_teacher_and_free_rows_against_the_truth(tmp_path, model):
    """Train a tiny model on the source through the harness, measure, read the table back
    as the report does: at k = 1 every decoding has the true prefix (the same scores), KL is
    never negative, teacher-forced the true log-loss averages to the source's entropy, and
    each decoding has one context distance from the true continuation (its own: 0)."""
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
    assert set(rows.decoding) == {"teacher", dr.REFERENCE, *dr.FREE} and rows.k.max() == 12 - 8
    first = rows[rows.k == 1].set_index("decoding")
    for d in (*dr.FREE, dr.REFERENCE):
        assert first.loc[d, "kl"] == pytest.approx(first.loc["teacher", "kl"], abs=1e-9)
    assert (rows.kl >= -1e-12).all() and (rows.kl_reverse >= -1e-12).all()
    teacher = rows[rows.decoding == "teacher"]
    assert teacher.nll_true.mean() == pytest.approx(teacher.entropy_true.mean(), abs=0.15)
    tv = rows.groupby("decoding").context_tv
    assert (tv.nunique() == 1).all() and tv.first()["teacher"] == 0.0
    assert 0 < tv.first()[dr.REFERENCE] < 1 and set(rows["train.budget"]) == {1}
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
