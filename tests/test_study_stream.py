"""Study stream (C1*): both arms read under each protocol on the test split (what=protocols
rows), each verdict from synthetic tables under each protocol, pairing by seed, a family the
rule does not name, runs without test-split scores (inconclusive, naming the job), the
section's tables and figure, and the bench jobs."""

import re

import matplotlib
import pandas as pd
import pytest

from seqbench.report.plot import Figures
from seqbench.studies import stream as study
from seqbench.studies import study_jobs

matplotlib.use("Agg")

NEUTRAL = ([2.00, 2.20, 2.10], [2.05, 2.15, 2.09])  # the other protocol: intervals overlap


def tables(scores: dict, unigram=3.0, model="lstm", family="recurrent", study_name="stream",
           split="test"):  # fmt: skip
    """{"runs", "protocols"} as collect() returns them: one complete training run per arm and
    seed, and its rows on ``split`` under each protocol of ``scores`` {protocol: (random,
    stream)}."""
    runs, rows = [], []
    for arm, streamed in (("random", False), ("stream", True)):
        n = max(len(losses[arm == "stream"]) for losses in scores.values())
        for seed in range(n):
            run = f"{study_name}-{model}-{arm}-{seed}"
            runs.append({"run": run, "data.stream": streamed, "seed": seed, "val_loss": 2.0})
            for protocol, losses in scores.items():
                mine = losses[arm == "stream"]
                if seed < len(mine):
                    rows.append({"run": f"protocols-{run}-{protocol}", "train_run": run,
                                 "seed": seed, "arm": arm, "protocol": protocol, "split": split,
                                 "loss": mine[seed], "tokens": 16_384,
                                 "state_carried": protocol == "stream"})  # fmt: skip
    same = {"study": study_name, "status": "complete", "model": model, "family": family}
    runs = pd.DataFrame(runs).assign(
        **same, task="text", unigram_xent=unigram,
        **{"train.steps": 400, "train.batch_size": 32, "data.seq_len": 64},
    )  # fmt: skip
    return {"runs": runs, "protocols": pd.DataFrame(rows).assign(**same)}


def merged(*parts) -> dict:
    return {k: pd.concat([p[k] for p in parts], ignore_index=True) for k in parts[0]}


def verdict_on(found, protocol):
    words = study.PROTOCOLS[protocol]
    (v,) = [v for v in found if v.experiment.endswith(f"(scored on {words})")]
    return v


CASES = [
    ([2.10, 2.12, 2.11], [2.00, 2.02, 2.01], 3.0, "supported"),
    ([2.00, 2.02, 2.01], [2.10, 2.12, 2.11], 3.0, "not supported"),
    ([2.00, 2.20, 2.10], [2.05, 2.15, 2.09], 3.0, "inconclusive"),  # per-seed signs differ
    ([2.10, 2.12, 2.11], [2.00, 2.02, 2.01], 2.2, "inconclusive"),  # > 0.9 x unigram
    ([2.10], [2.00], 3.0, "inconclusive"),  # one seed: no interval
]


@pytest.mark.parametrize("protocol", list(study.PROTOCOLS))
@pytest.mark.parametrize("random, stream, unigram, verdict", CASES)
def test_each_verdict_under_each_protocol(protocol, random, stream, unigram, verdict):
    other = next(p for p in study.PROTOCOLS if p != protocol)
    neutral = tuple(v[: len(random)] for v in NEUTRAL)  # as many runs: every run scored
    found = study.verdicts(tables({protocol: (random, stream), other: neutral}, unigram))
    assert len(found) == 2 and {v.claim for v in found} == {"C1*"}
    v = verdict_on(found, protocol)
    assert v.verdict == verdict, v.measured
    assert v.rule == study.RULE.text and f"{study.RULE.learned} x the unigram" in v.rule
    assert v.measured.startswith("lstm: random ") and "16,384 test tokens" in v.measured
    if unigram == 3.0:  # the other protocol is read on its own rows: it stays inconclusive
        assert verdict_on(found, other).verdict == "inconclusive"


def test_the_arms_are_paired_by_seed():
    """Seeds spread the arms' losses wider than the arms differ, but every seed's random arm
    is worse than its stream arm on the same windows: the paired difference decides. A seed
    with one arm only is left out of the pairs."""
    random, stream = [2.10, 2.31, 2.50, 2.40], [2.05, 2.25, 2.46]
    v = verdict_on(study.verdicts(tables({"windows": (random, stream)})), "windows")
    assert v.verdict == "supported" and "(3 seeds," in v.measured, v.measured


