"""Harness overhead and FLOP/s: is seqbench as fast as the loop a user would write instead?

    python -m seqbench.perf                                   # conf/perf.yaml
    python -m seqbench.perf device=cuda size=m compile=true out_dir=runs/gpu

**Overhead** (table ``perf``). Each comparison is timed in one process as interleaved blocks
A B, B A, A B, ... (A = seqbench, B = bare PyTorch; every block is ``steps`` training steps;
neither side always runs first), so a change in machine load hits both sides alike. Per pair i
the throughput ratio is r_i = tokens/s(seqbench) / tokens/s(bare); we report the median and
IQR (q75 - q25) of r, and overhead_us_per_step = median_i (A_i - B_i) / steps.
- ``lstm_step``: seqbench's training step (model from conf/model/lstm.yaml, the harness's step:
  AdamW, clipping, schedule, non-finite check) vs nn.Embedding + nn.LSTM + nn.Linear + AdamW;
- ``transformer_step``: vs a minimal pre-LN block on F.scaled_dot_product_attention(is_causal);
- ``*_step_tiny_d8``: the same at launch-bound shapes (d=8, T=4, B=1), where a step is almost
  all fixed cost, as for small models on a GPU: the harness's per-step cost, undiluted;
- ``train_loop``: the whole ``seqbench.train.train()`` (validation, run directory, logging,
  eval and checkpoint cadence, progress bar, final weights) vs a bare loop of as many steps
  over the same batches (``task.batch``), model construction included on both sides.
The bare step does what a careful user writes for the same recipe: zero_grad, forward,
cross-entropy, backward, clip_grad_norm_, AdamW step, warm-up/cosine LambdaLR (fused AdamW and
bf16 autocast on CUDA, as the harness). In the step comparisons the bare model loads seqbench's
weights (same names and shapes) and both take the same steps on the same batch, so they compute
the same losses (``loss_diff`` after the last timed step) and the ratio isolates the harness.

**FLOP/s and MFU** (table ``mfu``), per model and length (Chowdhery et al. 2022, App. B):
    FLOPs/step = matmul FLOPs of forward + backward, counted by torch.utils.flop_counter
                 (element-wise ops count 0; causal attention is counted in full, T^2;
                 fused RNN kernels are opaque to the counter, so recurrent models are counted
                 on their ``unrolled`` path, which tests/test_models.py proves equal);
    achieved   = FLOPs/step / median step time of seqbench's training step;
    MFU        = achieved / peak, with peak (a) measured here: an n x n x n matmul, fp32 on CPU
                 (same thread count), bf16 on CUDA; (b) the device's nominal dense peak where
                 known (H100/H200 989, A100 312 TFLOP/s bf16).
Rows land in measurement run directories (run.json ``kind: measure``, rows.csv) that
``seqbench.report`` collects; a complete one is skipped on rerun unless ``fresh=true``.
"""

import contextlib
import hashlib
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import hydra
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from seqbench import store
from seqbench.config import CONF_DIR, ConfigError, build_task, check_device
from seqbench.data import IGNORE
from seqbench.models.transformer import sinusoidal
from seqbench.train import Run, environment, pick_device, train

RECURRENT_COUNT_LEN = 128  # recurrent FLOPs are counted on this prefix and scaled to T
GOAL = 0.95  # seqbench must reach >= 95% of the bare loop's throughput
NOMINAL_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense, no sparsity
PERF_COLUMNS = tuple(
    (
        "comparison model seq_len batch_size steps_per_block repeats seqbench_tokens_per_s"
        " seqbench_tokens_per_s_iqr bare_tokens_per_s bare_tokens_per_s_iqr ratio_median ratio_q25"
        " ratio_q75 ratio_iqr overhead_us_per_step goal meets_goal loss_diff device threads compile"
    ).split()
)
MFU_COLUMNS = tuple(
    (
        "model impl flops_counted_on size seq_len batch_size flops_per_step step_s_median"
        " step_s_iqr tokens_per_s flops_per_s peak_measured_flops_per_s peak_measured_how"
        " mfu_measured peak_nominal_flops_per_s mfu_nominal device dtype threads"
    ).split()
)


