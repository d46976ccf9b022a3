"""Durable run directories: atomic files, append-only metrics, content keys and run locks.

A run directory holds
    run.json      config, environment, fairness figures, status, summary (replaced atomically)
    metrics.csv   one whole line per logged step, appended; a torn last line is ignored
    ckpt.pt       model/optimiser/scheduler/RNG state at a step boundary (replaced atomically,
                  its sha256 beside it in ckpt.pt.sha256, checked before it is trusted)
    model.pt      the final weights (state_dict) of a complete run (+ model.pt.sha256)
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
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

# keys that never change what a run computes: where it writes, how it is launched or shown
KEY_EXCLUDED = {"out_dir", "fresh", "hydra", "train.progress"}


def content_key(cfg: DictConfig, extra: str = "") -> str:
    """sha256 of the resolved config without KEY_EXCLUDED (and of ``extra``, what else decides
    the computation, e.g. the device a measurement resolved): equal key <=> same computation."""
    tree = OmegaConf.to_container(cfg, resolve=True)
    for dotted in KEY_EXCLUDED:
        *parents, leaf = dotted.split(".")
        node = tree
        for p in parents:
            node = node.get(p, {})
        node.pop(leaf, None)
    blob = json.dumps(tree, sort_keys=True, default=str) + (f":{extra}" if extra else "")
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


class CorruptFile(Exception):
    """A saved file whose bytes do not match the checksum written beside it."""


def _checksum_path(path) -> Path:
    return Path(path).with_name(Path(path).name + ".sha256")


def save_torch(obj, path) -> None:
    """torch.save atomically, then the sha256 of the bytes beside it (<path>.sha256). A kill
    between the two leaves a mismatch, which load_torch reports: never a silent wrong file."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    data = buf.getvalue()
    _atomic(path, lambda f: f.write(data))
    atomic_write_text(_checksum_path(path), hashlib.sha256(data).hexdigest() + "\n")


def checksum_problem(path) -> str | None:
    """Why a file saved by save_torch cannot be trusted: missing, no readable checksum beside
    it, or bytes that do not match it (None when they match)."""
    name = Path(path).name
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except OSError as e:
        return f"{name}: {(e.strerror or type(e).__name__).lower()}"
    try:
        expected = _checksum_path(path).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return f"{name}: no readable checksum beside it"
    if digest.hexdigest() != expected:
        return f"{name}: sha256 does not match its checksum"
    return None


def load_torch(path, map_location=None):
    """torch.load of a file saved by save_torch, after checking its bytes against the
    checksum; raises CorruptFile (with the reason) when they disagree or it is missing."""
    data = Path(path).read_bytes()
    try:
        expected = _checksum_path(path).read_text().strip()
    except (OSError, UnicodeDecodeError):
        raise CorruptFile(f"{Path(path).name}: no readable checksum beside it") from None
    if hashlib.sha256(data).hexdigest() != expected:
        raise CorruptFile(f"{Path(path).name}: sha256 does not match its checksum")
    return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)


def set_aside(path) -> Path:
    """Rename a corrupt file (and its checksum) out of the way, kept for inspection."""
    path = Path(path)
    n = 0
    while (target := path.with_name(f"{path.name}.corrupt-{n}")).exists():
        n += 1
    path.rename(target)
    _checksum_path(path).unlink(missing_ok=True)
    return target


def read_json(path):
    """The parsed JSON at path, or None when it is missing or unreadable (not UTF-8, torn,
    a directory): an unreadable record never raises."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
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
    last line incomplete: it lacks the newline or the right number of fields. A file that
    is not such a CSV at all (not UTF-8, NUL bytes, a directory) raises: see csv_problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
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


def csv_problem(path) -> str | None:
    """Why a CSV written by MetricsLog (or atomic_write_text) cannot be read: None when it
    can, or is absent."""
    name = Path(path).name
    try:
        read_metrics_rows(path)
    except UnicodeDecodeError:
        return f"{name}: not UTF-8 text"
    except OSError as e:
        return f"{name}: {(e.strerror or type(e).__name__).lower()}"
    except csv.Error as e:
        return f"{name}: not a CSV ({e})"
    return None


def _fmt(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)  # exact round trip: determinism tests compare these strings
    return v


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
