"""Data efficiency (C7): the gap with intervals, a censored (compute-limited) largest N, steps
and wall clock to tau, every verdict of both parts, the figure; the figures and verdicts read
the test split (test_set rows, the count n-grams' scope=test rows) where it disagrees with
validation, and a run without its test figure is inconclusive, never read on validation."""

import matplotlib
import pandas as pd
import pytest

from seqbench.report import baselines
from seqbench.report.plot import Figures
from seqbench.studies import data_efficiency as de
from seqbench.studies import study_jobs
from tests import ngram_rows

matplotlib.use("Agg")

FAMILY = {"rnn": "recurrent", "lstm": "recurrent", "gru": "recurrent", "transformer": "attention",
          "mingru": "scan"}  # fmt: skip
NS = (40, 400, 4000)
STEPS, BATCH, UNIGRAM = 400, 16, 3.0
LSTM = (2.6, 2.3, 2.0)  # best held-out loss at each N
HUNGRY = (2.9, 2.4, 1.8)  # above the LSTM at small N, below at large N: the gap shrinks
SATED = (2.3, 2.2, 2.15)  # below the LSTM at small N, and the gap grows
FAST, SLOW = 50, 250  # the step at which a curve first gets below tau (SLOW < 0.75 x STEPS)
EARLY = 50  # where the curves at the smaller N reach their best
COUNT = {1: UNIGRAM, 2: 2.7, 3: 2.5}  # the count n-grams at every N: bigram bar, trigram
PER_STEP = {"lstm": 0.04, "transformer": 0.02}  # wall clock per step (s); others 0.03


def _tables(best: dict, reach: dict | None = None, seeds=(0, 1, 2), spread=0.01, count=COUNT,
            device="cpu", per_step=PER_STEP, test=None, count_test=None):  # fmt: skip
    """Runs at every N and seed (best loss per N from ``best``), with eval curves (every 25
    steps, wall clock ``per_step`` s a step): at the unigram loss until the step where they
    reach the run's best loss and stay: EARLY at the smaller N, ``reach[model]`` (+ 10 per
    seed) at the largest, only the cap's last step where ``reach`` has no step for it. Each
    run's test loss (table test_set) is its best loss, or ``test[model]`` per N (+ spread per
    seed) where given; the count n-grams score ``count`` on the validation windows and
    ``count_test`` (default ``count``) on each data seed's test windows."""
    runs, curves, tested = [], [], []
    for m, per_n in best.items():
        for n, b in zip(NS, per_n):
            for s in seeds:
                run = f"{m}-{n}-{s}"
                loss = b + spread * s
                at = test[m][NS.index(n)] + spread * s if test and m in test else loss
                tested.append({"run": f"test-{run}", "train_run": run, "status": "complete",
                               "study": "data_efficiency", "test_loss": at, "test_acc": 0.5,
                               "test_sequences": 1024})  # fmt: skip
                runs.append({"run": run, "study": "data_efficiency", "status": "complete",
                             "model": m, "family": FAMILY[m], "task": "text", "seed": s,
                             "data.n_train": n, "train.steps": STEPS, "train.batch_size": BATCH,
                             "val_loss": loss + 0.05, "best_val_loss": loss, "lr": 1e-2,
                             "unigram_xent": UNIGRAM, "device": device})  # fmt: skip
                if reach is None:
                    continue
                hit = reach.get(m) if n == NS[-1] else EARLY
                for step in range(25, STEPS + 1, 25):
                    below = hit is not None and step >= hit + 10 * s
                    val = loss if below or step == STEPS else UNIGRAM
                    curves.append({"run": run, "model": m, "step": step, "val_loss": val,
                                   "wall_s": step * per_step.get(m, 0.03)})  # fmt: skip
    ngram = [
        ngram_rows.table("data_efficiency", count, n_train=n, batch_size=BATCH) for n in NS if count
    ]
    ngram += [_test_rows(count if count_test is None else count_test, n) for n in NS]
    ngram = pd.concat(ngram, ignore_index=True) if ngram else pd.DataFrame()
    return {"runs": pd.DataFrame(runs), "curves": pd.DataFrame(curves), "ngram": ngram,
            "test_set": pd.DataFrame(tested)}  # fmt: skip


