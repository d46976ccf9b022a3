"""The one home of seqbench's clocks: every timed number (what=timing, what=decode,
what=kernels, the perf tables) comes from one of two protocols here.

    time_call    one function, ``torch.utils.benchmark.Timer``: warm-up calls, then enough
                 timed blocks for a median and an inter-quartile range per call;
    interleave   several sides timed in turn, A B, B A, A B, ... (neither side always runs
                 first, so a change in machine load hits both alike): seconds per block.

Both synchronise CUDA around what they time (a CUDA timer without it measures the launch,
not the work), report medians and quartiles (never the mean: one preempted block would move
it) and, for timing honesty, the lowest and highest median of consecutive groups of blocks
(``block_spread``) and the 1-minute load average around the timing (``watch_load``): a busy
machine moves a timing 2x between runs, and a reader can see whether a comparison held in
every group.
"""

import gc
import os
import time
from contextlib import contextmanager

import numpy as np
import torch
from torch.utils.benchmark import Measurement, Timer
from torch.utils.benchmark.utils.timer import timer as clock

from seqbench.env import sync


def load_average() -> float | None:
    """The machine's 1-minute load average, or None where the OS has none (Windows)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


@contextmanager
def watch_load():
    """``{"load_start", "load_end"}``: the load average when the block begins and when it
    ends (filled on exit), the columns every timed row carries."""
    loads = {"load_start": load_average(), "load_end": None}
    yield loads
    loads["load_end"] = load_average()


def block_spread(times, k) -> dict:
    """Lowest and highest median of ``k`` consecutive groups of ``times`` (in the order they
    ran): a drift in machine load moves one group, not the overall median."""
    groups = [g for g in np.array_split(np.asarray(times, dtype=float), k) if len(g)]
    medians = [float(np.median(g)) for g in groups]
    return {"block_min": min(medians), "block_max": max(medians)}


def spread(x, k, name) -> dict:
    """``<name>_block_min`` / ``_block_max``: ``block_spread`` over ``k`` groups of ``x``
    (fewer groups when there are fewer values)."""
    lo_hi = block_spread(x, min(k, len(x)))
    return {f"{name}_block_min": lo_hi["block_min"], f"{name}_block_max": lo_hi["block_max"]}


def quartiles(x) -> tuple[float, float, float]:
    q25, q50, q75 = np.percentile(np.asarray(x, dtype=float), [25, 50, 75])
    return float(q25), float(q50), float(q75)


def time_call(fn, warmup=1, min_blocks=5, min_run_time=0.2, label="", spread_blocks=3) -> dict:
    """Median and IQR seconds per call of ``fn`` with torch.utils.benchmark.Timer (its clock
    synchronises CUDA), the spread of ``spread_blocks`` group medians and the load average
    around it all."""
    threads = torch.get_num_threads()
    min_blocks = max(min_blocks, spread_blocks)  # one timed block per group at least
    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads, label=label)
    with watch_load() as loads:
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
    groups = block_spread(m.times, spread_blocks)  # per call, in the order run
    return {
        "median_s": m.median,
        "iqr_s": m.iqr,
        "blocks": len(m.raw_times),
        "calls_per_block": parts[0].number_per_run,
        "threads": threads,
        "first_call_s": first,
        "block_min_s": groups["block_min"],
        "block_max_s": groups["block_max"],
        **loads,
    }


def interleave(sides: dict, repeats: int, warmup: int, device) -> dict:
    """Time each side's block in turn, A B, B A, A B, ...; returns seconds per block per side.
    As in ``timeit``, the garbage collector is off while timing (one collection first), so a
    collection triggered by one side's allocations is not charged to whichever runs next."""
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
