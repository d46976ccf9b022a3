"""Measurement runs: durable run dirs, timer fields, decode memory, influence, report sections.

No test asserts a duration: these machines are shared and noisy. Timing rows are checked for
the fields they must carry, never for their values.
"""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import compose_cfg

from seqbench import store, studies
from seqbench.measure.common import MAX_COUNT
from seqbench.measure.influence import training_config
from seqbench.measure.run import run_measurement
from seqbench.measure.timing import time_call
from seqbench.report.collect import collect
from seqbench.report.plot import Figures
from seqbench.report.verdict import VERDICTS
from seqbench.report.write import model_families

ROOT = Path(__file__).resolve().parents[1]
BASE = ["device=cpu", "train.threads=1", "data.seq_len=16", "data.distance=4"]
SMALL = {
    "span": ["what=span", "what.lengths=[4,8,12]", "what.layers=[1,2]"],
    "timing": [
        "what=timing",
        "what.lengths=[8,16]",
        "what.impls=[fused,unrolled]",
        "what.batch_size=2",
        "what.tokens_per_batch=32",
        "what.min_run_time=0.001",
        "what.min_blocks=2",
        "what.warmup=1",
    ],
    "decode": [
        "what=decode",
        "what.contexts=[4,8]",
        "what.new_tokens=2",
        "what.min_run_time=0.001",
        "what.min_blocks=2",
        "what.warmup=1",
    ],
    "kernels": [
        "what=kernels",
        "what.context=8",
        "what.steps=3",
        "what.min_run_time=0.001",
        "what.min_blocks=2",
        "what.warmup=1",
    ],
    "influence": [
        "what=influence",
        "what.batch_size=8",
        "train.steps=4",
        "train.warmup=1",
        "train.eval_every=4",
        "train.eval_batches=1",
        "train.batch_size=4",
    ],
}


def _run(tmp_path, what, *overrides):
    cfg = compose_cfg(
        [*BASE, f"out_dir={tmp_path / 'runs'}", *SMALL[what], *overrides], config_name="measure"
    )
    return run_measurement(cfg)


def _rows(summary):
    return pd.read_csv(Path(summary["run_dir"]) / "rows.csv")


def test_timer_results_carry_median_iqr_threads():
    x = torch.randn(32, 32)
    r = time_call(lambda: x @ x, warmup=1, min_blocks=3, min_run_time=0.001)
    assert {"median_s", "iqr_s", "blocks", "threads"} <= set(r)
    assert r["blocks"] >= 3 and r["median_s"] > 0 and r["iqr_s"] >= 0
    assert r["threads"] == torch.get_num_threads()


def test_cli_run_writes_rows_and_run_json_and_a_rerun_skips(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "seqbench.measure",
        "what=span",
        "model=rnn",
        "what.lengths=[4,8]",
        "what.layers=[1]",
        "what.passes=[forward]",
        f"out_dir={tmp_path}",
        "device=cpu",
        "hydra.run.dir=" + str(tmp_path / "h"),
    ]
    first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    (run_dir,) = [p for p in tmp_path.glob("adhoc-span-rnn-lagrecall-*")] or [None]
    assert run_dir is None  # study defaults to "measure"
    (run_dir,) = list(tmp_path.glob("measure-span-rnn-lagrecall-*"))
    record = json.loads((run_dir / "run.json").read_text())
    assert (record["kind"], record["table"], record["status"]) == ("measure", "span", "complete")
    rows = pd.read_csv(run_dir / "rows.csv")
    assert list(rows["T"]) == [4, 8] and set(rows.impl) == {"unrolled"}
    before = (run_dir / "rows.csv").read_text()
    # the same command line composed in-process has the same content key: skipped
    again = run_measurement(compose_cfg(cmd[3:-1], config_name="measure"))
    assert again["skipped"] is True and again["run_dir"] == str(run_dir)
    assert (run_dir / "rows.csv").read_text() == before


