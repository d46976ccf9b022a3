"""Run directories -> tidy pandas tables. Nothing in a runs folder can crash this: a file that
cannot be read makes one row of the ``unreadable`` table, with its reason.

Training runs (``run.json`` + ``metrics.csv``) become
    runs        one row per run: study, model, family, task, status, every config key (dotted
                column names: ``data.distance``, ``train.lr``), parameter counts, hyperparameters
                as built (``hp_*``), final metrics, why it stopped (``stop_reason``,
                ``censored``: evaluate.stop_reason, derived from metrics.csv for runs
                recorded before the field existed), environment
    curves      one row per logged step of every run
    positions   held-out loss at each context position (final evaluation)
Measurement runs (``run.json`` with ``"kind": "measure"`` and ``"table": NAME`` + ``rows.csv``)
are concatenated per NAME into a table of that name, each row tagged with its run. NAME becomes
``<results>/NAME.csv``, so it must be a plain identifier and none of the report's
own tables (store.table_problem: OWN_TABLES, and what the caller adds as ``reserved``); a
run with any other name is listed in ``unreadable`` and nothing of it is used.
Incomplete runs are kept, with their status, so the report can list them; studies use only
``status == "complete"`` rows. A complete run whose summary cannot be trusted (it does not match
its checksum or metrics.csv: seqbench.runs.distrust) gets status ``untrusted`` and a row in
``unreadable`` with the reason; a sweep retrains it.

Only regular files are read, and none larger than store's bounds: a FIFO, a device (a link to
/dev/zero), a directory, a symlink loop or a dangling link in a run folder is one ``unreadable``
row, never a hang or an unbounded read.
"""

from pathlib import Path

import pandas as pd

from seqbench import store
from seqbench.evaluate import eval_history, stop_reason
from seqbench.runs import distrust, short_name

SUMMARY = (
    "step",
    "val_loss",
    "val_acc",
    "val_ppl",
    "train_loss",
    "wall_s",
    "error",
    "torn_metric_lines",
    "steps_to_criterion",
    "stopped_early",
    "criterion",
    "lr",
    "best_val_loss",
    "best_step",
)
STOPPED = ("stop_reason", "censored", "last_quarter_gain", "at_chance")  # evaluate.stop_reason
ENV = ("device", "cpu", "gpu", "threads", "torch", "cuda")
RUN_CSVS = ("metrics.csv", "position_loss.csv", "rows.csv")
# the tables collect builds itself, each written to <results>/<name>.csv: no run may claim one
RUNS, CURVES, POSITIONS, UNREADABLE, BENCH_JOBS = OWN_TABLES = store.COLLECTED_TABLES


