"""Scale (C10): the power-law fit recovers known parameters, the best-of-grid selection, the
FLOP count, every verdict on synthetic tables (inconclusive included) and the section."""

import matplotlib
import numpy as np
import pandas as pd
import pytest

from seqbench.report.plot import Figures
from seqbench.studies import scaling as sc

matplotlib.use("Agg")

NS = (3e3, 7e3, 2e4, 5e4, 1e5)
FAMILY = {"lstm": "recurrent", "gru": "recurrent", "mingru": "scan", "transformer": "attention"}
SIZES = dict(zip(NS, sc.CPU_SIZES))


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


def _runs(curves: dict, seeds=(0, 1, 2), lrs=(1e-2,), spread=0.01) -> pd.DataFrame:
    """Runs-table rows: model -> loss per size of NS; seeds scatter by +-spread, and a second
    learning rate (if any) is 0.5 nats worse."""
    rows = []
    for m, losses in curves.items():
        for (n, loss), seed, lr in [(p, s, r) for p in zip(NS, losses) for s in seeds for r in lrs]:
            rows.append({
                "run": f"{m}-{n}-{seed}-{lr}", "study": "scaling", "status": "complete",
                "model": m, "family": FAMILY[m], "seed": seed, "model.size": SIZES[n],
                "params_non_embedding": n, "lr": lr, "step": 200, "train.steps": 200,
                "val_loss": loss + spread * (seed - 1) + (0.5 if lr != lrs[0] else 0.0),
                "model._target_": "seqbench.models.recurrent.LSTM", "model.impl": "fused",
                "vocab_size": 64, "data.seq_len": 16,
                "train.batch_size": 4, "unigram_xent": 3.0,
            })  # fmt: skip
    return pd.DataFrame(rows)


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
def test_improves_returns_each_verdict(losses, spread, expected):
    t = _runs({"lstm": losses}, spread=spread).assign(
        loss=lambda d: d.val_loss, n=lambda d: d.params_non_embedding
    )
    v, measured = sc.improves(sc.by_size(t, "lstm"))
    assert v == expected, measured
    assert "3 seeds" in measured and "5 sizes" in measured


def test_a_model_that_learned_no_more_than_the_unigram_fails_its_control():
    t = _runs({"lstm": FALLING}).assign(
        loss=lambda d: d.val_loss, n=lambda d: d.params_non_embedding
    )
    v, measured = sc.improves(sc.by_size(t, "lstm"), unigram=1.8)  # 1.7 >= 0.9 x 1.8
    assert v == "inconclusive" and measured.startswith("failed the control")
    assert sc.improves(sc.by_size(t, "lstm"), unigram=3.0)[0] == "supported"


def test_too_few_sizes_or_one_seed_is_inconclusive():
    t = _runs({"lstm": FALLING}).assign(
        loss=lambda d: d.val_loss, n=lambda d: d.params_non_embedding
    )
    two = {n: v for n, v in sc.by_size(t, "lstm").items() if n in NS[:2]}
    assert sc.improves(two)[0] == "inconclusive"
    one_seed = {n: v[:1] for n, v in sc.by_size(t, "lstm").items()}
    assert sc.improves(one_seed)[0] == "inconclusive"  # no interval from one seed


def _table(curves, **kw):
    runs = _runs(curves, **kw)
    t = sc.best_of_grid(runs, ["model.size"])
    return t.assign(loss=t.val_loss, n=t.params_non_embedding)


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


def _tables(curves, seeds=(0, 1, 2)):
    runs = _runs(curves, seeds=seeds)
    # real model configs so the FLOP count can build them
    targets = {"lstm": "seqbench.models.recurrent.LSTM", "gru": "seqbench.models.recurrent.GRU",
               "mingru": "seqbench.models.minrnn.MinGRU",
               "transformer": "seqbench.models.transformer.Transformer"}  # fmt: skip
    runs["model._target_"] = runs.model.map(targets)
    runs["model.impl"] = runs.model.map({"lstm": "fused", "gru": "fused", "mingru": "scan"})
    runs.loc[runs.model == "transformer", "model.max_len"] = 16
    runs["data.seq_len"], runs["train.batch_size"] = 16, 4
    return {"runs": runs, "curves": pd.DataFrame()}


def test_verdicts_name_every_family_and_the_kaplan_comparison():
    tables = _tables({"transformer": STEEP, "lstm": FALLING, "mingru": RISING, "gru": FALLING})
    tables["runs"].loc[tables["runs"].model == "gru", "unigram_xent"] = 1.0  # failed control
    out = sc.verdicts(tables)
    by = {v.experiment: v.verdict for v in out}
    assert by["scaling (lstm, recurrent; text, same tokens)"] == "supported"
    assert by["scaling (mingru, scan; text, same tokens)"] == "not supported"
    assert by["scaling (transformer, attention; text, same tokens)"] == "supported"
    assert by["scaling (gru, recurrent; text, same tokens)"] == "inconclusive"
    lstm = next(v for v in out if v.experiment.startswith("scaling (lstm"))
    assert "loss 2.6 [2.58, 2.62] at N=3000 -> 1.7 [1.68, 1.72] at N=100000 (33x)" in lstm.measured
    assert "training compute" in lstm.measured and "FLOPs" in lstm.measured
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
        assert ax.get_ylabel() == "held-out loss (nats/token)"
        assert any(t.get_text().startswith("unigram ") for t in ax.texts)
    t = sc.loss_table(tables["runs"])
    a, b = sc.by_size(t, "transformer"), sc.by_size(t, "lstm")
    drawn = {c.get_label(): c.lines[2][0].get_segments()[0][:, 0] for c in alphas.containers}
    for m in ("lstm", "transformer"):  # each model's alpha, its bootstrap interval
        assert np.allclose(drawn[m], sc.interval(sc.bootstrap_alpha(sc.by_size(t, m))))
    diff = sc.interval(sc.bootstrap_alpha(a) - sc.bootstrap_alpha(b, seed=1))
    assert np.allclose(drawn["difference transformer - lstm (C10*)"], diff)  # as kaplan() reads
