"""what=protocols: a trained text model scored under both evaluation protocols (C1*).

The stream study trains two arms (random windows, or the corpus read in order with the state
carried) and the harness evaluates each as it was trained, so the two arms' figures come
from two protocols and their difference mixes training with evaluation (issue 22). This
measurement scores the model of a complete training run, whichever arm trained it, under
both, on the same held-out split ``what.split``:

    windows   random windows of the split, each read from the zero state, seeded by data.seed
              and not by data.stream, so both arms of a seed are scored on the same windows:
              test (the default): the first TEST_SEQUENCES windows of ``task.test_examples``,
                  exactly what what=test_set and what=ngram's ``scope=test`` rows score
              val: exactly the windows seqbench.evaluate.held_out scores
                  (``task.batch("val", i, B)`` for i < eval_batches)
    stream    the whole split's stream in B columns, read window after window with the state
              carried (seqbench.evaluate.stream_loss, the harness's own whole-stream figure),
              for a model whose state keeps its size (step.carries_state); any other model
              reads each window fresh, and its rows say so (``state_carried``)

Reported figures read the test split (issue 22: what chose a model never scores it); val is
there to compare with what the harness recorded while training.

Run it with the training job's own sweep (``python -m seqbench.measure -m what=protocols
+experiment=stream ...``): each job's config minus ``what`` is its training run's config,
found by content key and read, never trained unless ``what.train`` says so (as
seqbench.measure.test_set finds it).
"""

from omegaconf import DictConfig

from seqbench.config import ConfigError
from seqbench.data import TEST_SEQUENCES
from seqbench.data.text import Text
from seqbench.env import pick_device
from seqbench.evaluate import MIN_SCORED_TOKENS, held_out, stream_loss, stream_scored
from seqbench.measure.common import (
    check_train_study,
    held_out_split,
    model_columns,
    need,
    positive_int,
    training_config,
)
from seqbench.measure.test_set import score, trained_run
from seqbench.step import carries_state

COLUMNS = (
    "model family impl d_model n_layers seed arm split protocol loss acc tokens state_carried "
    "windows columns train_run train_key train_steps"
).split()
ARMS = {False: "random", True: "stream"}  # data.stream -> the arm that trained the model


def check(cfg: DictConfig, task) -> None:
    w = cfg.what
    for key in ("eval_batches", "batch_size"):
        if w.get(key) is not None:
            positive_int(w, key)
    need(isinstance(w.get("train"), bool), "what.train", w.get("train"), "true or false")
    check_train_study(w)
    need(isinstance(task, Text), "data._target_", cfg.data.get("_target_"),
         "what=protocols scores a text corpus read two ways (data=text)")  # fmt: skip
    split = held_out_split(w, task)
    columns, held = _columns(cfg), len(task.streams[split])
    if stream_scored(held, columns) < MIN_SCORED_TOKENS:  # a figure over nothing is no figure
        setting, part = task.held_out_source(split)
        raise ConfigError(
            f"{setting} is not allowed: {part} holds {held} tokens, and the whole-stream "
            f"protocol in {columns} columns scores {stream_scored(held, columns)} of them, "
            f"fewer than {MIN_SCORED_TOKENS}; use a longer held-out split or fewer columns"
        )


def measure(cfg: DictConfig, task, log) -> dict:
    device = pick_device(cfg.device)
    model, summary, directory = trained_run(training_config(cfg), task, device, cfg.what.train)
    run = model_columns(cfg, model) | {
        "seed": cfg.seed,
        "arm": ARMS[bool(task.stream)],
        "split": cfg.what.split,
        "train_run": directory.name,
        "train_key": summary.get("key"),
        "train_steps": summary.get("step"),
    }
    out = {"train_run": directory.name}
    for protocol, figures in scores(model, task, cfg, device).items():
        log(run | {"protocol": protocol} | figures)
        out[f"{protocol}_loss"] = figures["loss"]
    return out


def scores(model, task, cfg: DictConfig, device) -> dict[str, dict]:
    """{protocol: {loss, acc, tokens, state_carried, windows, columns}} of one model on the
    split ``what.split``, through the harness's own evaluation functions."""
    split = cfg.what.split
    columns, carry = _columns(cfg), carries_state(model, device)
    ids = task.streams[split]
    loss, acc = stream_loss(model, ids, columns, task.seq_len, device, carry)
    return {
        "windows": _windows(model, task, cfg, device),
        "stream": {
            "loss": loss,
            "acc": acc,
            "tokens": stream_scored(len(ids), columns),
            "state_carried": carry,
            "windows": None,
            "columns": columns,
        },
    }


def _windows(model, task, cfg: DictConfig, device) -> dict:
    """The random-windows protocol on ``what.split`` (module docstring): test, the windows
    what=test_set scores; val, the windows the harness scored while training."""
    w, t = cfg.what, cfg.train
    size = w.batch_size or t.batch_size
    if w.split == "test":
        tokens, targets = task.test_examples(TEST_SEQUENCES)  # [n, T] each
        # (summed loss, correct, scored, ...): what=test_set's own scoring
        loss_sum, correct, scored = score(model, tokens, targets, size, device)[:3]
        figures, n = {"loss": loss_sum / scored, "acc": correct / scored}, len(tokens)
    else:
        batches = w.eval_batches or t.eval_batches
        held, _ = held_out(model, task, batches, size, device)
        figures, n = {"loss": held["val_loss"], "acc": held["val_acc"]}, batches * size
    # a text window scores every position
    return figures | {"tokens": n * task.seq_len, "state_carried": False, "windows": n,
                      "columns": None}  # fmt: skip


def _columns(cfg: DictConfig) -> int:
    """Columns of the whole-stream read: the harness's (train.eval_batch_size, else
    train.batch_size), so the stream arm's figure is the one its run recorded."""
    return cfg.train.eval_batch_size or cfg.train.batch_size
