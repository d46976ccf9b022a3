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
configuration raises, and a run whose record cannot be written (a full disk) is refused
before any work. Nothing stored is trusted as a path: the directory of a run is always
recomputed from its config, so a runs folder can be moved. Nothing stored is trusted blindly
either. A record proves what it is on every skip and every resume (``identity_problem``): the
content key recomputed from its stored config must be its key, the key its folder is named
by, and the key of the config asked for. A complete run is skipped only when its files agree
(``distrust``: the summary matches its checksum and metrics.csv, row count and last step
included, model.pt matches its sha256, every CSV reads) and the caller's ``check`` finds
nothing (training: the corpus still has the sha256 the run read). A run whose files cannot be
read or trusted has them moved to ``untrusted-<n>/`` inside its directory (kept for
inspection) and starts over, the reason in run.json ``recovered``. A record left ``running``
by a process that died (its lock is free: the kernel released it) is resumed.
"""

import hashlib
import json
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
CSVS = ("metrics.csv", "position_loss.csv", "rows.csv")  # the tables a run directory may hold
ASIDE = "untrusted-"  # <run>/untrusted-<n>/: the files of a run that could not be trusted


class Diverged(Exception):
    """A non-finite loss or gradient, or a loss far above where training started."""


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

    def __init__(self, cfg, kind, key, directory, table=None, key_extra=""):
        self.cfg, self.kind, self.key, self.dir, self.table = cfg, kind, key, directory, table
        self.key_extra = key_extra  # recorded: the key is recomputed from config + this
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
            "key_extra": self.key_extra,
            "summary": summary,
            "summary_sha256": summary_digest(summary),
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            **self.fields,
            "env": environment(self.device),
            "started": self.started,
            "finished": None if status == "running" else time.time(),
        }
        store.atomic_write_json(self.dir / "run.json", record)
        return summary | {"run_dir": str(self.dir)}


def summary_digest(summary: dict) -> str:
    """sha256 of a summary as run.json holds it (after a JSON round trip)."""
    plain = json.loads(json.dumps(summary, default=str))
    return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()


def read_record(directory: Path) -> tuple[dict | None, str | None]:
    """(run.json as a mapping, None), (None, None) when there is none, or (None, why it
    cannot be read): only a regular file is read (store.open_regular)."""
    path = directory / "run.json"
    if not (path.exists() or path.is_symlink()):
        return None, None
    try:
        raw = store.read_regular(path, store.JSON_BYTES)
    except OSError as e:
        return None, f"run.json: {(e.strerror or type(e).__name__).lower()}"
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None, "run.json: not readable JSON (torn, not UTF-8, or empty)"
    if not isinstance(record, dict):
        return None, "run.json: not a run record (not a mapping)"
    return record, None


def examine(directory: Path, key: str | None = None, check=None) -> tuple[dict | None, str | None]:
    """(record, None) for a complete run that can be trusted; (None, reason) for a run whose
    files cannot be read or trusted; (None, None) for an absent or incomplete one (resumed).
    ``key``: the content key of the config asked for, which the record must carry;
    ``check(record)``: the caller's own reason to distrust a record (or None)."""
    record, problem = read_record(directory)
    if problem:
        return None, problem
    for name in CSVS:
        problem = store.csv_problem(directory / name)
        if problem:
            return None, problem
    if record is None:
        return None, None
    complete = record.get("status") == "complete"
    problem = distrust(record, directory) if complete else identity_problem(record, directory)
    if not problem and key is not None and record.get("key") != key:
        problem = f"run.json: the record of key {str(record.get('key'))[:12]}, not of this config"
    problem = problem or (check(record) if check else None)
    if problem:
        return None, problem
    return (record, None) if complete else (None, None)


def identity_problem(record: dict, directory) -> str | None:
    """Why run.json is not the record of the run its folder holds (None when it is): the
    content key recomputed from its stored config (and ``key_extra``) must be its ``key``,
    and the folder must be named by that key. Catches an edited config and a folder copied
    under another config's name."""
    config, key = record.get("config"), record.get("key")
    if not isinstance(config, dict) or not isinstance(key, str) or len(key) != 64:
        return "run.json: no config and content key to prove what run it is"
    name = Path(directory).name
    if not name.endswith(f"-{key[:12]}"):
        return f"run.json: the record of key {key[:12]}, in folder {name} (copied?)"
    extra = record.get("key_extra") or ""
    try:
        actual = store.content_key(config, extra=str(extra))
    except (TypeError, ValueError) as e:
        return f"run.json: its config cannot be keyed ({first_line(e)})"
    if actual != key:
        return "run.json: its config does not give its key (edited?)"
    return None