# --- the bare side: what a user writes without seqbench ------------------------------------
class BareLSTM(nn.Module):
    def __init__(self, vocab_size, d, n_layers):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d)
        self.rnn = nn.LSTM(d, d, n_layers, batch_first=True)
        self.head = nn.Linear(d, vocab_size, bias=False)

    def forward(self, tokens):
        return self.head(self.rnn(self.embed(tokens))[0])  # [B, T, V]


class BareBlock(nn.Module):
    def __init__(self, d, n_heads):
        super().__init__()
        self.n_heads = n_heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, self.n_heads, D // self.n_heads).unbind(2)
        y = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
        )  # [B, H, T, dh]
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, D))
        return x + self.mlp(self.ln2(x))


class BareTransformer(nn.Module):
    def __init__(self, vocab_size, d, n_layers, n_heads, max_len):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d)
        # the sinusoidal table once, as a buffer (seqbench recomputes it every call)
        self.register_buffer("pe", sinusoidal(torch.arange(max_len), d), persistent=False)
        self.blocks = nn.ModuleList(BareBlock(d, n_heads) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab_size, bias=False)

    def forward(self, tokens):
        x = self.embed(tokens) + self.pe[: tokens.size(1)]  # [B, T, D]
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def bare_model(name, sb_model, vocab_size, seq_len):
    """The bare twin of a seqbench model, same shapes and parameter names."""
    d, L = sb_model.d_model, sb_model.n_layers
    if name == "lstm":
        return BareLSTM(vocab_size, d, L)
    return BareTransformer(vocab_size, d, L, sb_model.blocks[0].n_heads, seq_len)


def bare_step(model, opt, sched, tokens, targets, clip, autocast):
    opt.zero_grad(set_to_none=True)
    with autocast:
        logits = model(tokens)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    sched.step()
    return loss


def warmup_cosine(opt, t):
    """The same schedule as the harness, as a user would write it: linear warm-up, cosine."""

    def factor(step):
        if step < t.warmup:
            return (step + 1) / t.warmup
        progress = min(1.0, (step - t.warmup) / max(1, t.steps - t.warmup))
        return t.min_lr_frac + (1 - t.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def make_opt(params, t, device):
    return torch.optim.AdamW(
        params,
        lr=t.lr,
        betas=tuple(t.betas),
        weight_decay=t.weight_decay,
        fused=(device.type == "cuda") or None,
    )


# --- the seqbench side ---------------------------------------------------------------------
def seqbench_step(run, tokens, targets, autocast):
    """One step of the harness. Uses ``Run.train_step`` when train.py has it; until then this
    is the body of ``Run.loop`` line for line (see the closing note of issue 6)."""
    if hasattr(run, "train_step"):
        return run.train_step(tokens, targets)[0]
    with autocast:
        logits, _ = run.forward(tokens)  # [B, T, V]
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE)
    if run.t.inject_nan_at is not None and run.step == run.t.inject_nan_at:
        loss = loss * float("nan")
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    clip = run.t.grad_clip if run.t.grad_clip else float("inf")
    grad_norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), clip)
    finite = torch.isfinite(loss) & torch.isfinite(grad_norm)
    run.first_bad = torch.where((run.first_bad < 0) & ~finite, run.step, run.first_bad)
    run.opt.step()
    run.sched.step()
    run.step += 1
    return loss