def test_bad_what_value_stops_before_work_with_one_line(tmp_path, capsys):
    from seqbench import cli

    argv = [
        "-m",
        "what=span",
        "model=rnn,lstm",
        "what.lengths=[0,8]",
        f"out_dir={tmp_path}",
        "device=cpu",
    ]
    assert cli.main("measure", argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()  # the sweeper names the job
    assert line.startswith(
        "seqbench: error: what.lengths=[0, 8] is not allowed: a non-empty list of integers in "
        f"[1, {MAX_COUNT}] (job 1 of 2: what=span model=rnn what.lengths=[0,8]"
    )
    assert not list(tmp_path.glob("*-span-*"))


def test_timer_splits_its_blocks_into_spread_groups():
    x = torch.randn(32, 32)
    r = time_call(lambda: x @ x, warmup=1, min_blocks=2, min_run_time=0.001, spread_blocks=4)
    assert r["blocks"] >= 4  # one timed block per group at least
    assert 0 < r["block_min_s"] <= r["block_max_s"] and r["load_start"] >= 0


@pytest.mark.parametrize("what", ["timing", "decode"])
def test_fewer_than_three_spread_groups_are_refused(tmp_path, capsys, what):
    from seqbench import cli

    argv = [*BASE, *SMALL[what], "model=rnn", "what.spread_blocks=2", f"out_dir={tmp_path}"]
    assert cli.main("measure", argv) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "seqbench: error: what.spread_blocks=2 is not allowed: an integer in [3, 100]"
    ]
    assert not list(tmp_path.glob("*"))


def test_span_rows_trace_the_unrolled_path_and_grow_linearly(tmp_path):
    s = _run(tmp_path, "span", "model=lstm")
    assert s["status"] == "complete" and s["rows"] == 12
    rows = _rows(s)
    assert set(rows.impl) == {"unrolled"} and set(rows.n_layers) == {1, 2}
    fwd = rows[(rows["pass"] == "forward") & (rows.n_layers == 1)].sort_values("T")
    assert fwd.span_ops.diff().dropna().nunique() == 1  # equal steps: linear in T
    assert (rows.unseen_writes == 0).all()
    assert (rows.flops_per_step == rows.work_flops / rows.span_ops).all()
    assert _run(tmp_path, "span", "model=lstm")["skipped"] is True


def test_timing_rows_carry_median_iqr_threads_device_and_path(tmp_path):
    s = _run(tmp_path, "timing", "model=gru")
    rows = _rows(s)
    assert set(rows.impl) == {"fused", "unrolled"}
    assert set(rows["mode"]) == {"fixed_batch", "fixed_tokens"}
    assert set(rows.step) == {"forward", "train_step"}
    assert rows.median_s.notna().all() and (rows.iqr_s >= 0).all()
    assert set(rows.threads) == {1} and set(rows.device) == {"cpu"}
    # what a verdict on timings names: the machine, torch and CUDA (none here), the dtype
    assert set(rows.device_name) == {"cpu"} and set(rows.torch) == {torch.__version__}
    assert rows.cuda.isna().all() and set(rows.dtype) == {"fp32"}
    fixed = rows[rows["mode"] == "fixed_tokens"]
    assert set(fixed.tokens) == {32}  # B = tokens_per_batch // T
    # issue 23 item 6: the spread over groups of timed blocks and the load around each point
    assert (rows.block_min_s > 0).all() and (rows.block_min_s <= rows.block_max_s).all()
    assert (rows.load_start >= 0).all() and (rows.load_end >= 0).all()


def test_decode_state_memory_is_constant_for_a_recurrence_and_grows_for_the_cache(tmp_path):
    bytes_at = {}
    for model in ("lstm", "transformer"):
        rows = _rows(_run(tmp_path, "decode", f"model={model}"))
        assert set(rows["mode"]) == {"state", "recompute", "teacher_forced"}
        assert rows.tokens_per_s.notna().all() and set(rows.torch) == {torch.__version__}
        st = rows[rows["mode"] == "state"].set_index("context").state_bytes
        bytes_at[model] = (st[4], st[8])
        lo, hi = rows.block_min_s_per_token, rows.block_max_s_per_token
        assert ((0 < lo) & (lo <= hi)).all() and rows.load_start.notna().all()
    assert bytes_at["lstm"][0] == bytes_at["lstm"][1] > 0
    assert bytes_at["transformer"][1] == 2 * bytes_at["transformer"][0]


def test_kernel_counts_come_from_the_profile_and_grow_with_depth(tmp_path):
    per_step = {}
    for layers in (1, 3):
        rows = _rows(_run(tmp_path, "kernels", "model=rnn", f"model.n_layers={layers}"))
        eager = rows[rows.path == "eager"].iloc[0]
        assert eager.s_per_step > 0 and eager.us_per_op > 0
        per_step[layers] = eager.ops_per_step
        graph = rows[rows.path == "cuda_graph"].iloc[0]  # CPU here: skipped, with the reason
        assert pd.isna(graph.ops_per_step) and "CUDA graphs need a CUDA device" in graph.note
    # each extra layer adds its own matmuls and nonlinearity to every step
    assert per_step[3] >= per_step[1] + 2 * 2


