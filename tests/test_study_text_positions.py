"""Loss by position (C5, Kaplan Fig. 7): late gain, every verdict, the group rule, the figure."""

import json

import matplotlib
import pandas as pd
import pytest

from seqbench.report import baselines
from seqbench.report.plot import Figures
from seqbench.studies import study_jobs
from seqbench.studies import text_positions as tp
from tests import ngram_rows
from tests.conftest import FAMILY

matplotlib.use("Agg")

KNEE = tp.RULE.knee


COUNT = {0: 0.0, 1: 0.01, 2: -0.01}  # the count trigram's late gain per held-out sample


def _curve(slope, T):
    return [3 - slope * max(t - KNEE, 0) / T for t in range(T)]


def _tables(slopes: dict, T=256, study="core", seeds=(0, 1, 2), count=COUNT, test=True,
            test_count=None, **cols):  # fmt: skip
    """Runs and position curves: loss(t) = 3 - k (t - knee)/T past the knee, flat before.
    slopes: model -> k, or a tuple with one k per seed. The late gain is then about
    k (T - w - knee) / T with w = (T - knee) / 4. ``count``: the count trigram's late gain
    per held-out sample (ngram rows of the study at T), None for none. ``test``: each run's
    test_set row with the same curve on its test windows (a dict: model -> the test slopes),
    False for none; ``test_count``: the trigram's late gain per data seed's test windows
    (default: ``count``'s, seed s as sample s)."""
    runs, pos, tested = [], [], []
    for m, k in slopes.items():
        for i, s in enumerate(seeds):
            run = f"{study}-{m}-{T}-{s}"
            slope = k[i] if isinstance(k, tuple) else k + 0.01 * i
            runs.append({"run": run, "study": study, "status": "complete", "task": "text",
                         "model": m, "family": FAMILY[m], "seed": s, "data.seq_len": T,
                         "data.n_train": None, "val_loss": 2.0, "lr": 1e-2} | cols)  # fmt: skip
            pos += [{"run": run, "position": t, "count": 64, "loss": v}
                    for t, v in enumerate(_curve(slope, T))]  # fmt: skip
            if test:
                on_test = test[m] + 0.01 * i if isinstance(test, dict) else slope
                tested.append({"train_run": run, "study": study, "status": "complete",
                               "test_loss": 2.1, "test_acc": 0.4,
                               "test_position_loss": json.dumps(_curve(on_test, T))})  # fmt: skip
    ngram = ngram_rows.table(study, {3: 2.0}, gains=count, T=T) if count else pd.DataFrame()
    if count:
        ngram = pd.concat([ngram, _test_positions(ngram, test_count or count, T)])
    return {"runs": pd.DataFrame(runs), "positions": pd.DataFrame(pos), "ngram": ngram,
            "test_set": pd.DataFrame(tested)}  # fmt: skip


def _test_positions(ngram, gains: dict, T: int) -> pd.DataFrame:
    """The trigram's scope=test_position rows (sample = data seed): its validation sample's
    curve with that seed's late gain (what=ngram writes them per data seed)."""
    early = set(tp.windows(T)[0]) if tp.windows(T) else set()
    base = ngram[ngram.scope == "position"].drop_duplicates("model").iloc[0].to_dict()
    return pd.DataFrame(
        [base | {"sample": s, "data_seed": s, "scope": "test_position", "position": t,
                 "loss": 2.0 + (g if t in early else 0.0), "windows": 1024}
         for s, g in gains.items() for t in range(T)]
    )  # fmt: skip


def _join(*tables):
    return {k: pd.concat([t[k] for t in tables], ignore_index=True) for k in tables[0]}


def _verdict(tables):
    return tp.decide(tables)


@pytest.mark.parametrize(
    "slopes,expected",
    [
        ({"transformer": 1.0, "lstm": 0.2, "gru": 0.5}, "supported"),
        ({"transformer": 0.1, "lstm": 0.2, "rnn": 0.5}, "not supported"),
        ({"transformer": 0.4, "lstm": 0.2, "gru": 0.6}, "nuanced"),
        ({"transformer": 0.4, "lstm": 0.2, "mingru": 0.6}, "nuanced"),  # scans count
        # overlapping intervals: the lstm's seeds spread around the Transformer's gain
        ({"transformer": 0.4, "lstm": (0.1, 0.4, 0.8)}, "inconclusive"),
    ],
)
def test_position_verdicts(slopes, expected):
    v, measured, group = _verdict(_tables(slopes))
    assert v == expected and group == "core, T=256"
    assert "transformer" in measured and "3 seeds" in measured and "transformer - lstm" in measured


