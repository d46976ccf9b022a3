"""Study stream (C1*): the verdict from synthetic runs tables, every outcome and its control,
the section's table and figure, and the bench jobs."""

import matplotlib
import pandas as pd
import pytest

from seqbench.report.plot import Figures
from seqbench.studies import stream as study
from seqbench.studies import study_jobs

matplotlib.use("Agg")


def runs(random, stream, unigram=3.0, study_name="stream"):
    rows = [
        {"arm": arm, "val_loss": v, "seed": i}
        for arm, losses in (("false", random), ("true", stream))
        for i, v in enumerate(losses)
    ]
    df = pd.DataFrame(rows)
    return df.assign(
        run=[f"r{i}" for i in range(len(df))],
        **{"data.stream": df.arm.map({"false": False, "true": True})},
        study=study_name,
        status="complete",
        model="lstm",
        family="recurrent",
        task="text",
        unigram_xent=unigram,
        **{"train.steps": 400, "train.batch_size": 32, "data.seq_len": 64},
    ).drop(columns="arm")


@pytest.mark.parametrize(
    "random, stream, unigram, verdict",
    [
        ([2.10, 2.12, 2.11], [2.00, 2.02, 2.01], 3.0, "supported"),
        ([2.00, 2.02, 2.01], [2.10, 2.12, 2.11], 3.0, "not supported"),
        ([2.00, 2.20, 2.10], [2.05, 2.15, 2.09], 3.0, "inconclusive"),  # intervals overlap
        ([2.10, 2.12, 2.11], [2.00, 2.02, 2.01], 2.2, "inconclusive"),  # > 0.9 x unigram
        ([2.10], [2.00], 3.0, "inconclusive"),  # one seed: no interval
    ],
)
def test_each_verdict_follows_from_the_numbers(random, stream, unigram, verdict):
    (v,) = study.verdicts({"runs": runs(random, stream, unigram)})
    assert v.claim == "C1*" and v.verdict == verdict, v.measured
    assert v.rule == study.RULE.text and f"{study.RULE.learned} x the unigram" in v.rule


def test_other_studies_runs_and_one_armed_tables_decide_nothing():
    assert study.verdicts({"runs": runs([2.1, 2.2], [2.0, 2.1], study_name="core")}) == []
    one_arm = runs([2.1, 2.2], [2.0, 2.1])
    assert study.verdicts({"runs": one_arm[one_arm["data.stream"] == False]}) == []  # noqa: E712


def test_section_table_and_figure(tmp_path):
    table = runs([2.10, 2.12, 2.11], [2.00, 2.02, 2.01])
    curves = pd.DataFrame(
        [
            {"run": r, "model": "lstm", "tokens_seen": t, "val_loss": v + 0.2 * (t == 1)}
            for r, v in zip(table.run, table.val_loss)
            for t in (1, 2)
        ]
    )
    md = study.section({"runs": table, "curves": curves}, Figures(tmp_path, {"lstm": "recurrent"}))
    assert (tmp_path / "stream_vs_random.png").exists() and "stream_vs_random.png" in md
    assert "Both arms saw 819,200 training tokens" in md
    row = next(ln for ln in md.splitlines() if ln.startswith("| lstm"))
    assert "| 3 | supported |" in row
    assert study.section({"runs": pd.DataFrame()}, Figures(tmp_path, {})).startswith("_No stream")


def test_bench_jobs_run_the_experiment():
    assert set(study_jobs(study.__name__)) == {"smoke", "cpu", "gpu"}
    for jobs in study_jobs(study.__name__).values():
        job, ngram = jobs  # training, then the count n-grams the figure draws
        assert job.module == "seqbench.train" and job.args[:2] == ["-m", "+experiment=stream"]
        assert ngram.args[:3] == ["-m", "what=ngram", "+experiment=stream"]
        assert "data.stream=false" in ngram.args  # one job: the stream row covers that arm
