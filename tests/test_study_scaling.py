"""Scale (C10): the power-law fit recovers known parameters, the best-of-grid selection, the
FLOP count, every verdict on synthetic tables (inconclusive included) read on the
loss-versus-compute envelope of two budgets, the stated change of depth, and the section; the
verdicts and figures read the test split (test_set rows, the count n-grams' scope=test rows)
where it disagrees with validation, and a run without its test figure is inconclusive."""

import matplotlib
import numpy as np
import pandas as pd
import pytest

from seqbench.report import baselines, stability
from seqbench.report.plot import Figures
from seqbench.studies import scaling as sc
from seqbench.studies import study_jobs

matplotlib.use("Agg")

NS = (3e3, 7e3, 2e4, 5e4, 1e5)
FAMILY = {"lstm": "recurrent", "gru": "recurrent", "mingru": "scan", "transformer": "attention"}
SIZES = dict(zip(NS, sc.CPU_SIZES))
DEPTH = dict(zip(NS, (1, 1, 1, 2, 2)))  # the presets' n_layers: 1 up to 3xs, 2 from 2xs


@pytest.mark.parametrize(
    "l_inf,a,alpha",
    [(1.2, 8.0, 0.35), (0.0, 30.0, 0.2), (1.9, 400.0, 0.9), (0.5, 3.0, 0.07)],
)
def test_the_fit_recovers_known_parameters_from_exact_points(l_inf, a, alpha):
    n = np.geomspace(2e3, 2e5, 6)
    fit = sc.fit_power_law(n, l_inf + a * n**-alpha)
    assert fit["alpha"] == pytest.approx(alpha, rel=2e-3)
    assert fit["l_inf"] == pytest.approx(l_inf, abs=2e-3)
    assert fit["a"] == pytest.approx(a, rel=2e-2)


def test_the_fit_recovers_alpha_from_noisy_points_within_their_noise():
    rng = np.random.default_rng(0)
    n = np.geomspace(2e3, 2e6, 9)
    loss = 1.0 + 20.0 * n**-0.3 + rng.normal(0, 0.002, len(n))
    assert sc.fit_power_law(n, loss)["alpha"] == pytest.approx(0.3, abs=0.05)


def test_a_loss_that_does_not_fall_has_alpha_zero():
    assert sc.fit_power_law(NS, [2.0, 2.1, 2.2, 2.3, 2.4])["alpha"] == 0.0


def test_the_bootstrap_interval_holds_the_true_exponent_and_narrows_with_less_noise():
    rng = np.random.default_rng(1)

    def seeds(noise):
        return {n: list(1.0 + 20 * n**-0.4 + rng.normal(0, noise, 3)) for n in NS}

    wide, narrow = (
        sc.interval(sc.bootstrap_alpha(seeds(0.02))),
        sc.interval(sc.bootstrap_alpha(seeds(0.0005))),
    )
    assert narrow[0] <= 0.4 <= narrow[1]
    assert narrow[1] - narrow[0] < wide[1] - wide[0]


def _runs(curves: dict, seeds=(0, 1, 2), lrs=(1e-2,), spread=0.01, budget=1) -> pd.DataFrame:
    """Runs-table rows: model -> loss per size of NS; seeds scatter by +-spread, and a second
    learning rate (if any) is 0.5 nats worse; ``budget`` x 200 steps (train.budget)."""
    rows = []
    for m, losses in curves.items():
        for (n, loss), seed, lr in [(p, s, r) for p in zip(NS, losses) for s in seeds for r in lrs]:
            rows.append({
                "run": f"{m}-{n}-{seed}-{lr}-{budget}", "study": "scaling", "status": "complete",
                "model": m, "family": FAMILY[m], "seed": seed, "model.size": SIZES[n],
                "params_non_embedding": n, "lr": lr, "step": 200 * budget,
                "train.steps": 200 * budget, "train.budget": budget, "hp_n_layers": DEPTH[n],
                "val_loss": loss + spread * (seed - 1) + (0.5 if lr != lrs[0] else 0.0),
                "model._target_": "seqbench.models.recurrent.LSTM", "model.impl": "fused",
                "vocab_size": 64, "data.seq_len": 16,
                "train.batch_size": 4, "unigram_xent": 3.0,
            })  # fmt: skip
    return pd.DataFrame(rows)