def harness(tcfg, task, directory):
    """seqbench's own model, optimiser and schedule, built by the harness (Run.build)."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    run = Run(tcfg, task, "perf", directory)
    run.build()
    run.first_bad = torch.tensor(-1, device=run.device)
    return run


def train_cfg(cfg, model, seq_len, batch_size, **train):
    """The main config (conf/config.yaml) for one model, with perf's data, size and threads."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    overrides = [f"model={model}"]
    if GlobalHydra.instance().is_initialized():
        tcfg = compose("config", overrides=overrides)
    else:
        with initialize_config_dir(str(CONF_DIR), version_base=None):
            tcfg = compose("config", overrides=overrides)
    tcfg.data = OmegaConf.merge(cfg.data, {"seq_len": seq_len})
    tcfg.model.size = cfg.size
    for k, v in {"seed": cfg.seed, "device": cfg.device, "study": cfg.study}.items():
        tcfg[k] = v
    for k, v in {
        "threads": cfg.threads,
        "batch_size": batch_size,
        "compile": cfg.compile,
        **train,
    }.items():
        tcfg.train[k] = v
    return tcfg


# --- timing ----------------------------------------------------------------------------------
def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleave(sides: dict, repeats: int, warmup: int, device) -> dict:
    """Time each side's block in turn, A B, B A, A B, ... (so neither side always runs first);
    returns seconds per block per side."""
    for _ in range(warmup):
        for fn in sides.values():
            fn()
            _sync(device)
    times = {name: [] for name in sides}
    for r in range(repeats):
        for name in list(sides)[:: 1 if r % 2 == 0 else -1]:
            _sync(device)
            start = time.perf_counter()
            sides[name]()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def quartiles(x) -> tuple[float, float, float]:
    q25, q50, q75 = np.percentile(np.asarray(x, dtype=float), [25, 50, 75])
    return float(q25), float(q50), float(q75)


def ratio_row(comparison, model, times, steps, T, B, **extra) -> dict:
    """Paired throughput ratios (seqbench / bare) with quartiles, and the fixed cost per step
    seqbench adds: median over pairs of (seqbench time - bare time) / steps."""
    sb, bare = np.asarray(times["seqbench"]), np.asarray(times["bare"])
    tokens = steps * B * T
    q25, med, q75 = quartiles(bare / sb)  # tokens/s ratio = bare time / seqbench time
    s25, s50, s75 = quartiles(tokens / sb)
    b25, b50, b75 = quartiles(tokens / bare)
    return {
        "comparison": comparison,
        "model": model,
        "seq_len": T,
        "batch_size": B,
        "steps_per_block": steps,
        "repeats": len(sb),
        "seqbench_tokens_per_s": s50,
        "seqbench_tokens_per_s_iqr": s75 - s25,
        "bare_tokens_per_s": b50,
        "bare_tokens_per_s_iqr": b75 - b25,
        "ratio_median": med,
        "ratio_q25": q25,
        "ratio_q75": q75,
        "ratio_iqr": q75 - q25,
        "overhead_us_per_step": float(np.median(sb - bare)) / steps * 1e6,
        "goal": GOAL,
        "meets_goal": int(med >= GOAL),  # 1/0: a bool would come back from the CSV as text
        **extra,
    }


