"""Harness overhead and FLOP/s: is seqbench as fast as the loop a user would write instead?

    python -m seqbench.perf                                   # conf/perf.yaml
    python -m seqbench.perf device=cuda size=m compile=true out_dir=runs/gpu

    bare.py      the bare PyTorch twins (LSTM, pre-LN Transformer) and their training step
    harness.py   seqbench's side (Run.build, Run.train_step) and the interleaved A/B clock
    overhead.py  table ``perf``: paired throughput ratios seqbench / bare, median and IQR
    mfu.py       table ``mfu``: FLOPs per step, achieved FLOP/s, MFU (Chowdhery et al. 2022)

Each table lands in one measurement run directory
``<out_dir>/<study>-<table>-all-<task>-<key12>/`` (run.json ``kind: measure``, ``table``, and
rows.csv) that ``seqbench.report`` collects. The key hashes the config, the table and the
device actually used (``device=auto`` resolves differently per machine); a complete run is
skipped on rerun unless ``fresh=true``; a failure is recorded ``failed`` with its reason.
"""

import hashlib
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from seqbench import store
from seqbench.config import CONF_DIR, ConfigError, build_task, check_device
from seqbench.perf.bare import bare_model
from seqbench.perf.harness import device_name
from seqbench.perf.mfu import MFU_COLUMNS, count_flops, mfu, recurrent_flops
from seqbench.perf.overhead import GOAL, PERF_COLUMNS, step_overhead, train_overhead
from seqbench.train import environment, pick_device

__all__ = ["GOAL", "TABLES", "bare_model", "check", "count_flops", "recurrent_flops", "run"]

TABLES = {"perf": (PERF_COLUMNS, (step_overhead, train_overhead)), "mfu": (MFU_COLUMNS, (mfu,))}
BARE = ("lstm", "transformer")  # the models with a bare twin
POSITIVE = (
    "overhead.seq_len",
    "overhead.batch_size",
    "overhead.steps",
    "train_loop.steps",
    "train_loop.log_every",
    "train_loop.eval_every",
    "train_loop.ckpt_every",
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


def run(cfg: DictConfig) -> dict:
    """Every table in cfg.tables; returns {table: summary}."""
    check(cfg)
    device = pick_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    return {table: measurement(cfg, table, device) for table in cfg.tables}


def measurement(cfg, table, device) -> dict:
    """One durable measurement run directory: run.json (kind measure) + rows.csv."""
    # device=auto resolves differently per machine: the key names the device actually used
    where = device_name(device)
    key = hashlib.sha256(f"{store.content_key(cfg)}:{table}:{where}".encode()).hexdigest()
    task = cfg.data._target_.rsplit(".", 1)[-1].lower()
    run_dir = Path(cfg.out_dir) / f"{cfg.study}-{table}-all-{task}-{key[:12]}"
    run_dir.mkdir(parents=True, exist_ok=True)
    with store.claimed(run_dir) as busy:
        if busy:
            return busy | {"skipped": True}
        return _measure_into(cfg, table, device, run_dir, key)


def _measure_into(cfg, table, device, run_dir, key) -> dict:
    done = store.previous_summary(run_dir, cfg.fresh)
    if done:
        return done | {"skipped": True}
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