def _cells(by_budget: dict, spread=0.01, model="lstm") -> pd.DataFrame:
    """``cells`` of one model from {budget: loss per size of NS}: the training FLOPs of a
    cell are 6 N x 1000 steps x its budget (compute grows with size and with budget)."""
    t = pd.concat(
        [_runs({model: losses}, spread=spread, budget=b) for b, losses in by_budget.items()]
    )
    flops = 6 * t.params_non_embedding * 1000 * t["train.budget"]
    t = t.assign(loss=t.val_loss, n=t.params_non_embedding, budget=t["train.budget"],
                 depth=t.hp_n_layers, flops=flops)  # fmt: skip
    return sc.cells(t, model)


FALLING = [2.6, 2.3, 2.0, 1.8, 1.7]  # falls with N
STEEP = [3.0, 2.4, 1.9, 1.6, 1.45]
FLAT = [2.0, 2.0, 2.0, 2.0, 2.0]
RISING = [1.8, 1.9, 2.0, 2.1, 2.2]
BUMP = [2.6, 2.0, 1.7, 1.9, 1.8]  # better at the top than the bottom, but 3 -> 4 hurts


@pytest.mark.parametrize(
    "losses,spread,expected",
    [
        (FALLING, 0.01, "supported"),
        (BUMP, 0.01, "nuanced"),
        (RISING, 0.01, "not supported"),
        (FLAT, 0.01, "inconclusive"),  # the intervals overlap
        (FALLING, 2.0, "inconclusive"),  # seeds too noisy to tell
    ],
)
def test_the_envelope_returns_each_verdict_at_one_budget(losses, spread, expected):
    v, measured = sc.on_envelope(_cells({1: losses}, spread=spread))
    assert v == expected, measured
    assert "3 seeds" in measured and "5 sizes at 1x the budget" in measured


def test_the_envelope_of_two_budgets_reads_larger_is_better_where_the_largest_size_makes_it():
    """At 1x the larger sizes are under-trained (xs is worse than 3xs: nuanced on one budget);
    at 4x xs makes the envelope's end, below every smaller size: supported."""
    short = [2.6, 2.3, 2.0, 2.1, 2.15]
    assert sc.on_envelope(_cells({1: short}))[0] == "nuanced"
    v, measured = sc.on_envelope(_cells({1: short, 4: [2.4, 2.0, 1.7, 1.6, 1.5]}))
    assert v == "supported", measured
    assert "envelope (lowest loss at each compute) 5xs 1x 2.6 -> 4xs 1x 2.3 -> 3xs 1x 2 -> " \
        "3xs 4x 1.7 -> 2xs 4x 1.6 -> xs 4x 1.5" in measured  # fmt: skip
    assert "the largest size makes its end: -0.1 [" in measured and "against 2xs 4x 1.6" in measured
    # at 4x a smaller size still makes the end: larger is better only up to it
    v, measured = sc.on_envelope(_cells({1: short, 4: [2.4, 2.0, 1.7, 1.6, 1.75]}))
    assert v == "nuanced" and "its end is 2xs, not the largest size: xs 4x 1.75" in measured


def test_a_change_of_depth_between_sizes_is_stated():
    _, measured = sc.on_envelope(_cells({1: FALLING}))
    assert "depth 1 -> 2 layers between 3xs and 2xs" in measured
    assert measured.count("depth ") == 1


