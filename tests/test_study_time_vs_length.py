"""Study time_vs_length (C4, wall-clock): the rule on synthetic timing tables (every verdict
reachable on CUDA, `not measured on cpu` with the figures kept on a CPU, models picked by
family), the hardware stamp read from the rows, the IQRs shown, the reading generated from
the numbers, and the section's figures."""

import matplotlib
import pandas as pd
import pytest

from seqbench.report.plot import Figures
from seqbench.studies import study_jobs
from seqbench.studies import time_vs_length as study

matplotlib.use("Agg")

FAMILIES = {"rnn": "recurrent", "lstm": "recurrent", "transformer": "attention", "mingru": "scan"}
PATHS = {"rnn": ("fused", "unrolled"), "lstm": ("fused", "unrolled"), "transformer": ("-",),
         "mingru": ("scan", "sequential")}  # fmt: skip
LENGTHS = (32, 64, 128, 256)


CUDA = {"device": "cuda", "device_name": "NVIDIA H200", "torch": "2.13.0", "cuda": "CUDA 12.8",
        "dtype": "bf16-autocast"}  # fmt: skip
CPU = {"device": "cpu", "device_name": "cpu", "torch": "2.13.0", "dtype": "fp32"}


def _timing(seconds, models=("rnn", "lstm", "transformer", "mingru"), study_name=study.STUDY,
            hardware=CUDA):  # fmt: skip
    """seconds(model, impl, mode, step, T) -> median seconds per call, for every series."""
    rows = []
    for m in models:
        for impl in PATHS[m]:
            for mode in ("fixed_batch", "fixed_tokens"):
                for step in ("forward", "train_step"):
                    for T in LENGTHS:
                        B = 8 if mode == "fixed_batch" else 1024 // T
                        s = seconds(m, impl, mode, step, T)
                        rows.append({
                            "run": f"{m}-{impl}", "study": study_name, "status": "complete",
                            "model": m, "family": FAMILIES[m], "impl": impl, "mode": mode,
                            "step": step, "T": T, "batch_size": B, "tokens": B * T,
                            "median_s": s, "iqr_s": 0.1 * s, "threads": 1, **hardware,
                        })  # fmt: skip
    return {"timing": pd.DataFrame(rows)}


def _speeds(transformer, fused, unrolled=None, hardware=CUDA):
    """A table where, per call, the Transformer takes ``transformer`` and the recurrent paths
    ``fused`` / ``unrolled`` seconds (the scan family in between)."""
    unrolled = unrolled if unrolled is not None else 4 * fused
    cost = {"-": transformer, "fused": fused, "unrolled": unrolled, "scan": 1.0, "sequential": 3.0}
    return _timing(lambda m, impl, mode, step, T: cost[impl] * T / 32, hardware=hardware)


@pytest.mark.parametrize(
    "tables, verdict",
    [
        (_speeds(transformer=1.0, fused=2.0), "supported"),  # beats even the fused kernels
        (_speeds(transformer=1.0, fused=0.5, unrolled=2.0), "nuanced"),  # only the loops
        (_speeds(transformer=3.0, fused=0.5, unrolled=2.0), "not supported"),
    ],
)
def test_c4_time_verdicts_on_cuda(tables, verdict):
    (v,) = study.verdicts(tables)
    assert v.claim == "C4" and v.verdict == verdict
    assert v.rule == study.RULE.text and "*fused*" in v.rule
    assert v.hardware == "NVIDIA H200 (cuda), torch 2.13.0, CUDA 12.8, bf16-autocast, 1 thread(s)"
    assert "fused at T=256: lstm " in v.measured and "unrolled at T=256" in v.measured
    assert v.stability == study.TIMED  # no seeds behind a timing


@pytest.mark.parametrize("transformer, fused", [(1.0, 2.0), (3.0, 0.5)])
def test_on_a_cpu_c4_time_is_not_measured_but_its_figures_are_shown(transformer, fused):
    (v,) = study.verdicts(_speeds(transformer, fused, hardware=CPU))
    assert v.verdict == "not measured on cpu"
    assert v.hardware == "cpu, torch 2.13.0, fp32, 1 thread(s)"
    ratio = f"lstm {fused / transformer:.2g}"
    assert f"fused at T=256: {ratio}" in v.measured
    # the medians and their IQRs at the compared length
    ms = 1e3 * transformer * 256 / 32
    assert f"transformer {ms:.3g} ms (IQR {0.1 * ms:.2g})" in v.measured


def test_one_cpu_series_is_enough_to_leave_the_claim_to_cuda():
    df = _speeds(1.0, 2.0)["timing"]
    df.loc[df.model == "lstm", "device"] = "cpu"
    assert study.verdicts({"timing": df})[0].verdict == "not measured on cpu"


def test_one_slow_fused_model_is_enough_to_lose_supported():
    def seconds(m, impl, mode, step, T):
        if m == "lstm" and impl == "fused":  # oneDNN's LSTM beats the Transformer
            return 0.5
        return {"-": 1.0, "fused": 2.0}.get(impl, 4.0)

    (v,) = study.verdicts(_timing(seconds))
    assert v.verdict == "nuanced" and "lstm 0.5" in v.measured and "rnn 2" in v.measured


def test_the_rule_reads_fixed_tokens_train_steps_only():
    def seconds(m, impl, mode, step, T):  # Transformer slower everywhere but the rule's cell
        fast = mode == study.RULE.mode and step == study.RULE.step
        return {"-": 1.0 if fast else 9.0, "fused": 2.0}.get(impl, 4.0)

    assert study.verdicts(_timing(seconds))[0].verdict == "supported"


