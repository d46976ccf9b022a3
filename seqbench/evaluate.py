"""Held-out evaluation: the same for every model and task.

``held_out`` scores ``eval_batches`` held-out batches (loss, accuracy and perplexity over the
scored positions, and the mean loss at each context position: Kaplan et al. 2020, Fig. 7);
``stream_loss`` reads a whole held-out token stream window after window, carrying the state
when training carried it (the protocol published WikiText/PTB perplexities use). Neither ever
reports a figure over no tokens (a loss of 0, a perplexity of 1.0): the harness refuses a
held-out stream that would score fewer than MIN_SCORED_TOKENS before training, and an
evaluation that scored nothing raises.
"""

import math

import torch
import torch.nn.functional as F

from seqbench.data import IGNORE
from seqbench.data.text import Text, stream_windows
from seqbench.errors import ConfigError

MIN_SCORED_TOKENS = 64  # the fewest held-out tokens a whole-stream figure may rest on


def stream_scored(n_tokens: int, batch_size: int) -> int:
    """Tokens whole-stream evaluation scores in a stream of n_tokens read in batch_size
    columns: each column's first token is only read, and the last n_tokens % B are dropped."""
    return batch_size * max(n_tokens // batch_size - 1, 0)


def check_evaluation(cfg, task) -> None:
    """Whole-stream evaluation must score at least MIN_SCORED_TOKENS of every held-out stream:
    a stream shorter than its columns scores nothing, and a perplexity over nothing (1.0) is
    no result. Refused before any run starts, naming the corpus that is too short."""
    if not (isinstance(task, Text) and (task.stream or task.has_splits)):
        return
    columns = cfg.train.eval_batch_size or cfg.train.batch_size
    for split, ids in task.eval_streams().items():
        scored = stream_scored(len(ids), columns)
        if scored < MIN_SCORED_TOKENS:
            setting, part = task.held_out_source(split)
            raise ConfigError(
                f"{setting} is not allowed: {part} holds {len(ids)} tokens, and whole-stream "
                f"evaluation in {columns} columns (train.eval_batch_size, else "
                f"train.batch_size) scores {scored} of them, fewer than the "
                f"{MIN_SCORED_TOKENS} a held-out figure needs; use a longer held-out split or "
                "fewer columns"
            )


def _scored(count: int, what: str) -> int:
    if count == 0:
        raise ValueError(f"{what} scored no tokens: no loss or perplexity to report")
    return count


@torch.no_grad()
def held_out(model, task, n_batches, batch_size, device) -> tuple[dict, str]:
    """({val_loss, val_acc, val_ppl}, position_loss.csv text) over n_batches val batches."""
    was_training = model.training
    model.eval()
    T = task.seq_len
    loss_sum, correct, count = 0.0, 0, 0
    pos_loss, pos_count = torch.zeros(T), torch.zeros(T)
    for i in range(n_batches):
        tokens, targets = task.batch("val", i, batch_size)
        tokens, targets = tokens.to(device), targets.to(device)
        logits, _ = model(tokens)  # [B, T, V]
        scored = targets != IGNORE  # [B, T]
        losses = F.cross_entropy(
            logits.float().transpose(1, 2), targets, ignore_index=IGNORE, reduction="none"
        )  # [B, T]
        loss_sum += float(losses[scored].sum())
        correct += int((logits.argmax(-1) == targets)[scored].sum())
        count += int(scored.sum())
        pos_loss += losses.cpu().sum(0)
        pos_count += scored.cpu().sum(0)
    model.train(was_training)
    lines = ["position,loss,count"] + [
        f"{p},{float(pos_loss[p] / pos_count[p])!r},{int(pos_count[p])}"
        for p in range(T)
        if pos_count[p] > 0
    ]
    count = _scored(count, "held-out evaluation")
    val_loss = loss_sum / count
    metrics = {
        "val_loss": val_loss,
        "val_acc": correct / count,
        "val_ppl": math.exp(min(val_loss, 50.0)),
    }
    return metrics, "\n".join(lines) + "\n"


@torch.no_grad()
def stream_loss(model, ids, batch_size, seq_len, device, carry) -> tuple[float, float]:
    """(mean loss, accuracy) over every token of a held-out stream: batchified into
    ``batch_size`` columns and read window after window, the state carried when ``carry``
    (as training carried it), else each window read fresh as in training."""
    was_training = model.training
    model.eval()
    state, loss_sum, correct, count = None, 0.0, 0, 0
    for tokens, targets in stream_windows(ids, batch_size, seq_len):
        tokens, targets = tokens.to(device), targets.to(device)
        logits, state = model(tokens, state if carry else None)  # [B, t, V]
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction="sum")
        loss_sum += loss  # a tensor: no host sync per window
        correct += (logits.argmax(-1) == targets).sum()
        count += targets.numel()
    model.train(was_training)
    count = _scored(count, "whole-stream evaluation")
    return float(loss_sum) / count, float(correct) / count
