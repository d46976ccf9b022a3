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
    # the verdict reads test figures, which score each run's final model: the stability
    # column does not cut it at half its budget (stability._tested; the 4x runs check that)
    assert "at half the budget" not in annotated.stability


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


# --- the full profile's T=64 cells (issue 22): read when present, the T=16 cells beside them ---
SHORT, LONG = (16, 2), ((64, 4), (64, 8))  # the quick profile's cell; the full profile's
ZOOLOGY = (1e-4, 4.64e-4, 2.15e-3, 1e-2)


def _with_long(long_table, short_table, lrs=(2.15e-3,)):
    """The quick profile's T=16 runs (the lr calibrated once) beside T=64 runs at ``lrs`` (a
    per-cell sweep when several): accuracies per (model, setting) from the two tables."""
    short = _runs(_acc(short_table), settings=(CONTROL, SHORT))
    table = long_table if callable(long_table) else _acc(long_table)
    return pd.concat([short, _runs(table, settings=LONG, lrs=lrs)], ignore_index=True)


LEVEL_16 = {m: {SHORT: 0.99} for m in ("transformer", "gru", "lstm")}  # read, 2/3 or 1/3
AHEAD_16 = {"transformer": {SHORT: 0.99}, "gru": {SHORT: 0.5}, "lstm": {SHORT: 0.5}}
BOTH = {LONG[0]: 0.99, LONG[1]: 0.99}
FAILS = {LONG[0]: 0.3, LONG[1]: 0.2}


@pytest.mark.parametrize(
    "long_table,short_table,expected",
    [
        ({"transformer": BOTH, "gru": FAILS, "lstm": FAILS}, LEVEL_16, "supported"),
        ({"transformer": BOTH, "gru": {LONG[0]: 0.99, LONG[1]: 0.2}, "lstm": FAILS}, LEVEL_16,
         "nuanced"),
        ({"transformer": BOTH, "gru": BOTH, "lstm": BOTH}, AHEAD_16, "not supported"),
        # T=64 with 8 pairs: no model solves it within its cap, so it cannot count either way
        ({"transformer": {LONG[0]: 0.99, LONG[1]: 0.15}, "gru": FAILS, "lstm": FAILS}, AHEAD_16,
         "inconclusive"),
    ],
)  # fmt: skip
def test_the_t64_cells_decide_each_verdict(long_table, short_table, expected):
    """Read on T=16 as well, each table would give another verdict (supported -> nuanced at
    2/3 ahead, not supported -> nuanced at 1/3): the T=16 cells are shown, never read."""
    v, measured = _verdict(_with_long(long_table, short_table))
    assert v == expected, measured
    assert "cells (" in measured and "of T=64, kv=4; T=64, kv=8;" in measured
    assert "test accuracy at T=64, kv=8, d_model 64: gru" in measured
    assert "shown, not read: attention " in measured and "at T=16, kv=2, d_model 64:" in measured


def test_the_t16_control_line_is_shown_but_never_decides():
    long_table = {"transformer": BOTH, "gru": FAILS, "lstm": FAILS}
    ahead, level = (_verdict(_with_long(long_table, t)) for t in (AHEAD_16, LEVEL_16))
    assert ahead[0] == level[0] == "supported"
    assert "shown, not read: attention ahead at T=16, kv=2" in ahead[1]
    assert "shown, not read: attention not ahead at T=16, kv=2" in level[1]
    cells = study.cell_table(study.mqar_runs(_with_long(long_table, LEVEL_16)))
    assert study.deciding(cells) == ["T=64, kv=4", "T=64, kv=8"]
    assert study.control_setting(cells) == "T=16, kv=1"  # still each model's gate
    # the quick profile (no T >= 64): its one short cell decides, as before
    quick = study.cell_table(study.mqar_runs(_runs(_acc(LEVEL_16), settings=(CONTROL, SHORT))))
    assert study.deciding(quick) == ["T=16, kv=2"] and study.verdict(quick)[0] == "not supported"


def _swept(m, setting, w, s, lr):
    """Zoology's finding at T=64: the Transformer solves each cell at one rate only (4.64e-4
    with 4 pairs, 2.15e-3 with 8), the recurrences do best at the top rate and stay short."""
    if m == "transformer":
        best = 4.64e-4 if setting == LONG[0] else 2.15e-3
        return 0.99 + 0.002 * s if lr == best else 0.27
    return (0.3 if lr == 1e-2 else 0.2) + 0.005 * s