def _test_rows(levels: dict, n: int) -> pd.DataFrame:
    """The count n-grams' scope=test rows at pool N (seqbench.measure.ngram): per order and
    data seed s (sample = s), the loss on that seed's test windows, ``levels`` + 0.01 s."""
    rows = [{"study": "data_efficiency", "status": "complete", "scope": "test", "order": o,
             "sample": s, "data_seed": s, "test_loss": v + 0.01 * s, "n_train": n,
             "batch_size": BATCH, "seq_len": 256, "eval_batches": 32}
            for o, v in levels.items() for s in (0, 1, 2)]  # fmt: skip
    return pd.DataFrame(rows)


LSTM_SLOW = {"lstm": SLOW, "transformer": FAST}
LSTM_FAST = {"lstm": FAST, "transformer": SLOW}


@pytest.mark.parametrize(
    "tr,reach,expected",
    [
        (HUNGRY, LSTM_SLOW, "supported"),  # the gap shrinks
        (SATED, LSTM_SLOW, "not supported"),  # the gap is < 0 at the smallest N
        (HUNGRY, None, "supported"),  # no curves: the runs' own best losses, no cap read
    ],
)
def test_part_a_verdicts(tr, reach, expected):
    v, measured = de.verdict(_tables({"transformer": tr, "lstm": LSTM}, reach))
    assert v == expected, measured
    assert "at N=40" in measured and "at N=4000" in measured and "3 seeds" in measured
    assert "censored" not in measured  # every best well before 0.75 x the cap


@pytest.mark.parametrize(
    "reach,device,expected",
    [
        (LSTM_SLOW, "cuda", "supported"),
        (LSTM_FAST, "cuda", "not supported"),
        (LSTM_SLOW, "cpu", "not measured on cpu"),  # a claim about time on parallel hardware
        ({"lstm": FAST, "transformer": FAST + 5}, "cuda", "inconclusive"),  # steps overlap
    ],
)
def test_part_b_verdicts(reach, device, expected):
    tables = _tables({"transformer": HUNGRY, "lstm": LSTM}, reach, device=device)
    v, measured = de.time_verdict(tables)
    assert v == expected, measured
    assert "at N=4000 (sample efficiency): lstm - transformer" in measured
    assert "wall clock to tau lstm - transformer" in measured and "3 seeds" in measured


def test_a_largest_n_whose_cap_binds_is_censored_and_not_read():
    # at N=4000 every run gets to its best only at the cap's last step: compute-limited
    tables = _tables({"transformer": HUNGRY, "lstm": LSTM}, {})
    v, measured = de.verdict(tables)
    assert v == "supported" and "] nats at N=40, (lstm) 0.1 [" in measured  # N=40 and N=400
    assert "] at N=400; censored, compute-limited (best step after 0.75 x the steps run), " \
        "not read: N=4000 (lstm 3/3, transformer 3/3)" in measured  # fmt: skip
    two = _tables({"transformer": HUNGRY, "lstm": LSTM}, {})
    two["runs"] = two["runs"][two["runs"]["data.n_train"] != 400]  # N = 40, 4000 only
    v, measured = de.verdict(two)
    assert v == "inconclusive" and "(a) fewer than two N read (N=40)" in measured


def test_early_stopping_is_not_a_binding_cap():
    late = {"lstm": 325, "transformer": 325}  # best after 0.75 x 400 = 300
    runs = de.study_runs(_tables({"transformer": HUNGRY, "lstm": LSTM}, late, seeds=(0,)))
    big = runs.n_train == NS[-1]
    assert de.binds(runs)[big].all() and not de.binds(runs)[~big].any()
    runs["train.patience"] = 3  # 350, 375, 400 without a new best: it would stop itself
    assert not de.binds(runs).any()


def test_one_evaluation_interval_is_no_difference():
    same = {"lstm": 0.5, "transformer": 0.5}  # the same wall clock per step
    one = {"lstm": 51, "transformer": 26}  # every seed first below tau at 75 and at 50
    tables = _tables({"transformer": HUNGRY, "lstm": LSTM}, one, device="cuda", per_step=same)
    v, measured = de.time_verdict(tables)
    assert v == "inconclusive", measured
    assert "lstm - transformer 25 [25, 25] steps, within one evaluation interval" in measured
    two = {"lstm": 76, "transformer": 26}  # two intervals apart
    tables = _tables({"transformer": HUNGRY, "lstm": LSTM}, two, device="cuda", per_step=same)
    v, measured = de.time_verdict(tables)
    assert v == "supported" and "50 [50, 50] steps, more steps" in measured


