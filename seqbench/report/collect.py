"""Run directories -> tidy pandas tables.

Training runs (``run.json`` + ``metrics.csv``) become
    runs        one row per run: study, model, task, status, fairness figures, final metrics
    curves      one row per logged step of every run
    positions   held-out loss at each context position (final evaluation)
Measurement runs (``run.json`` with ``"kind": "measure"`` and ``"table": NAME`` + ``rows.csv``)
are concatenated per NAME into a table of that name, each row tagged with its run.
Incomplete runs are kept, with their status, so the report can list them; sections plot only
``status == "complete"`` rows.
"""

from pathlib import Path

import pandas as pd

from seqbench import store

CONFIG_COLUMNS = {  # flattened config keys worth a column of their own
    "seed": "seed",
    "model.size": "size",
    "model.impl": "impl",
    "model.pos": "pos",
    "model.causal": "causal",
    "data.seq_len": "seq_len",
    "data.distance": "distance",
    "data.num_kv_pairs": "num_kv_pairs",
    "data.n_train": "n_train",
    "data.tokenizer": "tokenizer",
    "train.steps": "steps",
    "train.batch_size": "batch_size",
    "model.d_model": "d_model_override",
}


def short_name(target: str) -> str:
    """seqbench.models.recurrent.LSTM -> lstm;  seqbench.data.synthetic.LagRecall -> lagrecall"""
    return target.rsplit(".", 1)[-1].lower()


def _flat(tree, prefix=""):
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out |= _flat(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def collect(runs_root) -> dict[str, pd.DataFrame]:
    runs, curves, positions, measured = [], [], [], {}
    for run_json in sorted(Path(runs_root).glob("*/run.json")):
        record = store.read_json(run_json)
        if record is None:
            continue
        d = run_json.parent
        cfg = _flat(record.get("config", {}))
        base = {
            "run": d.name,
            "study": cfg.get("study"),
            "status": record.get("status"),
            "model": short_name(cfg.get("model._target_", "?")),
            "task": short_name(cfg.get("data._target_", "?")),
        }
        if record.get("kind") == "measure":
            rows = _read_rows(d / "rows.csv")
            if rows is not None:
                for k, v in base.items():
                    rows.insert(0, k, v) if k not in rows else None
                measured.setdefault(record["table"], []).append(rows)
            continue
        row = base | {v: cfg.get(k) for k, v in CONFIG_COLUMNS.items()}
        data = record.get("data") or {}
        row |= {"vocab_size": data.get("vocab_size"), "unigram_xent": data.get("unigram_xent")}
        row |= record.get("params") or {}
        row |= {f"hp_{k}": v for k, v in (record.get("model_hparams") or {}).items()}
        summary = record.get("summary") or {}
        row |= {
            k: summary.get(k)
            for k in (
                "step",
                "val_loss",
                "val_acc",
                "val_ppl",
                "train_loss",
                "wall_s",
                "error",
                "torn_metric_lines",
            )
        }
        env = record.get("env") or {}
        row |= {
            "device": env.get("device"),
            "cpu": env.get("cpu"),
            "gpu": env.get("gpu"),
            "threads": env.get("threads"),
            "torch": env.get("torch"),
        }
        runs.append(row)
        rows, _ = store.read_metrics_rows(d / "metrics.csv")
        if rows:
            c = pd.DataFrame(rows).apply(pd.to_numeric, errors="coerce")
            curves.append(c.assign(**{k: base[k] for k in ("run", "study", "model", "task")}))
        pos = _read_rows(d / "position_loss.csv")
        if pos is not None:
            positions.append(pos.assign(run=d.name))
    tables = {
        "runs": pd.DataFrame(runs),
        "curves": pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(),
        "positions": (pd.concat(positions, ignore_index=True) if positions else pd.DataFrame()),
    }
    tables |= {name: pd.concat(parts, ignore_index=True) for name, parts in measured.items()}
    jobs = Path(runs_root) / "bench_jobs.csv"
    if jobs.exists():
        tables["bench_jobs"] = pd.read_csv(jobs)
    return tables


def _read_rows(path):
    rows, _ = store.read_metrics_rows(path)
    if not rows:
        return None
    return numeric(pd.DataFrame(rows))


def numeric(df: pd.DataFrame) -> pd.DataFrame:
    """Columns that parse as numbers become numbers; the others stay text."""
    for c in df.columns:
        converted = pd.to_numeric(df[c], errors="coerce")
        if converted.notna().sum() == (df[c].astype(str) != "").sum():
            df[c] = converted
    return df


def complete(runs: pd.DataFrame, study: str | None = None) -> pd.DataFrame:
    """The rows a figure may use: finished runs, optionally of one study."""
    if runs.empty:
        return runs
    ok = runs[runs.status == "complete"]
    return ok[ok.study == study] if study is not None else ok