def distrust(record: dict, directory, weights: bool = True) -> str | None:
    """Why the summary of a complete run cannot be trusted (None when it can): a record that
    does not prove its identity (``identity_problem``), no complete summary, one that does
    not match its checksum (edited by hand), for training one that metrics.csv contradicts
    or (``weights``) a model.pt that fails its sha256, for a measurement a row count rows.csv
    contradicts."""
    directory = Path(directory)
    summary = record.get("summary")
    if not isinstance(summary, dict) or summary.get("status") != "complete":
        return "run.json: status complete without a complete summary"
    digest = record.get("summary_sha256")  # absent in records from before it existed
    if digest is not None and digest != summary_digest(summary):
        return "run.json: the summary does not match its checksum (edited?)"
    problem = identity_problem(record, directory)
    if problem:
        return problem
    try:
        if record.get("kind") == "train":
            problem = store.checksum_problem(directory / "model.pt") if weights else None
            return problem or _contradicted(summary, directory / "metrics.csv")
        if isinstance(summary.get("rows"), int):
            rows, _ = store.read_metrics_rows(directory / "rows.csv")
            if len(rows) != summary["rows"]:
                return f"run.json: summary rows={summary['rows']}, rows.csv has {len(rows)}"
    except (OSError, UnicodeDecodeError, ValueError) as e:
        return f"unreadable: {first_line(e)}"
    return None


def _contradicted(summary: dict, metrics: Path) -> str | None:
    """A training summary's figures are read back from metrics.csv (train.Run.summary_values):
    its row count, its last row's step and train_loss, its last evaluation's val_loss and
    val_acc; the steps of its rows only increase."""
    rows, _ = store.read_metrics_rows(metrics)
    if not rows:
        return "metrics.csv: no rows behind a complete summary"
    expected_rows = summary.get("metric_rows")  # absent in records from before it existed
    if isinstance(expected_rows, int) and len(rows) != expected_rows:
        return f"run.json: summary metric_rows={expected_rows}, metrics.csv has {len(rows)}"
    steps = [int(float(r["step"])) for r in rows]
    if steps != sorted(set(steps)):
        return "metrics.csv: its steps do not increase row after row"
    evals = [r for r in rows if r.get("val_loss")]
    expected = {"step": steps[-1], "train_loss": _float(rows[-1], "train_loss")}
    if evals:
        expected |= {k: _float(evals[-1], k) for k in ("val_loss", "val_acc")}
    for key, value in expected.items():
        if key in summary and summary[key] != value and not _both_nan(summary[key], value):
            return f"run.json: summary {key}={summary[key]!r}, metrics.csv says {value!r}"
    return None


def _float(row, key):
    return float(row[key]) if row.get(key) not in (None, "") else None


def _both_nan(a, b) -> bool:
    return isinstance(a, float) and isinstance(b, float) and a != a and b != b


def set_aside_files(directory: Path, reason: str) -> str:
    """Move every file of a run but its lock to <dir>/untrusted-<n>/ (kept for inspection);
    returns what run.json records as ``recovered``."""
    n = 0
    while (target := directory / f"{ASIDE}{n}").exists():
        n += 1
    target.mkdir()
    # the checkpoint first: a kill half-way must never leave it to resume beside lost rows
    for p in sorted(directory.iterdir(), key=lambda p: not p.name.startswith("ckpt.pt")):
        if p.name not in KEPT and not p.name.startswith(ASIDE):
            p.rename(target / p.name)
    return f"{reason}; its files were moved to {target.name}/ and the run started over"


