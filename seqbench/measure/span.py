"""what=span: work, span and parallelism of one model over sequence lengths and depths (C3, C4).

For every depth L in ``what.layers`` (``model.n_layers`` override) and length T in
``what.lengths``, trace one forward (``pass=forward``) and one forward + backward of the
next-token loss (``pass=forward_backward``) with ``seqbench.measure.trace`` and log

    work_ops, work_flops, span_ops, span_flops, parallelism = work_ops / span_ops

Vaswani et al. (2017, Table 1) predict O(n) sequential operations for a recurrent layer and
O(1) for self-attention; the lecture's wavefront predicts span ~ c (T + L - 1) for stacked
recurrent layers. Both are *observed* here, not assumed: the report fits them to these rows.
Recurrent models with ``impl=fused`` are traced on ``impl=unrolled`` (same parameters and
outputs, tests/test_models.py) because a fused kernel is one opaque op; ``impl`` in every row
says which path was traced.
"""

import time

from seqbench.env import pick_device
from seqbench.measure.common import (
    OPAQUE_IMPL,
    build_variant,
    check_variants,
    choice_list,
    impl_of,
    int_list,
    model_columns,
    positive_int,
    progress,
    random_tokens,
)
from seqbench.measure.trace import trace_model

PASSES = ("forward", "forward_backward")
COLUMNS = (
    "model family impl n_layers d_model T batch_size pass work_ops work_flops"
    " span_ops span_flops parallelism parallelism_flops flops_per_step attention_flops"
    " untracked_inputs unseen_writes seconds"
).split()


def traced_impl(cfg):
    impl = cfg.model.get("impl")
    return OPAQUE_IMPL.get(impl, impl)


def check(cfg, task) -> None:
    w = cfg.what
    int_list(w, "lengths")
    int_list(w, "layers")
    choice_list(w, "passes", PASSES)
    positive_int(w, "batch_size")
    positive_int(w, "backward_max_len")
    check_variants(cfg, task.vocab_size, n_layers=w.layers, impl=[traced_impl(cfg)])


def measure(cfg, task, log) -> dict:
    w, device = cfg.what, pick_device(cfg.device)
    max_t = max(w.lengths)
    # a model without n_layers in its config is measured once, at its own depth
    depths = list(w.layers) if "n_layers" in cfg.model else [None]
    n = 0
    with progress(cfg, len(depths) * len(w.lengths) * len(w.passes)) as bar:
        for L in depths:
            model, node = build_variant(
                cfg, task.vocab_size, device, max_len=max_t, n_layers=L, impl=traced_impl(cfg)
            )
            for T in w.lengths:
                tokens = random_tokens(task.vocab_size, w.batch_size, T, cfg.seed, device)
                for p in w.passes:
                    if p == "forward_backward" and T > w.backward_max_len:
                        bar.update()  # skipped: a point of the grid all the same
                        continue
                    t0 = time.perf_counter()
                    stats = trace_model(model, tokens, backward=p == "forward_backward")
                    log(
                        model_columns(cfg, model, node)
                        | {
                            "T": T,
                            "batch_size": w.batch_size,
                            "pass": p,
                            **stats.row(),
                            "untracked_inputs": stats.untracked_inputs,
                            "unseen_writes": stats.unseen_writes,
                            "seconds": time.perf_counter() - t0,
                        }
                    )
                    n += 1
                    bar.update()
    return {"points": n, "traced_impl": impl_of(node)}