def test_the_best_rate_of_the_grid_is_kept_per_model_and_cell():
    runs = _with_long(_swept, LEVEL_16, lrs=ZOOLOGY)
    ok = study.mqar_runs(runs)
    kept = ok[ok.seq_len == 64].groupby(["model", "setting"]).lr.unique()
    assert list(kept["transformer", "T=64, kv=4"]) == [4.64e-4]
    assert list(kept["transformer", "T=64, kv=8"]) == [2.15e-3]
    assert {float(v[0]) for k, v in kept.items() if k[0] != "transformer"} == {1e-2}
    assert len(ok[ok.seq_len == 64]) == 3 * 2 * 3  # one rate per (model, cell), three seeds
    cells = study.cell_table(ok).set_index(["model", "setting"])
    assert cells.at[("transformer", "T=64, kv=4"), "lr"] == "0.000464 (best of 4)"
    assert cells.at[("gru", "T=64, kv=8"), "lr"] == "0.01 (best of 4, top edge)"
    assert cells.at[("gru", "T=16, kv=2"), "lr"] == "0.00215"  # calibrated: no grid here
    v, measured = study.verdict(study.cell_table(ok))
    assert (
        v == "supported"
        and "transformer 0.99" in measured
        and "at lr 0.00215 (best of 4)" in measured
    )
    # one shared rate for every cell (the top of the grid) leaves attention at 0.27 too:
    # no model solves a T=64 cell, so nothing is decided
    shared = runs[(runs.lr == 1e-2) | (runs["data.seq_len"] == 16)]
    assert _verdict(shared)[0] == "inconclusive"


def test_the_section_says_how_each_setting_chose_its_rate(tmp_path):
    runs = _with_long(_swept, LEVEL_16, lrs=ZOOLOGY)
    md = study.section({"runs": runs}, Figures(tmp_path, FAMILIES))
    assert "Learning rate at T=16, kv=1 and T=16, kv=2: calibrated once per model" in md
    assert "Learning rate at T=64, kv=4 and T=64, kv=8: best of the swept grid" in md
    assert "the full CPU profile" in md and "| T=16, kv=2 | 64 | gru |" in md
    assert "(shown, not read) |" in md and "| 0.01 (best of 4, top edge) |" in md
    quick = study.section({"runs": _runs(_acc(LEVEL_16), settings=(CONTROL, SHORT))},
                          Figures(tmp_path, FAMILIES))  # fmt: skip
    assert "the quick CPU profile" in quick and "shown, not read" not in quick


def test_bench_jobs():
    from tests.conftest import compose_cfg

    names = {p: [j.name for j in jobs] for p, jobs in study_jobs(study.__name__).items()}
    cpu = ["mqar", "mqar_attention", "mqar_test", "mqar_attention_test"]
    assert names == {
        "smoke": ["mqar", "mqar_test"],
        "cpu": cpu,
        "full": [*cpu, *(n.replace("mqar", "mqar_long") for n in cpu)],
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


def test_the_full_profile_sweeps_zoologys_grid_in_the_t64_cells():
    jobs = study_jobs(study.__name__)
    full = {j.name: j for j in jobs["full"]}
    for job in jobs["cpu"]:  # the cpu runs, found again by content key
        assert full[job.name].args == job.args and full[job.name].rank == job.rank
    for name in ("mqar_long", "mqar_long_attention", "mqar_long_test", "mqar_long_attention_test"):
        job, args = full[name], " ".join(full[name].args)
        assert job.rank == 43 and "train.lr_grid=null" in job.args  # swept, not calibrated
        rates = next(a for a in job.args if a.startswith("train.lr="))
        assert [float(v) for v in rates.split("=")[1].split(",")] == list(ZOOLOGY)[1:]
        assert "{seq_len:64,num_kv_pairs:4},{seq_len:64,num_kv_pairs:8}" in args
        assert ("what=test_set" in job.args) == name.endswith("_test")
        assert ("model.pos=learned" in job.args) == ("attention" in name)


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


def test_a_verdict_read_on_the_full_profiles_t64_cells_is_not_preliminary():
    """MQAR's full profile adds cells (T=64, the rate swept per cell), not a 4x budget: read
    there, the verdict is the full profile's; read on the quick profile's T=16 cells alone,
    it is preliminary."""
    table = {"transformer": SOLVED, "gru": {CELLS[0]: 0.5, CELLS[1]: 0.3},
             "lstm": {CELLS[0]: 0.4, CELLS[1]: 0.2}}  # fmt: skip
    runs = _runs(_acc(table)).assign(step=CAP)
    tables = {"runs": runs.drop(columns="test_acc"), "test_set": measured_test_set(runs)}
    (v,) = annotate(study, "mqar", tables, study.verdicts(tables))
    assert study.confirmed(tables) and not v.preliminary
    short = runs[runs["data.seq_len"] < 64]
    quick = {"runs": short.drop(columns="test_acc"), "test_set": measured_test_set(short)}
    (q,) = annotate(study, "mqar", quick, study.verdicts(quick))
    assert not study.confirmed(quick) and q.preliminary
