"""what=timing: wall-clock of a forward pass and of a full training step versus length (C4).

For each execution path in ``what.impls`` (recurrent models: ``fused`` cuDNN/oneDNN kernel
and ``unrolled`` per-step loop, as separate rows), each batching mode

    fixed_batch   B = what.batch_size at every T           (work grows with T)
    fixed_tokens  B = max(1, what.tokens_per_batch // T)   (about constant tokens per step)

and each T, time ``forward`` (no grad) and ``train_step`` (seqbench.train.train_step:
forward, cross-entropy, backward, clipping, AdamW step) with ``torch.utils.benchmark.Timer``:
``num_threads`` = the threads torch really uses, ``what.warmup`` untimed calls, CUDA
synchronised by the Timer's clock, at least ``what.min_blocks`` timed blocks; rows carry the
median and the inter-quartile range per call. On CUDA the same bf16 autocast as training is used.

Timing honesty: a busy machine moves a timing 2x between runs. The timed blocks, in the order
they ran, are cut into ``what.spread_blocks`` consecutive groups; ``block_min_s`` and
``block_max_s`` are the lowest and highest group median, so a verdict can see whether its
comparison holds in every group. ``load_start`` / ``load_end`` are the 1-minute load average
(``os.getloadavg``) before and after the point, shown on every timing figure.

Budget guards, so one slow path cannot eat a profile: a series (model, impl, mode, step)
stops growing T once the median call takes more than ``what.max_call_s``, runs out of memory,
or passes ``what.unrolled_max_len`` on the unrolled path; the skipped points are logged with
a ``note`` and no time.
"""

import os

import numpy as np
import torch
from torch.utils.benchmark import Measurement, Timer
from torch.utils.benchmark.utils.timer import timer as clock

from seqbench.env import autocast, device_name, dtype_label, pick_device, sync
from seqbench.measure.common import (
    build_variant,
    check_variants,
    choice_list,
    impls,
    int_list,
    model_columns,
    need,
    positive_int,
    positive_number,
    progress_over,
    random_tokens,
)
from seqbench.step import make_optimizer, train_step

MODES = ("fixed_batch", "fixed_tokens")
STEPS = ("forward", "train_step")
COLUMNS = (
    "model family impl mode step T batch_size tokens median_s iqr_s blocks"
    " calls_per_block block_min_s block_max_s load_start load_end tokens_per_s threads device"
    " device_name torch cuda dtype d_model n_layers"
    " note"
).split()


def check(cfg, task) -> None:
    w = cfg.what
    int_list(w, "lengths")
    choice_list(w, "modes", MODES)
    choice_list(w, "steps", STEPS)
    for k in ("batch_size", "tokens_per_batch", "warmup", "min_blocks", "unrolled_max_len"):
        positive_int(w, k)
    positive_number(w, "min_run_time")
    positive_number(w, "max_call_s")
    check_spread(w)
    check_variants(cfg, task.vocab_size, impl=impls(cfg))


def check_spread(w) -> None:
    """Three groups at least: two cannot show which of them is the odd one."""
    v = w.get("spread_blocks")
    need(isinstance(v, int) and not isinstance(v, bool) and 3 <= v <= 100,
         "what.spread_blocks", v, "an integer in [3, 100]")  # fmt: skip