def test_no_fused_comparison_no_verdict():
    assert study.verdicts({}) == []
    no_rec = _speeds(1.0, 2.0)["timing"].query("family != 'recurrent'")
    assert study.verdicts({"timing": no_rec}) == []
    elsewhere = _timing(lambda *a: 1.0, study_name="adhoc")
    assert study.verdicts(elsewhere) == []


def test_a_recurrent_model_missing_the_rules_series_leaves_the_path_out():
    df = _speeds(transformer=1.0, fused=2.0)["timing"]
    # the rnn's fused fixed_tokens rows were all skipped (no time): the old rule skipped the
    # path rather than judge it without that model, and so does the port
    gone = (df.model == "rnn") & (df.impl == "fused") & (df["mode"] == "fixed_tokens")
    assert study.verdicts({"timing": df[~gone]}) == []


def test_reading_says_the_loop_costs_only_when_it_does():
    text = study._reading(study._table(_speeds(1.0, 0.5, unrolled=2.0)))
    assert text.startswith("**Reading.** At fixed batch the train step grows as T^k with k = 1")
    assert "the sequential cost of C3 made visible" in text
    assert "the sequential loop's train_step takes 3× (mingru, T=256) the scan path's" in text
    even = study._reading(study._table(_speeds(1.0, 0.5, unrolled=0.5)))
    assert "the unrolled loop's train_step takes 1× (lstm, T=256)" in even
    assert "C3 made visible" not in even


def test_section_draws_the_figures(tmp_path):
    md = study.section(_speeds(1.0, 2.0), Figures(tmp_path, FAMILIES))
    for png in ("time_vs_length_train", "time_vs_length_forward"):
        assert (tmp_path / f"{png}.png").exists() and f"({png}.png)" in md
    assert "cuda, 1 thread(s), bf16-autocast" in md and "| lstm | unrolled |" in md
    assert "| fused | lstm | fused | 256 |" in md  # the rule's cells, median and IQR
    assert "not measured on" not in md
    cpu = study.section(_speeds(1.0, 2.0, hardware=CPU), Figures(tmp_path, FAMILIES))
    assert "`not measured on cpu`" in cpu and study.CPU_CUT in cpu
    assert study.section({}, Figures(tmp_path, FAMILIES)).startswith("_No completed")


def test_bench_jobs_run_both_experiments_alone():
    for profile, jobs in study_jobs(study.__name__).items():
        assert [j.name for j in jobs] == ["time_vs_length", "time_vs_length_scan"], profile
        experiments = [j.command()[2] for j in jobs]
        assert experiments == ["+experiment=time_vs_length", "+experiment=time_vs_length_scan"]
        assert not any("joblib" in a for j in jobs for a in j.args)


def test_the_hardware_stamp_reads_the_rows_and_tolerates_older_ones():
    rows = _speeds(1.0, 2.0)["timing"]
    assert study.stamp(rows) == (
        "NVIDIA H200 (cuda), torch 2.13.0, CUDA 12.8, bf16-autocast, 1 thread(s)"
    )
    older = rows.drop(columns=["device_name", "torch", "cuda"])  # rows from before the fields
    assert study.stamp(older) == "cuda, bf16-autocast, 1 thread(s)"
    assert study.not_parallel(rows) is None and study.not_parallel(older) is None
    mixed = pd.concat([rows, _speeds(1.0, 2.0, hardware=CPU)["timing"]])
    assert study.not_parallel(mixed) == "cpu" and "; " in study.stamp(mixed)  # two machines


def _blocks(tables, spread, column="median_s", prefix="block_{}_s"):
    """The timed groups' lowest and highest medians at ``spread`` x below and above each
    row's median (what seqbench.measure.timing records)."""
    df = tables["timing"]
    tables["timing"] = df.assign(**{prefix.format("min"): df[column] / spread,
                                    prefix.format("max"): df[column] * spread})  # fmt: skip
    return tables


def test_c4_blocks_that_disagree_make_the_verdict_inconclusive_and_say_so():
    # the median says the Transformer is 1.1x faster than the fused kernels; groups 1.2x
    # either side of their medians allow 0.76-1.6: some groups say the reverse
    (v,) = study.verdicts(_blocks(_speeds(transformer=1.0, fused=1.1), 1.2))
    assert v.verdict == "inconclusive"
    assert "blocks disagree: 0.76-1.6 (lstm (fused), rnn (fused))" in v.measured
    # the same medians with groups that agree keep the verdict and add nothing
    (v,) = study.verdicts(_blocks(_speeds(transformer=1.0, fused=1.1), 1.02))
    assert v.verdict == "supported" and "blocks disagree" not in v.measured


def test_c4_on_a_cpu_keeps_not_measured_and_adds_the_disagreement():
    (v,) = study.verdicts(_blocks(_speeds(1.0, 1.1, hardware=CPU), 1.2))
    assert v.verdict == "not measured on cpu" and "blocks disagree: 0.76-1.6" in v.measured


def test_blocks_disagree_reads_both_sides_of_the_threshold():
    assert study.blocks_disagree({"a": (0.9, 1.2), "b": (1.1, 1.3)}, 1) == (
        "blocks disagree: 0.9-1.2 (a)"
    )
    assert study.blocks_disagree({"a": (1.01, 1.2), "b": (float("nan"),) * 2}, 1) == ""
