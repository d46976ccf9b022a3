"""what=influence: information path length as gradient influence versus distance (C5).

For an example with its scored position t (lag_recall: the query, whose target is the value
seen ``distance`` tokens earlier; the last scored position if there are several, the last
position if none is scored, predicting the last token) the influence of the input at t - d is

    I(d) = || d log p(y_t | x_<=t) / d e_{t-d} ||_2         e_s = the embedding output at s

averaged over a batch of held-out examples (each example contributes at the distances its
t allows). Through a recurrence the signal from t - d crosses d state updates and may shrink
geometrically (Bengio et al. 1994; Hochreiter 1991); through attention every earlier position
is one step away (Vaswani et al. 2017, Table 1, "maximum path length"). Measured for the
untrained model (architecture alone) and for the model trained on the task by
``seqbench.train.train`` (reusing its run directory when it is complete): ``trained`` column.
The embedding output is captured by a forward hook on ``model.embed`` (the naming
convention of seqbench.models), so any model obeying the contract works.
"""

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from seqbench.config import build_model
from seqbench.data import IGNORE
from seqbench.env import pick_device
from seqbench.measure.common import model_columns, need, positive_int
from seqbench.train import trained_model

COLUMNS = (
    "model family impl d_model n_layers trained d grad_norm grad_norm_std examples T distance"
    " val_acc train_steps"
).split()


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
    need(w.split in ("train", "val"), "what.split", w.split, "train or val")
    need(
        isinstance(w.train_study, str) and w.train_study,
        "what.train_study",
        w.train_study,
        "a study name for the training runs",
    )


def training_config(cfg):
    """The training run behind the trained model: this config without ``what``, under
    ``what.train_study`` (same keys as conf/config.yaml, so the same content key as the
    equivalent ``python -m seqbench.train`` command). ``fresh`` redoes the measurement, not
    the training it reads: a complete training run is reused (retrain with seqbench.train)."""
    node = OmegaConf.to_container(cfg, resolve=False)
    node.pop("what")
    node.pop("hydra", None)
    node["study"] = cfg.what.train_study
    node["fresh"] = False
    return OmegaConf.create(node)


def measure(cfg, task, log) -> dict:
    w, device = cfg.what, pick_device(cfg.device)
    out = {}
    for trained in w.trained:
        if trained:
            model, summary = trained_model(training_config(cfg), device)
            info = {"val_acc": summary.get("val_acc"), "train_steps": summary.get("step")}
        else:
            torch.manual_seed(cfg.seed)
            model = build_model(cfg.model, task.vocab_size, device)
            info = {"val_acc": None, "train_steps": 0}
        tokens, targets = task.batch(w.split, 0, w.batch_size)
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
                    **info,
                }
            )
        out[f"trained={trained}"] = info
    return out


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