def test_overlapping_gaps_are_inconclusive():
    # the gap at the smallest N straddles 0 across seeds
    v, measured = de.verdict(_tables({"transformer": (2.61, 2.4, 1.8), "lstm": LSTM}, LSTM_SLOW,
                                     spread=0.1))  # fmt: skip
    assert v == "inconclusive", measured


def test_a_model_that_fails_its_control_makes_it_inconclusive():
    stuck = (2.95, 2.95, 2.95)  # never below the count bigram (2.7), even at the largest N
    v, measured = de.verdict(_tables({"transformer": HUNGRY, "lstm": LSTM, "rnn": stuck},
                                     LSTM_SLOW))  # fmt: skip
    assert v == "inconclusive" and "control (count bigram) not met: rnn" in measured


def test_a_never_reached_threshold_counts_as_the_budget():
    lstm = (2.6, 2.5, 2.45)  # above tau = 1.81 + frac (2.5 - 1.81) at the largest N
    tables = _tables({"transformer": HUNGRY, "lstm": lstm}, {"lstm": None, "transformer": FAST})
    runs = de.study_runs(tables)
    s = de.steps_to(runs, tables["curves"], de.threshold(runs, COUNT[3]))
    assert s[s.model == "lstm"].censored.all() and (s[s.model == "lstm"].steps == STEPS).all()
    assert not s[s.model == "transformer"].censored.any()
    assert (s[s.model == "lstm"].seconds == STEPS * PER_STEP["lstm"]).all()  # its last time
    cuda = _tables({"transformer": HUNGRY, "lstm": lstm}, {"lstm": None, "transformer": FAST},
                   device="cuda")  # fmt: skip
    assert de.time_verdict(cuda)[0] == "supported"  # censored at the cap: still the slower one


def test_tau_is_anchored_on_the_best_model_and_below_the_count_trigram():
    runs = de.study_runs(_tables({"transformer": HUNGRY, "lstm": LSTM}))
    best, trigram = 1.8 + 0.01, COUNT[3]  # the Transformer's mean best at N=4000
    assert de.threshold(runs, trigram) == pytest.approx(best + de.TIME_RULE.frac * (trigram - best))
    assert de.threshold(runs, trigram) < trigram
    assert de.threshold(runs, 1.7) is None  # no model below the trigram: no tau


def test_part_b_without_a_model_below_the_trigram_is_inconclusive_and_says_so():
    # tau is read on the validation curve: the trigram on the validation windows (1.5) sets
    # it, not the test windows' (2.5, which the models' best losses are below)
    tables = _tables({"transformer": HUNGRY, "lstm": LSTM}, LSTM_SLOW, count={2: 2.7, 3: 1.5},
                     count_test=COUNT)  # fmt: skip
    v, measured = de.time_verdict(tables)
    assert v == "inconclusive", measured
    assert "no model's best validation loss is below the count trigram" in measured
    assert "trigram 1.50 nats (same validation windows)" in measured


def test_part_b_with_both_models_censored_is_undecided():
    # only the gru gets below tau = 1.51 + frac (2.5 - 1.51); lstm and Transformer never do
    best = {"transformer": (2.9, 2.4, 2.3), "lstm": (2.6, 2.5, 2.4), "gru": (2.5, 2.2, 1.5)}
    v, measured = de.time_verdict(_tables(best, {"gru": FAST}, device="cuda"))
    assert v == "inconclusive" and "neither reaches tau: both censored" in measured


def test_without_count_baselines_c7_is_inconclusive_never_the_old_bar():
    tables = _tables({"transformer": HUNGRY, "lstm": LSTM}, LSTM_SLOW, count={})
    for judge in (de.verdict, de.time_verdict):
        v, measured = judge(tables)
        assert v == "inconclusive" and baselines.NOT_MEASURED in measured


