"""Claims studies C5-C8: the verdict rules on synthetic tables (every verdict reachable) and the
report sections rendering from run-like tables."""

import matplotlib
import pandas as pd
import pytest

from seqbench.report.sections import data_efficiency, mqar, objectives, posenc, positions, recall

matplotlib.use("Agg")


# --- verdict rules on synthetic tables: every verdict must be reachable -------------------
def _recall(reaches):
    rows = []
    for model, reach in reaches.items():
        for d in (4, 8, 16, 32, 64, 256):
            rows.append(
                {
                    "model": model,
                    "distance": d,
                    "acc": 1.0 if d <= reach else 0.1,
                    "acc_std": 0.01,
                    "seeds": 3,
                }
            )
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    "reaches,expected",
    [
        ({"transformer": 256, "lstm": 4, "gru": 16}, "supported"),
        ({"transformer": 32, "lstm": 4, "gru": 16}, "nuanced"),
        ({"transformer": 16, "lstm": 64, "mingru": 4}, "not supported"),
    ],
)
def test_recall_verdicts(reaches, expected):
    assert recall.verdict(_recall(reaches))[0] == expected


def test_recall_without_any_solved_distance_gives_no_verdict():
    assert recall.verdict(_recall({"transformer": 0, "lstm": 0})) is None


def _mqar(transformer_acc, rec_acc):
    rows = [
        {
            "setting": s,
            "seq_len": t,
            "d_model": d,
            "model": m,
            "acc": a,
            "acc_std": 0.0,
            "chance": 1 / 32,
        }
        for s, t in (("T=64, kv=4", 64), ("T=128, kv=8", 128))
        for d in (32, 64)
        for m, a in (("transformer", transformer_acc[(t, d)]), ("lstm", rec_acc))
    ]
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    "tr,expected",
    [
        ({(64, 32): 1, (64, 64): 1, (128, 32): 1, (128, 64): 1}, "supported"),
        ({(64, 32): 1, (64, 64): 1, (128, 32): 0.6, (128, 64): 0.6}, "nuanced"),
        ({(64, 32): 0.6, (64, 64): 0.6, (128, 32): 0.6, (128, 64): 0.6}, "not supported"),
    ],
)
def test_mqar_verdicts(tr, expected):
    assert mqar.verdict(_mqar(tr, 0.62))[0] == expected


def test_mqar_unlearned_cells_give_no_verdict():
    low = {k: 0.1 for k in ((64, 32), (64, 64), (128, 32), (128, 64))}  # < 4 x chance 1/32
    assert mqar.verdict(_mqar(low, 0.05)) is None
    started = {k: 0.2 for k in low}  # >= 4 x chance: informative, and the Transformer leads
    assert mqar.verdict(_mqar(started, 0.05))[0] == "supported"


def _curves(slopes):
    rows = [
        {"study": "s", "seq_len": 64, "model": m, "position": t, "loss": 3 - k * t / 64, "seeds": 1}
        for m, k in slopes.items()
        for t in range(64)
    ]
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    "slopes,expected",
    [
        ({"transformer": 1.0, "lstm": 0.2, "gru": 0.5}, "supported"),
        ({"transformer": 0.4, "lstm": 0.2, "gru": 0.5}, "nuanced"),
        ({"transformer": 0.1, "lstm": 0.2, "rnn": 0.5}, "not supported"),
    ],
)
def test_position_verdicts(slopes, expected):
    assert positions.verdict(_curves(slopes))[0] == expected


def test_late_gain_is_the_second_minus_last_quarter():
    curve = _curves({"lstm": 1.0})
    assert positions.late_gain(curve) == pytest.approx(0.5, abs=0.02)  # slope 1 over T, T/2 apart


def _posenc(none_acc):
    rows = [
        {"task": "copy", "pos": p, "acc": a, "acc_std": 0.0, "seeds": 2, "vocab_size": 16}
        for p, a in (("none", none_acc), ("sinusoidal", 1.0), ("rope", 0.98))
    ]
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    "none_acc,bidir_error,expected",
    [
        (0.07, 1e-7, "supported"),  # no-PE copy at chance 1/15: no order at all
        (0.40, 1e-7, "nuanced"),  # bag of words, but the causal model learns some order
        (0.40, 1e-2, "not supported"),  # the bidirectional model is not even equivariant
        (1.00, 1e-7, "not supported"),  # positions add nothing
    ],
)
def test_posenc_verdicts(none_acc, bidir_error, expected):
    checks = {"bidir_error": bidir_error, "causal_error": 0.8}
    assert posenc.verdict(_posenc(none_acc), checks)[0] == expected