def test_a_model_that_learned_no_more_than_the_unigram_fails_its_control():
    c = _cells({1: FALLING})
    v, measured = sc.on_envelope(c, unigram=1.8)  # 1.7 >= 0.9 x 1.8
    assert v == "inconclusive" and measured.startswith("failed the control")
    assert sc.on_envelope(c, unigram=3.0)[0] == "supported"


def test_too_few_sizes_or_one_seed_is_inconclusive():
    c = _cells({1: FALLING})
    assert sc.on_envelope(c[c.n.isin(NS[:2])])[0] == "inconclusive"
    one_seed = c.assign(losses=[v[:1] for v in c.losses])
    assert sc.on_envelope(one_seed)[0] == "inconclusive"  # no interval from one seed


def _table(curves, **kw):
    runs = _runs(curves, **kw)
    t = sc.best_of_grid(runs, ["model.size"])
    return t.assign(loss=t.val_loss, n=t.params_non_embedding, budget=t["train.budget"])


@pytest.mark.parametrize(
    "transformer,lstm,spread,expected",
    [
        (STEEP, [2.2, 2.1, 2.0, 1.95, 1.92], 0.003, "supported"),
        ([2.2, 2.1, 2.0, 1.95, 1.92], STEEP, 0.003, "not supported"),
        (STEEP, STEEP, 0.003, "inconclusive"),  # the same curve: the intervals overlap
    ],
)
def test_the_kaplan_comparison_returns_each_verdict(transformer, lstm, spread, expected):
    v, measured = sc.kaplan(_table({"transformer": transformer, "lstm": lstm}, spread=spread))
    assert v == expected, measured
    assert measured.startswith("alpha transformer")


def test_no_kaplan_verdict_without_the_lstm_or_attention():
    assert sc.kaplan(_table({"transformer": STEEP, "gru": FALLING})) is None
    assert sc.kaplan(_table({"lstm": STEEP, "mingru": FALLING})) is None


def test_the_best_of_the_grid_is_kept_per_cell():
    runs = _runs({"lstm": FALLING}, lrs=(1e-2, 3e-3))
    kept = sc.best_of_grid(runs, ["model.size"])
    assert len(kept) == len(runs) // 2 and set(kept.lr) == {1e-2}
    single = _runs({"lstm": FALLING})
    assert len(sc.best_of_grid(single, ["model.size"])) == len(
        single
    )  # one rate per cell: kept as it is


def test_flops_are_counted_per_row_linear_in_batch_and_growing_with_size():
    from omegaconf import OmegaConf

    from seqbench.config import model_configs

    def row(size, batch):
        node = OmegaConf.to_container(model_configs()["lstm"]) | {"size": size}
        return {f"model.{k}": v for k, v in node.items()} | {
            "vocab_size": 50, "data.seq_len": 8, "train.batch_size": batch,
            "model.n_heads": float("nan")}  # fmt: skip

    small = sc.flops_per_step(row("5xs", 2))
    assert sc.flops_per_step(row("5xs", 4)) == 2 * small > 0
    assert sc.flops_per_step(row("3xs", 2)) > small


UNIGRAM_TEST = {1: 3.0, 2: 2.5, 3: 2.2}  # the count models on the test windows


