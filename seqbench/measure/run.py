"""Durable measurement runs: the one run lifecycle (seqbench.runs) for traced and timed
measurements.

``run_measurement(cfg) -> summary`` validates the whole config first, then works in

    <out_dir>/<study>-<table>-<model>-<task>-<key12>/
        run.json   kind "measure", table, status, config, env, summary (replaced atomically)
        rows.csv   one line per measured point, appended whole (store.MetricsLog)

A complete run is skipped on a rerun; an incomplete one (failed, interrupted, killed) starts
over, since a measurement is short. The measurement function is

    def measure(cfg, task, log) -> dict      # log(row) appends one rows.csv line

and its module names the table's ``COLUMNS`` and its own ``check(cfg, task)``.
"""

import signal
import threading

import torch
from omegaconf import DictConfig

from seqbench import runs, store
from seqbench.config import measurement, validate


class Interrupted(KeyboardInterrupt):
    """SIGTERM; a BaseException like Ctrl-C, so Hydra's sweep stops instead of going on. It
    carries the signal: the command line exits with 128 + signum (seqbench.cli)."""

    def __init__(self, signum: int):
        super().__init__(f"received {signal.Signals(signum).name}")
        self.signum = signum


def run_measurement(cfg: DictConfig) -> dict:
    task = validate(cfg)  # ConfigError before anything is written
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

        with _signals_raise():
            return fn(cfg, task, log) or {}

    return runs.execute(cfg, "measure", parts, body, table=cfg.what.table)


def job(cfg: DictConfig) -> dict:
    """The Hydra task function of ``python -m seqbench.measure``."""
    summary = run_measurement(cfg)
    line = {k: summary.get(k) for k in ("status", "skipped", "rows", "error", "run_dir")}
    print(f"seqbench: {line}", flush=True)
    return summary


class _signals_raise:
    """SIGTERM becomes an exception (SIGINT already is) so the run records ``interrupted``."""

    def __enter__(self):
        self.saved = None
        if threading.current_thread() is threading.main_thread():
            self.saved = signal.signal(signal.SIGTERM, self.handle)

    def handle(self, signum, frame):
        raise Interrupted(signum)

    def __exit__(self, *exc):
        if self.saved is not None:
            signal.signal(signal.SIGTERM, self.saved)
        return False
