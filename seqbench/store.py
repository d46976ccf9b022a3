"""Durable run directories: atomic files, append-only metrics, content keys and run locks.

A run directory holds
    run.json      config, environment, fairness figures, status, summary (replaced atomically)
    metrics.csv   one whole line per logged step, appended; a torn last line is ignored
    ckpt.pt       model/optimiser/scheduler/RNG state at a step boundary (replaced atomically,
                  its sha256 beside it in ckpt.pt.sha256, checked before it is trusted)
    model.pt      the final weights (state_dict) of a complete run (+ model.pt.sha256)
    lock          held (flock) while a process works in the directory

so a run killed at any instant, even by SIGKILL, leaves files the report can read and the
next launch can resume from. Everything is read through ``open_regular``: only a regular file
(a FIFO, a device, a directory, a dangling link or a link loop is refused in one line, never
waited on) of at most a stated size.
"""

import csv
import errno
import fcntl
import hashlib
import io
import json
import os
import re
import stat
import tempfile
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from seqbench.errors import ConfigError

# keys that never change what a run computes: where it writes, how it is launched or shown
KEY_EXCLUDED = {"out_dir", "fresh", "hydra", "train.progress"}

# A measurement's rows become <results>/<table>.csv, so a table name is a plain identifier and
# none of the tables the report writes itself (seqbench.report.collect builds the first five).
# One rule for the command line (config.measurement) and for the report, which reads the name
# back from run.json and trusts it no more than anything else read from a file.
COLLECTED_TABLES = ("runs", "curves", "positions", "unreadable", "bench_jobs")
REPORT_TABLES = (*COLLECTED_TABLES, "verdicts")
TABLE_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")  # a file name on every system, no path


def table_problem(name, reserved=REPORT_TABLES) -> str | None:
    """Why ``name`` cannot name ``<results>/<name>.csv`` (None when it can)."""
    if not isinstance(name, str) or not TABLE_NAME.fullmatch(name):
        return f"table={name!r} is not allowed: a name of 1-64 of a-z, 0-9, _ (a letter first)"
    if name in reserved:
        return f"table={name!r} is not allowed: the report writes {name}.csv itself"
    return None


# the most bytes read from each kind of file: a record, a table, a checksum, saved tensors
JSON_BYTES, CSV_BYTES, SIDECAR_BYTES, TORCH_BYTES = 64 << 20, 1 << 30, 4096, 64 << 30


