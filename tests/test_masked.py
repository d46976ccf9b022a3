"""The masked-LM task and the C8 measurement's counting: mask rate, targets, FLOPs, prefix loss."""

import math

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from seqbench.config import CONF_DIR, ConfigError, build_task
from seqbench.data import IGNORE
from seqbench.data.masked import MaskedText
from seqbench.data.text import Text
from seqbench.flops import train_step_flops
from seqbench.measure.objectives import (
    own_loss,
    prefix_loss,
    supervised_targets,
    training_config,
)
from seqbench.models.transformer import Transformer

T = 64


@pytest.fixture(scope="module")
def masked():
    return MaskedText(seq_len=T, mask_rate=0.15)


@pytest.fixture(scope="module")
def text():
    return Text(seq_len=T)


@pytest.mark.parametrize("rate", [0.15, 0.3])
def test_mask_rate_is_as_configured_on_average(rate):
    task = MaskedText(seq_len=T, mask_rate=rate)
    scored = torch.cat([task.batch("train", i, 32)[1] != IGNORE for i in range(100)])  # [N, T]
    # rounding to a fixed count per row would give round(rate T)/T (10/64 = 0.156 for 0.15):
    # off by more than the tolerance, which the stochastic count per row avoids
    assert abs(scored.float().mean().item() - rate) < 0.002
    per_row = scored.sum(1)
    assert set(per_row.unique().tolist()) <= {math.floor(rate * T), math.floor(rate * T) + 1}


def test_masked_positions_hold_mask_and_original_targets(masked, text):
    for split, index in (("train", 0), ("val", 3)):
        inputs, targets = masked.batch(split, index, 16)
        original, _ = text.batch(split, index, 16)  # same windows: same generator stream
        hidden = targets != IGNORE
        assert torch.equal(inputs == masked.mask_id, hidden)
        assert torch.equal(targets[hidden], original[hidden])
        assert torch.equal(inputs[~hidden], original[~hidden])


def test_vocab_grows_by_one_and_batches_are_deterministic(masked, text):
    assert masked.vocab_size == text.vocab_size + 1 and masked.mask_id == text.vocab_size
    a, b = masked.batch("train", 5, 8), masked.batch("train", 5, 8)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c = masked.batch("train", 6, 8)
    assert not torch.equal(a[1], c[1])
    pool = MaskedText(seq_len=T, n_train=3)
    rows = torch.cat([pool.batch("train", i, 8)[0] for i in range(10)])
    assert len({tuple(r.tolist()) for r in rows}) <= 3


@pytest.mark.parametrize("rate", [0, 1, 1.5, "x"])
def test_bad_mask_rate_names_the_key(rate):
    cfg = OmegaConf.create(
        {"_target_": "seqbench.data.masked.MaskedText", "seq_len": 16, "mask_rate": rate}
    )
    with pytest.raises(ConfigError, match="data.mask_rate"):
        build_task(cfg)


def test_supervised_targets_are_exact(masked, text):
    causal = supervised_targets(text, steps=5, batch_size=4)
    assert causal["targets_total"] == 5 * 4 * T and causal["targets_per_seq"] == T
    mlm = supervised_targets(masked, steps=5, batch_size=4)
    direct = sum(int((masked.batch("train", i, 4)[1] != IGNORE).sum()) for i in range(5))
    assert mlm["targets_total"] == direct
    assert 9 <= mlm["targets_per_seq"] <= 10  # floor(0.15 * 64) = 9 or 10 per row


def test_flop_count_includes_attention(text):
    # linear layers scale with T; attention with T^2. Without a formula for the CPU attention
    # kernel, flops(2T) - 2 flops(T) would be exactly 0.
    torch.manual_seed(0)
    model = Transformer(text.vocab_size, max_len=T)
    short = train_step_flops(model, *Text(seq_len=16).batch("train", 0, 4))
    long = train_step_flops(model, *Text(seq_len=32).batch("train", 0, 4))
    d, layers, b = model.d_model, model.n_layers, 4
    # torch's SDPA formulas: forward 4 B T^2 D per layer (QK^T and AV), backward 10 B T^2 D
    # (four matmuls plus recomputing QK^T): 14 B T^2 D; doubling T adds 14 B D L (4 - 2) T^2
    assert long - 2 * short == 28 * b * d * layers * 16**2


