"""Durable measurement runs: the one run lifecycle (seqbench.runs) for traced and timed
measurements.

``run_measurement(cfg) -> summary`` receives a validated config (seqbench.cli validates every
job before it runs; a library caller calls ``cli.validate_job(cfg, "measure")`` first) and
works in

    <out_dir>/<study>-<table>-<model>-<task>-<key12>/
        run.json   kind "measure", table, status, config, env, summary (replaced atomically)
        rows.csv   one line per measured point, appended whole (store.MetricsLog)

A complete run is skipped on a rerun; an incomplete one (failed, interrupted, killed) starts
over, since a measurement is short. The measurement function is

    def measure(cfg, task, log) -> dict      # log(row) appends one rows.csv line

and its module names the table's ``COLUMNS`` and its own ``check(cfg, task)``.
"""

import signal

import torch
from omegaconf import DictConfig

from seqbench import runs, store
from seqbench.config import build_task, measurement
from seqbench.launch import stop_on_signals


class Interrupted(KeyboardInterrupt):
    """SIGTERM; a BaseException like Ctrl-C, so Hydra's sweep stops instead of going on. It
    carries the signal: the command line exits with 128 + signum (seqbench.cli)."""

    def __init__(self, signum: int):
        super().__init__(f"received {signal.Signals(signum).name}")
        self.signum = signum


def run_measurement(cfg: DictConfig) -> dict:
    task = build_task(cfg.data)
    fn, module = measurement(cfg)
    parts = [cfg.what.table, runs.model_part(cfg), runs.task_part(cfg)]

    def body(record):
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        columns = tuple(module.COLUMNS)
        rows = store.MetricsLog(record.dir / "rows.csv", columns)
        count = [0]
        record.summarize = lambda: {"rows": count[0]}

        def log(row: dict) -> None:
            unknown = set(row) - set(columns)
            if unknown:  # a programming error in the measurement, not a data problem
                raise KeyError(f"columns {sorted(unknown)} are not in {module.__name__}.COLUMNS")
            rows.append(row)
            count[0] += 1

        with stop_on_signals(_raise, (signal.SIGTERM,)):  # SIGINT already raises
            return fn(cfg, task, log) or {}

    return runs.execute(cfg, "measure", parts, body, table=cfg.what.table)


def job(cfg: DictConfig) -> dict:
    """The Hydra task function of ``python -m seqbench.measure``."""
    summary = run_measurement(cfg)
    line = {k: summary.get(k) for k in ("status", "skipped", "rows", "error", "run_dir")}
    print(f"seqbench: {line}", flush=True)
    return summary


def _raise(signum):
    """SIGTERM becomes an exception, as SIGINT is, so the run records ``interrupted``."""
    raise Interrupted(signum)