def test_too_short_a_context_is_inconclusive():
    v, measured, _ = _verdict(_tables({"transformer": 1.0, "lstm": 0.0}, T=128))
    assert v == "inconclusive" and f"T=128 < {tp.RULE.min_len}" in measured


def test_one_seed_gives_no_interval_and_no_decision():
    v, _, _ = _verdict(_tables({"transformer": 1.0, "lstm": 0.0}, seeds=(0,)))
    assert v == "inconclusive"


def test_late_gain_windows():
    early, late = tp.windows(256)
    w = (256 - KNEE) // 4
    assert (early.start, early.stop, late.start, late.stop) == (KNEE, KNEE + w, 256 - w, 256)
    assert tp.windows(KNEE) is None
    gains = tp.run_gains(_tables({"lstm": 1.0}, seeds=(0,)))
    # loss falls 1/T per token past the knee: the gain is the distance between window centres
    assert gains.gain.iloc[0] == pytest.approx((256 - w - KNEE) / 256)


def test_no_verdict_without_attention_and_a_recurrence():
    assert _verdict(_tables({"lstm": 1.0, "gru": 0.5})) is None
    assert _verdict(_tables({"transformer": 1.0, "bow": 0.0})) is None  # a baseline only


def test_the_group_rule_prefers_this_study_then_core_and_reads_no_other():
    core = _tables({"transformer": 0.1, "lstm": 0.5}, T=256, study="core")
    long = _tables({"transformer": 1.0, "lstm": 0.2}, T=1024, study="text_positions")
    other = _tables({"transformer": 0.0, "lstm": 3.0}, T=2048, study="data_efficiency")
    assert _verdict(_join(core, long, other))[::2] == ("supported", "text_positions, T=1024")
    assert _verdict(_join(core, other))[::2] == ("not supported", "core, T=256")
    assert _verdict(other) is None  # pool-limited runs never feed C5
    # this study without a recurrence does not take the verdict from core
    alone = _tables({"transformer": 1.0}, T=1024, study="text_positions")
    assert _verdict(_join(core, alone))[2] == "core, T=256"


def test_masked_and_pool_limited_runs_are_left_out():
    masked = _tables({"transformer": 9.0}, study="core", **{"model.causal": False})
    masked["runs"]["run"] += "-masked"
    masked["positions"]["run"] += "-masked"
    pooled = _tables({"lstm": 9.0}, study="core", **{"data.n_train": 100})
    pooled["runs"]["run"] += "-pool"
    pooled["positions"]["run"] += "-pool"
    base = _tables({"transformer": 1.0, "lstm": 0.2}, **{"model.causal": True})
    gains = tp.run_gains(_join(base, masked, pooled))
    assert len(gains) == 6 and not gains.run.str.contains("masked|pool").any()


def test_best_of_a_swept_grid_is_kept():
    good = _tables({"transformer": 1.0, "lstm": 0.2}, lr=1e-2)
    bad = _tables({"transformer": 0.0, "lstm": 0.9}, lr=3e-2, val_loss=2.5)
    for t in (bad["runs"], bad["positions"]):
        t["run"] += "-bad"
    bad["test_set"]["train_run"] += "-bad"
    assert _verdict(_join(good, bad))[0] == "supported"  # the lr with the lower val_loss


def test_verdicts_from_tables_and_stability_inputs():
    tables = _tables({"transformer": 1.0, "lstm": 0.2, "gru": 0.4})
    (v,) = tp.verdicts(tables)
    assert v.claim == "C5" and v.experiment == "loss by position (core, T=256)"
    assert v.verdict == "supported" and v.rule == tp.RULE.text
    runs = tables["runs"]  # leave one seed out: the rows of its runs go with it
    dropped = set(runs.run[runs.seed == 2])
    test = tables["test_set"]
    fewer = {"runs": runs[runs.seed != 2], "ngram": tables["ngram"],
             "positions": tables["positions"][~tables["positions"].run.isin(dropped)],
             "test_set": test[~test.train_run.isin(dropped)]}  # fmt: skip
    assert tp.verdicts(fewer)[0].verdict == "supported"
    assert tp.verdicts({"runs": pd.DataFrame(), "positions": pd.DataFrame()}) == []