def flat(tree, prefix="") -> dict:
    """{'data': {'seq_len': 64}} -> {'data.seq_len': 64}"""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out |= flat(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def capped(cfg: dict) -> dict:
    """A run's flat config with ``train.steps`` its step cap: the harness multiplies it by
    ``train.budget`` (the full profile's 4x runs), and every reader of the cap reads this
    column. The budget and ``train.lr_step`` stay columns (1 and 0 for runs from before)."""
    if not isinstance(cfg.get("train.steps"), int):
        return cfg
    budget, step = cfg.get("train.budget"), cfg.get("train.lr_step")
    budget = budget if isinstance(budget, int) and budget >= 1 else 1
    step = step if isinstance(step, int) else 0
    return cfg | {
        "train.steps": cfg["train.steps"] * budget,
        "train.budget": budget,
        "train.lr_step": step,
    }


def collect(runs_root, reserved=()) -> dict[str, pd.DataFrame]:
    """``reserved``: names of the tables the caller writes beside these (the report's
    verdicts), which no measurement may take either."""
    runs, curves, positions, measured, unreadable = [], [], [], {}, []
    reserved = {*OWN_TABLES, *reserved}
    for d in sorted(p for p in Path(runs_root).iterdir() if p.is_dir()):
        if not (d / "run.json").exists() and not (d / "run.json").is_symlink():
            continue  # not a run directory (Hydra's .hydra folder, a user's notes)
        record, reason = _record(d / "run.json")
        if record is not None and record.get("kind") == "measure":
            reason = store.table_problem(record.get("table"), reserved)
            record = None if reason else record
        if record is None:
            unreadable.append({"run": d.name, "file": "run.json", "reason": reason})
            continue
        cfg = capped(flat(record["config"]))
        files = {name: _read_rows(d / name) for name in RUN_CSVS}
        problems = {name: problem for name, (_, problem) in files.items() if problem}
        unreadable += [{"run": d.name, "file": n, "reason": p} for n, p in problems.items()]
        status = record["status"]
        if status == "complete":  # the report reads no weights
            reason = "unreadable files" if problems else distrust(record, d, weights=False)
            if reason and not problems:
                unreadable.append({"run": d.name, "file": "run.json", "reason": reason})
            status = "untrusted" if reason else status
        base = {
            "run": d.name,
            "study": cfg.get("study"),
            "status": status,
            "model": short_name(cfg.get("model._target_", "?")),
            "family": record.get("family"),
            "task": short_name(cfg.get("data._target_", "?")),
            "seed": cfg.get("seed"),
        }
        if record.get("kind") == "measure":
            rows = files["rows.csv"][0]
            if rows is not None:
                for k, v in base.items():  # a row's own model/family columns win
                    if k not in rows:
                        rows[k] = v
                measured.setdefault(record["table"], []).append(rows)
            continue
        metrics, pos = files["metrics.csv"][0], files["position_loss.csv"][0]
        runs.append(_run_row(base, cfg, record) | _stopped(status, cfg, record, metrics))
        if metrics is not None:
            keys = ("run", "study", "model", "family", "task")
            curves.append(metrics.assign(**{k: base[k] for k in keys}))
        if pos is not None:
            positions.append(pos.assign(run=d.name))
    tables = {
        RUNS: pd.DataFrame(runs),
        CURVES: pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(),
        POSITIONS: pd.concat(positions, ignore_index=True) if positions else pd.DataFrame(),
        UNREADABLE: pd.DataFrame(unreadable, columns=["run", "file", "reason"]),
    }
    tables |= {name: pd.concat(parts, ignore_index=True) for name, parts in measured.items()}
    jobs, problem = _read_rows(Path(runs_root) / f"{BENCH_JOBS}.csv", torn_ok=False)
    if jobs is not None and not problem:
        if not {"job", "seconds"} <= set(jobs):
            problem = "bench_jobs.csv: no job and seconds columns"
        elif not pd.api.types.is_numeric_dtype(jobs["seconds"]):
            problem = "bench_jobs.csv: seconds that are not numbers"
    if problem:
        unreadable.append({"run": "-", "file": "bench_jobs.csv", "reason": problem})
        tables[UNREADABLE] = pd.DataFrame(unreadable, columns=["run", "file", "reason"])
    elif jobs is not None:
        tables[BENCH_JOBS] = jobs
    return tables


def regular_problem(path, max_bytes=None) -> str | None:
    """Why ``path`` is not a regular file of at most ``max_bytes`` (default: store's bound for
    its kind), None when it is one: store.open_regular never waits on a FIFO nor reads a
    device, so a FIFO, /dev/zero, a loop or a dangling link is a reason, never a hang."""
    path = Path(path)
    limit = max_bytes or (store.JSON_BYTES if path.suffix == ".json" else store.CSV_BYTES)
    try:
        with store.open_regular(path, limit):
            return None
    except OSError as e:
        return f"{path.name}: {e.strerror or type(e).__name__}"


def _record(path: Path):
    """(record, None) or (None, why it cannot be used)."""
    problem = regular_problem(path)
    if problem:
        return None, problem
    record = store.read_json(path)
    if record is None:
        return None, "not readable JSON (torn, not UTF-8, or empty)"
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        return None, "not a run record (no config mapping)"
    if not isinstance(record.get("status"), str):
        return None, "not a run record (no status)"
    return record, None


def _run_row(base, cfg, record) -> dict:
    row = base | cfg
    data = record.get("data") if isinstance(record.get("data"), dict) else {}
    row |= {"vocab_size": data.get("vocab_size"), "unigram_xent": data.get("unigram_xent")}
    row |= _mapping(record.get("params"))
    row |= {f"hp_{k}": v for k, v in _mapping(record.get("model_hparams")).items()}
    summary = _mapping(record.get("summary"))
    row |= {k: summary.get(k) for k in SUMMARY}
    env = _mapping(record.get("env"))
    row |= {k: env.get(k) for k in ENV}
    calibration = _mapping(record.get("lr_calibration"))  # the grid as extended, an edge
    grid = calibration.get("grid")
    row["lr_grid_searched"] = "/".join(f"{v:g}" for v in grid) if isinstance(grid, list) else None
    row["lr_at_edge"] = calibration.get("at_edge")
    return row


def _stopped(status, cfg, record, metrics) -> dict:
    """Why a complete training run stopped (evaluate.stop_reason): as its summary recorded it,
    or, for a run from before the field existed, derived by the same function from its
    metrics.csv evaluations, its cap (train.steps), whether it reached its criterion and the
    data it read. Nothing for a run that did not complete."""
    summary = _mapping(record.get("summary"))
    if "stop_reason" in summary:
        return {k: summary.get(k) for k in STOPPED}
    cap = cfg.get("train.steps")
    if status != "complete" or metrics is None or not isinstance(cap, int):
        return {k: None for k in STOPPED}
    evals = eval_history(metrics.to_dict("records"))
    reached = summary.get("steps_to_criterion") is not None
    return stop_reason(evals, cap, reached, record.get("data"))


def _mapping(v) -> dict:
    return v if isinstance(v, dict) else {}


def _read_rows(path, torn_ok=True):
    """(table or None, problem or None) of a CSV written by store.MetricsLog; ``torn_ok``:
    a torn line is what a kill leaves (appended files), not damage (atomic ones)."""
    if not path.exists() and not path.is_symlink():
        return None, None
    problem = regular_problem(path) or store.csv_problem(path)
    if problem:  # a directory, not UTF-8, NUL bytes, a malformed CSV ...
        return None, problem
    try:
        rows, torn = store.read_metrics_rows(path)
    except Exception as e:  # whatever else a hand-made file holds: one unreadable row
        return None, f"{path.name}: unreadable ({type(e).__name__})"
    if torn and not torn_ok:
        return None, f"{path.name}: {torn} malformed line(s)"
    if not rows:
        return None, None
    return numeric(pd.DataFrame(rows)), None


def numeric(df: pd.DataFrame) -> pd.DataFrame:
    """Columns that parse as numbers become numbers; the others stay text."""
    for c in df.columns:
        converted = pd.to_numeric(df[c], errors="coerce")
        if converted.notna().sum() == (df[c].astype(str) != "").sum():
            df[c] = converted
    return df