def test_prefix_loss_matches_the_full_causal_forward(text):
    torch.manual_seed(0)
    model = Transformer(text.vocab_size, max_len=T).eval()
    loss, acc, n = prefix_loss(model, text, 10, n_batches=2, batch_size=4, device="cpu")
    tokens = torch.cat([text.batch("val", i, 4)[0] for i in range(2)])
    with torch.no_grad():
        logits, _ = model(tokens)
    expected = F.cross_entropy(logits[:, 9], tokens[:, 10]).item()
    assert n == 8 and loss == pytest.approx(expected, rel=1e-5)


def test_masked_prefix_loss_reads_the_mask_position(masked, text):
    torch.manual_seed(0)
    model = Transformer(masked.vocab_size, causal=False, max_len=T).eval()
    loss, _, _ = prefix_loss(model, text, 10, 1, 4, "cpu", mask_id=masked.mask_id)
    tokens = text.batch("val", 0, 4)[0]
    x = torch.cat([tokens[:, :10], torch.full((4, 1), masked.mask_id)], 1)
    with torch.no_grad():
        logits, _ = model(x)
    expected = F.cross_entropy(logits[:, 10, : masked.mask_id], tokens[:, 10]).item()
    assert loss == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("causal", [True, False])
def test_own_loss_is_the_objective_on_its_scored_positions_only(masked, text, causal):
    torch.manual_seed(0)
    task = text if causal else masked
    model = Transformer(task.vocab_size, causal=causal, max_len=T).eval()
    loss, n = own_loss(model, task, n_batches=2, batch_size=4, device="cpu")
    tokens, targets = (torch.cat(p) for p in zip(*(task.batch("val", i, 4) for i in range(2))))
    with torch.no_grad():
        logits, _ = model(tokens)
    scored = targets != IGNORE  # causal: every position; masked: the ~15% under [MASK]
    assert n == int(scored.sum()) and ((n == 8 * T) if causal else (0 < n < 8 * T))
    assert loss == pytest.approx(F.cross_entropy(logits[scored], targets[scored]).item(), rel=1e-5)


def test_prefix_eval_measurement_end_to_end(tmp_path):
    from seqbench.measure.run import run_measurement
    from seqbench.store import read_metrics_rows

    with initialize_config_dir(str(CONF_DIR), version_base=None):
        cfg = compose(
            "measure",
            overrides=[
                "what=prefix_eval",
                "+experiment=causal_vs_masked",
                "data.seq_len=16",
                "train.steps=3",
                "train.lr_control={train.steps:2,train.eval_every:2}",  # a quick calibration
                "train.batch_size=4",
                "train.eval_batches=1",
                "what.eval_batches=1",
                "what.batch_size=4",
                "what.prefixes=[4,15]",
                "what.split=val",  # eval_batches windows; the test split has its own test file
                f"out_dir={tmp_path}",
            ],
        )
    masked_cfg = training_config(cfg, "masked")
    assert masked_cfg.model.causal is False and masked_cfg.data.mask_rate == 0.15
    assert "what" not in masked_cfg
    summary = run_measurement(cfg)
    assert summary["status"] == "complete", summary
    rows, _ = read_metrics_rows(next(tmp_path.glob("*-objectives-*")) / "rows.csv")
    assert [(r["objective"], r["prefix_len"]) for r in rows] == [
        ("causal", "4"),
        ("causal", "15"),
        ("masked", "4"),
        ("masked", "15"),
    ]
    by = {r["objective"]: r for r in rows}
    for r in by.values():  # each objective scored in its own distribution too, per seed
        assert float(r["own_loss"]) > 0 and int(r["own_n"]) > 0 and r["seed"] == "0"
        assert float(r["unigram_xent"]) == pytest.approx(Text(seq_len=16).unigram_xent)
    assert int(by["masked"]["own_n"]) < int(by["causal"]["own_n"]) == 1 * 4 * 16
    assert int(by["causal"]["targets_total"]) == 3 * 4 * 16
    assert int(by["masked"]["targets_total"]) < int(by["causal"]["targets_total"])
    flops = [int(by[o]["flops_per_step"]) for o in ("causal", "masked")]
    assert abs(flops[1] / flops[0] - 1) < 0.05  # same model, one more vocabulary row