def test_a_family_the_rule_does_not_name_gets_its_own_line():
    lstm = tables({"windows": ([2.10, 2.12, 2.11], [2.00, 2.02, 2.01])})
    ssm = tables({"windows": ([2.00, 2.02, 2.01], [2.10, 2.12, 2.11])}, model="s4", family="ssm")
    v = verdict_on(study.verdicts(merged(lstm, ssm)), "windows")
    assert v.verdict == "supported"  # the recurrent model's; the ssm does not vote
    assert "ssm (not compared by this rule): s4: random" in v.measured
    assert v.measured.endswith(": not supported")  # what the rule says of it
    alone = verdict_on(study.verdicts(ssm), "windows")
    assert alone.verdict == "not measured" and alone.measured.startswith("ssm (not compared")


def test_recurrent_models_that_disagree_are_nuanced():
    lstm = tables({"stream": ([2.10, 2.12, 2.11], [2.00, 2.02, 2.01])})
    gru = tables({"stream": ([2.00, 2.02, 2.01], [2.10, 2.12, 2.11])}, model="gru")
    v = verdict_on(study.verdicts(merged(lstm, gru)), "stream")
    assert v.verdict == "nuanced" and "gru: random" in v.measured and "lstm: random" in v.measured


def test_rows_of_other_studies_unfinished_runs_or_one_arm_decide_nothing():
    scores = {"windows": ([2.1, 2.2], [2.0, 2.1])}
    assert study.verdicts(tables(scores, study_name="core")) == []
    unfinished = tables(scores)
    unfinished["runs"] = unfinished["runs"].assign(status="failed")
    assert study.verdicts(unfinished) == []
    assert study.verdicts({"runs": pd.DataFrame()}) == []  # nothing trained: not measured


def test_section_tables_and_figure(tmp_path):
    t = tables({"windows": ([2.10, 2.12, 2.11], [2.00, 2.02, 2.01]), "stream": NEUTRAL})
    curves = pd.DataFrame([{"run": r, "model": "lstm", "tokens_seen": 1, "val_loss": 2.0}
                           for r in t["runs"].run])  # fmt: skip
    md = study.section(t | {"curves": curves}, Figures(tmp_path, {"lstm": "recurrent"}))
    assert (tmp_path / "stream_vs_random.png").exists() and "stream_vs_random.png" in md
    assert "Both arms saw 819,200 training tokens" in md
    assert "Test-split loss (nats)" in md and "test_tokens" in md
    windows = next(ln for ln in md.splitlines() if ln.startswith("| random windows"))
    assert "| 3 | 16384 | supported |" in windows
    assert "| 3 | 16384 | inconclusive |" in next(
        ln for ln in md.splitlines() if ln.startswith("| the whole stream")
    )
    assert "As trained" in md
    unscored = study.section({"runs": t["runs"]}, Figures(tmp_path / "b", {}))
    assert "Not scored on the test split yet" in unscored and ".png" not in unscored
    assert "the verdicts are inconclusive until then" in unscored
    assert study.section({"runs": pd.DataFrame()}, Figures(tmp_path, {})).startswith("_No stream")


def test_bench_jobs_score_every_training_run_under_both_protocols():
    profiles = study_jobs(study.__name__)
    assert set(profiles) == {"smoke", "cpu", "full", "gpu"}
    launcher = ("hydra/launcher=", "hydra.launcher.")
    for name, jobs in profiles.items():
        trains = [j for j in jobs if j.module == "seqbench.train"]
        for job in trains:  # each training job has its protocols job, with the same cells
            scored = next(j for j in jobs if j.name == job.name + "_protocols")
            assert jobs.index(scored) > jobs.index(job) and scored.rank == job.rank, name
            assert scored.args[:3] == ["-m", "what=protocols", "+experiment=stream"]
            own = [a for a in job.args if not a.startswith(launcher)]
            assert [a for a in scored.args if a != "what=protocols"] == own, name
            assert not any(a.startswith("what.split") for a in scored.args)  # test: default
        ngram = next(j for j in jobs if j.name == "stream_ngram")
        assert "data.stream=false" in ngram.args  # one job: the stream row covers that arm
    (long,) = [j for j in profiles["full"] if j.name == "stream_long_protocols"]
    assert "train.budget=4" in long.args and long.rank == 20


def test_a_run_read_at_another_step_has_no_protocol_score():
    """The stability column's half budget moves a run to an earlier step: the scores are of
    the state it ended in, so they no longer speak for it: the verdict is inconclusive."""
    t = tables({"windows": ([2.10, 2.12, 2.11], [2.00, 2.02, 2.01])})
    t["protocols"] = t["protocols"].assign(train_steps=400)
    ended = study.verdicts(t | {"runs": t["runs"].assign(step=400)})
    assert verdict_on(ended, "windows").verdict == "supported"
    earlier = study.verdicts(t | {"runs": t["runs"].assign(step=200)})
    assert {v.verdict for v in earlier} == {"inconclusive"}
    assert all(v.measured.startswith("test split not scored") for v in earlier)