def test_count_events_counts_kernels_not_views_or_composites():
    from torch.profiler import profile

    from seqbench.measure.kernels import count_events

    x, w = torch.randn(8, 8), torch.randn(8, 8)
    cases = {
        0: lambda: x.view(64).view(8, 8).t(),  # views: no kernel
        1: lambda: torch.nn.functional.linear(x, w),  # composite linear -> one mm
        2: lambda: (torch.tanh(x), torch.tanh(x)),
    }
    for expected, fn in cases.items():
        with profile() as prof:
            fn()
        assert count_events(prof.events())["ops"] == expected, expected


def test_influence_trains_through_the_harness_and_reuses_its_run(tmp_path):
    s = _run(tmp_path, "influence", "model=rnn")
    assert s["status"] == "complete", s
    rows = _rows(s)
    assert set(rows.trained) == {False, True}
    assert rows.grad_norm.gt(0).all() and rows.d.min() == 0
    trained = rows[rows.trained]  # the training run's lr rides along; no criterion was set
    assert set(trained.lr) == {3e-3} and trained.steps_to_criterion.isna().all()
    # the training run is an ordinary harness run, same key as the equivalent train command
    cfg = compose_cfg(
        [*BASE, f"out_dir={tmp_path / 'runs'}", *SMALL["influence"], "model=rnn"],
        config_name="measure",
    )
    plain = compose_cfg(
        [
            *BASE,
            f"out_dir={tmp_path / 'runs'}",
            *SMALL["influence"][2:],
            "model=rnn",
            f"study={cfg.study}",  # the measurement's own study (what.train_study)
        ]
    )
    assert store.content_key(training_config(cfg)) == store.content_key(plain)
    assert len(list((tmp_path / "runs").glob(f"{cfg.study}-rnn-*/model.pt"))) == 1


def test_a_failing_measurement_is_recorded_and_returns(tmp_path):
    s = _run(tmp_path, "influence", "model=rnn", "train.inject_nan_at=1")
    assert s["status"] == "failed" and "diverged" in s["error"]
    record = json.loads((Path(s["run_dir"]) / "run.json").read_text())
    assert record["status"] == "failed"


@pytest.fixture(scope="module")
def run_tree(tmp_path_factory):
    """A tiny run tree: every measurement for lstm and the Transformer, under the studies
    the report sections read."""
    tmp = tmp_path_factory.mktemp("tree")
    studies = {
        "span": "span_vs_length",
        "timing": "time_vs_length",
        "decode": "decode_cost",
        "influence": "path_length",
        "kernels": "kernels",
    }
    for what, study in studies.items():
        for model in ("lstm", "transformer"):
            extra = ["what.impls=[fused]"] if what == "timing" else []
            s = _run(tmp, what, f"model={model}", f"study={study}", *extra)
            assert s["status"] == "complete", s
    return tmp / "runs"


@pytest.mark.parametrize(
    "name", ["span_vs_length", "time_vs_length", "decode_cost", "path_length", "kernels"]
)
def test_study_sections_render_from_real_measurement_runs(run_tree, tmp_path, name):
    study = studies.load(name)
    tables = collect(run_tree)
    figs = Figures(tmp_path, model_families(tables))
    md = study.section(tables, figs)
    assert figs.written and all((tmp_path / png).exists() for png in figs.written)
    assert "nan" not in md.lower().split("**reading.**")[-1][:400]
    for v in study.verdicts(tables):  # timings on a CPU: "not measured on cpu"
        assert (v.verdict in VERDICTS or v.verdict == "not measured on cpu") and v.rule


def test_kernels_section_quotes_the_measured_counts(run_tree, tmp_path):
    tables = collect(run_tree)
    md = studies.load("kernels").section(tables, Figures(tmp_path, model_families(tables)))
    rows = tables["kernels"]
    ops = rows[(rows.model == "lstm") & (rows.path == "eager")].ops_per_step.iloc[0]
    assert "| lstm | fused | eager |" in md and f"{ops:.3g}" in md
    assert "CUDA graphs need a CUDA device" in md
    assert (tmp_path / "kernels.png").exists()


def test_unknown_measurement_name_lists_the_choices(capsys):
    from seqbench import cli

    assert cli.main("measure", ["what=spn"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("seqbench: error: what='spn' is not allowed: choose one of ")
    assert "span" in line and "timing" in line
