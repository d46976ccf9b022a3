"""Study stream (C1*): both arms read under each protocol (what=protocols rows), each verdict
from synthetic tables under each protocol, pairing by seed, a family the rule does not name,
the section's tables and figure, and the bench jobs."""

import matplotlib
import pandas as pd
import pytest

from seqbench.report.plot import Figures
from seqbench.studies import stream as study
from seqbench.studies import study_jobs

matplotlib.use("Agg")

NEUTRAL = ([2.00, 2.20, 2.10], [2.05, 2.15, 2.09])  # the other protocol: intervals overlap


def tables(scores: dict, unigram=3.0, model="lstm", family="recurrent", study_name="stream"):
    """{"runs", "protocols"} as collect() returns them: one complete training run per arm and
    seed, and its rows under each protocol of ``scores`` {protocol: (random, stream)}."""
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
                                 "seed": seed, "arm": arm, "protocol": protocol,
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
    found = study.verdicts(tables({protocol: (random, stream), other: NEUTRAL}, unigram))
    assert len(found) == 2 and {v.claim for v in found} == {"C1*"}
    v = verdict_on(found, protocol)
    assert v.verdict == verdict, v.measured
    assert v.rule == study.RULE.text and f"{study.RULE.learned} x the unigram" in v.rule
    assert v.measured.startswith("lstm: random ") and "held-out tokens" in v.measured
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
    (v,) = study.verdicts(merged(lstm, ssm))
    assert v.verdict == "supported"  # the recurrent model's; the ssm does not vote
    assert "ssm (not compared by this rule): s4: random" in v.measured
    assert v.measured.endswith(": not supported")  # what the rule says of it
    (alone,) = study.verdicts(ssm)
    assert alone.verdict == "not measured" and alone.measured.startswith("ssm (not compared")


def test_recurrent_models_that_disagree_are_nuanced():
    lstm = tables({"stream": ([2.10, 2.12, 2.11], [2.00, 2.02, 2.01])})
    gru = tables({"stream": ([2.00, 2.02, 2.01], [2.10, 2.12, 2.11])}, model="gru")
    (v,) = study.verdicts(merged(lstm, gru))
    assert v.verdict == "nuanced" and "gru: random" in v.measured and "lstm: random" in v.measured


def test_rows_of_other_studies_unfinished_runs_or_one_arm_decide_nothing():
    scores = {"windows": ([2.1, 2.2], [2.0, 2.1])}
    assert study.verdicts(tables(scores, study_name="core")) == []
    one_arm = tables(scores)
    one_arm["protocols"] = one_arm["protocols"][one_arm["protocols"].arm == "random"]
    assert study.verdicts(one_arm) == []
    unfinished = tables(scores)
    unfinished["runs"] = unfinished["runs"].assign(status="failed")
    assert study.verdicts(unfinished) == []
    assert study.verdicts({"runs": tables(scores)["runs"]}) == []  # not measured yet


def test_section_tables_and_figure(tmp_path):
    t = tables({"windows": ([2.10, 2.12, 2.11], [2.00, 2.02, 2.01]), "stream": NEUTRAL})
    curves = pd.DataFrame([{"run": r, "model": "lstm", "tokens_seen": 1, "val_loss": 2.0}
                           for r in t["runs"].run])  # fmt: skip
    md = study.section(t | {"curves": curves}, Figures(tmp_path, {"lstm": "recurrent"}))
    assert (tmp_path / "stream_vs_random.png").exists() and "stream_vs_random.png" in md
    assert "Both arms saw 819,200 training tokens" in md
    windows = next(ln for ln in md.splitlines() if ln.startswith("| random windows"))
    assert "| 3 | 16384 | supported |" in windows
    assert "| 3 | 16384 | inconclusive |" in next(
        ln for ln in md.splitlines() if ln.startswith("| the whole stream")
    )
    assert "As trained" in md
    unscored = study.section({"runs": t["runs"]}, Figures(tmp_path / "b", {}))
    assert "Not scored under both protocols yet" in unscored and ".png" not in unscored
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
        ngram = next(j for j in jobs if j.name == "stream_ngram")
        assert "data.stream=false" in ngram.args  # one job: the stream row covers that arm
    (long,) = [j for j in profiles["full"] if j.name == "stream_long_protocols"]
    assert "train.budget=4" in long.args and long.rank == 20


def test_a_run_read_at_another_step_has_no_protocol_score():
    """The stability column's half budget moves a run to an earlier step: the scores are of
    the state it ended in, so they no longer speak for it."""
    t = tables({"windows": ([2.10, 2.12, 2.11], [2.00, 2.02, 2.01])})
    t["protocols"] = t["protocols"].assign(train_steps=400)
    assert len(study.verdicts(t | {"runs": t["runs"].assign(step=400)})) == 1
    assert study.verdicts(t | {"runs": t["runs"].assign(step=200)}) == []