def _tables(curves, seeds=(0, 1, 2), budgets=(1,), test=None, count=UNIGRAM_TEST, spread=0.01):
    """Runs at every size, seed and budget with real model configs; each run's test loss
    (table test_set) is its validation loss, or ``test[model]`` per size where given; the
    count n-grams' scope=test rows score ``count``."""
    runs = pd.concat([_runs(curves, seeds=seeds, budget=b, spread=spread) for b in budgets],
                     ignore_index=True)  # fmt: skip
    scored = runs.val_loss.copy()
    if test:
        other = pd.concat([_runs(test, seeds=seeds, budget=b, spread=spread) for b in budgets])
        scored = runs.run.map(other.set_index("run").val_loss).fillna(scored)
    # real model configs so the FLOP count can build them
    targets = {"lstm": "seqbench.models.recurrent.LSTM", "gru": "seqbench.models.recurrent.GRU",
               "mingru": "seqbench.models.minrnn.MinGRU",
               "transformer": "seqbench.models.transformer.Transformer"}  # fmt: skip
    runs["model._target_"] = runs.model.map(targets)
    runs["model.impl"] = runs.model.map({"lstm": "fused", "gru": "fused", "mingru": "scan"})
    runs.loc[runs.model == "transformer", "model.max_len"] = 16
    runs["data.seq_len"], runs["train.batch_size"] = 16, 4
    tested = pd.DataFrame({"run": "test-" + runs.run, "train_run": runs.run, "study": "scaling",
                           "status": "complete", "test_loss": scored, "test_acc": 0.5,
                           "train_steps": runs.step, "test_sequences": 1024})  # fmt: skip
    ngram = pd.DataFrame([{"study": "scaling", "status": "complete", "scope": "test", "order": o,
                           "sample": s, "test_loss": v, "seq_len": 16, "batch_size": 4}
                          for o, v in count.items() for s in (0, 1, 2)])  # fmt: skip
    return {"runs": runs, "curves": pd.DataFrame(), "test_set": tested, "ngram": ngram}


def test_verdicts_name_every_family_and_the_kaplan_comparison():
    # the gru falls on validation but its test loss stays above 0.9 x the count unigram's on
    # the test windows (3.0): it fails the control
    tables = _tables({"transformer": STEEP, "lstm": FALLING, "mingru": RISING, "gru": FALLING},
                     test={"gru": [2.95, 2.9, 2.85, 2.8, 2.75]})  # fmt: skip
    out = sc.verdicts(tables)
    by = {v.experiment: v.verdict for v in out}
    assert by["scaling (lstm, recurrent; text, loss-compute envelope)"] == "supported"
    assert by["scaling (mingru, scan; text, loss-compute envelope)"] == "not supported"
    assert by["scaling (transformer, attention; text, loss-compute envelope)"] == "supported"
    assert by["scaling (gru, recurrent; text, loss-compute envelope)"] == "inconclusive"
    gru = next(v for v in out if v.experiment.startswith("scaling (gru"))
    assert gru.measured.startswith("failed the control: best test loss 2.75 >= 0.9 x count")
    lstm = next(v for v in out if v.experiment.startswith("scaling (lstm"))
    assert "5xs 1x 2.6 -> 4xs 1x 2.3 -> 3xs 1x 2 -> 2xs 1x 1.8 -> xs 1x 1.7" in lstm.measured
    assert "FLOPs; 5 sizes at 1x the budget" in lstm.measured
    assert {v.claim for v in out} == {"C10", "C10*"}
    assert sc.verdicts({"runs": pd.DataFrame(), "curves": pd.DataFrame()}) == []


def test_verdicts_run_on_a_perturbed_table_with_one_seed_left():
    out = sc.verdicts(_tables({"transformer": STEEP, "lstm": FALLING}, seeds=(0,)))
    assert {v.verdict for v in out} == {"inconclusive"}


def test_the_section_draws_its_figure_and_table(tmp_path):
    figs = Figures(tmp_path, FAMILY)
    md = sc.section(_tables({"transformer": STEEP, "lstm": FALLING, "gru": BUMP}), figs)
    assert "scaling_loss_vs_n_and_flops.png" in figs.written
    assert (tmp_path / "scaling_loss_vs_n_and_flops.png").is_file()
    assert "| transformer |" in md and "alpha" in md
    assert "Not measured here (the GPU profile's larger sizes): s, m, l." in md


