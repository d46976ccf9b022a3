"""what=test_set: a trained model scored on sequences nothing that chose it ever saw.

A criterion run stops at the first evaluation at or above its target on the validation
batches, and an lr is calibrated on validation loss: a figure read on the same batches is the
best of many looks, at the target by construction. This measurement scores the model of a
complete training run on the task's *test* split (seqbench.data: its own seed, never drawn
by training, validation or the pool), ``what.sequences`` sequences in one forward pass each:

    test_loss = mean cross-entropy over the scored positions
    test_acc  = share of scored positions whose argmax is the target
    test_position_loss = mean cross-entropy at each position t of the window, a JSON list
                (language modelling only, where every position is scored: Kaplan's loss
                by position, read by the text_positions study; empty otherwise)

Run it with the training job's own sweep (``python -m seqbench.measure -m what=test_set
+experiment=recall ...``): each job's config minus ``what`` is its training run's config,
found by content key (measure.common.training_config) and read, never trained, unless
``what.train`` says so. A missing or incomplete training run makes the measurement
``failed`` with the command that trains it, so a rerun after training measures it.
"""

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from seqbench import runs, store
from seqbench.config import build_model
from seqbench.data import IGNORE, TEST_SEQUENCES
from seqbench.env import pick_device
from seqbench.measure.common import (
    check_train_study,
    model_columns,
    need,
    positive_int,
    training_config,
)
from seqbench.train import trained_model

COLUMNS = (
    "model family impl d_model n_layers train_run train_key data lr train_steps "
    "steps_to_criterion val_acc val_loss test_acc test_loss test_correct test_scored "
    "test_sequences test_position_loss"
).split()


def check(cfg: DictConfig, task) -> None:
    w = cfg.what
    positive_int(w, "sequences", high=1 << 20)
    least = f"an integer >= {TEST_SEQUENCES}: a reported figure rests on at least that many"
    need(w.sequences >= TEST_SEQUENCES, "what.sequences", w.sequences, least)
    positive_int(w, "batch_size")
    need(isinstance(w.get("train"), bool), "what.train", w.get("train"), "true or false")
    check_train_study(w)
    if not task.has_test:
        path, corpus = cfg.data.get("path"), cfg.data.get("corpus")
        setting = f"data.corpus={corpus}" if corpus else f"data.path={path}"
        need(False, setting.replace("=None", "=null"), "",
             "what=test_set needs a test split: a corpus folder with test.txt (a single "
             "file's held-out tail is its validation set)")  # fmt: skip


def measure(cfg: DictConfig, task, log) -> dict:
    w, device = cfg.what, pick_device(cfg.device)
    tcfg = training_config(cfg)
    model, summary, directory = trained_run(tcfg, task, device, w.train)
    tokens, targets = task.test_examples(w.sequences)  # [n, T] each
    loss_sum, correct, scored, by_position = score(model, tokens, targets, w.batch_size, device)
    row = model_columns(cfg, model) | {
        "train_run": directory.name,
        "train_key": summary.get("key"),
        "data": _data(cfg),
        "lr": summary.get("lr"),
        "train_steps": summary.get("step"),
        "steps_to_criterion": summary.get("steps_to_criterion"),
        "val_acc": summary.get("val_acc"),
        "val_loss": summary.get("val_loss"),
        "test_acc": correct / scored,
        "test_loss": loss_sum / scored,
        "test_correct": correct,
        "test_scored": scored,
        "test_sequences": len(tokens),
        "test_position_loss": json.dumps(by_position) if by_position else None,
    }
    log(row)
    return {k: row[k] for k in ("train_run", "test_acc", "test_loss", "test_sequences")}


def trained_run(tcfg: DictConfig, task, device, train: bool):
    """(model, training summary, run directory) of the complete training run of ``tcfg``:
    read from its directory (found from the config, as seqbench.runs finds it, and trusted
    only when runs.examine trusts it, model.pt's sha256 included); trained first only when
    ``train``."""
    key = store.content_key(tcfg)
    directory = runs.run_dir(tcfg, [runs.model_part(tcfg), runs.task_part(tcfg)], key)
    record, problem = runs.examine(directory, key, lambda r: _data_problem(task, r))
    if record is None and train:
        model, summary = trained_model(tcfg, device)
        return model, summary, Path(summary["run_dir"])
    if record is None:
        raise RuntimeError(
            f"no complete training run {directory.name} to score"
            + (f" ({problem})" if problem else "")
            + ": run the training job first (python -m seqbench.train with the same "
            "arguments), or pass what.train=true"
        )
    model = build_model(tcfg.model, task.vocab_size, device)
    model.load_state_dict(store.load_torch(directory / "model.pt", map_location=device))
    return model, record["summary"], directory


def _data_problem(task, record) -> str | None:
    recorded = record.get("data")
    return task.changed_since(recorded) if isinstance(recorded, dict) else None


@torch.no_grad()
def score(model, tokens, targets, batch_size: int, device) -> tuple[float, int, int, list | None]:
    """(summed loss, correct, scored, mean loss per position) over the scored positions of
    tokens/targets [n, T], as seqbench.evaluate.held_out scores a validation batch; the
    per-position list only where every position is scored (None otherwise)."""
    model.eval()
    correct, count, every = 0, 0, True
    by_position = torch.zeros(tokens.size(1), dtype=torch.float64)  # [T] summed loss
    for a in range(0, len(tokens), batch_size):
        x, y = tokens[a : a + batch_size].to(device), targets[a : a + batch_size].to(device)
        logits, _ = model(x)  # [b, T, V]
        # [b, T], 0 where ignored
        loss = F.cross_entropy(logits.float().transpose(1, 2), y, ignore_index=IGNORE,
                               reduction="none")  # fmt: skip
        scored = y != IGNORE  # [b, T]
        by_position += loss.double().sum(0).cpu()
        correct += int((logits.argmax(-1) == y)[scored].sum())
        count += int(scored.sum())
        every = every and bool(scored.all())
    if count == 0:
        raise ValueError("the test split scored no positions: no accuracy or loss to report")
    per_position = [round(v, 5) for v in (by_position / len(tokens)).tolist()] if every else None
    return float(by_position.sum()), correct, count, per_position


def _data(cfg: DictConfig) -> str:
    """The data settings of the run, as 'distance=16 seq_len=24' (the target left out)."""
    return " ".join(f"{k}={v}" for k, v in cfg.data.items() if k != "_target_")