def _autocast(device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# --- 1. step overhead and 2. train() overhead ------------------------------------------------
def step_overhead(cfg, device, log, tmp):
    o, tiny = cfg.overhead, cfg.overhead.tiny
    for name in o.models:
        log(_step_pair(cfg, name, device, tmp / f"step-{name}", o.seq_len, o.batch_size, o.steps))
        if tiny.steps:  # launch-bound shapes: the step is all fixed cost, as on a GPU
            log(
                _step_pair(
                    cfg,
                    name,
                    device,
                    tmp / f"tiny-{name}",
                    tiny.seq_len,
                    tiny.batch_size,
                    tiny.steps,
                    d_model=tiny.d_model,
                )
            )


def _step_pair(cfg, name, device, tmp, T, B, steps, d_model=None) -> dict:
    o = cfg.overhead
    tcfg = train_cfg(cfg, name, o.seq_len, B)  # the task at a length it accepts; sliced below
    if d_model:
        tcfg.model.d_model = d_model
    task = build_task(tcfg.data)
    run = harness(tcfg, task, tmp)
    bare = bare_model(name, run.model, task.vocab_size, T).to(device)
    bare.load_state_dict(run.model.state_dict())  # same weights: same loss, checked below
    fwd = torch.compile(bare) if cfg.compile else bare
    opt = make_opt(bare.parameters(), tcfg.train, device)
    sched = warmup_cosine(opt, tcfg.train)
    tokens, targets = (x.to(device) for x in task.batch("train", 0, B))
    if T < tokens.size(1):  # a prefix, every position scored (a task's may all be unscored)
        tokens = tokens[:, :T]
        targets = tokens.roll(-1, dims=1)
    autocast, clip = _autocast(device), tcfg.train.grad_clip or float("inf")
    last = {}

    def sb_block():
        for _ in range(steps):
            last["seqbench"] = seqbench_step(run, tokens, targets, autocast)

    def bare_block():
        for _ in range(steps):
            last["bare"] = bare_step(fwd, opt, sched, tokens, targets, clip, autocast)

    times = interleave({"seqbench": sb_block, "bare": bare_block}, o.repeats, o.warmup, device)
    # both sides took the same steps on the same batch from the same weights: equal losses
    loss_diff = abs(float(last["seqbench"].detach()) - float(last["bare"].detach()))
    label = f"{name}_step" + (f"_tiny_d{d_model}" if d_model else "")
    return ratio_row(label, name, times, steps, T, B, loss_diff=loss_diff, **_stamp(cfg, device))


def train_overhead(cfg, device, log, tmp):
    for name in cfg.train_loop.models:
        log(_train_pair(cfg, name, device, tmp / f"train-{name}"))
        shutil.rmtree(tmp / f"train-{name}", ignore_errors=True)


def _train_pair(cfg, name, device, tmp) -> dict:
    o, tl = cfg.overhead, cfg.train_loop
    tcfg = train_cfg(cfg, name, o.seq_len, o.batch_size, steps=tl.steps, progress=True)
    task = build_task(tcfg.data)
    dims = harness(tcfg, task, tmp / "dims").model
    autocast, clip = _autocast(device), tcfg.train.grad_clip or float("inf")
    reps = iter(range(10**6))

    def sb_train():  # a fresh run directory each time: train() skips complete runs
        tcfg.out_dir = str(tmp / f"run-{next(reps)}")
        with open(os.devnull, "w") as null, contextlib.redirect_stderr(null):
            summary = train(tcfg)  # the progress bar draws into /dev/null
        if summary["status"] != "complete":
            raise RuntimeError(f"train() ended {summary['status']}: {summary.get('error')}")

    def bare_train():
        torch.manual_seed(tcfg.seed)
        model = bare_model(name, dims, task.vocab_size, o.seq_len).to(device)
        fwd = torch.compile(model) if cfg.compile else model
        opt = make_opt(model.parameters(), tcfg.train, device)
        sched = warmup_cosine(opt, tcfg.train)
        for step in range(tl.steps):
            tokens, targets = task.batch("train", step, o.batch_size)
            bare_step(fwd, opt, sched, tokens.to(device), targets.to(device), clip, autocast)

    times = interleave({"seqbench": sb_train, "bare": bare_train}, tl.repeats, tl.warmup, device)
    return ratio_row(
        "train_loop", name, times, tl.steps, o.seq_len, o.batch_size, **_stamp(cfg, device)
    )


def _stamp(cfg, device):
    return {
        "device": _device_name(device),
        "threads": torch.get_num_threads(),
        "compile": int(bool(cfg.compile)),
    }


def _device_name(device):
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


# --- 3. FLOP/s and MFU --------------------------------------------------------------------------
def _cpu_flash(q, k, v, *args, out_shape=None, **kwargs):
    return sdpa_flop_count(q, k, v)


def _cpu_flash_backward(grad_out, q, k, v, *args, out_shape=None, **kwargs):
    return sdpa_backward_flop_count(grad_out, q, k, v)


# CPU flash attention is missing from flop_counter's registry; it does the same work as SDPA
CPU_ATTENTION = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_flash_backward,
}


