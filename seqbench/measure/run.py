"""Durable measurement runs: the harness's guarantees for traced and timed measurements.

``run_measurement(cfg) -> summary`` validates the whole config first, then works in

    <out_dir>/<study>-<table>-<model>-<task>-<key12>/
        run.json   kind "measure", table, status, config, env, summary (replaced atomically)
        rows.csv   one line per measured point, appended whole (store.MetricsLog)
        lock       held while a process works here

keyed by ``store.content_key`` (same config, same directory). A complete run is skipped on a
rerun; an incomplete one (failed, interrupted, killed) starts over, since a measurement is
short. A measurement that raises is recorded ``failed`` (or ``oom``) and the function returns
normally, so a sweep goes on; SIGINT/SIGTERM record ``interrupted`` and stop the process.
"""

import importlib
import signal
import threading
import time
from pathlib import Path

import torch
from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf

from seqbench import store
from seqbench.config import ConfigError, validate
from seqbench.measure.common import model_name
from seqbench.train import environment, pick_device


class Interrupted(KeyboardInterrupt):
    """SIGTERM; a BaseException like Ctrl-C, so Hydra's sweep stops instead of going on."""


def _target(cfg: DictConfig):
    target = cfg.what.get("_target_")
    if not isinstance(target, str):
        raise ConfigError(f"what._target_={target!r} is not allowed: a dotted function path")
    try:
        fn = get_method(target)
    except Exception:
        raise ConfigError(f"what._target_={target!r} is not allowed: no such function") from None
    return fn, importlib.import_module(fn.__module__)


def check(cfg: DictConfig):
    """Everything ``validate`` checks plus the ``what`` node; returns (task, fn, module)."""
    task = validate(cfg)
    fn, module = _target(cfg)
    table = cfg.what.get("table")
    if not (isinstance(table, str) and table.isidentifier()):
        raise ConfigError(f"what.table={table!r} is not allowed: a table name (identifier)")
    if hasattr(module, "check"):
        module.check(cfg, task)
    return task, fn, module


def run_dir_for(cfg: DictConfig, task, key: str) -> Path:
    data = cfg.data._target_.rsplit(".", 1)[-1].lower()
    return Path(cfg.out_dir) / f"{cfg.study}-{cfg.what.table}-{model_name(cfg)}-{data}-{key[:12]}"


def run_measurement(cfg: DictConfig) -> dict:
    task, fn, module = check(cfg)  # ConfigError before anything is written
    key = store.content_key(cfg)
    run_dir = run_dir_for(cfg, task, key)
    run_dir.mkdir(parents=True, exist_ok=True)
    with store.claimed(run_dir) as busy:
        if busy:
            return busy
        done = store.previous_summary(run_dir, cfg.fresh)
        if done:
            return done | {"skipped": True}
        (run_dir / "rows.csv").unlink(missing_ok=True)  # incomplete or fresh: start over
        return _execute(cfg, task, fn, module, key, run_dir)


def _execute(cfg, task, fn, module, key, run_dir) -> dict:
    device = pick_device(cfg.device)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    columns = tuple(module.COLUMNS)
    rows = store.MetricsLog(run_dir / "rows.csv", columns)
    count = [0]

    def log(row: dict) -> None:
        unknown = set(row) - set(columns)
        if unknown:  # a programming error in the measurement, not a data problem
            raise KeyError(f"columns {sorted(unknown)} are not in {module.__name__}.COLUMNS")
        rows.append(row)
        count[0] += 1

    started = time.time()
    write = _recorder(cfg, key, run_dir, device, started)
    write("running", None, {})
    summary, error = {}, None
    try:
        with _signals_raise():
            summary = fn(cfg, task, log) or {}
        status = "complete"
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM (Interrupted)
        write("interrupted", str(e) or type(e).__name__, {"rows": count[0]})
        raise
    except torch.OutOfMemoryError as e:
        status, error = "oom", str(e).splitlines()[0]
    except ConfigError:
        raise
    except Exception as e:  # contained: the sweep goes on, the reason is recorded
        status, error = "failed", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return write(status, error, summary | {"rows": count[0]})


def _recorder(cfg, key, run_dir, device, started):
    def write(status, error, summary) -> dict:
        summary = {
            "status": status,
            "error": error,
            "key": key,
            "run_dir": str(run_dir),
            "study": cfg.study,
            "table": cfg.what.table,
        } | summary
        store.atomic_write_json(
            run_dir / "run.json",
            {
                "kind": "measure",
                "table": cfg.what.table,
                "status": status,
                "key": key,
                "summary": summary,
                "config": OmegaConf.to_container(cfg, resolve=True),
                "env": environment(device),
                "started": started,
                "finished": None if status == "running" else time.time(),
            },
        )
        return summary

    return write


class _signals_raise:
    """SIGTERM becomes an exception (SIGINT already is) so the run records ``interrupted``."""

    def __enter__(self):
        self.saved = None
        if threading.current_thread() is threading.main_thread():
            self.saved = signal.signal(signal.SIGTERM, self.handle)

    def handle(self, signum, frame):
        raise Interrupted(f"received {signal.Signals(signum).name}")

    def __exit__(self, *exc):
        if self.saved is not None:
            signal.signal(signal.SIGTERM, self.saved)
        return False
