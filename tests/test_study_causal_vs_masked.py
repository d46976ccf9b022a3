"""Causal versus masked at equal counted compute (C8): every verdict, the control at every
budget (a failing budget left out and named), steps from the training runs, the figure; the
verdict read on the test split only (issue 22 item 3)."""

import matplotlib
import pandas as pd
import pytest

from seqbench.data import TEST_SEQUENCES
from seqbench.report import baselines
from seqbench.report.plot import Figures
from seqbench.studies import causal_vs_masked as cvm
from seqbench.studies import study_jobs
from tests import ngram_rows

matplotlib.use("Agg")
UNIGRAM = 3.0
BIGRAM = 2.6  # the count bigram on the windows own_loss scores: the control
T, WINDOWS = 64, TEST_SEQUENCES  # prefix_eval's own_loss on the test split: 1024 windows
VAL_WINDOWS = 8 * 32  # on validation: what.eval_batches x what.batch_size windows


def _objectives(causal, masked, flops_masked=1.0, prefixes=(4, 8), seeds=(0, 1, 2),
                own_masked=2.5, spread=0.01, split="test"):  # fmt: skip
    """objectives rows as prefix_eval writes them: one per (objective, budget, seed, prefix).
    causal/masked: prefix loss per budget (a tuple per budget gives one value per seed);
    own_masked: the masked model's own held-out loss (a list: one per budget); split: the
    windows they were read on (what.split)."""
    rows = []
    for i, (c, m) in enumerate(zip(causal, masked)):
        steps = 100 * 2**i
        own_m = own_masked[i] if isinstance(own_masked, list) else own_masked
        for obj, loss, flops, targets, own in (
            ("causal", c, 1e9 * steps, 1024, 2.2),
            ("masked", m, flops_masked * 1e9 * steps, 154, own_m),
        ):
            for k, seed in enumerate(seeds):
                value = loss[k] if isinstance(loss, tuple) else loss + spread * k
                rows += [
                    {"run": f"{obj}{steps}-{seed}", "study": "causal_vs_masked",
                     "status": "complete", "model": "transformer", "family": "attention",
                     "objective": obj, "steps": steps, "seed": seed, "prefix_len": p,
                     "prefix_loss": value + 0.1 / p, "prefix_acc": 0.3, "train_flops": flops,
                     "targets_per_pass": targets, "tokens_per_pass": 1024, "lr": 1e-2,
                     "val_loss": own, "own_loss": own + spread * k, "unigram_xent": UNIGRAM,
                     "own_n": (WINDOWS if split == "test" else VAL_WINDOWS) * T,
                     "flops_per_step": flops / steps, "split": split,
                     "train_run": f"train-{obj}{steps}-{seed}"}
                    for p in prefixes
                ]  # fmt: skip
    return pd.DataFrame(rows)