def count_flops(model, tokens, targets, autocast=None) -> int:
    """Matmul FLOPs of one forward + backward (the optimiser's element-wise work counts 0)."""
    with autocast or contextlib.nullcontext():
        with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION) as counter:
            logits, _ = model(tokens)
            loss = F.cross_entropy(
                logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE
            )
            loss.backward()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def recurrent_flops(model, tokens, targets, autocast=None, n=RECURRENT_COUNT_LEN):
    """A recurrence costs the same matmul FLOPs at every position except a fixed boundary term
    (step 0 has no gradient into the zero initial state), so its count is affine in T: count
    at n and 2n and extrapolate, exactly (tests/test_perf.py). The unrolled loop at T=8192
    under the counter would take minutes. None when T <= 2n: count it whole."""
    T = tokens.size(1)
    if T <= 2 * n:
        return None
    f1, f2 = (count_flops(model, tokens[:, :k], targets[:, :k], autocast) for k in (n, 2 * n))
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
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in NOMINAL_BF16.items() if k in name), None)


def mfu(cfg, device, log, tmp):
    peak, how = measured_peak(device, cfg.mfu.peak_matmul_n)
    nominal = nominal_peak(device)
    for name in cfg.mfu.models:
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
    impl = getattr(run.model, "impl", None)
    counted = run.model
    if impl == "fused":  # the counter cannot see inside the fused kernel
        ucfg = OmegaConf.merge(tcfg, {"model": {"impl": "unrolled"}})
        counted = harness(ucfg, task, tmp / "unrolled").model
    autocast = _autocast(device)
    flops = recurrent_flops(counted, tokens, targets, autocast) if impl else None
    if flops is None:  # attention's FLOPs grow with T^2: count the Transformer at full length
        flops = count_flops(counted, tokens, targets, autocast)

    def block():
        for _ in range(m.steps):
            seqbench_step(run, tokens, targets, autocast)

    times = interleave({"step": block}, m.repeats, 1, device)["step"]
    q25, med, q75 = quartiles(np.asarray(times) / m.steps)
    return {
        "model": name,
        "impl": impl,
        "flops_counted_on": getattr(counted, "impl", impl),
        "size": cfg.size,
        "seq_len": T,
        "batch_size": B,
        "flops_per_step": flops,
        "step_s_median": med,
        "step_s_iqr": q75 - q25,
        "tokens_per_s": B * T / med,
        "flops_per_s": flops / med,
        "device": _device_name(device),
        "dtype": "bf16 autocast" if device.type == "cuda" else "fp32",
        "threads": torch.get_num_threads(),
    }


# --- run directories and the entry point ---------------------------------------------------------
TABLES = {"perf": (PERF_COLUMNS, (step_overhead, train_overhead)), "mfu": (MFU_COLUMNS, (mfu,))}


BARE = ("lstm", "transformer")  # the models with a bare twin
POSITIVE = (
    "overhead.seq_len",
    "overhead.batch_size",
    "overhead.steps",
    "train_loop.steps",
    "overhead.tiny.seq_len",
    "overhead.tiny.batch_size",
    "overhead.tiny.d_model",
    "mfu.tokens_per_batch",
    "mfu.steps",
    "mfu.peak_matmul_n",
)


