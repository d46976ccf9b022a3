"""Harness overhead (table ``perf``): seqbench's training step and train() against bare PyTorch.

Each comparison is timed in one process as interleaved blocks A B, B A, A B, ... (A =
seqbench, B = the bare loop of seqbench.perf.bare, as a careful user writes it: the fused
optimiser kernel; every block is ``steps`` training steps).
Per pair i

    r_i = tokens/s(seqbench) / tokens/s(bare) = t_bare,i / t_seqbench,i

and we report median and IQR (q75 - q25) of r, the lowest and highest median of r over
``spread_blocks`` consecutive groups of pairs (``ratio_block_min`` / ``_max``), the load
average before and after (``load_start`` / ``load_end``), and the fixed cost seqbench adds per step,
overhead_us_per_step = median_i (t_seqbench,i - t_bare,i) / steps.

- ``<model>_step``: ``Run.train_step`` vs the bare step. The bare model loads seqbench's
  weights and both take the same steps on the same batch, so they compute the same losses
  (``loss_diff`` after the last timed step) and the ratio isolates the harness;
- ``<model>_step_tiny_d8``: the same at launch-bound shapes (d=8, T=4, B=1), where a step is
  almost all fixed cost, as for small models on a GPU: the per-step cost, undiluted;
- ``train_loop``: the whole ``seqbench.train.train()`` (validation, run directory, logging,
  eval and checkpoint cadence, progress bar, final weights) vs a bare loop of as many steps
  over the same batches (``task.batch``), model construction included on both sides;
- ``<model>_peer_careful`` / ``<model>_peer_examples`` (seqbench/perf/peer.py): at
  pytorch/examples' word_language_model shapes and recipe on the stdlib corpus, seqbench
  against the careful bare loop and against that example's own step, one 3-way interleave.
"""

import contextlib
import os
import shutil

import numpy as np
import torch

from seqbench.config import build_task
from seqbench.perf.bare import autocast, bare_model, bare_step, make_opt, warmup_cosine
from seqbench.perf.harness import harness, stamp, train_cfg
from seqbench.timer import interleave, quartiles, spread, watch_load
from seqbench.train import train

GOAL = 0.95  # seqbench must reach >= 95% of the throughput of a bare loop of the same recipe
PEER_GOAL = 1.0  # and at least the throughput of the code a user would run instead
PERF_COLUMNS = tuple(
    (
        "comparison model seq_len batch_size steps_per_block repeats seqbench_tokens_per_s"
        " seqbench_tokens_per_s_iqr bare_tokens_per_s bare_tokens_per_s_iqr ratio_median ratio_q25"
        " ratio_q75 ratio_iqr ratio_block_min ratio_block_max load_start load_end"
        " overhead_us_per_step goal meets_goal loss_diff device threads compile"
    ).split()
)


def ratio_row(comparison, model, times, steps, T, B, goal=GOAL, spread_blocks=3, **extra) -> dict:
    """Paired throughput ratios (seqbench / bare) with quartiles and their spread over
    ``spread_blocks`` groups of pairs, and the fixed cost per step seqbench adds: median over
    pairs of (seqbench time - bare time) / steps."""
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
        **spread(bare / sb, spread_blocks, "ratio"),
        "overhead_us_per_step": float(np.median(sb - bare)) / steps * 1e6,
        "goal": goal,
        "meets_goal": int(med >= goal),  # 1/0: a bool would come back from the CSV as text
        **extra,
    }


# --- 1. one training step --------------------------------------------------------------------
def step_overhead(cfg, device, log, tmp):
    o, tiny = cfg.overhead, cfg.overhead.tiny
    for name in o.models or []:
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
    bare_autocast, clip = autocast(device), tcfg.train.grad_clip or float("inf")
    last = {}

    def sb_block():
        for _ in range(steps):
            last["seqbench"], _ = run.train_step(tokens, targets)

    def bare_block():
        for _ in range(steps):
            last["bare"], _ = bare_step(fwd, opt, sched, tokens, targets, clip, bare_autocast)

    with watch_load() as loads:
        times = interleave({"seqbench": sb_block, "bare": bare_block}, o.repeats, o.warmup, device)
    extra = loads | stamp(cfg, device)
    # both sides took the same steps on the same batch from the same weights: equal losses
    loss_diff = abs(float(last["seqbench"].detach()) - float(last["bare"].detach()))
    label = f"{name}_step" + (f"_tiny_d{d_model}" if d_model else "")
    k = cfg.spread_blocks
    return ratio_row(label, name, times, steps, T, B, spread_blocks=k, loss_diff=loss_diff, **extra)


# --- 2. the whole train() ------------------------------------------------------------------------
def train_overhead(cfg, device, log, tmp):
    for name in cfg.train_loop.models or []:
        log(_train_pair(cfg, name, device, tmp / f"train-{name}"))
        shutil.rmtree(tmp / f"train-{name}", ignore_errors=True)


def _train_pair(cfg, name, device, tmp) -> dict:
    o, tl = cfg.overhead, cfg.train_loop
    cadence = {k: tl[k] for k in ("steps", "log_every", "eval_every", "ckpt_every")}
    tcfg = train_cfg(cfg, name, o.seq_len, o.batch_size, progress=True, **cadence)
    task = build_task(tcfg.data)
    dims = harness(tcfg, task, tmp / "dims").model
    bare_autocast, clip = autocast(device), tcfg.train.grad_clip or float("inf")
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
            bare_step(fwd, opt, sched, tokens.to(device), targets.to(device), clip, bare_autocast)

    with watch_load() as loads:
        times = interleave(
            {"seqbench": sb_train, "bare": bare_train}, tl.repeats, tl.warmup, device
        )
    extra = loads | stamp(cfg, device)
    k = cfg.spread_blocks
    return ratio_row(
        "train_loop", name, times, tl.steps, o.seq_len, o.batch_size, spread_blocks=k, **extra
    )
