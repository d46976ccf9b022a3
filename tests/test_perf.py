"""seqbench.perf: the overhead benchmark produces paired ratios with IQR from identical
computations, and FLOPs are counted where they happen (seqbench.flops)."""

import math

import pandas as pd
import pytest
import torch
from conftest import compose_cfg
from omegaconf import OmegaConf

from seqbench import perf, studies
from seqbench.config import ConfigError, build_model, model_configs
from seqbench.flops import train_step_flops
from seqbench.perf.mfu import recurrent_flops
from seqbench.report.collect import collect
from seqbench.report.plot import Figures

TINY = [
    "device=cpu",
    "threads=1",
    "data.distance=4",
    "overhead.seq_len=16",
    "overhead.batch_size=4",
    "overhead.steps=2",
    "overhead.repeats=3",
    "overhead.warmup=1",
    "train_loop.steps=6",
    "train_loop.repeats=2",
    "train_loop.warmup=0",
    "mfu.models=[lstm,transformer,mingru]",
    "mfu.seq_lens=[16]",
    "mfu.tokens_per_batch=64",
    "mfu.steps=1",
    "mfu.repeats=2",
    "mfu.peak_matmul_n=128",
]


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    out = tmp_path_factory.mktemp("perf")
    cfg = compose_cfg([*TINY, f"out_dir={out}"], config_name="perf")
    return cfg, perf.run(cfg), collect(out), out


def test_overhead_rows_carry_paired_ratios_with_iqr(measured):
    _, summary, tables, _ = measured
    assert summary["perf"]["status"] == "complete", summary
    rows = tables["perf"]
    assert list(rows.comparison) == [
        "lstm_step",
        "lstm_step_tiny_d8",
        "transformer_step",
        "transformer_step_tiny_d8",
        "train_loop",
    ]
    for r in rows.itertuples():
        assert 0 < r.ratio_q25 <= r.ratio_median <= r.ratio_q75 < math.inf
        assert r.ratio_iqr == pytest.approx(r.ratio_q75 - r.ratio_q25)
        assert r.repeats >= 2 and r.seqbench_tokens_per_s > 0 and r.bare_tokens_per_s > 0
        assert r.meets_goal == int(r.ratio_median >= perf.GOAL)
        assert math.isfinite(r.overhead_us_per_step)
    steps = rows[rows.comparison.str.endswith("_step")]
    # same weights, same batch, same recipe: both sides computed the same losses throughout
    assert (steps.loss_diff < 1e-5).all(), steps.loss_diff


def test_mfu_rows(measured):
    _, summary, tables, _ = measured
    assert summary["mfu"]["status"] == "complete", summary
    rows = tables["mfu"].set_index("model")
    assert sorted(rows.index) == ["lstm", "mingru", "transformer"]
    assert (rows.flops_per_step > 0).all()
    assert rows.loc["lstm", "flops_counted_on"] == "unrolled"  # the fused kernel is opaque
    assert rows.loc["mingru", "flops_counted_on"] == "scan"
    pd.testing.assert_series_equal(
        rows.mfu_measured, rows.flops_per_s / rows.peak_measured_flops_per_s, check_names=False
    )
    assert rows.mfu_nominal.isna().all()  # no nominal peak for a CPU


def test_rerun_skips_a_complete_measurement(measured):
    cfg, _, _, _ = measured
    again = perf.run(cfg)
    assert all(s.get("skipped") for s in again.values())


@pytest.mark.parametrize("name", ["lstm", "transformer"])
def test_bare_twin_computes_what_seqbench_computes(name):
    node = OmegaConf.merge(model_configs()[name], {"max_len": 32} if name == "transformer" else {})
    torch.manual_seed(0)
    sb = build_model(node, 11, "cpu")
    bare = perf.bare_model(name, sb, 11, 32)
    bare.load_state_dict(sb.state_dict())  # strict: same names and shapes
    tokens = torch.randint(11, (2, 32))
    torch.testing.assert_close(bare(tokens), sb(tokens)[0], rtol=1e-5, atol=1e-5)


def test_flop_count_sees_attention_and_needs_the_unrolled_path():
    torch.manual_seed(0)
    tf = build_model(OmegaConf.merge(model_configs()["transformer"], {"max_len": 64}), 11, "cpu")
    flops = {T: train_step_flops(tf, *(torch.randint(11, (2, T)),) * 2) for T in (16, 32)}
    assert flops[32] > 2 * flops[16]  # the T^2 attention term is counted on CPU too
    lstm = {
        impl: build_model(OmegaConf.merge(model_configs()["lstm"], {"impl": impl}), 11, "cpu")
        for impl in ("fused", "unrolled")
    }
    tokens = torch.randint(11, (2, 32))
    fused, unrolled = (train_step_flops(m, tokens, tokens) for m in lstm.values())
    assert unrolled > 10 * fused  # the fused kernel's matmuls are invisible to the counter
    # a recurrence's count is affine in T: extrapolating from T=8 and 16 (what perf does for
    # long T) gives exactly the count at T=32
    assert recurrent_flops(lstm["unrolled"], tokens, tokens, n=8) == unrolled


@pytest.mark.parametrize(
    "override, key",
    [
        ("overhead.models=[gru]", "overhead.models"),
        ("mfu.models=[nope]", "mfu.models"),
        ("mfu.repeats=1", "mfu.repeats"),
        ("threads=0", "threads"),
        ("overhead.tiny.seq_len=99", "overhead.tiny.seq_len"),
        ("data.distance=70", "data.distance"),
    ],
)
def test_bad_config_is_one_clear_line(override, key):
    cfg = compose_cfg(["device=cpu", override], config_name="perf")
    with pytest.raises(ConfigError, match=key) as e:
        perf.check(cfg)
    assert "\n" not in str(e.value)


def test_section_renders_tables_and_figures(measured, tmp_path):
    _, _, tables, _ = measured
    md = studies.load("harness_overhead").section(tables, Figures(tmp_path, {}))
    assert "MFU = achieved FLOP/s / peak FLOP/s" in md and "transformer_step" in md
    assert (tmp_path / "perf_overhead.png").exists() and (tmp_path / "perf_mfu.png").exists()
