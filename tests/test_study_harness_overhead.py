"""Study harness_overhead: no lecture claim; the section's overhead, peer, start-up and MFU
tables and figures from synthetic tables, read whatever study (perf, harness_overhead) wrote
them, each goal met or missed as its numbers say."""

import matplotlib
import pandas as pd

from seqbench.perf.overhead import GOAL, PEER_GOAL
from seqbench.perf.startup import STARTUP_GOAL
from seqbench.report.plot import Figures
from seqbench.studies import harness_overhead as study
from seqbench.studies import study_jobs

matplotlib.use("Agg")

FAMILIES = {"lstm": "recurrent", "transformer": "attention", "mingru": "scan"}
# the columns every synthetic perf / mfu row shares (the figures read only a few of them)
PERF_FIXED = {
    "ratio_iqr": 0.02, "device": "cpu", "threads": 1, "seq_len": 64, "batch_size": 32,
    "steps_per_block": 1, "repeats": 101, "seqbench_tokens_per_s": 1e5,
    "bare_tokens_per_s": 1.02e5, "overhead_us_per_step": 12.5, "loss_diff": 0.0, "model": "-",
    "run": "r", "task": "lagrecall",
}  # fmt: skip
MFU_FIXED = {
    "status": "complete", "impl": "fused", "flops_counted_on": "unrolled", "device": "cpu",
    "dtype": "float32", "threads": 1, "batch_size": 8, "flops_per_step": 2e9,
    "step_s_median": 0.01, "step_s_iqr": 0.001, "flops_per_s": 2e11,
    "peak_measured_flops_per_s": 1e12, "peak_measured_how": "fp32 matmul n=1024",
    "mfu_nominal": float("nan"),
}  # fmt: skip


def _perf():
    rows = [
        {"comparison": c, "ratio_median": r, "study": s, "status": st}
        for c, r, s, st in (
            ("lstm_step", 0.99, "perf", "complete"),  # written before the study had its name
            ("transformer_step", GOAL - 0.05, "harness_overhead", "complete"),
            ("train_loop", 0.97, "harness_overhead", "complete"),
            ("lstm_step_tiny_d8", 0.5, "harness_overhead", "failed"),
        )
    ]
    return pd.DataFrame(rows).assign(
        ratio_q25=lambda d: d.ratio_median - 0.01,
        ratio_q75=lambda d: d.ratio_median + 0.01,
        **PERF_FIXED,
    )


def _with_peer():
    """_perf() plus the two rows per model of the 3-way comparison at pytorch/examples' shapes."""
    peer = _perf().iloc[:4].copy()
    peer["comparison"] = [
        "lstm_peer_careful", "lstm_peer_examples",
        "transformer_peer_careful", "transformer_peer_examples",
    ]  # fmt: skip
    peer["model"] = ["lstm", "lstm", "transformer", "transformer"]
    peer["ratio_median"] = [0.99, 1.2, 0.90, 0.97]  # lstm meets both; transformer neither
    peer["bare_tokens_per_s"] = [1010.0, 830.0, 1100.0, 1030.0]
    peer = peer.assign(
        status="complete",
        goal=[GOAL, PEER_GOAL] * 2,
        seqbench_tokens_per_s=1000.0,
        ratio_q25=lambda d: d.ratio_median - 0.01,
        ratio_q75=lambda d: d.ratio_median + 0.01,
    )
    return pd.concat([_perf(), peer], ignore_index=True)


def _startup():
    rows = [("import torch", 1.5, None), ("train --help", 1.6, STARTUP_GOAL),
            ("train refused value", 2.3, STARTUP_GOAL), ("train 1 step", 4.0, None)]  # fmt: skip
    return pd.DataFrame(
        {
            "command": [c for c, _, _ in rows],
            "cpu_s_median": [v for _, v, _ in rows],
            "goal": [g for _, _, g in rows],
        }
    ).assign(
        cpu_s_q25=lambda d: d.cpu_s_median - 0.1,
        cpu_s_q75=lambda d: d.cpu_s_median + 0.1,
        beyond_torch_s=lambda d: d.cpu_s_median - 1.5,
        imports_dynamo=[0, 0, 0, 1],
        returncode=[0, 0, 2, 0],
        repeats=3,
        argv="python ...",
        status="complete",
        study="harness_overhead",
    )


def _mfu():
    rows = [
        {"model": m, "seq_len": T, "mfu_measured": 0.1 * i + T / 1e4, "study": s}
        for i, (m, s) in enumerate(
            (("lstm", "perf"), ("transformer", "harness_overhead"), ("mingru", "harness_overhead"))
        )
        for T in (64, 256)
    ]
    return pd.DataFrame(rows).assign(**MFU_FIXED)