def test_the_figure_says_nats_per_token_draws_the_unigram_and_the_alpha_intervals(tmp_path):
    """Issue 23: 'nats/char' where every other figure says nats/token, no unigram reference,
    and the alpha interval that decides C10* not drawn."""
    seen = []
    tables = _tables({"transformer": STEEP, "lstm": FALLING})
    sc.section(tables, Figures(tmp_path, FAMILY, on_save=lambda f, _: seen.append(f)))
    (fig,) = seen
    by_n, by_flops, alphas = fig.axes
    for ax in (by_n, by_flops):
        assert ax.get_ylabel() == "test loss (nats/token)" and "test split" in ax.get_title()
        assert any(t.get_text() == "count unigram 3.00" for t in ax.texts)
    t = sc.loss_table(tables)
    a, b = sc.by_size(t, "transformer"), sc.by_size(t, "lstm")
    drawn = {c.get_label(): c.lines[2][0].get_segments()[0][:, 0] for c in alphas.containers}
    for m in ("lstm", "transformer"):  # each model's alpha, its bootstrap interval
        assert np.allclose(drawn[m], sc.interval(sc.bootstrap_alpha(sc.by_size(t, m))))
    diff = sc.interval(sc.bootstrap_alpha(a) - sc.bootstrap_alpha(b, seed=1))
    assert np.allclose(drawn["difference transformer - lstm (C10*)"], diff)  # as kaplan() reads


def test_the_report_hands_the_envelope_both_budgets_at_once():
    """BUDGETS = "all": stability.own keeps the 4x runs beside the 1x ones (every other study
    reads 1x, with 4x as a check), and the verdict says it was read on both budgets."""
    tables = _tables({"transformer": STEEP, "lstm": FALLING}, budgets=(1, 4))
    own = stability.own(sc, tables)
    assert set(own["runs"]["train.budget"]) == {1, 4}
    assert set(stability.at(tables)["runs"]["train.budget"]) == {1}
    out = stability.annotate(sc, "scaling", tables, sc.verdicts(own))
    lstm = next(v for v in out if v.experiment.startswith("scaling (lstm"))
    assert lstm.budget == "1x+4x" and not lstm.preliminary
    assert "5 sizes at 1x, 4x the budget" in lstm.measured
    c10s = next(v for v in out if v.claim == "C10*")
    assert "(at 4x the budget)" in c10s.measured  # alpha read at the longest budget
    ones = _tables({"transformer": STEEP, "lstm": FALLING})
    (first, *_) = stability.annotate(sc, "scaling", ones, sc.verdicts(stability.own(sc, ones)))
    assert first.budget == "1x" and first.preliminary  # no 4x runs: preliminary


# --- the test split (issue 22 item 3): verdicts read test losses, never validation --------------
def test_the_envelope_follows_the_test_split_where_validation_disagrees():
    tables = _tables({"transformer": STEEP, "lstm": FALLING}, test={"lstm": RISING})
    by = {v.experiment: v for v in sc.verdicts(tables)}
    lstm = by["scaling (lstm, recurrent; text, loss-compute envelope)"]
    assert lstm.verdict == "not supported", lstm.measured  # falls on validation, rises on test
    assert "test-loss envelope (lowest loss at each compute) 5xs 1x 1.8" in lstm.measured
    flipped = _tables({"transformer": STEEP, "lstm": RISING}, test={"lstm": FALLING})
    assert sc.verdicts(flipped)[0].verdict == "supported"  # lstm: sorted first by family


def test_kaplan_reads_the_test_losses():
    val = {"transformer": STEEP, "lstm": [2.2, 2.1, 2.0, 1.95, 1.92]}
    swapped = {"transformer": [2.2, 2.1, 2.0, 1.95, 1.92], "lstm": STEEP}
    (c10s,) = [v for v in sc.verdicts(_tables(val, test=swapped, spread=0.003))
               if v.claim == "C10*"]  # fmt: skip
    assert c10s.verdict == "not supported", c10s.measured  # supported on validation
    (c10s,) = [v for v in sc.verdicts(_tables(swapped, test=val, spread=0.003))
               if v.claim == "C10*"]  # fmt: skip
    assert c10s.verdict == "supported", c10s.measured


