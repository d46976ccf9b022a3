"""Study mqar (C5, Zoology): cells from run rows (intervals over seeds, the best lr of a swept
grid), the control rule, every verdict including inconclusive (a failed control, overlapping
intervals, a cell no model solves), families not names, the section and the bench jobs."""

import matplotlib
import pandas as pd
import pytest
from conftest import measured_test_set

from seqbench.report.plot import Figures
from seqbench.report.stability import annotate, half_budget, without_seed
from seqbench.sets import expand_sets
from seqbench.studies import experiment_files, study_jobs
from seqbench.studies import mqar as study

matplotlib.use("Agg")

FAMILIES = {"lstm": "recurrent", "gru": "recurrent", "transformer": "attention", "mingru": "scan"}
CONTROL = (16, 1)
CELLS = ((64, 4), (128, 8))  # (seq_len, kv pairs)
CAP = 1000


def _runs(acc_of, models=("transformer", "gru", "lstm"), settings=(CONTROL, *CELLS),
          widths=(64,), seeds=(0, 1, 2), lrs=(2.15e-3,)):  # fmt: skip
    """Run rows as collect() writes them; acc_of(model, (T, kv), width, seed, lr) -> accuracy.
    A run at or above 0.99 reached the criterion."""
    rows = []
    for m in models:
        for T, kv in settings:
            for w in widths:
                for s in seeds:
                    for lr in lrs:
                        acc = acc_of(m, (T, kv), w, s, lr)
                        rows.append(
                            {"run": f"{m}-{T}-{kv}-{w}-{s}-{lr}", "study": "mqar",
                             "status": "complete", "model": m, "family": FAMILIES[m],
                             "task": "mqar", "seed": s, "data.seq_len": T,
                             "data.num_kv_pairs": kv, "data.n_train": 20000, "model.d_model": w,
                             "hp_d_model": w, "params_non_embedding": 1000 * w, "vocab_size": 64,
                             "train.steps": CAP, "train.batch_size": 64, "train.eval_every": 50,
                             "train.lr_grid": [1e-4, 4.64e-4, 2.15e-3, 1e-2]
                             if len(lrs) == 1 else None,
                             "train.lr_control.data.seq_len": 16,
                             "train.lr_control.data.num_kv_pairs": 2, "lr": lr, "val_acc": acc,
                             "test_acc": acc,
                             "steps_to_criterion": 500 if acc >= 0.99 else None,
                             "criterion": "val_acc >= 0.99", "device": "cpu"}
                        )  # fmt: skip
    return pd.DataFrame(rows)


def _acc(table, control=1.0):
    """Accuracy per (model, setting) from ``table``, the same in every seed up to 0.005, and
    ``control`` for every model at the control."""

    def acc(m, setting, w, s, lr):
        if setting == CONTROL:
            return control(m) if callable(control) else control
        return min(1.0, table[m][setting] + 0.005 * s)

    return acc


def _verdict(runs):
    return study.verdict(study.cell_table(study.mqar_runs(runs)))


SOLVED = {CELLS[0]: 0.99, CELLS[1]: 0.99}


@pytest.mark.parametrize(
    "table,expected",
    [
        ({"transformer": SOLVED, "gru": {CELLS[0]: 0.5, CELLS[1]: 0.3}}, "supported"),
        ({"transformer": SOLVED, "gru": {CELLS[0]: 0.99, CELLS[1]: 0.3}}, "nuanced"),
        ({"transformer": SOLVED, "gru": SOLVED}, "not supported"),  # level everywhere
    ],
)
def test_each_verdict(table, expected):
    table["lstm"] = {CELLS[0]: 0.4, CELLS[1]: 0.2}
    v, measured = _verdict(_runs(_acc(table)))
    assert v == expected, measured
    assert "attention ahead of every recurrence in" in measured and "(3 seeds)" in measured


def test_a_scan_model_is_a_recurrence():
    table = {"transformer": SOLVED, "mingru": SOLVED}
    assert _verdict(_runs(_acc(table), models=("transformer", "mingru")))[0] == "not supported"


