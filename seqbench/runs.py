"""One run lifecycle for training, every measurement and the perf benchmark.

A run is a directory named by what it computes,

    <out_dir>/<study>-<part>-...-<part>-<content key[:12]>/
        run.json   kind, status, key, summary, config, env (+ the caller's fields); replaced
                   atomically at every status change
        lock       held (flock) while a process works in the directory

and ``execute`` walks every run through the same steps: key the resolved config, check the
directory stays inside ``out_dir``, take the lock (another process working there: return
``skipped``), return the stored summary of a complete run (``fresh=true`` starts over),
write ``running``, call the body, and record how it ended:

    complete      the body returned
    interrupted   SIGINT/SIGTERM (a training body checkpoints first and says so itself)
    diverged      the body raised Diverged
    oom           out of memory, on the GPU or the CPU
    failed        any other exception: its type and first line are recorded

A failure is contained (the function returns its summary, so a sweep goes on); only a bad
configuration raises. Nothing stored is trusted as a path: the directory of a run is always
recomputed from its config, so a runs folder can be moved.
"""

import re
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from seqbench import store
from seqbench.env import environment, pick_device
from seqbench.errors import ConfigError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+=-]*$")  # a run-directory name part
KEPT = {"lock"}  # what fresh=true leaves in place


class Diverged(Exception):
    """A non-finite loss or gradient."""


def short_name(target: str) -> str:
    """seqbench.models.recurrent.LSTM -> lstm;  seqbench.data.synthetic.LagRecall -> lagrecall"""
    return str(target).rsplit(".", 1)[-1].lower()


def check_name(key: str, value) -> None:
    """A value that becomes part of a path: one plain name, no separators, no '..'."""
    if not (isinstance(value, str) and NAME.match(value) and ".." not in value):
        raise ConfigError(
            f"{key}={value!r} is not allowed: a plain name (letters, digits, _ . + = -), "
            "no path separators"
        )


def run_dir(cfg: DictConfig, parts, key: str) -> Path:
    """<out_dir>/<study>-<parts>-<key12>; refuses a name that would leave out_dir."""
    check_name("study", cfg.study)
    name = "-".join([cfg.study, *parts, key[:12]])
    root = Path(cfg.out_dir)
    path = root / name
    if path.resolve().parent != root.resolve():
        raise ConfigError(f"study={cfg.study!r} is not allowed: the run would leave out_dir")
    return path


def model_part(cfg: DictConfig) -> str:
    return short_name(cfg.model._target_)


def task_part(cfg: DictConfig) -> str:
    return short_name(cfg.data._target_)


class Record:
    """run.json of one run. ``fields`` are what the body adds (parameter counts, family,
    data fingerprint, ...); ``write`` replaces the file atomically and returns the summary."""

    def __init__(self, cfg, kind, key, directory, table=None):
        self.cfg, self.kind, self.key, self.dir, self.table = cfg, kind, key, directory, table
        self.device = pick_device(cfg.device)
        self.fields: dict = {}
        self.started = time.time()
        self.summarize = dict  # the body may set it: figures for the summary, on any outcome

    def summary(self, status, error=None, **values) -> dict:
        base = {"status": status, "error": error, "key": self.key, "run": self.dir.name}
        base |= {"study": self.cfg.study} | ({"table": self.table} if self.table else {})
        return base | values

    def write(self, status, error=None, **values) -> dict:
        summary = self.summary(status, error, **values)
        record = {
            "kind": self.kind,
            "table": self.table,
            "status": status,
            "key": self.key,
            "summary": summary,
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            **self.fields,
            "env": environment(self.device),
            "started": self.started,
            "finished": None if status == "running" else time.time(),
        }
        store.atomic_write_json(self.dir / "run.json", record)
        return summary | {"run_dir": str(self.dir)}


def previous_summary(directory, fresh: bool) -> dict | None:
    """The stored summary of a complete run (None if incomplete, unreadable, absent or fresh)."""
    record = store.read_json(Path(directory) / "run.json")
    if fresh or not isinstance(record, dict) or record.get("status") != "complete":
        return None
    summary = record.get("summary")
    if not isinstance(summary, dict) or summary.get("status") != "complete":
        return None  # a record without its summary is not trusted: the run is redone
    return summary | {"run_dir": str(directory)}


@contextmanager
def claimed(directory):
    """Hold the directory's lock for the block. Yields None when we hold it, or the summary
    to return instead (``skipped``) when another process is working there."""
    lock = store.RunLock(directory)
    if not lock.acquire():
        yield {
            "status": "skipped",
            "reason": "another process holds this run",
            "run_dir": str(directory),
            "executed_steps": 0,
        }
        return
    try:
        yield None
    finally:
        lock.release()


def clear(directory) -> None:
    """Remove a run's files (fresh=true, or a measurement starting over); keep the lock."""
    for p in Path(directory).iterdir():
        if p.name in KEPT:
            continue
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


def execute(cfg, kind, parts, body, *, table=None, key_extra="", resume=False) -> dict:
    """The lifecycle above. ``body(record) -> dict`` does the work; the dict it returns
    becomes the summary (a ``status`` key in it overrides ``complete``). ``resume=True``
    keeps an incomplete run's files for the body to continue from (training)."""
    key = store.content_key(cfg, extra=key_extra)
    directory = run_dir(cfg, parts, key)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"out_dir={cfg.out_dir!r} is not allowed: {e.strerror}") from None
    with claimed(directory) as busy:
        if busy:
            return busy
        done = previous_summary(directory, cfg.fresh)
        if done:
            return done | {"skipped": True, "executed_steps": 0}
        if cfg.fresh or not resume:
            clear(directory)
        record = Record(cfg, kind, key, directory, table)
        try:
            record.write("running")
        except OSError as e:  # a full disk or a read-only folder: refuse before any work
            raise ConfigError(f"out_dir={cfg.out_dir!r} is not allowed: {e.strerror}") from None
        return contained(record, body)


def contained(record: Record, body) -> dict:
    """Run ``body(record)`` and record how it ended; re-raise only Ctrl-C/SIGTERM (after
    recording ``interrupted``) and configuration errors."""
    import torch

    try:
        values = dict(body(record) or {})
        status = values.pop("status", "complete")
        error = values.pop("error", None)
    except KeyboardInterrupt as e:
        record.write("interrupted", str(e) or type(e).__name__, **record.summarize())
        raise
    except ConfigError:
        raise
    except Diverged as e:
        status, error, values = "diverged", str(e), {}
    except (torch.OutOfMemoryError, MemoryError) as e:
        status, error, values = "oom", first_line(e), {}
    except Exception as e:  # contained: the sweep goes on, the reason is recorded
        status, error, values = "failed", first_line(e), {}
    return record.write(status, error, **(record.summarize() | values))


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")
