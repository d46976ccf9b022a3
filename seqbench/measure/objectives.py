"""Causal versus masked objective at equal, counted compute (C8).

The same Transformer is trained twice on the same text with the same optimiser and step budget:
(a) causally, next-token prediction at every position (Radford et al. 2018), and (b) as a
bidirectional encoder on 15%-masked-token prediction (Devlin et al. 2019, BERT;
:class:`seqbench.data.masked.MaskedText`). Three things are measured, none estimated:

- **supervised targets per pass**: the exact number of scored positions in the training
  batches, summed over the whole run (B T per batch for (a), ~0.15 B T for (b));
- **FLOPs per training step**: forward + loss + backward of one training batch counted by
  ``seqbench.flops`` (matmul and attention formulas, the one counter seqbench has).
  Training compute = steps x FLOPs per step. The optimiser update is elementwise and
  uncounted by the counter, and identical for both objectives;
- **next word from the prefix**: on test windows x_1..x_T and a prefix length p, the
  cross-entropy of x_{p+1} given x_1..x_p. The causal model reads the prefix and predicts at
  its last position; the masked model reads ``x_1..x_p [MASK]`` and fills the mask. This is
  the generation use the lecture talks about;
- **each objective in its own distribution** (``own_loss``): held-out loss on the task the
  model was trained for, over the same windows (causal: every next token; masked: the 15%
  masked tokens, read from both sides). The masked model is judged on the prefix task it
  never trained for, so this is its control: a masked model that has not learned its own
  task says nothing about the objective.

Which windows (``what.split``, issue 22): the validation split chose each objective's lr, so
the reported figures read the test split by default: the first TEST_SEQUENCES windows of
``task.test_examples`` for the replicate's data seed, exactly the windows ``what=test_set``
and the count models' ``scope=test`` rows (``what=ngram``) score. ``what.split=val`` reads
``what.eval_batches`` validation batches instead, as the harness's evaluation draws them.

``measure`` is the ``what=prefix_eval`` measurement: for the budget ``cfg.train.steps`` it
gets both trained models from ``seqbench.train.train`` (which skips complete runs) and logs
one row per (objective, prefix length).
"""

import copy
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from seqbench.config import ConfigError, build_task
from seqbench.data import IGNORE, TEST_SEQUENCES
from seqbench.env import pick_device
from seqbench.flops import train_step_flops
from seqbench.measure.common import held_out_split
from seqbench.train import trained_model

COLUMNS = (
    "objective steps seed lr prefix_len prefix_loss prefix_acc n_eval flops_per_step"
    " train_flops targets_total targets_per_pass targets_per_seq tokens_per_pass"
    " val_loss own_loss own_n unigram_xent params_total train_run split"
).split()
OBJECTIVES = ("causal", "masked")


def held_out(task, split: str, n_batches: int, batch_size: int):
    """Batches (tokens, targets) [B, T] of the windows ``split`` scores (module docstring):
    test, the first TEST_SEQUENCES test windows of the task's data seed in batches of
    ``batch_size``; val, ``n_batches`` validation batches."""
    if split == "val":
        for i in range(n_batches):
            yield task.batch("val", i, batch_size)
        return
    tokens, targets = task.test_examples(TEST_SEQUENCES)  # [n, T] each
    for a in range(0, len(tokens), batch_size):
        yield tokens[a : a + batch_size], targets[a : a + batch_size]


def supervised_targets(task, steps: int, batch_size: int) -> dict:
    """Exact count of scored positions over the training batches of a run of ``steps``."""
    total = sum(int((task.batch("train", i, batch_size)[1] != IGNORE).sum()) for i in range(steps))
    return {
        "targets_total": total,
        "targets_per_pass": total / steps,
        "targets_per_seq": total / (steps * batch_size),
        "tokens_per_pass": batch_size * task.seq_len,
    }


def default_prefixes(seq_len: int) -> list[int]:
    """4, 8, 16, ... below seq_len, and seq_len - 1 (the longest prefix that fits)."""
    out, p = [], 4
    while p < seq_len - 1:
        out.append(p)
        p *= 2
    return out + [seq_len - 1]


@torch.no_grad()
def prefix_loss(
    model,
    task,
    prefix_len: int,
    n_batches: int,
    batch_size: int,
    device,
    mask_id: int | None = None,
    split: str = "val",
) -> tuple[float, float, int]:
    """(mean loss, accuracy, count) of predicting x_{p+1} from x_1..x_p on the windows of
    ``split`` (``held_out``).

    ``mask_id=None``: a causal model, read the logits at the prefix's last position;
    otherwise append [MASK] and read the logits there (the masked model fills it)."""
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    for tokens, _ in held_out(task, split, n_batches, batch_size):  # [B, T]; text windows
        prefix, nxt = tokens[:, :prefix_len].to(device), tokens[:, prefix_len].to(device)
        if mask_id is not None:
            prefix = F.pad(prefix, (0, 1), value=mask_id)  # [B, p + 1]
        logits, _ = model(prefix)
        last = logits[:, -1].float()  # [B, V]
        if mask_id is not None:
            last = last[:, :mask_id]  # the answer is a text token, never [MASK] itself
        loss_sum += float(F.cross_entropy(last, nxt, reduction="sum"))
        correct += int((last.argmax(-1) == nxt).sum())
        count += len(nxt)
    model.train()
    return loss_sum / count, correct / count, count


