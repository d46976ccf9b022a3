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


# --- why a run stopped (issue 22) ---------------------------------------------------------
# One rule, read by training (a new run's summary) and by the report (report.collect, for runs
# recorded before the field existed, from their metrics.csv): the same history gives the same
# answer wherever it is read.
STOP_REASONS = ("criterion", "converged", "cap")
MIN_BUDGET = 1000  # steps: a shorter run is never called converged
FLAT = 0.01  # nats: a best held-out loss that improved by no more over the last quarter is flat
CHANCE_ACC = 0.05  # held-out accuracy within this of the task's chance: still at chance
CHANCE_LOSS = 0.05  # held-out loss within this fraction of the chance loss: still at chance
# a uniform guess among each generated task's answers, from the data fingerprint run.json holds
CHANCE = {
    "LagRecall": lambda d: 1 / d["n_keys"],  # a value among the n_keys values
    "MQAR": lambda d: 1 / (d["vocab_size"] - d["vocab_size"] // 2),  # values in [V/2, V)
    "Copy": lambda d: 1 / (d["vocab_size"] - 1),  # segment tokens in [1, V)
}


def chance_levels(data: dict | None) -> tuple[float | None, float | None]:
    """(chance accuracy, chance loss) of the data a run read (run.json ``data``): the accuracy
    of a uniform guess among the task's answers (None for text, which has no single answer),
    and the loss of a model that ignores its context, the unigram cross-entropy where the data
    records it (text), else ln(vocab), a uniform guess over every token."""
    data = data if isinstance(data, dict) else {}
    try:
        acc = CHANCE[data["task"]](data)
    except (KeyError, TypeError, ZeroDivisionError):
        acc = None
    vocab = data.get("vocab_size")
    loss = data.get("unigram_xent") or (math.log(vocab) if vocab and vocab > 1 else None)
    return acc, loss


def eval_history(rows) -> list[tuple[int, float, float | None]]:
    """(step, val_loss, val_acc) of the evaluation rows among metrics.csv's rows (mappings of
    text or numbers: a row without a val_loss logged training only)."""
    out = []
    for row in rows:
        loss, acc = _number(row.get("val_loss")), _number(row.get("val_acc"))
        if loss is not None:
            out.append((int(float(row["step"])), loss, acc))
    return out


def _number(v) -> float | None:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def last_quarter_gain(evals) -> float | None:
    """How much the best held-out loss improved over the last quarter of the run: the best
    before 3/4 of its last step minus the best after it (None without an evaluation on each
    side). ``evals``: (step, val_loss, val_acc) in step order."""
    last = evals[-1][0] if evals else 0
    before = [loss for step, loss, _ in evals if step <= 0.75 * last]
    after = [loss for step, loss, _ in evals if step > 0.75 * last]
    if not before or not after:
        return None
    return min(before) - min(after)


def at_chance(evals, data: dict | None) -> bool:
    """Is the last evaluation still at chance: accuracy within CHANCE_ACC of the task's
    chance, or loss within CHANCE_LOSS of the chance loss (chance_levels)?"""
    if not evals:
        return True
    _, loss, acc = evals[-1]
    chance_acc, chance_loss = chance_levels(data)
    near_acc = chance_acc is not None and acc is not None and acc <= chance_acc + CHANCE_ACC
    near_loss = chance_loss is not None and loss >= (1 - CHANCE_LOSS) * chance_loss
    return bool(near_acc or near_loss)


def stop_reason(evals, cap: int, reached: bool, data: dict | None = None) -> dict:
    """Why a finished run stopped, and whether its figures are censored (issue 22).

    ``criterion``: it reached train.target. ``converged``: its best held-out loss improved by
    at most FLAT nats over the last quarter of a run of at least MIN_BUDGET steps and it is
    not at chance (a plateau at chance is where late breakouts start), or early stopping
    (train.patience) ended it before its cap. ``cap``: train.steps stopped it otherwise. A
    ``cap`` run is *censored* when it was still improving (gain > FLAT, or too few
    evaluations to tell) or still at chance: what it would have reached is unknown, so a
    verdict may not read it as a failure. ``evals``: (step, val_loss, val_acc) in step order."""
    evals = [(int(s), float(loss), None if a is None else float(a)) for s, loss, a in evals]
    gain = last_quarter_gain(evals)
    chance = at_chance(evals, data)
    improving = gain is None or gain > FLAT
    last = evals[-1][0] if evals else 0
    if reached:
        reason = "criterion"
    elif evals and last < cap:
        reason = "converged"  # early stopping: patience ran out before the cap
    elif last >= MIN_BUDGET and not improving and not chance:
        reason = "converged"
    else:
        reason = "cap"
    return {
        "stop_reason": reason,
        "censored": reason == "cap" and (improving or chance),
        "last_quarter_gain": gain,
        "at_chance": chance,
    }