def test_overlapping_intervals_are_undecided_and_can_make_it_inconclusive():
    def acc(m, setting, w, s, lr):
        if setting == CONTROL:
            return 1.0
        if m == "transformer":
            return 0.99
        return {0: 0.99, 1: 0.6, 2: 0.99}[s] if setting == CELLS[1] else 0.4  # gru across

    runs = _runs(acc, models=("transformer", "gru"))
    cells = study.cell_table(study.mqar_runs(runs))
    found = study.outcomes(cells, ["transformer"], ["gru"])
    assert found == {("T=64, kv=4", 64): "ahead", ("T=128, kv=8", 64): "undecided"}
    v, measured = study.verdict(cells)
    assert v == "inconclusive" and "(1 undecided)" in measured  # 1/2 nuanced or 2/2 supported


def test_a_cell_no_model_solves_did_not_converge():
    table = {"transformer": {CELLS[0]: 0.6, CELLS[1]: 0.5}, "gru": {CELLS[0]: 0.3, CELLS[1]: 0.3}}
    cells = study.cell_table(study.mqar_runs(_runs(_acc(table), models=("transformer", "gru"))))
    assert set(study.outcomes(cells, ["transformer"], ["gru"]).values()) == {"undecided"}
    assert study.verdict(cells)[0] == "inconclusive"  # attention leads, but nothing converged


def test_a_failed_control_leaves_the_model_out():
    table = {"transformer": SOLVED, "gru": {CELLS[0]: 0.5, CELLS[1]: 0.3},
             "lstm": {CELLS[0]: 0.99, CELLS[1]: 0.99}}  # fmt: skip
    fails = _acc(table, control=lambda m: 0.3 if m == "lstm" else 1.0)
    v, measured = _verdict(_runs(fails))
    assert v == "supported" and "left out, control T=16, kv=1 not solved: lstm" in measured
    every = _acc(table, control=lambda m: 1.0 if m == "transformer" else 0.3)
    assert _verdict(_runs(every))[0] == "inconclusive"  # no recurrence left to compare with


def test_no_verdict_without_both_families():
    runs = _runs(_acc({"transformer": SOLVED}), models=("transformer",))
    assert _verdict(runs) is None and study.verdicts({"runs": pd.DataFrame()}) == []


def test_the_best_lr_of_a_swept_grid_is_kept_per_cell():
    # at 4.64e-4 the Transformer solves both cells, at 1e-2 it is stuck at chance-of-two
    runs = _runs(lambda m, st, w, s, lr: 1.0 if lr < 1e-3 or st == CONTROL else 0.5,
                 models=("transformer",), lrs=(4.64e-4, 1e-2))  # fmt: skip
    ok = study.mqar_runs(runs)
    kept = ok.groupby("setting").lr.unique()
    assert list(kept["T=64, kv=4"]) == [4.64e-4] and list(kept["T=128, kv=8"]) == [4.64e-4]
    assert len(ok) == 9  # one lr per (setting, width), three seeds


def test_the_verdict_runs_on_the_perturbed_tables_of_the_stability_column():
    table = {"transformer": SOLVED, "gru": {CELLS[0]: 0.5, CELLS[1]: 0.3},
             "lstm": {CELLS[0]: 0.4, CELLS[1]: 0.2}}  # fmt: skip
    runs = _runs(_acc(table))
    curves = pd.DataFrame(
        [{"run": r.run, "study": "mqar", "model": r.model, "family": r.family, "task": "mqar",
          "step": step, "val_loss": 1.0, "val_acc": r.val_acc * step / CAP}
         for r in runs.itertuples() for step in range(100, CAP + 1, 100)]
    )  # fmt: skip
    runs = runs.assign(step=CAP)  # the test figures score the model at its last step
    test_set = measured_test_set(runs)
    tables = {"runs": runs.drop(columns="test_acc"), "curves": curves, "test_set": test_set}
    (v,) = study.verdicts(tables)
    assert v.verdict == "supported" and v.rule == study.RULE.text
    assert len(study.verdicts(without_seed(tables, 0))) == 1
    # at half the budget nothing has converged yet: the cells are undecided
    assert study.verdicts(half_budget(tables))[0].verdict == "inconclusive"
    (annotated,) = annotate(study, "mqar", tables, [v])
    assert "at half the budget: inconclusive" in annotated.stability