def test_no_lecture_claim():
    assert study.DECIDES == () and study.verdicts({"perf": _perf(), "mfu": _mfu()}) == []
    assert study.GOAL is GOAL  # the goal lives in seqbench.perf.overhead, typed once


def test_section_draws_both_figures(tmp_path):
    md = study.section({"perf": _perf(), "mfu": _mfu()}, Figures(tmp_path, FAMILIES))
    for name in ("harness_overhead", "harness_overhead_mfu"):
        assert (tmp_path / f"{name}.png").exists() and f"![{name}]({name}.png)" in md
    assert "MFU = achieved FLOP/s / peak FLOP/s" in md and "H100/H200 989, A100 312" in md
    assert f"median ratio >= {GOAL} (overhead <= 5%)" in md
    # both studies' rows are read, the failed one is not
    assert "| lstm_step | cpu |" in md and "| transformer_step | cpu |" in md
    assert "tiny" not in md.split("**FLOP/s")[0].split("\n\n", 1)[1]
    # goal_met is computed from the goal: yes at 0.99, no below it
    lines = {ln.split(" | ")[0]: ln for ln in md.splitlines() if ln.startswith("| ")}
    assert lines["| lstm_step"].endswith("| yes | 0 |")
    assert lines["| transformer_step"].endswith("| no | 0 |")
    assert "fp32 matmul n=1024" in md


def test_peer_rows_side_by_side_with_each_goal_from_its_ratio(tmp_path):
    md = study.section({"perf": _with_peer()}, Figures(tmp_path, FAMILIES))
    overhead, peer = md.split("**At pytorch/examples' word_language_model shapes**")
    assert "_peer_" not in overhead  # the peer rows have their own table
    lines = {ln.split(" | ")[0]: ln for ln in peer.splitlines() if ln.startswith("| ")}
    assert (
        "| 1000 | 1010 | 830 | 0.990 [0.980, 1.000] | 1.200 [1.190, 1.210] | 2/2 |"
        in (lines["| lstm"])
    )
    assert lines["| transformer"].endswith("| 0/2 |")
    assert f"`vs_careful` (goal >= {GOAL})" in peer and f"(goal >= {PEER_GOAL})" in peer


def test_startup_reports_seconds_beyond_torch_against_its_goal(tmp_path):
    md = study.section({"startup": _startup()}, Figures(tmp_path, FAMILIES))
    assert f"at most {STARTUP_GOAL:g} s beyond torch" in md
    assert "`train --help` +0.10 s (within 0.5 s)" in md
    assert "`train refused value` +0.80 s (over 0.5 s)" in md
    lines = {ln.split(" | ")[0]: ln for ln in md.splitlines() if ln.startswith("| ")}
    assert " | yes | " in lines["| train --help"] and " | no | " in lines["| train refused value"]
    assert " | - | " in lines["| train 1 step"]  # no goal: scale only


def test_section_with_one_table_or_none(tmp_path):
    figs = Figures(tmp_path, FAMILIES)
    md = study.section({"mfu": _mfu()}, figs)
    assert "harness_overhead_mfu.png" in md and "Harness overhead" not in md
    assert study.section({"runs": pd.DataFrame()}, figs) == "_No seqbench.perf runs._"


def test_bench_jobs():
    names = {p: [j.name for j in jobs] for p, jobs in study_jobs(study.__name__).items()}
    assert names == {
        "smoke": ["harness_overhead"],
        "cpu": ["harness_overhead"],
        "full": ["harness_overhead"],  # the cpu job: nothing to train longer
        "gpu": ["harness_overhead", "harness_overhead_compile"],
    }
    for jobs in study_jobs(study.__name__).values():
        for job in jobs:
            assert job.module == "seqbench.perf" and job.args[0] == "+experiment=harness_overhead"
    assert "compile=true" in study_jobs(study.__name__)["gpu"][1].args


def test_goal_met_says_when_groups_of_pairs_disagree(tmp_path):
    # the median ratio meets the goal, but one group of pairs fell below it
    perf = _perf().assign(ratio_block_min=lambda d: d.ratio_median - 0.03,
                          ratio_block_max=lambda d: d.ratio_median + 0.03)  # fmt: skip
    md = study.section({"perf": perf}, Figures(tmp_path, FAMILIES))
    lines = {ln.split(" | ")[0]: ln for ln in md.splitlines() if ln.startswith("| ")}
    assert f"| blocks disagree: {0.97 - 0.03:.3f}-{0.97 + 0.03:.3f} |" in lines["| train_loop"]
    assert lines["| lstm_step"].endswith("| yes | 0 |")  # 0.96-1.02: every group meets it