def test_section_draws_the_figure(tmp_path):
    tables = _join(
        _tables({"transformer": 1.0, "lstm": 0.2, "mingru": 0.4}),
        _tables({"transformer": 1.0, "lstm": 0.2}, T=1024, study="text_positions"),
    )
    figs = Figures(tmp_path, FAMILY)
    md = tp.section(tables, figs)
    assert (tmp_path / "text_positions_loss_by_position.png").stat().st_size > 1000
    assert figs.deciding == {"C5": ["text_positions_loss_by_position.png"]}
    assert "(text_positions_loss_by_position.png)" in md and "late_gain" in md
    assert "The verdict reads `text_positions` (T = 1024)" in md
    empty = tp.section({"runs": pd.DataFrame(), "positions": pd.DataFrame()}, Figures(tmp_path, {}))
    assert "No completed causal text runs" in empty


def test_bench_trains_nothing_on_the_cpu():
    assert study_jobs(tp.__name__)["cpu"] == []  # the core text runs serve C5 there
    job, test, ngram = study_jobs(tp.__name__)["gpu"]
    assert job.name == "text_positions" and "+experiment=text_positions" in job.args
    # the test job scores exactly the training job's runs: its arguments and what=test_set
    assert test.name == tp.TEST_JOBS[tp.STUDY] and test.module == "seqbench.measure"
    assert test.args == ["-m", "what=test_set", *job.args[1:]]
    assert "what=ngram" in ngram.args and "+experiment=text_positions" in ngram.args
    assert any(a.startswith("train.lr=") and a.count(",") == 2 for a in job.args)  # swept


def test_the_figure_explains_the_sign_and_names_each_line(tmp_path):
    """Issue 23: the late gain's sign was unexplained, every tick repeated 'T=256', the lines
    overlapped with only a legend to tell them, and the 't = 100' label ran into the frame."""
    seen = []
    tables = _tables({"transformer": 1.0, "lstm": 0.2, "mingru": 0.4})
    tp.section(tables, Figures(tmp_path, FAMILY, on_save=lambda f, _: seen.append(f)))
    (fig,) = seen
    curves, gains = fig.axes
    assert "> 0" in gains.get_ylabel() and "< 0" in gains.get_title()
    assert [t.get_text() for t in gains.get_xticklabels()] == ["lstm", "mingru", "transformer"]
    assert "T=256" in curves.get_title()
    named = {t.get_text() for t in curves.texts}
    assert {"lstm", "mingru", "transformer"} <= named  # direct labels beside the lines
    (knee,) = [t for t in curves.texts if t.get_text() == "t = 100"]
    assert knee.get_rotation() == 0 and knee.get_va() == "top" and knee.xy[1] < 1


# --- the count trigram's late gain and the text's sampling noise (issue 22) -----------------
def test_without_count_baselines_the_verdict_is_inconclusive_and_says_so():
    v, measured, _ = _verdict(_tables({"transformer": 1.0, "lstm": 0.2, "gru": 0.5}, count=None))
    assert v == "inconclusive" and baselines.NOT_MEASURED in measured


def test_a_difference_inside_the_texts_sampling_noise_does_not_count():
    slopes = {"transformer": 0.3, "lstm": 0.1}  # late gains ~0.14 and ~0.05: 0.09 apart
    assert _verdict(_tables(slopes))[0] == "supported"  # noise 0.01
    noisy = {0: 0.0, 1: 0.12, 2: -0.05}  # the trigram's gain moves by 0.12 between samples
    v, measured, _ = _verdict(_tables(slopes, count=noisy))
    # the trigram's gain: 0.023 averaged over the three seeds' test windows; its noise, the
    # largest deviation on one seed's test windows or one validation sample (3 + 3 samples)
    assert v == "inconclusive" and "noise +-0.097 over 6 held-out samples" in measured
    assert "count trigram +0.023" in measured


def test_a_late_gain_no_larger_than_the_trigrams_is_no_late_gain():
    slopes = {"transformer": 1.0, "lstm": 0.2}  # transformer ~0.46 above the lstm's ~0.09
    count = {0: 0.45, 1: 0.46, 2: 0.44}  # but the count trigram "gains" as much on these windows
    v, measured, _ = _verdict(_tables(slopes, count=count))
    assert v == "inconclusive" and "no late gain beyond the trigram's" in measured
    assert "transformer - trigram" in measured


def test_the_figure_draws_the_count_trigram_and_its_noise(tmp_path):
    seen = []
    tables = _tables({"transformer": 1.0, "lstm": 0.2})
    tp.section(tables, Figures(tmp_path, FAMILY, on_save=lambda f, _: seen.append(f)))
    curves, gains = seen[0].axes
    assert "count trigram" in [ln.get_label() for ln in curves.get_lines()]
    assert any("count trigram" in p.get_label() for p in gains.patches)
