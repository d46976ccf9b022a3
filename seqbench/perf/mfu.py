"""FLOP/s and model FLOPs utilisation (table ``mfu``), per model and length (Chowdhery et al.
2022, "PaLM", App. B):

    FLOPs/step = matmul FLOPs of forward + backward, counted by torch.utils.flop_counter with
                 the formulas of seqbench.measure.trace (element-wise ops count 0; causal
                 attention is counted in full, T^2; CPU flash attention as SDPA);
    achieved   = FLOPs/step / median step time of seqbench's training step (Run.train_step)
                 (with the lowest and highest median over ``spread_blocks`` groups of timed
                 blocks, and the load average around the timing);
    MFU        = achieved / peak, with peak (a) measured here: an n x n x n matmul, fp32 on CPU
                 (same thread count), bf16 on CUDA; (b) the device's nominal dense peak where
                 known (H100/H200 989, A100 312 TFLOP/s bf16).

Fused RNN kernels are opaque to the counter, so recurrent models are counted on their
``unrolled`` path (tests/test_models.py proves both paths equal); a recurrence's count is
affine in T, so long sequences are counted on two short prefixes and extrapolated.
"""

import numpy as np
import torch
from omegaconf import OmegaConf

from seqbench.config import build_task
from seqbench.env import device_name, hardware
from seqbench.flops import train_step_flops
from seqbench.measure.common import OPAQUE_IMPL
from seqbench.perf.harness import harness, train_cfg
from seqbench.timer import interleave, quartiles, spread, watch_load

RECURRENT_COUNT_LEN = 128  # recurrent FLOPs are counted on this prefix and scaled to T
NOMINAL_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense, no sparsity
MFU_COLUMNS = tuple(
    (
        "model impl flops_counted_on size seq_len batch_size flops_per_step step_s_median"
        " step_s_iqr step_s_block_min step_s_block_max load_start load_end"
        " tokens_per_s flops_per_s peak_measured_flops_per_s peak_measured_how"
        " mfu_measured peak_nominal_flops_per_s mfu_nominal device dtype threads"
    ).split()
)


def recurrent_flops(model, tokens, targets, autocast=None, n=RECURRENT_COUNT_LEN):
    """A recurrence costs the same matmul FLOPs at every position except a fixed boundary term
    (step 0 has no gradient into the zero initial state), so its count is affine in T: count
    at n and 2n and extrapolate, exactly (tests/test_perf.py). The unrolled loop at T=8192
    under the counter would take minutes. None when T <= 2n: count it whole."""
    T = tokens.size(1)
    if T <= 2 * n:
        return None
    f1, f2 = (train_step_flops(model, tokens[:, :k], targets[:, :k], autocast) for k in (n, 2 * n))
    return f1 + (f2 - f1) * (T - n) // n


def measured_peak(device, n) -> tuple[float, str]:
    """Median FLOP/s of an n x n x n matmul: fp32 on CPU, bf16 on CUDA."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    times = interleave({"mm": lambda: a @ b}, repeats=7, warmup=2, device=device)["mm"]
    how = f"{str(dtype).removeprefix('torch.')} matmul {n}^3, threads={torch.get_num_threads()}"
    return 2 * n**3 / quartiles(times)[1], how


def nominal_peak(device) -> float | None:
    if device.type != "cuda":
        return None  # no table of CPU peaks: the measured peak serves
    name = device_name(device)
    return next((v for k, v in NOMINAL_BF16.items() if k in name), None)


def mfu(cfg, device, log, tmp):
    peak, how = measured_peak(device, cfg.mfu.peak_matmul_n)
    nominal = nominal_peak(device)
    for name in cfg.mfu.models or []:
        for T in cfg.mfu.seq_lens:
            row = _mfu_point(cfg, name, T, device, tmp / f"mfu-{name}-{T}")
            achieved = row["flops_per_s"]
            log(
                row
                | {
                    "peak_measured_flops_per_s": peak,
                    "peak_measured_how": how,
                    "mfu_measured": achieved / peak,
                    "peak_nominal_flops_per_s": nominal,
                    "mfu_nominal": achieved / nominal if nominal else None,
                }
            )


def _mfu_point(cfg, name, T, device, tmp) -> dict:
    m = cfg.mfu
    B = max(1, m.tokens_per_batch // T)
    tcfg = train_cfg(cfg, name, T, B)
    task = build_task(tcfg.data)
    run = harness(tcfg, task, tmp)
    tokens, targets = (x.to(device) for x in task.batch("train", 0, B))
    impl = run.model.hparams().get("impl")
    counted = run.model
    if impl in OPAQUE_IMPL:  # the counter cannot see inside the fused kernel
        ucfg = OmegaConf.merge(tcfg, {"model": {"impl": OPAQUE_IMPL[impl]}})
        counted = harness(ucfg, task, tmp / "unrolled").model
    flops = recurrent_flops(counted, tokens, targets, run.autocast) if impl else None
    if flops is None:  # attention's FLOPs grow with T^2: count the Transformer at full length
        flops = train_step_flops(counted, tokens, targets, run.autocast)

    def block():
        for _ in range(m.steps):
            run.train_step(tokens, targets)

    with watch_load() as loads:
        times = np.asarray(interleave({"step": block}, m.repeats, 1, device)["step"]) / m.steps
    q25, med, q75 = quartiles(times)
    return {
        "model": name,
        "impl": impl,
        "flops_counted_on": counted.hparams().get("impl"),
        "size": cfg.size,
        "seq_len": T,
        "batch_size": B,
        "flops_per_step": flops,
        "step_s_median": med,
        "step_s_iqr": q75 - q25,
        **spread(times, cfg.spread_blocks, "step_s"),
        **loads,
        "tokens_per_s": B * T / med,
        "flops_per_s": flops / med,
        **hardware(device, ("device", "dtype", "threads"), named=True),
    }
