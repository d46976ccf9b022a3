"""what=decode: the cost of generating one token versus context length (C2, C9).

For each context length c, the prompt (c random tokens, batch ``what.batch_size``) is
prefilled once, then ``what.new_tokens`` tokens are generated greedily with
``seqbench.generate`` and timed (torch.utils.benchmark.Timer, median and IQR):

    state           one token per step plus the carried state: the RNN's hidden state, the
                    Transformer's KV cache. Cost per token: O(1) recurrent, O(c) attention.
    recompute       the whole prefix re-run each step, no state (the Transformer without its
                    cache): O(c) recurrent, O(c^2) attention per token.
    teacher_forced  one forward over all c tokens at once (training's situation, C2): the
                    per-token time of processing a *known* sequence.

Rows give seconds per token, tokens per second and, for ``state``, the bytes of the state
after the prompt (``generate.state_bytes``): constant for a recurrence, linear in c for a KV
cache. The report compares decode speed ratios with the training-step ratios of what=timing.
As in what=timing, ``block_min_s_per_token`` / ``block_max_s_per_token`` are the lowest and
highest median of ``what.spread_blocks`` consecutive groups of timed blocks, and
``load_start`` / ``load_end`` the machine's 1-minute load average around the point.
"""

import torch

from seqbench.env import autocast, hardware, pick_device
from seqbench.generate import decode, decode_recompute, prefill, state_bytes
from seqbench.measure.common import (
    build_variant,
    check_timed,
    check_variants,
    model_columns,
    progress_over,
    random_tokens,
    timed_columns,
)
from seqbench.timer import time_call

MODES = ("state", "recompute", "teacher_forced")
COLUMNS = timed_columns(
    "mode context batch_size new_tokens s_per_token iqr_s_per_token block_min_s_per_token"
    " block_max_s_per_token load_start load_end tokens_per_s state_bytes blocks"
)


def check(cfg, task) -> None:
    counts = ("batch_size", "new_tokens", "recompute_max_context")
    check_timed(cfg.what, "contexts", {"modes": MODES}, counts)
    check_variants(cfg, task.vocab_size)


@progress_over(lambda cfg, task: len(cfg.what.modes) * len(cfg.what.contexts))
def measure(cfg, task, log) -> dict:  # one row per (mode, context), timed or skipped
    w, device = cfg.what, pick_device(cfg.device)
    amp = autocast(device)
    longest = max(w.contexts) + w.new_tokens
    model, node = build_variant(cfg, task.vocab_size, device, max_len=longest)
    model.eval()
    sizes = {"batch_size": w.batch_size, "new_tokens": w.new_tokens}
    base = model_columns(cfg, model, node) | sizes | hardware(device)
    n = 0
    for mode in w.modes:
        stop = None
        for c in sorted(w.contexts):
            row = base | {"mode": mode, "context": c}
            if stop is None and mode == "recompute" and c > w.recompute_max_context:
                stop = f"skipped: context > what.recompute_max_context={w.recompute_max_context}"
            if stop is not None:
                log(row | {"note": stop})
                continue
            prompt = random_tokens(task.vocab_size, w.batch_size, c, cfg.seed, device)
            with torch.no_grad(), amp:
                fn, per_call, nbytes = _setup(model, prompt, mode, w.new_tokens)
                try:
                    label = f"{mode} c={c}"
                    t = time_call(
                        fn, w.warmup, w.min_blocks, w.min_run_time, label, w.spread_blocks
                    )
                except torch.OutOfMemoryError:
                    stop = f"out of memory at context {c}"
                    log(row | {"note": stop})
                    continue
            if t["median_s"] > w.max_call_s:
                stop = f"skipped: a call took > what.max_call_s={w.max_call_s} s"
            s_tok = t["median_s"] / per_call
            log(
                row
                | {
                    "s_per_token": s_tok,
                    "iqr_s_per_token": t["iqr_s"] / per_call,
                    "block_min_s_per_token": t["block_min_s"] / per_call,
                    "block_max_s_per_token": t["block_max_s"] / per_call,
                    "load_start": t["load_start"],
                    "load_end": t["load_end"],
                    "tokens_per_s": w.batch_size / s_tok,
                    "state_bytes": nbytes,
                    "blocks": t["blocks"],
                    "threads": t["threads"],
                }
            )
            n += 1
    return {"points": n}


def _setup(model, prompt, mode, new_tokens):
    """(function to time, tokens per batch row it produces, state bytes or None)."""
    if mode == "teacher_forced":
        return (lambda: model(prompt)), prompt.size(1), None
    if mode == "recompute":
        return (lambda: decode_recompute(model, prompt, new_tokens)), new_tokens, None
    logits, state = prefill(model, prompt)  # decode() never mutates it: every call restarts
    return (lambda: decode(model, logits, state, new_tokens)), new_tokens, state_bytes(state)
