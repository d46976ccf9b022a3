"""seqbench.perf: the overhead benchmark produces paired ratios with IQR from identical
computations (against the careful bare loop, and at pytorch/examples' shapes against that
example's step too), start-up is measured per process, and FLOPs are counted where they happen
(seqbench.flops)."""

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
    "peer.tokenizer=char",  # the example's recipe on a small vocabulary: a quick check
    "peer.seq_len=8",
    "peer.batch_size=4",
    "peer.repeats=2",
    "peer.warmup=0",
    "tables=[perf,mfu]",
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
        "lstm_peer_careful",
        "lstm_peer_examples",
        "transformer_peer_careful",
        "transformer_peer_examples",
        "train_loop",
    ]
    for r in rows.itertuples():
        assert 0 < r.ratio_q25 <= r.ratio_median <= r.ratio_q75 < math.inf
        assert r.ratio_iqr == pytest.approx(r.ratio_q75 - r.ratio_q25)
        assert r.repeats >= 2 and r.seqbench_tokens_per_s > 0 and r.bare_tokens_per_s > 0
        goal = perf.PEER_GOAL if r.comparison.endswith("_examples") else perf.GOAL
        assert r.goal == goal and r.meets_goal == int(r.ratio_median >= goal)
        assert math.isfinite(r.overhead_us_per_step)
    peer = rows[rows.comparison.str.contains("_peer_")]
    assert (peer.seq_len == 8).all() and (peer.batch_size == 4).all()
    # one interleave: both rows of a model share the seqbench side's timings
    for _, g in peer.groupby("model"):
        assert g.seqbench_tokens_per_s.nunique() == 1
    steps = rows[rows.comparison.str.endswith("_step")]
    # same weights, same batch, same recipe: both sides computed the same losses throughout
    assert (steps.loss_diff < 1e-5).all(), steps.loss_diff


def test_timed_rows_record_the_load_and_the_spread_over_groups(measured):
    """Issue 23 item 6: every timed row carries the 1-minute load average around its timing
    and the lowest / highest median over groups of its blocks, in the order they ran."""
    _, _, tables, _ = measured
    for table, name in (("perf", "ratio"), ("mfu", "step_s")):
        rows = tables[table]
        lo, hi = rows[f"{name}_block_min"], rows[f"{name}_block_max"]
        assert ((0 < lo) & (lo <= hi) & (hi < math.inf)).all(), rows
        assert (rows.load_start >= 0).all() and (rows.load_end >= 0).all()


def test_spread_groups_in_run_order():
    from seqbench.timer import spread

    # a machine that slowed down half-way: the last group's median shows it
    assert spread([1, 1, 1, 1, 2, 2], 3, "r") == {"r_block_min": 1.0, "r_block_max": 2.0}
    assert spread([1.0, 3.0], 3, "r") == {"r_block_min": 1.0, "r_block_max": 3.0}  # 2 groups


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


@pytest.mark.parametrize(
    "name, sizes",
    [
        ("lstm", {}),
        ("lstm", {"d_embed": 24}),
        ("transformer", {"max_len": 32}),
        ("transformer", {"max_len": 32, "d_ff": 40, "n_heads": 2}),
    ],
)
def test_bare_twin_computes_what_seqbench_computes(name, sizes):
    node = OmegaConf.merge(model_configs()[name], sizes)
    torch.manual_seed(0)
    sb = build_model(node, 11, "cpu")
    bare = perf.bare_model(name, sb, 11, 32)
    bare.load_state_dict(sb.state_dict())  # strict: same names and shapes
    tokens = torch.randint(11, (2, 32))
    (logits, state), (sb_logits, sb_state) = bare(tokens), sb(tokens)
    torch.testing.assert_close(logits, sb_logits, rtol=1e-5, atol=1e-5)
    if name == "lstm":  # the state carried to the next window is the same too
        torch.testing.assert_close(bare(tokens, state)[0], sb(tokens, sb_state)[0])


def test_the_examples_step_reads_the_windows_seqbench_reads_and_trains():
    """pytorch/examples' batchify is seqbench's, time-major; its windows are the stream's."""
    from seqbench.data.text import Text
    from seqbench.perf.examples import Examples, batchify, get_batch

    task = Text(seq_len=8, stream=True)
    ids = task.streams["train"]
    assert torch.equal(batchify(ids, 4, "cpu"), task.columns(4).t())  # [N, B] = [B, N]^T
    source = batchify(ids, 4, "cpu")
    for i in (0, 1, 5):
        data, targets = get_batch(source, i * 8, 8)
        tokens, sb_targets = task.batch("train", i, 4)
        assert torch.equal(data, tokens.t()) and torch.equal(targets, sb_targets.t().reshape(-1))
    torch.manual_seed(0)
    for model in ("lstm", "transformer"):
        ex = Examples(model, ids, task.vocab_size, "cpu", emsize=16, nhid=16, bptt=8,
                      batch_size=4, lr=1.0, dropout=0.0)  # fmt: skip
        losses = [ex.step().item() for _ in range(30)]
        assert ex.i == 30 * 8 and math.isfinite(ex.total_loss)
        assert sum(losses[-5:]) < sum(losses[:5])  # its SGD step learns


def test_startup_is_measured_per_process_and_needs_no_dynamo_for_help_or_a_refusal(tmp_path):
    cfg = compose_cfg(
        ["device=cpu", "tables=[startup]", "startup.repeats=1", f"out_dir={tmp_path}"],
        config_name="perf",
    )
    summary = perf.run(cfg)["startup"]
    assert summary["status"] == "complete", summary
    rows = collect(tmp_path)["startup"].set_index("command")
    assert list(rows.index) == ["import torch", "train --help", "train refused value",
                                "train 1 step"]  # fmt: skip
    assert list(rows.returncode) == [0, 0, 2, 0]
    floor = rows.loc["import torch", "cpu_s_median"]
    assert (rows.beyond_torch_s == rows.cpu_s_median - floor).all()
    assert rows.loc["train --help", "imports_dynamo"] == 0
    assert rows.loc["train refused value", "imports_dynamo"] == 0
    assert rows.loc["train 1 step", "imports_dynamo"] == 1  # torch.optim's own import: seen
    assert rows.loc["train --help", "goal"] == perf.STARTUP_GOAL
    assert pd.isna(rows.loc["train 1 step", "goal"])


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
        ("peer.models=[gru]", "peer.models"),
        ("peer.tokenizer=bpe", "peer.tokenizer"),
        ("tables=[perf,speed]", "tables"),
        ("data.distance=70", "data.distance"),
        ("spread_blocks=2", "spread_blocks"),  # two groups cannot show the odd one
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
    for png in ("harness_overhead.png", "harness_overhead_mfu.png"):
        assert (tmp_path / png).exists()
