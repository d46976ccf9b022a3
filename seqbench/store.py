"""Durable run directories: atomic files, append-only metrics, content keys and run locks.

A run directory holds
    run.json      config, environment, fairness figures, status, summary (replaced atomically)
    metrics.csv   one whole line per logged step, appended; a torn last line is ignored
    ckpt.pt       model/optimiser/scheduler/RNG state at a step boundary (replaced atomically)
    model.pt      the final weights (state_dict) of a complete run
    lock          held (flock) while a process works in the directory

so a run killed at any instant, even by SIGKILL, leaves files the report can read and the
next launch can resume from.
"""

import csv
import fcntl
import hashlib
import io
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

# keys that never change what a run computes: where it writes, how it is launched or shown
KEY_EXCLUDED = {"out_dir", "fresh", "hydra", "train.progress"}


def content_key(cfg: DictConfig) -> str:
    """sha256 of the resolved config without KEY_EXCLUDED: equal key <=> same computation."""
    tree = OmegaConf.to_container(cfg, resolve=True)
    for dotted in KEY_EXCLUDED:
        *parents, leaf = dotted.split(".")
        node = tree
        for p in parents:
            node = node.get(p, {})
        node.pop(leaf, None)
    blob = json.dumps(tree, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _atomic(path: Path, write) -> None:
    """Write through a temp file in the same directory, fsync, then os.replace."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path, obj) -> None:
    _atomic(path, lambda f: f.write(json.dumps(obj, indent=2, default=str).encode()))


def atomic_write_text(path, text: str) -> None:
    _atomic(path, lambda f: f.write(text.encode()))


def atomic_torch_save(obj, path) -> None:
    _atomic(path, lambda f: torch.save(obj, f))


def read_json(path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


class MetricsLog:
    """Append-only CSV: each row is written with a single write() of one whole line."""

    def __init__(self, path, columns):
        self.path, self.columns = Path(path), list(columns)
        if not self.path.exists() or self.path.stat().st_size == 0:
            self._write_line(self.columns)

    def append(self, row: dict) -> None:
        self._write_line([_fmt(row.get(c)) for c in self.columns])

    def _write_line(self, values) -> None:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(values)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, buf.getvalue().encode())
        finally:
            os.close(fd)

    def truncate_after(self, step: int) -> None:
        """Keep only rows logged at or before ``step`` (resuming from a checkpoint there)."""
        rows, _ = read_metrics_rows(self.path)
        keep = [r for r in rows if int(float(r["step"])) <= step]
        text = io.StringIO()
        w = csv.DictWriter(text, self.columns, lineterminator="\n")
        w.writeheader()
        w.writerows(keep)
        _atomic(self.path, lambda f: f.write(text.getvalue().encode()))


def read_metrics_rows(path) -> tuple[list[dict], int]:
    """(complete rows, number of torn lines dropped). A killed writer can leave at most the
    last line incomplete: it lacks the newline or the right number of fields."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return [], 0
    lines = text.split("\n")
    torn = 0
    if lines and lines[-1] != "":  # no trailing newline: the last write was cut short
        lines, torn = lines[:-1], 1
    lines = [ln for ln in lines if ln]
    if not lines:
        return [], torn
    header = next(csv.reader([lines[0]]))
    rows = []
    for values in csv.reader(lines[1:]):
        if len(values) != len(header):
            torn += 1
            continue
        rows.append(dict(zip(header, values)))
    return rows, torn


def _fmt(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)  # exact round trip: determinism tests compare these strings
    return v


def previous_summary(run_dir, fresh: bool) -> dict | None:
    """The stored summary of a complete run in run_dir (None if incomplete, absent or fresh)."""
    record = read_json(Path(run_dir) / "run.json")
    if record and record.get("status") == "complete" and not fresh:
        return record["summary"]
    return None


@contextmanager
def claimed(run_dir):
    """Hold run_dir's lock for the block. Yields None when we hold it, or the summary to
    return instead ("skipped") when another process is working in that directory."""
    lock = RunLock(run_dir)
    if not lock.acquire():
        yield {
            "status": "skipped",
            "reason": "another process holds this run",
            "run_dir": str(run_dir),
            "executed_steps": 0,
        }
        return
    try:
        yield None
    finally:
        lock.release()


class RunLock:
    """An exclusive, non-blocking flock on <run dir>/lock; released by the kernel if the
    holder dies, so a killed run never leaves a stale lock."""

    def __init__(self, run_dir):
        self.path = Path(run_dir) / "lock"
        self.fd = None

    def acquire(self) -> bool:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            os.close(self.fd)
            self.fd = None
            return False

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
