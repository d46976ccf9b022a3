"""Run directories -> tidy pandas tables. Nothing in a runs folder can crash this: a file that
cannot be read makes one row of the ``unreadable`` table, with its reason.

Training runs (``run.json`` + ``metrics.csv``) become
    runs        one row per run: study, model, family, task, status, every config key (dotted
                column names: ``data.distance``, ``train.lr``), parameter counts, hyperparameters
                as built (``hp_*``), final metrics, environment
    curves      one row per logged step of every run
    positions   held-out loss at each context position (final evaluation)
Measurement runs (``run.json`` with ``"kind": "measure"`` and ``"table": NAME`` + ``rows.csv``)
are concatenated per NAME into a table of that name, each row tagged with its run.
Incomplete runs are kept, with their status, so the report can list them; studies use only
``status == "complete"`` rows. A complete run whose summary cannot be trusted (it does not match
its checksum or metrics.csv: seqbench.runs.distrust) gets status ``untrusted`` and a row in
``unreadable`` with the reason; a sweep retrains it.
"""

from pathlib import Path

import pandas as pd

from seqbench import store
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
ENV = ("device", "cpu", "gpu", "threads", "torch", "cuda")
RUN_CSVS = ("metrics.csv", "position_loss.csv", "rows.csv")


def flat(tree, prefix="") -> dict:
    """{'data': {'seq_len': 64}} -> {'data.seq_len': 64}"""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out |= flat(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def collect(runs_root) -> dict[str, pd.DataFrame]:
    runs, curves, positions, measured, unreadable = [], [], [], {}, []
    for d in sorted(p for p in Path(runs_root).iterdir() if p.is_dir()):
        if not (d / "run.json").exists() and not (d / "run.json").is_symlink():
            continue  # not a run directory (Hydra's .hydra folder, a user's notes)
        record, reason = _record(d / "run.json")
        if record is None:
            unreadable.append({"run": d.name, "file": "run.json", "reason": reason})
            continue
        cfg = flat(record["config"])
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
                measured.setdefault(str(record.get("table")), []).append(rows)
            continue
        runs.append(_run_row(base, cfg, record))
        metrics, pos = files["metrics.csv"][0], files["position_loss.csv"][0]
        if metrics is not None:
            keys = ("run", "study", "model", "family", "task")
            curves.append(metrics.assign(**{k: base[k] for k in keys}))
        if pos is not None:
            positions.append(pos.assign(run=d.name))
    tables = {
        "runs": pd.DataFrame(runs),
        "curves": pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(),
        "positions": pd.concat(positions, ignore_index=True) if positions else pd.DataFrame(),
        "unreadable": pd.DataFrame(unreadable, columns=["run", "file", "reason"]),
    }
    tables |= {name: pd.concat(parts, ignore_index=True) for name, parts in measured.items()}
    jobs, problem = _read_rows(Path(runs_root) / "bench_jobs.csv", torn_ok=False)
    if jobs is not None and not problem:
        if not {"job", "seconds"} <= set(jobs):
            problem = "bench_jobs.csv: no job and seconds columns"
        elif not pd.api.types.is_numeric_dtype(jobs["seconds"]):
            problem = "bench_jobs.csv: seconds that are not numbers"
    if problem:
        unreadable.append({"run": "-", "file": "bench_jobs.csv", "reason": problem})
        tables["unreadable"] = pd.DataFrame(unreadable, columns=["run", "file", "reason"])
    elif jobs is not None:
        tables["bench_jobs"] = jobs
    return tables


def _record(path: Path):
    """(record, None) or (None, why it cannot be used)."""
    if not path.is_file():
        return None, "not a regular file"
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
    return row


def _mapping(v) -> dict:
    return v if isinstance(v, dict) else {}


def _read_rows(path, torn_ok=True):
    """(table or None, problem or None) of a CSV written by store.MetricsLog; ``torn_ok``:
    a torn line is what a kill leaves (appended files), not damage (atomic ones)."""
    if not path.exists():
        return None, None
    problem = store.csv_problem(path)
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
