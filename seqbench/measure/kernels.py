"""what=kernels: how many kernels one sequential decoding step runs, counted by torch.profiler.

Generating token t+1 needs token t, so decoding is a chain of steps, and each step is itself
a chain of small kernels. On a GPU each kernel launch costs the CPU a few microseconds
whatever the kernel computes, so for a small model the step time is launches x latency: the
floor of a sequential step. A prompt of ``what.context`` random tokens is prefilled, then
``what.steps`` greedy tokens are decoded (``seqbench.generate.decode``) under the profiler,
on each path of ``what.paths``:

    eager       model(token, state) as plain calls: every kernel launched by the CPU;
    cuda_graph  the same step captured once and replayed (``generate.GraphedStep``): one
                cudaGraphLaunch per step. CUDA only, and only for a fixed-size state (the
                recurrent models); other rows say why they were skipped.

Per generated token (the argmax included):

    ops_per_step       ATen operators the CPU dispatched that run a kernel: the profiler's
                       leaf ``aten::`` events, views and other metadata-only ops left out;
    kernels_per_step   kernels, memcpys and memsets the profiler saw on the GPU (CUDA only);
    launches_per_step  CUDA runtime launch calls (cudaLaunchKernel..., cudaGraphLaunch,
                       cudaMemcpyAsync, cudaMemsetAsync) (CUDA only);
    s_per_step         median seconds per token (time_call, the same decode call) and IQR;
    us_per_op          s_per_step / kernels_per_step on CUDA, / ops_per_step elsewhere.
"""

import functools

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from seqbench.config import ConfigError
from seqbench.env import hardware, pick_device, sync
from seqbench.generate import GraphedStep, decode, prefill
from seqbench.measure.common import (
    build_variant,
    check_timed,
    check_variants,
    impls,
    model_columns,
    need,
    progress_over,
    random_tokens,
    timed_columns,
)
from seqbench.timer import time_call

PATHS = ("eager", "cuda_graph")
# ops that run no kernel: views and other metadata, allocation, dispatch-time checks
NO_KERNEL = {
    "aten::_reshape_alias",
    "aten::_unsafe_view",
    "aten::alias",
    "aten::as_strided",
    "aten::as_strided_",
    "aten::contiguous",
    "aten::cudnn_is_acceptable",
    "aten::detach",
    "aten::empty",
    "aten::empty_like",
    "aten::empty_strided",
    "aten::expand",
    "aten::lift_fresh",
    "aten::narrow",
    "aten::permute",
    "aten::reshape",
    "aten::resize_",
    "aten::resolve_conj",
    "aten::resolve_neg",
    "aten::select",
    "aten::slice",
    "aten::split",
    "aten::squeeze",
    "aten::t",
    "aten::to",
    "aten::transpose",
    "aten::unbind",
    "aten::unsqueeze",
    "aten::view",
}
LAUNCHES = (
    "cudaLaunchKernel",
    "cuLaunchKernel",
    "cudaGraphLaunch",
    "cuGraphLaunch",
    "cudaMemcpyAsync",
    "cudaMemsetAsync",
)
MACHINE = ("threads", "device")  # of env.HARDWARE; dtype here is the parameters' own
COLUMNS = timed_columns(
    "path context batch_size steps ops_per_step kernels_per_step launches_per_step"
    " s_per_step iqr_s_per_step us_per_op blocks",
    machine=(*MACHINE, "dtype"),
)


def check(cfg, task) -> None:
    w = cfg.what
    check_timed(w, None, {"paths": PATHS}, ("context", "batch_size", "steps"), grows=False)
    paths = w.get("impls")
    need(
        paths is None or len(paths) > 0,
        "what.impls",
        paths,
        "null (the model's own impl) or a non-empty list",
    )
    check_variants(cfg, task.vocab_size, impl=impls(cfg))


