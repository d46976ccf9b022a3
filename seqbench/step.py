"""The one training step and its optimiser: what the harness, timing and MFU all run.

``train_step`` is forward, cross-entropy, backward, clipping and the optimiser's update on one
batch, with the recurrent state in and out for truncated BPTT; ``make_optimizer`` is the
recipe's optimiser. Nothing here knows a model's family.
"""

import torch
import torch.nn.functional as F

from seqbench.data import IGNORE


def make_optimizer(params, t, device) -> torch.optim.Optimizer:
    """AdamW (the studies' recipe) or plain SGD (``train.optimizer=sgd``: pytorch/examples'
    word_language_model), each with PyTorch's fused kernel where it has one (CUDA and CPU):
    one kernel for every parameter's update instead of a Python loop over them, the same
    arithmetic (tests compare the two)."""
    fused = torch.device(device).type in ("cuda", "cpu") or None
    # a namespace of the train keys; one built by hand without `optimizer` means AdamW
    if getattr(t, "optimizer", "adamw") == "sgd":
        return torch.optim.SGD(params, lr=t.lr, weight_decay=t.weight_decay, fused=fused)
    return torch.optim.AdamW(
        params, lr=t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay, fused=fused
    )


def train_step(forward, params, opt, tokens, targets, clip, amp, state=None):
    """One optimisation step on one batch -> (loss, grad_norm, state), loss and norm left on
    the device (no host sync). Everything that trains or times a step calls this: the
    harness, timing, MFU. ``forward`` is the model (or its compiled form), ``params`` the
    parameters to clip, ``state`` what the previous window left (truncated BPTT) or None."""
    with amp:
        logits, state = forward(tokens, state)  # [B, T, V]
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
    opt.step()
    return loss, grad_norm, state


def detach(state):
    """The carried state without its history: the next window's gradient stops here."""
    if isinstance(state, torch.Tensor):
        return state.detach()
    if isinstance(state, tuple | list):
        return type(state)(detach(s) for s in state)
    return state  # a count, None


def _shapes(state):
    if isinstance(state, torch.Tensor):
        return tuple(state.shape)
    if isinstance(state, tuple | list):
        return tuple(_shapes(s) for s in state)
    return type(state).__name__


@torch.no_grad()
def carries_state(model, device) -> bool:
    """Can truncated BPTT carry this model's state from one window to the next? Asked of what
    the model returns: yes when the state keeps its size as more tokens are read (a hidden
    state, a running sum), no when it grows with them (a KV cache)."""
    was_training = model.training
    model.eval()
    token = torch.zeros(1, 1, dtype=torch.long, device=device)
    _, one = model(token)
    _, two = model(token, one)
    model.train(was_training)
    return _shapes(one) == _shapes(two)
