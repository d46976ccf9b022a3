"""seqbench's side of every comparison, and the clock that times both sides.

The seqbench side is the harness itself: ``seqbench.train.Run`` built from the main config
(conf/config.yaml with perf's data, size, threads and compile), and one step of it is
``Run.train_step`` (AdamW, clipping, schedule, non-finite check), exactly what the training
loop calls.

Timing is interleaved: each side's block runs in turn, A B, B A, A B, ... so neither side
always runs first and a change in machine load hits both alike. A statistic is reported as
its median and quartiles over blocks (never the mean: one preempted block would move it).
As in ``timeit``, the garbage collector is off while timing (one collection first), so a
collection triggered by one side's allocations is not charged to whichever runs next.
Timing honesty: the pairs, in the order they ran, are also cut into ``spread_blocks``
consecutive groups (``spread``): a statistic whose group medians straddle a goal did not hold
through the whole run, and the rows say so with the load average around the timing.
"""

import gc
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from seqbench.config import CONF_DIR
from seqbench.env import device_name, sync
from seqbench.measure.timing import block_spread, load_average
from seqbench.runs import Record
from seqbench.train import Run


def harness(tcfg, task, directory) -> Run:
    """seqbench's own model, optimiser and schedule, built by the harness (Run.build)."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    run = Run(tcfg, task, Record(tcfg, "train", "perf", Path(directory)))
    run.build()
    return run


def train_cfg(cfg, model, seq_len, batch_size, **train):
    """The main config (conf/config.yaml) for one model, with perf's data, size and threads."""
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


def interleave(sides: dict, repeats: int, warmup: int, device) -> dict:
    """Time each side's block in turn, A B, B A, A B, ... (so neither side always runs first);
    returns seconds per block per side."""
    for _ in range(warmup):
        for fn in sides.values():
            fn()
            sync(device)
    times = {name: [] for name in sides}
    gc.collect()  # ~60 ms with torch loaded: once, not per block
    gc.disable()
    try:
        for r in range(repeats):
            for name in list(sides)[:: 1 if r % 2 == 0 else -1]:
                sync(device)
                start = time.perf_counter()
                sides[name]()
                sync(device)
                times[name].append(time.perf_counter() - start)
    finally:
        gc.enable()
    return times


def spread(x, k, name) -> dict:
    """``<name>_block_min`` / ``_block_max``: the lowest and highest median of ``k``
    consecutive groups of ``x`` (fewer groups when there are fewer values)."""
    lo_hi = block_spread(x, min(k, len(x)))
    return {f"{name}_block_min": lo_hi["block_min"], f"{name}_block_max": lo_hi["block_max"]}


def loads(start) -> dict:
    """The load columns of a row whose timing began at load average ``start``."""
    return {"load_start": start, "load_end": load_average()}


def quartiles(x) -> tuple[float, float, float]:
    q25, q50, q75 = np.percentile(np.asarray(x, dtype=float), [25, 50, 75])
    return float(q25), float(q50), float(q75)


def stamp(cfg, device) -> dict:
    """The columns that say where and how a row was timed."""
    return {
        "device": device_name(device),
        "threads": torch.get_num_threads(),
        "compile": int(bool(cfg.compile)),
    }