def test_a_model_below_the_old_bar_but_above_the_bigram_fails_the_control():
    above = (2.65, 2.62, 2.6)  # below 0.9 x unigram (2.7) but not below a bigram at 2.5
    tables = _tables({"transformer": HUNGRY, "lstm": LSTM, "gru": above}, LSTM_SLOW,
                     count={2: 2.5, 3: 2.3})  # fmt: skip
    assert "control (count bigram) not met: gru" in de.verdict(tables)[1]


def test_the_gap_is_to_the_best_recurrence_scans_included():
    runs = de.study_runs(_tables({"transformer": HUNGRY, "lstm": (9, 9, 9), "mingru": LSTM}))
    g = de.gaps(runs)
    assert [r for _, r, _ in g.values()] == ["mingru"] * 3
    assert [round(d.mean, 6) for _, _, d in g.values()] == [0.3, 0.1, -0.2]


def test_pools_above_the_draws_and_incomplete_runs_are_left_out():
    tables = _tables({"transformer": HUNGRY, "lstm": LSTM})
    runs = tables["runs"]
    extra = runs[runs["data.n_train"] == 4000].assign(run=lambda d: d.run + "-big")
    extra["data.n_train"] = STEPS * BATCH + 1  # more windows than the run can draw
    failed = runs.iloc[:1].assign(run="failed", status="failed")
    kept = de.study_runs({"runs": pd.concat([runs, extra, failed]), "curves": tables["curves"]})
    assert sorted(kept.n_train.unique()) == list(NS) and "failed" not in set(kept.run)