@pytest.mark.parametrize("budget,job", [(1, "scaling_test"), (4, "scaling_long_test")])
def test_a_run_without_its_test_figure_is_inconclusive_and_names_the_job(budget, job):
    tables = _tables({"transformer": STEEP, "lstm": FALLING}, budgets=(1, 4))
    tested = tables["test_set"]
    gone = tested.train_run.str.startswith("lstm-50000.0-") & tested.train_run.str.endswith(
        f"-{budget}"
    )  # the lstm at 2xs, 3 seeds, at one budget
    tables["test_set"] = tested[~gone]
    by = {v.experiment: v for v in sc.verdicts(tables)}
    lstm = by["scaling (lstm, recurrent; text, loss-compute envelope)"]
    assert lstm.verdict == "inconclusive"
    assert lstm.measured == f"test set not measured for 3 of 30 runs (job {job}, what=test_set)"
    assert (
        by["scaling (transformer, attention; text, loss-compute envelope)"].verdict == "supported"
    )
    (c10s,) = [v for v in by.values() if v.claim == "C10*"]  # alpha is read at 4x the budget
    if budget == 4:
        assert c10s.verdict == "inconclusive" and f"(job {job}, what=test_set)" in c10s.measured
    else:  # the 1x runs only name their verdict beside it
        assert c10s.verdict == "supported" and "at 1x the budget: inconclusive" in c10s.measured
    del tables["test_set"]  # no test_set table at all: never a fallback to validation
    assert {v.verdict for v in sc.verdicts(tables)} == {"inconclusive"}


def test_without_the_count_models_test_rows_c10_is_inconclusive():
    tables = _tables({"transformer": STEEP, "lstm": FALLING}, count={2: 2.5, 3: 2.2})
    out = [v for v in sc.verdicts(tables) if v.claim == "C10"]
    assert {(v.verdict, v.measured) for v in out} == {("inconclusive", baselines.NOT_MEASURED)}


def test_the_figure_draws_test_losses(tmp_path):
    val = {"transformer": STEEP, "lstm": FALLING}
    test = {m: [v + 1.0 for v in losses] for m, losses in val.items()}
    seen = []
    tables = _tables(val, test=test)
    sc.section(tables, Figures(tmp_path, FAMILY, on_save=lambda f, _: seen.append(f)))
    by_n = seen[0].axes[0]
    drawn = {c.get_label(): list(c.lines[0].get_ydata()) for c in by_n.containers}
    assert drawn["lstm"] == pytest.approx([v + 1.0 for v in FALLING])  # seeds centred on it


def test_the_test_set_jobs_follow_their_training_jobs_with_the_same_sweep():
    """Issue 22 item 3: cpu and gpu score every trained run on the test split right after
    the training job; full scores its 4x runs (read by the envelope) after them, same rank."""
    jobs = study_jobs(sc.__name__)
    for profile in ("cpu", "gpu"):
        names = [j.name for j in jobs[profile]]
        assert names == ["scaling", "scaling_test", "scaling_ngram"], names
        train, test = jobs[profile][:2]
        assert test.entry == "measure" and test.args[:2] == ["-m", "what=test_set"]
        assert test.args[2:] == train.args[1:]  # the same sweep: its runs, by content key
    names = [j.name for j in jobs["full"]]
    assert names[-2:] == ["scaling_long", "scaling_long_test"], names
    long, test = jobs["full"][-2:]
    assert test.rank == long.rank and test.args[2:] == long.args[1:]


def test_the_count_test_levels_average_the_runs_own_data_seeds():
    tables = _tables({"transformer": STEEP, "lstm": FALLING}, seeds=(0, 1))
    tables["ngram"]["test_loss"] += tables["ngram"]["sample"]  # seed 2 would read 2 higher
    assert sc.count_levels(tables) == {o: pytest.approx(v + 0.5) for o, v in UNIGRAM_TEST.items()}