@torch.no_grad()
def own_loss(
    model, task, n_batches: int, batch_size: int, device, split: str = "val"
) -> tuple[float, int]:
    """(mean loss, count) over the scored positions of ``task``'s windows of ``split``: the
    objective the model was trained on, in its own distribution (the masked task masks the
    same windows the text task draws: one generator, windows first)."""
    model.eval()
    loss_sum, count = 0.0, 0
    for batch in held_out(task, split, n_batches, batch_size):
        tokens, targets = (t.to(device) for t in batch)  # [B, T]
        logits, _ = model(tokens)  # [B, T, V]
        flat = logits.flatten(0, 1).float(), targets.flatten()  # [B T, V], [B T]
        loss_sum += float(F.cross_entropy(*flat, ignore_index=IGNORE, reduction="sum"))
        count += int((targets != IGNORE).sum())
    model.train()
    return loss_sum / max(count, 1), count


# --- the what=prefix_eval measurement ------------------------------------------------------
def training_config(cfg: DictConfig, objective: str) -> DictConfig:
    """The training run of ``objective``: cfg without its ``what`` node; the masked one swaps
    the text task for MaskedText on the same text and makes the Transformer bidirectional."""
    tree = OmegaConf.to_container(cfg, resolve=True)
    mask_rate = tree.pop("what")["mask_rate"]
    tree["model"]["causal"] = objective == "causal"
    if objective == "masked":
        tree["data"] = tree["data"] | {
            "_target_": "seqbench.data.masked.MaskedText",
            "mask_rate": mask_rate,
        }
    return OmegaConf.create(tree)


def check(cfg: DictConfig, task) -> None:
    w = cfg.what
    if "causal" not in cfg.model:  # the masked objective needs a bidirectional variant
        raise ConfigError(
            f"model._target_={cfg.model._target_!r} is not allowed: prefix_eval trains the "
            "same model causally and bidirectionally, so it needs a model.causal option "
            "(model=transformer)"
        )
    if cfg.data._target_ != "seqbench.data.text.Text":
        raise ConfigError(
            f"data._target_={cfg.data._target_!r} is not allowed: prefix_eval "
            "needs data=text (the masked task is derived from it)"
        )
    held_out_split(w, task)
    rate = w.get("mask_rate")
    if not (isinstance(rate, int | float) and 0 < rate < 1):
        raise ConfigError(f"what.mask_rate={rate!r} is not allowed: a number in (0, 1)")
    for p in prefixes_of(cfg):
        if not (isinstance(p, int) and 1 <= p <= task.seq_len - 1):
            raise ConfigError(
                f"what.prefixes={list(w.prefixes)} is not allowed: integers in "
                f"[1, data.seq_len - 1 = {task.seq_len - 1}]"
            )
    for k in ("eval_batches", "batch_size"):
        if not (isinstance(w.get(k), int) and w.get(k) > 0):
            raise ConfigError(f"what.{k}={w.get(k)!r} is not allowed: a positive integer")


def prefixes_of(cfg) -> list[int]:
    given = cfg.what.get("prefixes")
    return list(given) if given is not None else default_prefixes(cfg.data.seq_len)


def measure(cfg: DictConfig, task, log) -> dict:
    device, w = pick_device(cfg.device), cfg.what
    summary = {}
    for objective in OBJECTIVES:
        tcfg = training_config(cfg, objective)
        model, result = trained_model(tcfg, device)  # trained unless a complete run exists
        otask = build_task(tcfg.data)
        # counted on a CPU copy: FLOPs do not depend on the device, and the CPU attention
        # kernel is the one whose formula we register (CUDA's fused kernels vary by build)
        tokens, targets = otask.batch("train", 0, tcfg.train.batch_size)
        flops = train_step_flops(copy.deepcopy(model).cpu(), tokens, targets)
        steps = result.get("step") or tcfg.train.steps * tcfg.train.get("budget", 1)  # as run
        own, own_n = own_loss(model, otask, w.eval_batches, w.batch_size, device, w.split)
        fixed = {
            "objective": objective,
            "steps": steps,
            "seed": cfg.seed,
            "lr": result.get("lr"),
            "flops_per_step": flops,
            "train_flops": flops * steps,
            "val_loss": result.get("val_loss"),
            "own_loss": own,
            "own_n": own_n,
            "unigram_xent": task.unigram_xent,
            "params_total": sum(p.numel() for p in model.parameters()),
            "train_run": Path(result["run_dir"]).name,
            "split": w.split,
        }
        fixed |= supervised_targets(otask, steps, tcfg.train.batch_size)
        mask_id = getattr(otask, "mask_id", None)
        losses = []
        for p in prefixes_of(cfg):
            loss, acc, n = prefix_loss(
                model, task, p, w.eval_batches, w.batch_size, device, mask_id, w.split
            )
            log(fixed | {"prefix_len": p, "prefix_loss": loss, "prefix_acc": acc, "n_eval": n})
            losses.append(loss)
        summary[f"{objective}_prefix_loss"] = sum(losses) / len(losses)
        summary[f"{objective}_targets_per_pass"] = fixed["targets_per_pass"]
        summary[f"{objective}_train_flops"] = fixed["train_flops"]
        summary[f"{objective}_own_loss"] = own
    return summary