@contextmanager
def claimed(directory):
    """Hold the directory's lock for the block. Yields None when we hold it, or the summary
    to return instead (``skipped``) when another living process is working there (a dead
    one holds nothing: the kernel released its lock)."""
    lock = store.RunLock(directory)
    try:
        got = lock.acquire()
    except store.NotRegular as e:  # the lock itself: a link, a directory, a FIFO
        raise ConfigError(
            f"out_dir={str(directory.parent)!r} is not allowed: {directory.name}/lock is "
            f"{e.strerror}"
        ) from None
    if not got:
        owner = lock.owner()
        yield {
            "status": "skipped",
            "reason": "another process " + (f"(pid {owner}) " if owner else "") + "holds this run",
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


def execute(cfg, kind, parts, body, *, table=None, key_extra="", resume=False, check=None) -> dict:
    """The lifecycle above. ``body(record) -> dict`` does the work; the dict it returns
    becomes the summary (a ``status`` key in it overrides ``complete``). ``resume=True``
    keeps an incomplete run's files for the body to continue from (training). ``check(record)``
    says why a stored record cannot be trusted for the caller's own reasons (or None)."""
    key = store.content_key(cfg, extra=key_extra)
    directory = run_dir(cfg, parts, key)
    made = not directory.exists()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"out_dir={cfg.out_dir!r} is not allowed: {e.strerror}") from None
    with claimed(directory) as busy:
        if busy:
            return busy
        record = start(cfg, kind, key, directory, table, key_extra, resume, check)
        if isinstance(record, dict):  # a complete run that can be trusted: skipped
            return record
        try:
            record.write("running")
        except OSError as e:  # a full disk or a read-only folder: refuse before any work
            if made:
                shutil.rmtree(directory, ignore_errors=True)
            raise ConfigError(
                f"out_dir={cfg.out_dir!r} is not allowed: cannot write "
                f"{directory.name}/run.json ({e.strerror})"
            ) from None
        return contained(record, body)


def start(cfg, kind, key, directory, table, key_extra, resume, check) -> "Record | dict":
    """With the lock held: the stored summary of a complete run that can be trusted (with
    ``skipped``), or the Record of a run to do, its directory made ready: files that cannot
    be trusted set aside, those of a run to resume kept, the rest cleared."""
    done, problem = (None, None) if cfg.fresh else examine(directory, key, check)
    if done:
        return done["summary"] | {"run_dir": str(directory), "skipped": True, "executed_steps": 0}
    for tmp in directory.glob(".*.tmp"):  # what a writer killed mid-write left (store)
        if tmp.is_file() or tmp.is_symlink():
            tmp.unlink()
    record = Record(cfg, kind, key, directory, table, key_extra)
    if problem:  # files that cannot be read or trusted are kept aside, never resumed from
        record.fields["recovered"] = set_aside_files(directory, problem)
    elif cfg.fresh or not resume:
        clear(directory)
    elif (read_record(directory)[0] or {}).get("status") == "running":
        # we hold the lock, so the process that wrote `running` is gone (killed, its machine
        # lost): the kernel released its lock, and the run resumes from its checkpoint
        record.fields["resumed_after"] = "a process that died while it was running"
    return record


def contained(record: Record, body) -> dict:
    """Run ``body(record)`` and record how it ended; re-raise only Ctrl-C/SIGTERM (after
    recording ``interrupted``) and configuration errors."""
    try:
        values = dict(body(record) or {})
        status = values.pop("status", "complete")
        error = values.pop("error", None)
    except KeyboardInterrupt as e:
        record.write("interrupted", str(e) or type(e).__name__, **record.summarize())
        raise
    except ConfigError as e:  # met inside the work (a nested run's name): recorded, then told
        record.write("failed", first_line(e), **record.summarize())
        raise
    except Diverged as e:
        status, error, values = "diverged", str(e), {}
    except Exception as e:  # contained: the sweep goes on, the reason is recorded
        status, error, values = ("oom" if out_of_memory(e) else "failed"), first_line(e), {}
    try:
        return record.write(status, error, **(record.summarize() | values))
    except OSError as e:  # the disk filled up during the run: run.json still says running,
        # so the next launch resumes it; this launch reports it failed, with the reason
        why = f"run.json could not be written ({e.strerror}); the run ended {status}"
        return record.summary("failed", f"{why}: {error}" if error else why) | {
            "run_dir": str(record.dir)
        }


def out_of_memory(e: BaseException) -> bool:
    """Out of memory on the GPU (torch.OutOfMemoryError) or the CPU: MemoryError, or the
    RuntimeError of torch's CPU allocator ("DefaultCPUAllocator: can't allocate memory")."""
    import torch

    if isinstance(e, torch.OutOfMemoryError | MemoryError):
        return True
    text = str(e)
    return isinstance(e, RuntimeError) and (
        "DefaultCPUAllocator" in text or "can't allocate memory" in text
    )


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")