@progress_over(lambda cfg, task: len(impls(cfg)) * len(cfg.what.paths))
def measure(cfg, task, log) -> dict:  # one row per (impl, path), profiled or skipped
    w, device = cfg.what, pick_device(cfg.device)
    prompt = random_tokens(task.vocab_size, w.batch_size, w.context, cfg.seed, device)
    n = 0
    for impl in impls(cfg):
        model, node = build_variant(
            cfg, task.vocab_size, device, max_len=w.context + w.steps, impl=impl
        )
        model.eval()
        base = model_columns(cfg, model, node) | {
            "context": w.context,
            "batch_size": w.batch_size,
            "steps": w.steps,
            **hardware(device, MACHINE),
            # decoded without autocast: the parameters' precision, not the recipe's label
            "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        }
        with torch.no_grad():
            logits, state = prefill(model, prompt)
            for path in w.paths:
                try:
                    graph = (
                        GraphedStep(model, state, w.batch_size) if path == "cuda_graph" else None
                    )
                except ConfigError as e:  # not CUDA, or a state that grows: said in the row
                    log(base | {"path": path, "note": f"skipped: {e}"})
                    continue
                except RuntimeError as e:  # an op that cannot be captured: the eager rows stay
                    first = str(e).splitlines()[0] if str(e) else ""
                    log(
                        base
                        | {"path": path, "note": f"capture failed: {type(e).__name__}: {first}"}
                    )
                    continue
                step = functools.partial(decode, model, logits, state, w.steps, graph=graph)
                log(base | {"path": path} | _count(step, w, device))
                n += 1
    return {"points": n}


def _count(fn, w, device) -> dict:
    """Profile one call of ``fn`` (``w.steps`` tokens), then time it; per-step figures."""
    fn()  # lazy initialisation and allocator warm-up stay out of the counts
    sync(device)
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        fn()
        sync(device)
    counts = count_events(prof.events(), "CUDA" if cuda else "CPU")
    t = time_call(fn, w.warmup, w.min_blocks, w.min_run_time, label="decode")
    s_step = t["median_s"] / w.steps
    ops = counts["ops"] / w.steps
    kernels = counts["kernels"] / w.steps if cuda else None
    return {
        "ops_per_step": ops,
        "kernels_per_step": kernels,
        "launches_per_step": counts["launches"] / w.steps if cuda else None,
        "s_per_step": s_step,
        "iqr_s_per_step": t["iqr_s"] / w.steps,
        "us_per_op": s_step * 1e6 / (kernels if cuda else ops) if (kernels or ops) else None,
        "blocks": t["blocks"],
    }


def count_events(events, backend="CPU") -> dict:
    """{ops, kernels, launches} in a profiler's event list (``prof.events()``). The profiler
    records every ATen op, also those that only call others (``aten::linear`` calls
    ``aten::addmm``); ``_own_kernels`` decides which of them run a kernel themselves."""
    ops = kernels = launches = 0
    for e in events:
        if e.device_type == DeviceType.CUDA:
            kernels += 1
        elif e.name.startswith(LAUNCHES):
            launches += 1
        elif e.cpu_parent is None:
            ops += _kernel_ops(e, backend)
    return {"ops": ops, "kernels": kernels, "launches": launches}


def _kernel_ops(e, backend) -> int:
    """Kernel-running ATen ops in the call tree under ``e``. An op counts itself when it has
    a ``backend`` kernel (addmm, mkldnn_rnn_layer), or when it is a composite with a kernel
    body of its own (not CompositeImplicitAutograd, not in NO_KERNEL) that calls no
    kernel-running op (copy_); a composite that only calls others (linear, embedding, stack)
    is counted through them."""
    below = sum(_kernel_ops(c, backend) for c in e.cpu_children)
    kind = _kind(e.name, backend)
    return below + (kind == "backend" or (kind == "explicit" and below == 0))


@functools.cache
def _kind(name: str, backend: str) -> str:
    """'backend', 'explicit' (composite with its own body), 'implicit' or 'none'."""
    if not name.startswith("aten::") or name in NO_KERNEL:
        return "none"
    packet = getattr(torch.ops.aten, name.removeprefix("aten::"), None)
    if packet is None:
        return "explicit"  # not an operator we can look up: count it rather than hide work
    names = [
        name if o == "default" else f"{name}.{o}" for o in packet.overloads() if "out" not in o
    ]

    def has(op, key):
        try:
            return torch._C._dispatch_has_kernel_for_dispatch_key(op, key)
        except RuntimeError:  # an overload known to TorchScript only
            return False

    if any(has(n, backend) for n in names):
        return "backend"
    if names and all(has(n, "CompositeImplicitAutograd") for n in names):
        return "implicit"
    return "explicit"
