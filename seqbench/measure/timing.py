"""what=timing: wall-clock of a forward pass and of a full training step versus length (C4).

For each execution path in ``what.impls`` (recurrent models: ``fused`` cuDNN/oneDNN kernel
and ``unrolled`` per-step loop, as separate rows), each batching mode

    fixed_batch   B = what.batch_size at every T           (work grows with T)
    fixed_tokens  B = max(1, what.tokens_per_batch // T)   (about constant tokens per step)

and each T, time ``forward`` (no grad) and ``train_step`` (seqbench.train.train_step:
forward, cross-entropy, backward, clipping, AdamW step) with ``seqbench.timer.time_call``
(``torch.utils.benchmark.Timer``): ``num_threads`` = the threads torch really uses,
``what.warmup`` untimed calls, CUDA synchronised by the Timer's clock, at least
``what.min_blocks`` timed blocks; rows carry the median and the inter-quartile range per
call. On CUDA the same bf16 autocast as training is used.

Timing honesty: a busy machine moves a timing 2x between runs. The timed blocks, in the order
they ran, are cut into ``what.spread_blocks`` consecutive groups; ``block_min_s`` and
``block_max_s`` are the lowest and highest group median, so a verdict can see whether its
comparison holds in every group. ``load_start`` / ``load_end`` are the 1-minute load average
(``seqbench.timer.watch_load``) before and after the point, shown on every timing figure.

Budget guards, so one slow path cannot eat a profile: a series (model, impl, mode, step)
stops growing T once the median call takes more than ``what.max_call_s``, runs out of memory,
or passes ``what.unrolled_max_len`` on the unrolled path; the skipped points are logged with
a ``note`` and no time.
"""

import torch

from seqbench.env import autocast, hardware, pick_device, sync
from seqbench.measure.common import (
    build_variant,
    check_timed,
    check_variants,
    impls,
    model_columns,
    progress_over,
    random_tokens,
    timed_columns,
)
from seqbench.step import make_optimizer, train_step
from seqbench.timer import time_call

MODES = ("fixed_batch", "fixed_tokens")
STEPS = ("forward", "train_step")
COLUMNS = timed_columns(
    "mode step T batch_size tokens median_s iqr_s blocks calls_per_block block_min_s"
    " block_max_s load_start load_end tokens_per_s"
)


def check(cfg, task) -> None:
    choices = {"modes": MODES, "steps": STEPS}
    counts = ("batch_size", "tokens_per_batch", "unrolled_max_len")
    check_timed(cfg.what, "lengths", choices, counts)
    check_variants(cfg, task.vocab_size, impl=impls(cfg))


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
        base = model_columns(cfg, model, node) | hardware(device)
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
                        log(row | {"note": stop})
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
        return {"note": f"out of memory at T={T}, B={B}"}
    finally:
        model.zero_grad(set_to_none=True)
        sync(device)