def content_key(cfg, extra: str = "") -> str:
    """sha256 of the resolved config without KEY_EXCLUDED (and of ``extra``, what else decides
    the computation, e.g. the device a measurement resolved): equal key <=> same computation.
    ``cfg`` is a DictConfig or the plain mapping run.json stores (a record proves its key)."""
    if isinstance(cfg, DictConfig):
        tree = OmegaConf.to_container(cfg, resolve=True)
    else:  # run.json's config: what json.dumps(default=str) kept of the resolved config
        tree = json.loads(json.dumps(cfg, default=str))
    for dotted in KEY_EXCLUDED:
        *parents, leaf = dotted.split(".")
        node = tree
        for p in parents:
            node = node.get(p, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
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


class NotRegular(OSError):
    """A path that is not a regular file of at most the bound read: told in one line (its
    strerror), never waited on (a FIFO) nor read without end (/dev/zero)."""


KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _refuse(path, why: str):
    return NotRegular(errno.EINVAL, f"not a regular file ({why})", str(path))


def _open_error(path, e: OSError) -> NotRegular:
    """An open with O_NOFOLLOW that failed: ELOOP there means the path is a link."""
    return _refuse(path, "a symbolic link" if e.errno == errno.ELOOP else (e.strerror or "?"))


def open_regular(path, max_bytes: int):
    """A binary file object of ``path``, only if it is a regular file of at most max_bytes.
    FileNotFoundError for an absent path; NotRegular for anything else. Opened with
    O_NONBLOCK, so a FIFO is refused instead of blocking until a writer appears."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        if path.is_symlink():
            raise _refuse(path, "a dangling symbolic link") from None
        raise
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise _refuse(path, "a symbolic link loop") from None
        if e.errno == errno.ENXIO:  # a socket, or a device nobody serves
            raise _refuse(path, "a socket or an absent device") from None
        raise
    info = os.fstat(fd)
    why = next((what for test, what in KINDS if test(info.st_mode)), None)
    if why is None and info.st_size > max_bytes:
        why = f"{info.st_size} bytes, more than the {max_bytes} read"
    if why is not None:
        os.close(fd)
        raise _refuse(path, why)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_regular(path, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most max_bytes (see open_regular); a file that grows
    past the bound while it is read is refused too."""
    with open_regular(path, max_bytes) as f:
        data = f.read(os.fstat(f.fileno()).st_size + 1)  # the file's size: one read
        while len(data) <= max_bytes and (more := f.read(1 << 20)):  # it grew meanwhile
            data += more
    if len(data) > max_bytes:
        raise _refuse(path, f"more than the {max_bytes} bytes read")
    return data


def atomic_write_json(path, obj) -> None:
    _atomic(path, lambda f: f.write(json.dumps(obj, indent=2, default=str).encode()))


def atomic_write_text(path, text: str) -> None:
    _atomic(path, lambda f: f.write(text.encode()))


class CorruptFile(Exception):
    """A saved file whose bytes do not match the checksum written beside it."""


def _checksum_path(path) -> Path:
    return Path(path).with_name(Path(path).name + ".sha256")


def accepted_digests(path) -> list[str]:
    """The sha256 digests the checksum beside ``path`` accepts (one per line; two while a
    save is replacing the file). Raises CorruptFile when there is no readable checksum."""
    sidecar = _checksum_path(path)
    try:
        text = read_regular(sidecar, SIDECAR_BYTES).decode("ascii")
    except (OSError, UnicodeDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else "not a sha256 digest"
        raise CorruptFile(f"{Path(path).name}: no readable checksum beside it ({why})") from None
    digests = text.split()
    if not digests or not all(len(d) == 64 for d in digests):
        raise CorruptFile(f"{Path(path).name}: no readable checksum beside it")
    return digests


def save_torch(obj, path) -> None:
    """torch.save with its sha256 beside it (<path>.sha256), in an order that a kill at any
    instant leaves a pair that agrees: first the checksum accepting both the file now there
    and the new one, then the file itself replaced, then the checksum of the new one alone.
    So load_torch gets the previous or the new file, never "corrupt" for an intact one."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    data = buf.getvalue()
    new = hashlib.sha256(data).hexdigest()
    current = _current_digest(path)
    if current and current != new:
        atomic_write_text(_checksum_path(path), f"{new}\n{current}\n")
    else:  # nothing intact there to keep: the new checksum may stand alone before the file
        atomic_write_text(_checksum_path(path), f"{new}\n")
    _atomic(path, lambda f: f.write(data))
    if current and current != new:
        atomic_write_text(_checksum_path(path), f"{new}\n")


def _current_digest(path) -> str | None:
    """The sha256 of the intact file at ``path`` (None when absent or not intact): its
    checksum's one digest, or after a save cut short, the one of two its bytes match."""
    try:
        digests = accepted_digests(path)
        if len(digests) == 1:
            return digests[0] if Path(path).is_file() else None
        return _file_digest(path) if _file_digest(path) in digests else None
    except (CorruptFile, OSError):
        return None


def _file_digest(path) -> str:
    digest = hashlib.sha256()
    with open_regular(path, TORCH_BYTES) as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def checksum_problem(path) -> str | None:
    """Why a file saved by save_torch cannot be trusted: missing, not a regular file, no
    readable checksum beside it, or bytes that do not match it (None when they match)."""
    name = Path(path).name
    try:
        actual = _file_digest(path)
    except OSError as e:
        return f"{name}: {(e.strerror or type(e).__name__).lower()}"
    try:
        expected = accepted_digests(path)
    except CorruptFile as e:
        return str(e)
    if actual not in expected:
        return f"{name}: sha256 does not match its checksum"
    return None


def load_torch(path, map_location=None):
    """torch.load of a file saved by save_torch, after checking its bytes against the
    checksum; raises CorruptFile (with the reason) when they disagree or it is missing, and
    NotRegular for a path that is not a regular file."""
    data = read_regular(path, TORCH_BYTES)
    if hashlib.sha256(data).hexdigest() not in accepted_digests(path):
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
        return json.loads(read_regular(path, JSON_BYTES).decode("utf-8"))
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
        # O_NONBLOCK: a FIFO put in its place fails here (no reader) instead of blocking;
        # O_NOFOLLOW: a link never sends the rows outside the run directory
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_NOFOLLOW
        try:
            fd = os.open(self.path, flags | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise _open_error(self.path, e) from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise _refuse(self.path, "not a file to append rows to")
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
        text = read_regular(path, CSV_BYTES).decode("utf-8")
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
    """An exclusive, non-blocking flock on <run dir>/lock; released by the kernel when the
    holder dies (SIGKILL included), so a dead owner never leaves a stale lock: the next
    launch takes it and resumes the run its record still calls ``running``. The descriptor
    is close-on-exec, so no program the holder starts keeps the lock after it. The holder
    writes its pid into the file: ``owner`` names who holds it, for messages."""

    def __init__(self, run_dir):
        self.path = Path(run_dir) / "lock"
        self.fd = None

    def acquire(self) -> bool:
        """True when we hold the lock now; False when a living process holds it. Raises
        NotRegular when ``lock`` is not a regular file (a link, a directory, a FIFO)."""
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError as e:
            raise _open_error(self.path, e) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise _refuse(self.path, "not a lock file")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.fd = fd
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return True

    def owner(self) -> int | None:
        """The pid the holder wrote (None when unknown): for messages only."""
        try:
            text = read_regular(self.path, SIDECAR_BYTES).decode().strip()
        except (OSError, UnicodeDecodeError):
            return None
        return int(text) if text.isdigit() else None

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


# --- folders a command is given ------------------------------------------------------------
MIN_FREE = 1 << 20  # bytes: less free space where runs are written is a full disk


def check_dir(label: str, path) -> None:
    """A directory seqbench will create (if need be) and write into: refused, as ``label is
    not allowed: ...``, when a regular file or a symbolic link that leads nowhere (dangling,
    or a loop) is in its way, it is not writable, or the disk holding it is full (less than
    MIN_FREE bytes or no inode free)."""
    if not str(path).strip():  # Path("") is the current directory: never written by accident
        raise ConfigError(f"{label} is not allowed: an empty path")
    probe = Path(path).expanduser().absolute()
    try:
        while not probe.exists():
            if probe.is_symlink():
                raise ConfigError(
                    f"{label} is not allowed: {probe} is a symbolic link that leads nowhere "
                    "(dangling, or a loop)"
                )
            probe = probe.parent
        is_dir = probe.is_dir()
    except OSError as e:
        raise ConfigError(f"{label} is not allowed: {e.strerror} ({probe})") from None
    if not is_dir:
        raise ConfigError(f"{label} is not allowed: {probe} is a file, not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{label} is not allowed: {probe} is not writable")
    disk = os.statvfs(probe)
    free = disk.f_bavail * disk.f_frsize
    if free < MIN_FREE or (disk.f_files > 0 and disk.f_favail == 0):
        raise ConfigError(
            f"{label} is not allowed: the disk holding {probe} is full "
            f"({free // 1024} KiB, {disk.f_favail} inodes free)"
        )