def test_order_degree_is_chance_corrected():
    assert posenc.order_degree(_posenc(1 / 15)) == pytest.approx(0.0, abs=1e-9)
    assert posenc.order_degree(_posenc(1.0)) == pytest.approx(1.0)
    at_chance = _posenc(0.5).assign(acc=1 / 15)  # nothing learned copy: no degree, no verdict
    assert posenc.order_degree(at_chance) is None
    assert posenc.verdict(at_chance, {"bidir_error": 1e-7, "causal_error": 0.8}) is None


def _losses(tr, rec):
    ns = (10, 100, 1000, 10000)
    return pd.DataFrame(
        [
            {"model": m, "n_train": n, "loss": v[i], "loss_std": 0.0, "seeds": 1}
            for m, v in (("transformer", tr), ("lstm", rec))
            for i, n in enumerate(ns)
        ]
    )


@pytest.mark.parametrize(
    "tr,steps,expected",
    [
        ((5, 3, 2.1, 1.5), {"lstm": 300, "transformer": 100}, "supported"),
        ((5, 3, 2.1, 1.5), {"lstm": 100, "transformer": 300}, "nuanced"),
        ((3, 2.5, 2.4, 2.35), {"lstm": 100, "transformer": 300}, "not supported"),
    ],
)
def test_data_efficiency_verdicts(tr, steps, expected):
    v, measured = data_efficiency.verdict(_losses(tr, (4, 2.5, 2.0, 1.8)), steps)
    assert v == expected
    if expected != "not supported":
        assert "crossing at N 1000–10000" in measured


def test_steps_to_threshold_from_curves():
    runs = pd.DataFrame(
        [
            {
                "run": m,
                "study": "data_efficiency",
                "status": "complete",
                "model": m,
                "n_train": 100,
                "vocab_size": 100,
            }
            for m in ("a", "b")
        ]
    )
    steps = [25, 50, 75, 100]
    curves = pd.DataFrame(
        [
            {"run": m, "model": m, "step": s, "val_loss": v}
            for m, vals in (("a", (4, 3, 2.5, 2.0)), ("b", (3, 2.2, 2.1, 2.05)))
            for s, v in zip(steps, vals)
        ]
    )
    found, tau = data_efficiency.steps_to_threshold(curves, runs)
    # worst best = 2.05; tau = 2.05 + 0.1 (ln 100 - 2.05) = 2.305
    assert tau == pytest.approx(2.05 + 0.1 * (4.60517 - 2.05), abs=1e-4)
    assert found == {"a": 100, "b": 50}


def _objectives(causal, masked, flops_masked=1.0):
    rows = []
    for i, (c, m) in enumerate(zip(causal, masked)):
        steps = 100 * 2**i
        rows += [
            {
                "objective": "causal",
                "steps": steps,
                "train_flops": 1e9 * steps,
                "prefix_loss": c,
                "targets_per_pass": 1024,
            },
            {
                "objective": "masked",
                "steps": steps,
                "train_flops": flops_masked * 1e9 * steps,
                "prefix_loss": m,
                "targets_per_pass": 154,
            },
        ]
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    "causal,masked,flops,expected",
    [
        ((2.4, 2.2, 2.0), (3.0, 2.9, 2.8), 1.0, "supported"),
        ((2.4, 2.2, 2.0), (2.3, 2.3, 2.3), 1.0, "nuanced"),
        ((2.4, 2.2, 2.0), (3.0, 2.9, 2.8), 1.5, "nuanced"),  # compute not matched
        ((3.0, 2.9, 2.8), (2.4, 2.2, 2.0), 1.0, "not supported"),
    ],
)
def test_objective_verdicts(causal, masked, flops, expected):
    v, measured = objectives.verdict(_objectives(causal, masked, flops))
    assert v == expected and "6.6x" in measured


# --- sections render from a run-like table set --------------------------------------------
def test_sections_render_figures_and_claims(tmp_path):
    runs = pd.DataFrame(
        [
            {
                "run": f"r{m}{d}{s}",
                "study": "recall",
                "status": "complete",
                "model": m,
                "task": "lagrecall",
                "distance": d,
                "seed": s,
                "val_acc": acc,
            }
            for m, reach in (("transformer", 64), ("gru", 8))
            for d in (4, 8, 16, 64)
            for s in (0, 1, 2)
            for acc in [1.0 if d <= reach else 0.1]
        ]
    )
    tables = {"runs": runs, "curves": pd.DataFrame(), "positions": pd.DataFrame()}
    md = recall.render(tables, tmp_path)
    assert "recall_vs_distance.png" in md and (tmp_path / "recall_vs_distance.png").exists()
    (claim,) = recall.claims(tables)
    assert claim.claim == "C5" and claim.verdict == "supported" and "gru 8" in claim.measured
    for section in (mqar, positions, posenc, data_efficiency, objectives):
        assert section.claims(tables) == []  # their studies did not run: "not measured"
        assert isinstance(section.render(tables, tmp_path), str)