def load_average() -> float | None:
    """The machine's 1-minute load average, or None where the OS has none (Windows)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def block_spread(times, k) -> dict:
    """Lowest and highest median of ``k`` consecutive groups of ``times`` (in the order they
    ran): a drift in machine load moves one group, not the overall median."""
    groups = [g for g in np.array_split(np.asarray(times, dtype=float), k) if len(g)]
    medians = [float(np.median(g)) for g in groups]
    return {"block_min": min(medians), "block_max": max(medians)}


def time_call(fn, warmup=1, min_blocks=5, min_run_time=0.2, label="", spread_blocks=3) -> dict:
    """Median and IQR seconds per call of ``fn`` with torch.utils.benchmark.Timer, the spread
    of ``spread_blocks`` group medians and the load average around it all."""
    threads, load_start = torch.get_num_threads(), load_average()
    min_blocks = max(min_blocks, spread_blocks)  # one timed block per group at least
    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads, label=label)
    first = float("inf")
    for _ in range(max(1, warmup)):  # allocator, autotuning, lazy init; sizes the blocks
        start = clock()
        fn()
        first = min(first, clock() - start)  # the clock synchronises CUDA
    # enough time for min_blocks blocks even when one call is slow; top up if blocks are long
    budget = max(min_run_time, min_blocks * 1.05 * first)
    parts = [timer.blocked_autorange(min_run_time=budget)]
    while sum(len(p.raw_times) for p in parts) < min_blocks:
        parts.append(timer.blocked_autorange(min_run_time=budget / 2))
    m = Measurement.merge(parts)[0] if len(parts) > 1 else parts[0]
    spread = block_spread(m.times, spread_blocks)  # per call, in the order run
    return {
        "median_s": m.median,
        "iqr_s": m.iqr,
        "blocks": len(m.raw_times),
        "calls_per_block": parts[0].number_per_run,
        "threads": threads,
        "first_call_s": first,
        "block_min_s": spread["block_min"],
        "block_max_s": spread["block_max"],
        "load_start": load_start,
        "load_end": load_average(),
    }


def _forward_fn(model, tokens, device):
    amp = autocast(device)

    def fn():
        with torch.no_grad(), amp:
            model(tokens)

    return fn


def _train_fn(model, tokens, device, t):
    """The harness's own training step (seqbench.train.train_step) on one batch."""
    amp, params = autocast(device), list(model.parameters())
    opt = make_optimizer(params, t, device)
    targets = tokens.roll(-1, dims=1)
    clip = t.grad_clip or float("inf")
    return lambda: train_step(model, params, opt, tokens, targets, clip, amp)


def _points(cfg, task) -> int:
    w = cfg.what
    return len(impls(cfg)) * len(w.modes) * len(w.steps) * len(w.lengths)


@progress_over(_points)  # one row per point, timed or skipped
def measure(cfg, task, log) -> dict:
    w, device = cfg.what, pick_device(cfg.device)
    n = 0
    for impl in impls(cfg):
        model, node = build_variant(cfg, task.vocab_size, device, max_len=max(w.lengths), impl=impl)
        base = model_columns(cfg, model, node) | hardware_columns(device)
        for mode in w.modes:
            for step in w.steps:
                stop = None  # why this series stopped growing T
                for T in sorted(w.lengths):
                    B = w.batch_size if mode == "fixed_batch" else max(1, w.tokens_per_batch // T)
                    row = base | {
                        "mode": mode,
                        "step": step,
                        "T": T,
                        "batch_size": B,
                        "tokens": B * T,
                    }
                    per_step = impl in ("unrolled", "sequential")  # Python loops over time
                    if stop is None and per_step and T > w.unrolled_max_len:
                        stop = f"skipped: T > what.unrolled_max_len={w.unrolled_max_len}"
                    if stop is not None:
                        log(row | {"note": stop, "threads": torch.get_num_threads()})
                        continue
                    result = _time_point(model, step, B, T, cfg, task, device)
                    if "note" in result:
                        stop = result["note"]
                    elif result["median_s"] > w.max_call_s:
                        stop = f"skipped: a call took > what.max_call_s={w.max_call_s} s"
                    result.pop("first_call_s", None)
                    if "median_s" in result:
                        result["tokens_per_s"] = B * T / result["median_s"]
                    log(row | result)
                    n += 1
        del model
    return {"points": n}


def hardware_columns(device) -> dict:
    """What a timed row was measured on: device, its name, torch and CUDA versions, dtype
    (a verdict on timings names them; a CPU row cannot decide a claim about parallel
    hardware)."""
    return {
        "device": str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "cuda": f"CUDA {torch.version.cuda}" if device.type == "cuda" else None,  # text, not 12.1
        "dtype": dtype_label(device),
    }


def _time_point(model, step, B, T, cfg, task, device) -> dict:
    w = cfg.what
    tokens = random_tokens(task.vocab_size, B, T, cfg.seed, device)
    if step == "forward":
        model.eval()
        fn = _forward_fn(model, tokens, device)
    else:
        model.train()
        fn = _train_fn(model, tokens, device, cfg.train)
    try:
        return time_call(
            fn, w.warmup, w.min_blocks, w.min_run_time, f"{step} T={T}", w.spread_blocks
        )
    except torch.OutOfMemoryError:
        model.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return {"note": f"out of memory at T={T}, B={B}", "threads": torch.get_num_threads()}
    finally:
        model.zero_grad(set_to_none=True)
        sync(device)
