"""what=influence: information path length as gradient influence versus distance (C5).

For an example with its scored position t (lag_recall: the query, whose target is the value
seen ``distance`` tokens earlier; the last scored position if there are several, the last
position if none is scored, predicting the last token) the influence of the input at t - d is

    I(d) = || d log p(y_t | x_<=t) / d e_{t-d} ||_2         e_s = the embedding output at s

averaged over a batch of examples (each example contributes at the distances its t allows)
drawn from ``what.split``: by default the task's *test* split (Task.test_examples), which no
training batch, no criterion and no lr calibration ever read, so what the gradients show is
not a property of the examples that stopped training. Through a recurrence the signal from
t - d crosses d state updates and may shrink geometrically (Bengio et al. 1994; Hochreiter
1991); through attention every earlier position is one step away (Vaswani et al. 2017,
Table 1, "maximum path length"). Measured for the untrained model (architecture alone) and
for the model trained on the task by ``seqbench.train.train`` (reusing its run directory
when it is complete): ``trained`` column; a trained row carries its training run's name
(``train_run``: the report joins its stop reason and test accuracy by it), criterion,
``steps_to_criterion`` (empty when the criterion was not reached within the cap) and
learning rate (calibrated when train.lr_grid). Every row carries the job's ``train.budget``
and ``train.lr_step``, so the report keeps a longer budget's (or a neighbouring rate's)
untrained rows apart from the experiment's own. The embedding output is captured by a
forward hook on ``model.embed`` (the naming convention of seqbench.models), so any model
obeying the contract works.
"""

from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from seqbench.config import build_model
from seqbench.data import IGNORE
from seqbench.env import pick_device
from seqbench.measure.common import (
    check_train_study,
    model_columns,
    need,
    positive_int,
    progress,
    training_config,
)
from seqbench.train import trained_model

COLUMNS = (
    "model family impl d_model n_layers trained d grad_norm grad_norm_std examples T distance"
    " val_acc train_steps lr criterion steps_to_criterion train_run split train.budget"
    " train.lr_step"
).split()
SPLITS = ("test", "val", "train")  # test: examples nothing that trained or chose the model saw


def check(cfg, task) -> None:
    w = cfg.what
    positive_int(w, "batch_size")
    trained = list(w.trained) if OmegaConf.is_list(w.trained) else None
    need(
        trained and all(isinstance(x, bool) for x in trained),
        "what.trained",
        w.trained,
        "a non-empty list of booleans, e.g. [false, true]",
    )
    need(w.split in SPLITS, "what.split", w.split, ", ".join(SPLITS))
    no_test = "val or train: this data has no test split (a corpus folder without test.txt)"
    need(w.split != "test" or task.has_test, "what.split", w.split, no_test)
    check_train_study(w)


def measure(cfg, task, log) -> dict:
    w, device = cfg.what, pick_device(cfg.device)
    out = {}
    with progress(cfg, len(w.trained), unit="model") as bar:  # untrained, trained
        for trained in w.trained:
            if trained:
                model, summary = trained_model(training_config(cfg), device)
                # what the model learned is only read against whether it learned: the criterion
                # (censored at the cap: no steps_to_criterion) and the lr it was trained with
                info = {
                    "val_acc": summary.get("val_acc"),
                    "train_steps": summary.get("step"),
                    "lr": summary.get("lr"),
                    "criterion": summary.get("criterion"),
                    "steps_to_criterion": summary.get("steps_to_criterion"),
                    "train_run": Path(summary["run_dir"]).name,
                }
            else:
                torch.manual_seed(cfg.seed)
                model = build_model(cfg.model, task.vocab_size, device)
                info = {"val_acc": None, "train_steps": 0}
            tokens, targets = examples(task, w.split, w.batch_size)  # [B, T] each
            norms, dist = influence(model, tokens.to(device), targets.to(device))
            T = tokens.size(1)
            for d in range(T):
                sel = norms[dist == d]
                if sel.numel() == 0:
                    continue
                log(
                    model_columns(cfg, model)
                    | {
                        "trained": trained,
                        "d": d,
                        "grad_norm": sel.mean().item(),
                        "grad_norm_std": sel.std().item() if sel.numel() > 1 else 0.0,
                        "examples": sel.numel(),
                        "T": T,
                        "distance": cfg.data.get("distance"),
                        "split": w.split,
                        "train.budget": cfg.train.get("budget", 1),
                        "train.lr_step": cfg.train.get("lr_step", 0),
                        **info,
                    }
                )
            out[f"trained={trained}"] = info
            bar.update()
    return out


def examples(task, split: str, n: int):
    """(tokens, targets) [n, T]: the first ``n`` test sequences, or batch 0 of ``split``."""
    return task.test_examples(n) if split == "test" else task.batch(split, 0, n)


def influence(model, tokens, targets):
    """Per-example gradient norms: (norms [B, T], distance t - s [B, T]; -1 where s > t)."""
    B, T = tokens.shape
    scored = targets != IGNORE  # [B, T]
    pos = torch.arange(T, device=tokens.device)
    # the last scored position per example; when nothing is scored, predict the last input
    # token from position T - 2
    t = torch.where(scored.any(1), (scored * pos).argmax(1), T - 2)  # [B]
    y = torch.where(scored.any(1), targets[torch.arange(B), t], tokens[:, -1])  # [B]
    captured = {}

    def hook(module, inputs, output):
        captured["e"] = output  # [B, T, D]

    if not hasattr(model, "embed"):
        raise AttributeError(
            f"{type(model).__name__} has no `embed` module to take the "
            "gradient at (seqbench.models naming convention)"
        )
    handle = model.embed.register_forward_hook(hook)
    was_training = model.training
    model.eval()
    try:
        # cuDNN's RNN backward refuses eval mode; the native kernels compute the same thing
        with torch.enable_grad(), torch.backends.cudnn.flags(enabled=False):
            logits, _ = model(tokens)  # [B, T, V]
            logp = F.log_softmax(logits.float()[torch.arange(B), t], dim=-1)  # [B, V]
            objective = logp[torch.arange(B), y].sum()  # examples do not interact: one pass
            (grad,) = torch.autograd.grad(objective, captured["e"])  # [B, T, D]
    finally:
        handle.remove()
        model.train(was_training)
    norms = grad.float().norm(dim=-1)  # [B, T]
    dist = t[:, None] - pos[None, :]  # [B, T]
    return norms.detach(), torch.where(dist >= 0, dist, -1)