def check(cfg) -> None:
    """One clear line for the first bad value, before anything runs."""

    def need(ok, key, allowed):
        if not ok:
            value = OmegaConf.select(cfg, key)
            value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
            raise ConfigError(f"{key}={value!r} is not allowed: {allowed}")

    def integer(key, low):
        v = OmegaConf.select(cfg, key)
        return isinstance(v, int) and not isinstance(v, bool) and v >= low

    check_device(cfg.device)
    models = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))
    need(set(cfg.tables) <= set(TABLES), "tables", f"a subset of {list(TABLES)}")
    need(cfg.threads is None or integer("threads", 1), "threads", "null or a positive integer")
    for key in ("overhead.models", "train_loop.models"):
        need(set(OmegaConf.select(cfg, key)) <= set(BARE), key, f"a subset of {list(BARE)}")
    need(set(cfg.mfu.models) <= set(models), "mfu.models", f"a subset of {models}")
    for key in POSITIVE:
        need(integer(key, 1), key, "a positive integer")
    for key in ("overhead.warmup", "train_loop.warmup", "overhead.tiny.steps"):
        need(integer(key, 0), key, "an integer >= 0 (tiny.steps=0: no tiny comparison)")
    for key in ("overhead.repeats", "train_loop.repeats", "mfu.repeats"):
        need(integer(key, 2), key, "an integer >= 2 (a spread needs two samples)")
    need(
        cfg.overhead.tiny.seq_len <= cfg.overhead.seq_len,
        "overhead.tiny.seq_len",
        f"at most overhead.seq_len={cfg.overhead.seq_len} (a prefix of its batch)",
    )
    need(
        all(isinstance(t, int) and t > 0 for t in cfg.mfu.seq_lens),
        "mfu.seq_lens",
        "positive integers",
    )
    for T in {cfg.overhead.seq_len, *cfg.mfu.seq_lens}:
        build_task(OmegaConf.merge(cfg.data, {"seq_len": T}))  # the task's own checks


def measurement(cfg, table, device) -> dict:
    """One durable measurement run directory: run.json (kind measure) + rows.csv."""
    # device=auto resolves differently per machine: the key names the device actually used
    where = _device_name(device)
    key = hashlib.sha256(f"{store.content_key(cfg)}:{table}:{where}".encode()).hexdigest()
    run_dir = Path(cfg.out_dir) / f"{cfg.study}-{table}-all-{_task_name(cfg)}-{key[:12]}"
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = store.RunLock(run_dir)
    if not lock.acquire():
        return {"status": "skipped", "reason": "another process holds this run", "skipped": True}
    try:
        return _measure_into(cfg, table, device, run_dir, key)
    finally:
        lock.release()


def _measure_into(cfg, table, device, run_dir, key) -> dict:
    record = store.read_json(run_dir / "run.json")
    if record and record.get("status") == "complete" and not cfg.fresh:
        return record["summary"] | {"skipped": True}
    (run_dir / "rows.csv").unlink(missing_ok=True)
    columns, parts = TABLES[table]
    log = store.MetricsLog(run_dir / "rows.csv", columns)
    base = {
        "kind": "measure",
        "table": table,
        "key": key,
        "config": OmegaConf.to_container(cfg, resolve=True),
        "env": environment(device),
        "started": time.time(),
    }
    store.atomic_write_json(run_dir / "run.json", base | {"status": "running"})
    rows, status, error = [], "complete", None
    try:
        with tempfile.TemporaryDirectory(prefix="seqbench-perf-") as tmp:
            for part in parts:
                part(cfg, device, lambda row: (rows.append(row), log.append(row)), Path(tmp))
    except Exception as e:  # contained: the record says what went wrong
        status, error = "failed", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    summary = {"status": status, "error": error, "run_dir": str(run_dir), "rows": len(rows)}
    store.atomic_write_json(
        run_dir / "run.json", base | {"status": status, "summary": summary, "finished": time.time()}
    )
    return summary


def _task_name(cfg):
    return cfg.data._target_.rsplit(".", 1)[-1].lower()


def run(cfg: DictConfig) -> dict:
    """Every table in cfg.tables; returns {table: summary}."""
    check(cfg)
    device = pick_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    return {table: measurement(cfg, table, device) for table in cfg.tables}


@hydra.main(config_path="../conf", config_name="perf", version_base=None)
def _hydra_main(cfg: DictConfig) -> None:
    try:
        out = run(cfg)
    except ConfigError as e:
        print(f"seqbench: error: {e}", file=sys.stderr)
        sys.exit(2)
    for table, summary in out.items():
        print(f"seqbench.perf: {table}: {summary}", flush=True)
    if any(s["status"] != "complete" for s in out.values()):
        sys.exit(1)


if __name__ == "__main__":
    _hydra_main()