BETTER = ([2.10, 2.12, 2.11], [2.00, 2.02, 2.01])  # the stream arm lower at every seed
WORSE = ([2.00, 2.02, 2.01], [2.10, 2.12, 2.11])


def test_validation_rows_never_decide():
    """Selection read validation: its scores (what.split=val, or rows from before what.split)
    never stand in for the test split's; without test rows each verdict is inconclusive and
    names the job that measures them."""
    val = tables({"windows": BETTER, "stream": BETTER}, split="val")
    for t in (val, val | {"protocols": val["protocols"].drop(columns="split")}):
        found = study.verdicts(t)
        assert len(found) == 2 and {v.verdict for v in found} == {"inconclusive"}
        v = verdict_on(found, "windows")
        assert v.measured == (
            "test split not scored on random windows for 6 of 6 runs (the stream_protocols "
            "job: `python -m seqbench.measure -m what=protocols +experiment=stream`, swept as "
            "the training)"
        )
    test = tables({"windows": WORSE, "stream": WORSE})
    both = val | {"protocols": pd.concat([val["protocols"], test["protocols"]])}
    assert {v.verdict for v in study.verdicts(both)} == {"not supported"}  # the test rows'


def test_a_run_without_its_test_score_makes_its_verdict_inconclusive():
    t = tables({"windows": BETTER, "stream": BETTER})
    rows = t["protocols"]
    drop = (rows.train_run == "stream-lstm-stream-2") & (rows.protocol == "windows")
    found = study.verdicts(t | {"protocols": rows[~drop]})
    windows, stream = verdict_on(found, "windows"), verdict_on(found, "stream")
    assert windows.verdict == "inconclusive" and stream.verdict == "supported"
    assert windows.measured.startswith("test split not scored on random windows for 1 of 6 runs")
    assert "; lstm: random " in windows.measured and "(2 seeds," in windows.measured


def test_the_4x_runs_name_the_long_job():
    t = tables({"windows": BETTER}, split="val")
    t["runs"] = t["runs"].assign(**{"train.budget": 4})
    v = verdict_on(study.verdicts(t), "windows")
    (name,) = re.findall(r"the (\w+) job", v.measured)
    (job,) = [j for j in study_jobs(study.__name__)["full"] if j.name == name]
    assert name == "stream_long_protocols" and "train.budget=4" in job.args
    assert f"{study.MEASURE} train.budget=4`" in v.measured


def count_table(level: dict) -> pd.DataFrame:
    """ngram rows of the stream study, every scope at its own level ({scope: loss})."""
    rows = []
    for order, name in ((2, "bigram-count"), (3, "trigram-count")):
        base = {"model": name, "family": "count", "order": order, "seq_len": 64,
                "batch_size": 32, "study": "stream", "status": "complete"}  # fmt: skip
        rows.append(base | {"scope": "windows", "sample": 0, "val_loss": level["windows"]})
        rows.append(base | {"scope": "stream", "val_loss": level["stream"]})
        for seed in (0, 1, 2):  # the test windows of each data seed: their mean is drawn
            rows.append(base | {"scope": "test", "sample": seed,
                                "test_loss": level["test"] + 0.01 * (seed - 1)})  # fmt: skip
        rows.append(base | {"scope": "test_stream", "test_loss": level["test_stream"]})
    return pd.DataFrame(rows)


def test_the_figure_says_test_split_and_draws_the_test_count_levels(tmp_path):
    texts = []

    def read(fig, name):
        texts.extend([fig.get_suptitle()] + [t.get_text() for ax in fig.axes for t in ax.texts])
        texts.extend(ax.get_ylabel() for ax in fig.axes)

    t = tables({"windows": BETTER, "stream": WORSE})
    level = {"windows": 2.61, "stream": 2.62, "test": 2.63, "test_stream": 2.64}
    study.section(t | {"ngram": count_table(level)}, Figures(tmp_path, {"lstm": "recurrent"},
                                                            on_save=read))  # fmt: skip
    said = " ".join(" ".join(texts).split())  # wrapped titles read as one line
    assert "test split" in said and "test-split loss (nats/token)" in said
    assert "count bigram 2.63" in said and "count trigram 2.64" in said  # test, test_stream
    assert "2.61" not in said and "2.62" not in said  # the validation levels are not drawn