@pytest.mark.parametrize("widths", [(64,), (64, 128)])
def test_section_draws_accuracy_and_lists_every_cell(tmp_path, widths):
    table = {"transformer": SOLVED, "gru": {CELLS[0]: 0.5, CELLS[1]: 0.3},
             "lstm": {CELLS[0]: 0.4, CELLS[1]: 0.2}}  # fmt: skip
    md = study.section({"runs": _runs(_acc(table), widths=widths)}, Figures(tmp_path, FAMILIES))
    assert "![mqar_accuracy_vs_width](mqar_accuracy_vs_width.png)" in md
    assert (tmp_path / "mqar_accuracy_vs_width.png").exists()
    assert "| T=64, kv=4 | 64 | gru |" in md and "| control |" in md and "| ahead |" in md
    assert "data.seq_len=16, data.num_kv_pairs=2" in md and "CPU profile" in md
    assert "No completed runs" in study.section({"runs": pd.DataFrame()}, None)


def test_bench_jobs():
    from tests.conftest import compose_cfg

    names = {p: [j.name for j in jobs] for p, jobs in study_jobs(study.__name__).items()}
    assert names == {
        "smoke": ["mqar", "mqar_test"],
        "cpu": ["mqar", "mqar_attention", "mqar_test", "mqar_attention_test"],
        "gpu": ["mqar", "mqar_test", "mqar_attention", "mqar_attention_test"],
    }
    for jobs in study_jobs(study.__name__).values():
        for job in (j for j in jobs if j.entry == "train"):
            assert job.module == "seqbench.train" and job.args[:2] == ["-m", "+experiment=mqar"]
    for profile in ("cpu", "gpu"):  # Zoology's attention: learned absolute positions
        (att,) = [j for j in study_jobs(study.__name__)[profile] if j.name == "mqar_attention"]
        assert "model.pos=learned" in att.args
    gpu = " ".join(expand_sets(study_jobs(study.__name__)["gpu"][0].args))  # model=@set
    assert "data.vocab_size=8192" in gpu and "data.n_train=100000" in gpu
    assert "mingru" in gpu and "train.lr_grid=null" not in gpu  # calibrated, as on the CPU
    assert all(
        j.cap_s and j.rank < 9 for j in study_jobs(study.__name__)["gpu"]
    )  # inside the GPU budget
    cfg = compose_cfg(["+experiment=mqar"])
    assert list(cfg.train.lr_grid) == [1e-4, 4.64e-4, 2.15e-3, 1e-2]
    assert cfg.train.criterion == "val_acc" and cfg.train.target == 0.99
    assert cfg.model.n_layers in (None, 2) and cfg.data.n_train
    assert "seed: 0,1,2" in experiment_files()["mqar"].read_text()


@pytest.mark.parametrize("widths", [(64,), (64, 128)])
def test_the_figure_never_joins_settings_and_draws_chance(tmp_path, widths):
    """Issue 23: one width drew two categorical settings joined by a line under the title
    'every setting', with no chance line. Settings are categories: points, never a line;
    widths are numbers: a line per setting panel."""
    seen = []
    table = {"transformer": SOLVED, "gru": {CELLS[0]: 0.5, CELLS[1]: 0.3},
             "lstm": {CELLS[0]: 0.4, CELLS[1]: 0.2}}  # fmt: skip
    figs = Figures(tmp_path, FAMILIES, on_save=lambda f, _: seen.append(f))
    study.section({"runs": _runs(_acc(table), widths=widths)}, figs)
    (fig,) = seen
    for ax in fig.axes:
        texts = [t.get_text() for t in ax.texts]
        assert "chance 1/32" in texts  # values in the upper half of a 64-token vocabulary
        series = [*((c.get_label(), c.lines[0]) for c in ax.containers),
                  *((ln.get_label(), ln) for ln in ax.get_lines())]  # fmt: skip
        drawn = [ln for label, ln in series if label in table]
        joined = [ln for ln in drawn if ln.get_linestyle() not in ("None", "none", "")]
        assert bool(joined) == (len(widths) > 1) and drawn
        assert ax.get_title() and ax.get_title() != "every setting"
    if len(widths) == 1:
        assert "one width measured" in fig.axes[0].get_title()
