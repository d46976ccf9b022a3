"""Harness overhead and FLOP/s: is seqbench as fast as the loop a user would write instead?

    python -m seqbench.perf                                   # conf/perf.yaml
    python -m seqbench.perf device=cuda size=m compile=true out_dir=runs/gpu

    bare.py      the bare PyTorch twins (LSTM, pre-LN Transformer) and their training step,
                 as a careful user writes them (fused optimiser)
    examples.py  pytorch/examples' word_language_model step, re-implemented at its defaults
    harness.py   seqbench's side (Run.build, Run.train_step); timed by seqbench.timer.interleave
    overhead.py  table ``perf``: paired throughput ratios seqbench / bare, median and IQR
    peer.py      table ``perf``, at the example's shapes: seqbench vs careful vs examples
    mfu.py       table ``mfu``: FLOPs per step, achieved FLOP/s, MFU (Chowdhery et al. 2022)
    startup.py   table ``startup``: CPU seconds of --help, a refusal, a 1-step run beyond
                 ``import torch``

Each table lands in one measurement run directory
``<out_dir>/<study>-<table>-all-<task>-<key12>/`` (run.json ``kind: measure``, ``table``, and
rows.csv) that ``seqbench.report`` collects. The key hashes the config, the table and the
device actually used (``device=auto`` resolves differently per machine); a complete run is
skipped on rerun unless ``fresh=true``; a failure is recorded ``failed`` with its reason.
"""

import tempfile
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from seqbench import runs, schema, store
from seqbench.config import build_task, check_device, group_options
from seqbench.env import device_name, pick_device
from seqbench.perf.bare import bare_model
from seqbench.perf.mfu import MFU_COLUMNS, mfu
from seqbench.perf.overhead import GOAL, PEER_GOAL, PERF_COLUMNS, step_overhead, train_overhead
from seqbench.perf.peer import peer_config, peer_overhead
from seqbench.perf.startup import STARTUP_COLUMNS, STARTUP_GOAL, startup
from seqbench.schema import Spec, need

__all__ = ["GOAL", "PEER_GOAL", "STARTUP_GOAL", "TABLES", "bare_model", "check", "run"]

TABLES = {
    "perf": (PERF_COLUMNS, (step_overhead, peer_overhead, train_overhead)),
    "mfu": (MFU_COLUMNS, (mfu,)),
    "startup": (STARTUP_COLUMNS, (startup,)),
}
BARE = ("lstm", "transformer")  # the models with a bare twin
POS, ZERO, TWO = Spec(int, low=1), Spec(int, low=0), Spec(int, "a spread needs two", low=2)
MODELS = Spec(list, "models to time; null: none", item=str, nullable=True)
SCHEMA = {  # conf/perf.yaml
    **{k: schema.TOP[k] for k in ("seed", "device", "study", "out_dir", "fresh")},
    "tables": Spec(list, "tables to measure", item=str),
    "threads": Spec(int, "torch threads for everything timed", low=1, nullable=True),
    "compile": Spec(bool, "torch.compile both sides"),
    "size": Spec(str, "model size preset for every model timed", choices=("xs", "s", "m")),
    "spread_blocks": Spec(int, "groups of timed blocks whose medians give the spread", low=3),
    "overhead": {
        "models": MODELS,
        "seq_len": POS,
        "batch_size": POS,
        "steps": POS,
        "repeats": TWO,
        "warmup": ZERO,
        "tiny": {"seq_len": POS, "batch_size": POS, "d_model": POS, "steps": ZERO},
    },
    "peer": {
        "models": MODELS,
        "tokenizer": Spec(str, choices=("whitespace", "word", "char")),
        "seq_len": POS,
        "batch_size": POS,
        "steps": POS,
        "repeats": TWO,
        "warmup": ZERO,
    },
    "startup": {"repeats": Spec(int, "runs of each command", low=1)},
    "train_loop": {
        "models": MODELS,
        **{k: POS for k in ("steps", "log_every", "eval_every", "ckpt_every")},
        "repeats": TWO,
        "warmup": ZERO,
    },
    "mfu": {
        "models": MODELS,
        "seq_lens": Spec(list, item=int, low=1),
        "tokens_per_batch": POS,
        "steps": POS,
        "repeats": TWO,
        "peak_matmul_n": POS,
    },
}


def check(cfg) -> None:
    """One clear line for the first bad value, before anything runs (the perf entry's
    validator: seqbench.cli.ENTRIES)."""
    schema.check(cfg, SCHEMA, extra=("data", "hydra"))
    check_device(cfg.device)
    runs.check_name("study", cfg.study)
    need(set(cfg.tables) <= set(TABLES), "tables", cfg.tables, f"a subset of {list(TABLES)}")
    for key in ("overhead", "train_loop", "peer"):
        models = cfg[key].models or []
        need(set(models) <= set(BARE), f"{key}.models", models, f"a subset of {list(BARE)}")
    models = group_options("model")
    need(
        set(cfg.mfu.models or []) <= set(models),
        "mfu.models",
        cfg.mfu.models,
        f"a subset of {models}",
    )
    need(
        cfg.overhead.tiny.seq_len <= cfg.overhead.seq_len,
        "overhead.tiny.seq_len",
        cfg.overhead.tiny.seq_len,
        f"at most overhead.seq_len={cfg.overhead.seq_len} (a prefix of its batch)",
    )
    for T in {cfg.overhead.seq_len, *cfg.mfu.seq_lens}:
        schema.check_size("mfu.seq_lens", T)
        build_task(OmegaConf.merge(cfg.data, {"seq_len": T}))  # the task's own checks
    if cfg.peer.models and "perf" in cfg.tables:  # the stdlib corpus at the example's shapes
        build_task(peer_config(cfg, cfg.peer.models[0]).data)


def run(cfg: DictConfig) -> dict:
    """Every table in cfg.tables; returns {table: summary}. ``cfg`` is validated (``check``,
    called once per job by seqbench.cli)."""
    device = pick_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    return {table: measurement(cfg, table, device) for table in cfg.tables}


def measurement(cfg, table, device) -> dict:
    """One run directory per table (run.json kind measure + rows.csv). device=auto resolves
    differently per machine, so the key names the device actually used."""
    columns, parts = TABLES[table]

    def body(record):
        log = store.MetricsLog(record.dir / "rows.csv", columns)
        count = [0]
        record.summarize = lambda: {"rows": count[0]}

        def append(row):
            log.append(row)
            count[0] += 1

        with tempfile.TemporaryDirectory(prefix="seqbench-perf-") as tmp:
            for part in parts:
                part(cfg, device, append, Path(tmp))
        return {}

    name = [table, "all", runs.task_part(cfg)]
    where = f"{table}:{device_name(device)}"
    return runs.execute(cfg, "measure", name, body, table=table, key_extra=where)


def job(cfg: DictConfig) -> None:
    """The Hydra task function of ``python -m seqbench.perf``: exit 1 if a table failed."""
    import sys

    out = run(cfg)
    for table, summary in out.items():
        print(f"seqbench.perf: {table}: {summary}", flush=True)
    if any(s["status"] not in ("complete", "skipped") for s in out.values()):
        sys.exit(1)
