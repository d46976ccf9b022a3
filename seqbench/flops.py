"""The one FLOP counter: every FLOP figure in seqbench (tracer, MFU, causal-vs-masked compute)
comes from these formulas.

Formulas are ``torch.utils.flop_counter``'s registry (matmuls, convolutions, attention: 2
FLOPs per multiply-add; element-wise ops count 0, as usual), plus the CPU flash-attention
kernels PyTorch does not register, which get the library's own SDPA formulas. Causal
attention is counted in full (T^2), as the kernels compute it.

    count(fn)                                   FLOPs of everything fn() runs
    train_step_flops(model, tokens, targets)    forward + loss + backward of one batch
"""

import contextlib

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import (
    FlopCounterMode,
    flop_registry,
    sdpa_backward_flop_count,
    sdpa_flop_count,
)

aten = torch.ops.aten
IGNORE = -100  # seqbench.data.IGNORE, repeated to keep this module free of imports


def _cpu_flash(q, k, v, *args, out_val=None, **kwargs):
    return sdpa_flop_count(q.shape, k.shape, v.shape)


def _cpu_flash_backward(grad_out, q, k, v, *args, out_val=None, **kwargs):
    return sdpa_backward_flop_count(grad_out.shape, q.shape, k.shape, v.shape)


# op overload packet -> formula(*args, out_val=..., **kwargs) taking tensors ("raw" convention)
FORMULAS = dict(flop_registry)
FORMULAS.setdefault(aten._scaled_dot_product_flash_attention_for_cpu, _cpu_flash)
FORMULAS.setdefault(aten._scaled_dot_product_flash_attention_for_cpu_backward, _cpu_flash_backward)


def op_flops(func, args, kwargs, out) -> int:
    """FLOPs of one dispatched aten op (0 when no formula applies)."""
    formula = FORMULAS.get(func._overloadpacket)
    return int(formula(*args, **kwargs, out_val=out)) if formula else 0


def _raw(formula):
    """FlopCounterMode wraps custom formulas to hand them shapes; one marked ``_get_raw``
    receives the tensors as they are, the convention FORMULAS use."""

    def counted(*args, **kwargs):
        return formula(*args, **kwargs)

    counted._get_raw = True
    return counted


_EXTRA = {op: _raw(f) for op, f in FORMULAS.items() if op not in flop_registry}


def count(fn) -> int:
    """FLOPs of everything ``fn()`` runs, op by op."""
    with FlopCounterMode(display=False, custom_mapping=_EXTRA) as counter:
        fn()
    return int(counter.get_total_flops())


def train_step_flops(model, tokens, targets, autocast=None) -> int:
    """Forward + cross-entropy + backward of one batch (the optimiser's element-wise update
    counts 0); the model's gradients are cleared afterwards."""

    def step():
        with autocast or contextlib.nullcontext():
            logits, _ = model(tokens)  # [B, T, V]
            loss = F.cross_entropy(
                logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE
            )
        loss.backward()

    flops = count(step)
    model.zero_grad(set_to_none=True)
    return flops