def _ngram(bigram=BIGRAM, windows=WINDOWS, trigram=2.1):
    """The count models' rows of this study: on the validation windows (ngram_rows) and, per
    data seed 0-2, on that seed's first ``windows`` test windows (scope=test), as what=ngram
    writes them."""
    val = ngram_rows.table("causal_vs_masked", {2: bigram, 3: trigram}, T=T, eval_batches=8,
                           batch_size=VAL_WINDOWS // 8)  # fmt: skip
    test = [{"model": ngram_rows.ORDERS[o], "family": "count", "order": o, "k": 0.1,
             "sample": s, "data_seed": s, "scope": "test", "test_loss": level, "seq_len": T,
             "windows": windows, "study": "causal_vs_masked", "status": "complete"}
            for o, level in ((2, bigram), (3, trigram)) for s in (0, 1, 2)]  # fmt: skip
    return pd.concat([val, pd.DataFrame(test)], ignore_index=True)


def _verdict(rows):
    return cvm.verdicts_of({"objectives": rows, "ngram": _ngram()})


@pytest.mark.parametrize(
    "causal,masked,expected",
    [
        ((2.4, 2.2, 2.0), (3.0, 2.9, 2.8), "supported"),
        ((3.0, 2.9, 2.8), (2.4, 2.2, 2.0), "not supported"),
        ((2.4, 2.2, 2.0), (2.6, 2.3, 1.9), "nuanced"),  # better early, worse late
        # the seeds of the last budget straddle: its interval includes 0
        ((2.4, 2.2, (1.9, 2.0, 2.3)), (3.0, 2.9, (2.1, 2.1, 2.1)), "inconclusive"),
    ],
)
def test_objective_verdicts(causal, masked, expected):
    v, measured = _verdict(_objectives(causal, masked))
    assert v == expected, measured
    assert "6.6x" in measured and "at 400 steps" in measured and "3 seeds" in measured


def test_compute_not_matched_is_inconclusive():
    v, measured = _verdict(_objectives((2.4, 2.2), (3.0, 2.9), flops_masked=1.5))
    assert v == "inconclusive" and "compute not matched" in measured
    near = 1 + cvm.RULE.matched / 2
    v, measured = _verdict(_objectives((2.0,), (3.0,), flops_masked=near))
    assert v == "supported" and "matched within 2.5%" in measured


def test_a_masked_model_that_never_learned_its_own_task_fails_the_control():
    stuck = 2.98  # below the unigram (the old bar), above the count bigram: the plateau
    v, measured = _verdict(_objectives((2.4, 2.2), (3.0, 2.9), own_masked=stuck))
    assert v == "inconclusive" and "none compared" in measured
    assert "100 steps left out, own held-out loss not below the count bigram: masked 2.99 [" in (
        measured
    )
    assert "200 steps left out" in measured and "masked - causal: -" in measured


def test_a_budget_where_the_masked_model_fails_the_control_is_left_out_and_named():
    # at 100 steps the masked model is still on the plateau; at 200 and 400 it beats the bigram
    rows = _objectives((2.4, 3.0, 2.0), (3.0, 2.0, 2.8), own_masked=[2.98, 2.5, 2.5])
    v, measured = _verdict(rows)
    assert v == "nuanced", measured  # 200: masked better, 400: causal better; 100 not read
    assert "100 steps left out, own held-out loss not below the count bigram: masked" in measured
    assert "at 100 steps" not in measured and "nats at 200 steps" in measured
    assert "own held-out loss at 400 steps causal 2.21 [" in measured
    rows = _objectives((2.4, 2.2, 2.0), (3.0, 2.9, 2.8), own_masked=[2.98, 2.5, 2.5])
    assert _verdict(rows)[0] == "supported"  # every budget compared says causal


def test_steps_are_the_training_runs_own_at_4x_the_budget():
    """prefix_eval records the experiment's train.steps; the 4x runs trained four times as
    many (the runs table's cap), and the verdict, its FLOPs and the table read those."""
    rows = _objectives((2.4, 2.2), (3.0, 2.9))
    runs = pd.DataFrame({"run": rows.train_run.unique()})
    runs["train.steps"] = runs.run.str.extract(r"(\d+)-\d$")[0].astype(int) * 4
    per_seed = cvm.seed_table(rows, runs)
    assert sorted(per_seed.steps.unique()) == [400, 800]
    assert (per_seed.train_flops == 1e9 * per_seed.steps).all()
    v, measured = cvm.verdicts_of({"objectives": rows, "ngram": _ngram(), "runs": runs})
    assert v == "supported" and "at 800 steps" in measured and "8.00e+11 FLOPs" in measured


def test_one_seed_cannot_decide():
    v, _ = _verdict(_objectives((2.4, 2.2), (3.0, 2.9), seeds=(0,)))
    assert v == "inconclusive"


def test_no_verdict_without_both_objectives():
    causal_only = _objectives((2.0, 1.9), (3.0, 2.9)).query("objective == 'causal'")
    assert _verdict(causal_only) is None
    assert cvm.verdicts({"objectives": causal_only}) == []
    assert cvm.verdicts({}) == []  # prefix_eval never ran: no table at all


def test_incomplete_rows_are_left_out():
    rows = _objectives((2.4, 2.2), (3.0, 2.9))
    rows.loc[(rows.objective == "masked") & (rows.steps == 200), "status"] = "failed"
    assert len(cvm.budget_table(cvm.seed_table(rows))) == 3  # the failed budget: causal only
    (v,) = cvm.verdicts({"objectives": rows, "ngram": _ngram()})
    assert v.claim == "C8" and v.verdict == "supported" and "200 steps" not in v.measured
    assert v.rule == cvm.RULE.text and f"{cvm.RULE.matched:.0%}" in v.rule


def test_a_swept_lr_keeps_the_best_per_objective_and_budget():
    good = _objectives((2.4, 2.2), (3.0, 2.9))  # lr 1e-2
    bad = _objectives((3.5, 3.4), (3.6, 3.5)).assign(lr=3e-2)  # both worse at 3e-2
    per_seed = cvm.seed_table(pd.concat([good, bad]))
    assert set(per_seed.lr) == {1e-2} and len(per_seed) == 12  # 2 objectives, 2 budgets, 3 seeds
    # each objective gets its own best lr: a grid where 3e-2 suits the masked model
    better = _objectives((3.5, 3.4), (2.0, 1.9)).assign(lr=3e-2)
    per_seed = cvm.seed_table(pd.concat([good, better]))
    assert dict(per_seed.groupby("objective").lr.first()) == {"causal": 1e-2, "masked": 3e-2}
    assert _verdict(pd.concat([good, better]))[0] == "not supported"


def test_seed_table_averages_prefixes_per_seed():
    per_seed = cvm.seed_table(_objectives((2.4,), (3.0,), prefixes=(4, 8)))
    causal = per_seed[per_seed.objective == "causal"].set_index("seed").prefix_loss
    assert causal[0] == pytest.approx(2.4 + (0.1 / 4 + 0.1 / 8) / 2)
    assert len(per_seed) == 6


def test_section_draws_the_figure(tmp_path):
    tables = {"objectives": _objectives((2.4, 2.2, 2.0), (3.0, 2.9, 2.8)), "ngram": _ngram()}
    figs = Figures(tmp_path, {"transformer": "attention"})
    md = cvm.section(tables, figs)
    assert (tmp_path / "causal_vs_masked.png").stat().st_size > 1000
    assert figs.deciding == {"C8": ["causal_vs_masked.png"]}
    assert "(causal_vs_masked.png)" in md and "own_loss" in md
    assert "encoder on 15% masked tokens" in md  # 154 / 1024 targets per pass, as measured
    assert "| causal | 100 | 3 | 1e+11 | 2.43 [" in md  # with its interval
    empty = cvm.section({}, Figures(tmp_path, {}))
    assert "No completed prefix_eval" in empty


def test_bench_jobs():
    for profile in ("smoke", "cpu", "gpu"):
        job, ngram = study_jobs(cvm.__name__)[profile]
        assert job.name == "causal_vs_masked" and job.module == "seqbench.measure"
        assert job.args[:3] == ["-m", "what=prefix_eval", "+experiment=causal_vs_masked"]
        assert ngram.args[:3] == ["-m", "what=ngram", "+experiment=causal_vs_masked"]
        # the n-gram scores the windows prefix_eval's own_loss scores
        assert "what.batch_size=32" in ngram.args


@pytest.mark.parametrize("budgets", [2, 3])
def test_the_figure_has_units_plain_flop_ticks_and_explains_its_bars(budgets, tmp_path):
    """Issue 23: two of three y axes without units, mixed title sizes, error bars
    unexplained, and a two-point FLOP axis labelled '1.14e11'."""
    seen = []
    tables = {"objectives": _objectives((2.4, 2.2, 2.0)[:budgets], (3.0, 2.9, 2.8)[:budgets])}
    cvm.section(tables, Figures(tmp_path, {"transformer": "attention"},
                                on_save=lambda f, _: seen.append(f)))  # fmt: skip
    (fig,) = seen
    assert all("(nats/token)" in ax.get_ylabel() for ax in fig.axes)
    assert len({ax.title.get_fontsize() for ax in fig.axes}) == 1
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "error bars: 95% interval over 3 seeds" in legend
    for ax in fig.axes[:2]:  # 100, 200 (, 400) steps of 1e9 FLOPs each: GFLOP
        assert "(GFLOP)" in ax.get_xlabel()
        ticks = [t.get_text() for t in ax.get_xticklabels()]
        assert ticks == ["100", "200", "400"][:budgets]
        joined = {c.lines[0].get_linestyle() != "None" for c in ax.containers}
        assert joined == {budgets >= 3}  # two budgets are two points, not a trend


def test_the_control_is_the_count_bigram_on_the_same_windows_or_inconclusive():
    rows = _objectives((2.4, 2.2), (3.0, 2.9))
    assert cvm.verdicts_of({"objectives": rows})[0] == "inconclusive"  # no ngram rows at all
    v, measured = cvm.verdicts_of({"objectives": rows, "ngram": _ngram(windows=128)})
    assert v == "inconclusive" and baselines.NOT_MEASURED in measured  # other windows
    v, measured = cvm.verdicts_of({"objectives": rows, "ngram": _ngram(bigram=2.4)})
    assert v == "inconclusive" and "none compared" in measured  # 2.5 is not below 2.4
    assert "left out, own held-out loss not below the count bigram: masked 2.5" in measured
    assert "count bigram 2.40, trigram 2.10 nats" in measured
