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
``status == "complete"`` rows.
"""

from pathlib import Path

import pandas as pd

from seqbench import store
from seqbench.runs import short_name

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
        base = {
            "run": d.name,
            "study": cfg.get("study"),
            "status": record.get("status"),
            "model": short_name(cfg.get("model._target_", "?")),
            "family": record.get("family"),
            "task": short_name(cfg.get("data._target_", "?")),
            "seed": cfg.get("seed"),
        }
        if record.get("kind") == "measure":
            rows, problem = _read_rows(d / "rows.csv")
            if problem:
                unreadable.append({"run": d.name, "file": "rows.csv", "reason": problem})
            if rows is not None:
                for k, v in base.items():  # a row's own model/family columns win
                    if k not in rows:
                        rows[k] = v
                measured.setdefault(str(record.get("table")), []).append(rows)
            continue
        runs.append(_run_row(base, cfg, record))
        metrics, problem = _read_rows(d / "metrics.csv")
        if problem:
            unreadable.append({"run": d.name, "file": "metrics.csv", "reason": problem})
        if metrics is not None:
            keys = ("run", "study", "model", "family", "task")
            curves.append(metrics.assign(**{k: base[k] for k in keys}))
        pos, problem = _read_rows(d / "position_loss.csv")
        if problem:
            unreadable.append({"run": d.name, "file": "position_loss.csv", "reason": problem})
        if pos is not None:
            positions.append(pos.assign(run=d.name))
    tables = {
        "runs": pd.DataFrame(runs),
        "curves": pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(),
        "positions": pd.concat(positions, ignore_index=True) if positions else pd.DataFrame(),
        "unreadable": pd.DataFrame(unreadable, columns=["run", "file", "reason"]),
    }
    tables |= {name: pd.concat(parts, ignore_index=True) for name, parts in measured.items()}
    jobs, problem = _read_rows(Path(runs_root) / "bench_jobs.csv")
    if problem:
        unreadable.append({"run": "-", "file": "bench_jobs.csv", "reason": problem})
        tables["unreadable"] = pd.DataFrame(unreadable)
    if jobs is not None and {"job", "seconds"} <= set(jobs):
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


def _read_rows(path):
    """(table or None, problem or None) of a CSV written by store.MetricsLog."""
    if not path.exists():
        return None, None
    try:
        rows, _ = store.read_metrics_rows(path)
    except Exception as e:  # a directory, not UTF-8, NUL bytes, a malformed CSV ...
        return None, f"unreadable: {type(e).__name__}"
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