def test_half_budget_curves_decide_the_best_loss():
    tables = _tables({"transformer": HUNGRY, "lstm": LSTM}, LSTM_SLOW)
    half = tables["curves"][tables["curves"].step <= STEPS // 2]
    runs = de.study_runs({"runs": tables["runs"], "curves": half})
    big = runs[runs.n_train == NS[-1]].set_index("model").best
    assert (big["lstm"] == UNIGRAM).all()  # reached only after half: cut from the curves
    assert (big["transformer"] < 1.9).all()


def test_no_verdict_without_both_kinds_or_two_pool_sizes():
    assert de.verdict({"runs": pd.DataFrame(), "curves": pd.DataFrame()}) is None
    assert de.verdict(_tables({"lstm": HUNGRY, "gru": SATED})) is None
    one_n = _tables({"transformer": HUNGRY, "lstm": LSTM})
    one_n["runs"] = one_n["runs"][one_n["runs"]["data.n_train"] == 40]
    assert de.verdict(one_n) is None


def test_verdicts_from_run_tables():
    a, b = de.verdicts(_tables({"transformer": HUNGRY, "lstm": LSTM}, LSTM_SLOW))
    assert a.claim == b.claim == "C7" and a.rule == de.RULE.text and a.verdict == "supported"
    assert "(a: needs more data;" in a.experiment and "(b: takes longer to train;" in b.experiment
    assert b.rule == de.TIME_RULE.text and f"{de.TIME_RULE.frac} x (trigram - best)" in b.rule
    assert b.verdict == "not measured on cpu" and "steps to tau=" in b.measured


def test_section_draws_the_figure(tmp_path):
    figs = Figures(tmp_path, FAMILY)
    md = de.section(_tables({"transformer": HUNGRY, "lstm": LSTM}, LSTM_SLOW), figs)
    assert (tmp_path / "data_efficiency.png").stat().st_size > 1000
    assert figs.deciding == {"C7": ["data_efficiency.png"]}
    assert "(data_efficiency.png)" in md and "Measured (a): test loss gap transformer" in md
    assert "Measured (b): steps to tau=" in md and "(not measured on cpu)." in md
    assert "| 40 | 2.61 [" in md  # the lstm at N=40, with its interval
    empty = de.section({"runs": pd.DataFrame(), "curves": pd.DataFrame()}, Figures(tmp_path, {}))
    assert "No completed runs" in empty


def test_bench_jobs():
    for profile in ("smoke", "cpu", "gpu"):
        jobs = study_jobs(de.__name__)[profile]
        job, ngram = jobs[0], jobs[-1]
        assert job.name == "data_efficiency" and "+experiment=data_efficiency" in job.args
        assert "what=ngram" in ngram.args and "+experiment=data_efficiency" in ngram.args
        pools = [a for a in job.args if a.startswith("data.n_train=")]
        assert pools == [a for a in ngram.args if a.startswith("data.n_train=")]  # same N


def test_the_test_set_jobs_follow_their_training_jobs_with_the_same_sweep():
    """Issue 22 item 3: cpu and gpu score every trained run on the test split right after
    the training job; full scores its 4x runs after them, at their rank."""
    jobs = study_jobs(de.__name__)
    for profile in ("cpu", "gpu"):
        names = [j.name for j in jobs[profile]]
        assert names[:2] == ["data_efficiency", "data_efficiency_test"], names
        train, test = jobs[profile][:2]
        assert test.entry == "measure" and test.args[:2] == ["-m", "what=test_set"]
        assert test.args[2:] == train.args[1:]  # the same sweep: its runs, by content key
    by = {j.name: j for j in jobs["full"]}
    long, test = by["data_efficiency_long"], by["data_efficiency_long_test"]
    assert [j.name for j in jobs["full"]][-2:] == [
        "data_efficiency_long",
        "data_efficiency_long_test",
    ]
    assert test.rank == long.rank and test.args[2:] == long.args[1:]


def _figure(tables, tmp_path):
    seen = []
    de.section(tables, Figures(tmp_path, FAMILY, on_save=lambda f, _: seen.append(f)))
    return seen[0]


@pytest.mark.parametrize("ns", [(40, 4000), NS])
def test_the_figure_marks_the_tau_crossing_and_draws_no_trend_through_two_points(ns, tmp_path):
    """Issue 23: two N values were drawn as a trend, and the crossing of tau that part (b)
    reads was not marked."""
    tables = _tables({"transformer": HUNGRY, "lstm": LSTM}, LSTM_SLOW)
    keep = tables["runs"]["data.n_train"].isin(ns)
    tables = {
        "runs": tables["runs"][keep],
        "curves": tables["curves"][tables["curves"].run.isin(tables["runs"].run[keep])],
        "ngram": tables["ngram"],
    }
    pools, steps = _figure(tables, tmp_path).axes
    for c in pools.containers:  # one series per model over N
        assert (c.lines[0].get_linestyle() == "None") == (len(ns) < 3)
    crossings = {c.get_label(): c.lines[0].get_xdata()[0] for c in steps.containers}
    runs = de.study_runs(tables)  # the steps part (b) reads: first evaluation below tau
    tau = de.threshold(runs, COUNT[3])
    read = de.steps_to(runs, tables["curves"], tau).groupby("model").steps.mean()
    assert crossings == {f"_{m} reaches tau": pytest.approx(v) for m, v in read.items()}
    assert read["lstm"] > SLOW and read["transformer"] < SLOW  # evaluated every 25 steps
    assert any(t.get_text().startswith("mean steps to tau") for t in steps.figure.legends[0].texts)


# --- the test split (issue 22 item 3): reported figures and verdicts read test, not validation
@pytest.mark.parametrize(
    "val,test,expected",
    [
        (HUNGRY, SATED, "not supported"),  # validation says the gap shrinks; test says < 0
        (SATED, HUNGRY, "supported"),  # and the other way round
    ],
)
def test_part_a_follows_the_test_split_where_validation_disagrees(val, test, expected):
    tables = _tables({"transformer": val, "lstm": LSTM}, LSTM_SLOW, test={"transformer": test})
    v, measured = de.verdict(tables)
    assert v == expected, measured
    gap = de.gaps(de.study_runs(tables))[NS[0]][2].mean  # transformer - lstm at N=40, on test
    assert gap == pytest.approx(test[0] - LSTM[0])
    assert "test loss gap transformer - best recurrence (lstm)" in measured


def test_the_best_recurrence_is_chosen_on_validation_and_scored_on_test():
    # on validation the lstm is the best recurrence at every N, on test the gru would be
    tables = _tables({"transformer": HUNGRY, "lstm": LSTM, "gru": (2.7, 2.4, 2.1)}, LSTM_SLOW,
                     test={"gru": (1.0, 1.0, 1.0)})  # fmt: skip
    g = de.gaps(de.study_runs(tables))
    assert [r for _, r, _ in g.values()] == ["lstm"] * 3
    assert [round(d.mean, 6) for _, _, d in g.values()] == [0.3, 0.1, -0.2]  # test losses


def test_the_control_reads_test_losses_against_the_test_bigram():
    stuck = (2.6, 2.6, 2.6)  # below the validation bigram (2.7); on test above its bigram
    tables = _tables({"transformer": HUNGRY, "lstm": LSTM, "rnn": stuck}, LSTM_SLOW,
                     count_test={2: 2.5, 3: 2.4})  # fmt: skip
    v, measured = de.verdict(tables)
    assert v == "inconclusive" and "control (count bigram) not met: rnn" in measured
    assert "count bigram 2.51, trigram 2.41 nats (same test windows)" in measured
    fine = _tables({"transformer": HUNGRY, "lstm": LSTM, "rnn": (2.9, 2.9, 2.9)}, LSTM_SLOW,
                   test={"rnn": stuck})  # fmt: skip
    assert de.verdict(fine)[0] == "supported"  # above on validation, below on test: passes


@pytest.mark.parametrize(
    "budget,job", [(1, "data_efficiency_test"), (4, "data_efficiency_long_test")]
)
def test_a_run_without_its_test_figure_is_inconclusive_and_names_the_job(budget, job):
    tables = _tables({"transformer": HUNGRY, "lstm": LSTM}, LSTM_SLOW, device="cuda")
    tables["runs"]["train.budget"] = budget
    tested = tables["test_set"]
    tables["test_set"] = tested[~tested.train_run.str.startswith("lstm-4000")]  # 3 runs
    v, measured = de.verdict(tables)
    assert v == "inconclusive", measured
    assert f"test set not measured for 3 of 18 runs (job {job}, what=test_set)" in measured
    v, measured = de.time_verdict(tables)  # its control of (a) reads the test loss
    assert v == "inconclusive" and "control of (a) not read: test set not measured" in measured
    tables["runs"]["device"] = "cpu"
    v, measured = de.time_verdict(tables)
    assert v == "not measured on cpu" and f"(job {job}, what=test_set)" in measured
    del tables["test_set"]  # no test_set table at all: never a fallback to validation
    assert de.verdict(tables)[0] == "inconclusive"
    assert "test set not measured for 18 of 18 runs" in de.verdict(tables)[1]


def test_without_the_count_models_test_rows_c7_is_inconclusive():
    tables = _tables({"transformer": HUNGRY, "lstm": LSTM}, LSTM_SLOW, device="cuda")
    tables["ngram"] = tables["ngram"][tables["ngram"].scope != "test"]  # validation rows only
    for judge in (de.verdict, de.time_verdict):
        v, measured = judge(tables)
        assert v == "inconclusive" and baselines.NOT_MEASURED in measured


def test_the_figure_and_table_draw_test_losses(tmp_path):
    test = {"transformer": (3.9, 3.4, 2.8), "lstm": (3.6, 3.3, 3.0)}  # 1 nat above validation
    tables = _tables({"transformer": HUNGRY, "lstm": LSTM}, LSTM_SLOW, test=test)
    pools, steps = _figure(tables, tmp_path).axes
    assert pools.get_ylabel() == "test loss (nats/token)" and "test split" in pools.get_title()
    drawn = {c.get_label(): list(c.lines[0].get_ydata()) for c in pools.containers}
    assert drawn["lstm"] == pytest.approx([v + 0.01 for v in test["lstm"]])  # mean of 3 seeds
    assert steps.get_ylabel() == "validation loss (nats/token)"  # the training-time curve
    md = de.section(tables, Figures(tmp_path, FAMILY))
    assert "| 40 | 3.61 [" in md  # the lstm's test loss at N=40, with its interval


def test_the_count_test_levels_average_the_runs_own_data_seeds():
    # seed s's count rows score 0.01 s higher: one seed of runs reads seed 0's windows only
    one = de.study_runs(_tables({"transformer": HUNGRY, "lstm": LSTM}, seeds=(0,)))
    assert de.count_levels(_tables({"transformer": HUNGRY, "lstm": LSTM}), one) == {
        o: pytest.approx(v) for o, v in COUNT.items()
    }
    three = _tables({"transformer": HUNGRY, "lstm": LSTM})
    levels = de.count_levels(three, de.study_runs(three))
    assert levels == {o: pytest.approx(v + 0.01) for o, v in COUNT.items()}
