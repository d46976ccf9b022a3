"""Dataflow tracer: work, span and parallelism of the real computation (Blelloch's work-span
model; Vaswani et al. 2017, Table 1, "sequential operations").

Every aten op that runs under the tracer is a node of a DAG; it has an edge from the op that
last wrote each of its input tensors. With unit weights, a node's depth is

    depth(op) = 1 + max(depth(producer(x)) for x in inputs(op))     (0 for leaves)

and with FLOP weights ``flops(op)`` replaces the 1. Then

    work        = number of ops (and their total FLOPs)
    span        = the longest dependency chain = max depth over all nodes (ops, FLOPs)
    parallelism = work / span   (how many ops could run at once on unbounded hardware)
    flops_per_step = work_flops / span_ops   (FLOPs available per dependent step)

An op is one step however wide it is: a matmul over all T positions is one node, which is
exactly the Transformer's advantage, so for it ``parallelism`` in ops stays near 1 while
``flops_per_step`` grows with T; a recurrence has many small ops on one chain.

Rules that make the count mean something:
- *Views and aliases are free*: ``view``, ``transpose``, ``unbind``, ``detach`` ... (any op
  whose schema says its output aliases an input without writing) move no data, so the output
  just shares its base's producer.
- *In-place ops extend the chain*: ``x.add_(y)`` depends on x's producer and y's, and becomes
  the new producer of x and of every alias of x.
- *Tensors are tracked by identity, never by data pointer*: the producer is attached to the
  tensor's storage *object* (a view shares it, and PyTorch keeps one Python storage object per
  live storage), validated through a weak reference. A storage that dies takes its record
  with it, so a new tensor that happens to reuse the freed address starts as a leaf. The
  version counter is read too: a tensor mutated behind the tracer's back is counted in
  ``unseen_writes``.
- FLOPs come from ``seqbench.flops`` (torch.utils.flop_counter's formulas: matmuls,
  convolutions, attention; element-wise ops count 0, as usual), the one counter seqbench has.

Public API (any model obeying ``forward(tokens, state=None) -> (logits, state)``)::

    from seqbench.measure.trace import trace, trace_model
    stats = trace(fn, *args, **kwargs)            # runs fn(*args, **kwargs) under the tracer
    stats = trace_model(model, tokens, backward=False)
    stats.work_ops, stats.work_flops, stats.span_ops, stats.span_flops, stats.parallelism
    stats.flops_by_op["aten._scaled_dot_product_flash_attention_for_cpu"]   # per op type

Trace recurrent models on their ``impl="unrolled"`` path: a fused cuDNN/oneDNN kernel is one
opaque op whose internal time loop the tracer cannot see (tests/test_models.py proves both
paths equal).
"""

import functools
import weakref
from collections import Counter
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from seqbench.flops import op_flops

aten = torch.ops.aten


@dataclass
class TraceStats:
    work_ops: int = 0
    work_flops: int = 0
    span_ops: int = 0
    span_flops: int = 0
    ops_by_name: Counter = field(default_factory=Counter)
    flops_by_op: Counter = field(default_factory=Counter)
    untracked_inputs: int = 0  # reads of tensors never written in the trace (params, data)
    unseen_writes: int = 0  # version bumps the tracer did not see (should stay 0)

    @property
    def parallelism(self) -> float:
        return self.work_ops / max(self.span_ops, 1)

    @property
    def parallelism_flops(self) -> float:
        return self.work_flops / self.span_flops if self.span_flops else float("nan")

    @property
    def flops_per_step(self) -> float:
        """Blelloch's average parallelism with ops as unit-depth steps: FLOPs available per
        dependent step (one wide matmul is one step on hardware wide enough to hold it)."""
        return self.work_flops / max(self.span_ops, 1)

    @property
    def attention_flops(self) -> int:
        return sum(v for k, v in self.flops_by_op.items() if "attention" in k)

    def row(self) -> dict:
        """The flat numbers, ready for a rows.csv line."""
        return {
            "work_ops": self.work_ops,
            "work_flops": self.work_flops,
            "span_ops": self.span_ops,
            "span_flops": self.span_flops,
            "parallelism": self.parallelism,
            "parallelism_flops": self.parallelism_flops,
            "flops_per_step": self.flops_per_step,
            "attention_flops": self.attention_flops,
        }


class _Record:
    """The last writer of one storage: its depth in ops and in FLOPs."""

    __slots__ = ("ref", "ops", "flops", "versions")

    def __init__(self, ref, ops, flops):
        self.ref, self.ops, self.flops = ref, ops, flops
        self.versions = {}  # id(tensor) -> (weakref, version after our last write)


# ops that only relabel memory though their schema does not say so (reshape's copy path)
ALSO_FREE = {aten._unsafe_view.default}


@functools.cache
def _op_info(func) -> tuple[bool, tuple]:
    """(free, written): ``free`` for views/aliases (a return aliases an input and nothing is
    written); ``written`` lists the (position, name) of arguments the op mutates (in-place
    ops, out= variants). Read once per op from its schema."""
    schema = func._schema
    written = tuple(
        (None if a.kwarg_only else i, a.name)
        for i, a in enumerate(schema.arguments)
        if a.alias_info is not None and a.alias_info.is_write
    )
    free = func in ALSO_FREE or (
        not written and any(r.alias_info is not None for r in schema.returns)
    )
    return free, written


def _tensors(tree, out) -> list:
    """The tensors in an op's (nested list/tuple/dict) arguments or results."""
    if isinstance(tree, torch.Tensor):
        out.append(tree)
    elif isinstance(tree, list | tuple):
        for v in tree:
            _tensors(v, out)
    elif isinstance(tree, dict):
        for v in tree.values():
            _tensors(v, out)
    return out


def _written_args(written, args, kwargs) -> list:
    out = []
    for i, name in written:
        v = args[i] if i is not None and i < len(args) else kwargs.get(name)
        _tensors(v, out)
    return out


class Tracer(TorchDispatchMode):
    """``with Tracer() as tr: ...``; then ``tr.stats``. May be entered more than once."""

    def __init__(self):
        super().__init__()
        self.stats = TraceStats()
        self._records: dict[int, _Record] = {}  # id(storage object) -> last writer

    # --- tensor bookkeeping -------------------------------------------------------------
    def _storage(self, t):
        try:
            return t.untyped_storage()
        except (RuntimeError, NotImplementedError):  # tensors without storage (rare)
            return None

    def _depth(self, t) -> tuple[int, int]:
        s = self._storage(t)
        rec = self._records.get(id(s)) if s is not None else None
        if rec is None or rec.ref() is not s:  # never written inside the trace: a leaf
            self.stats.untracked_inputs += 1
            return 0, 0
        ref, seen = rec.versions.get(id(t), (None, None))
        if ref is not None and ref() is t and seen >= 0 and _version(t) != seen:
            self.stats.unseen_writes += 1
        return rec.ops, rec.flops

    def _write(self, t, ops, flops, bump=0) -> None:
        s = self._storage(t)
        if s is None:
            return
        key = id(s)
        rec = self._records.get(key)
        if rec is None or rec.ref() is not s:
            ref = weakref.ref(s, lambda r, k=key: self._forget(k, r))
            rec = self._records[key] = _Record(ref, ops, flops)
        else:
            rec.ops, rec.flops = ops, flops
            rec.versions.clear()  # other aliases were written too: their versions are unknown
        # autograd bumps the version of a mutated tensor *after* this hook returns (its
        # ADInplaceOrView kernel sits above the Python dispatch key), hence ``bump``
        v = _version(t)
        rec.versions[id(t)] = (weakref.ref(t), v + bump if v >= 0 else v)

    def _forget(self, key, ref) -> None:
        rec = self._records.get(key)
        if rec is not None and rec.ref is ref:
            del self._records[key]

    # --- the dispatch hook --------------------------------------------------------------
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        free, written_spec = _op_info(func)
        if free:
            return out  # the output shares its base's storage, hence its producer
        inputs = _tensors(kwargs, _tensors(args, []))
        depths = [self._depth(t) for t in inputs]
        flops = op_flops(func, args, kwargs, out)
        ops_depth = 1 + max((d[0] for d in depths), default=0)
        flops_depth = flops + max((d[1] for d in depths), default=0)
        name = str(func._overloadpacket)
        st = self.stats
        st.work_ops += 1
        st.work_flops += flops
        st.ops_by_name[name] += 1
        if flops:
            st.flops_by_op[name] += flops
        st.span_ops = max(st.span_ops, ops_depth)
        st.span_flops = max(st.span_flops, flops_depth)
        written = _written_args(written_spec, args, kwargs)
        outputs = _tensors(out, [])
        written_ids = {id(t) for t in written}
        for t in written:  # in-place: the mutated tensor's producer becomes this op
            self._write(t, ops_depth, flops_depth, bump=1)
        for t in outputs:
            if id(t) not in written_ids:
                self._write(t, ops_depth, flops_depth)
        return out


def _version(t) -> int:
    try:
        return t._version
    except RuntimeError:  # inference tensors have no version counter
        return -1


def trace(fn, *args, **kwargs) -> TraceStats:
    """Run ``fn(*args, **kwargs)`` under the tracer and return its work/span statistics."""
    with Tracer() as tracer:
        fn(*args, **kwargs)
    return tracer.stats


def trace_model(model, tokens, backward=False) -> TraceStats:
    """Trace one forward of ``model`` on ``tokens`` [B, T] (or forward + backward of the
    next-token cross-entropy, parameters' grads included). Runs in eval mode (no dropout) and
    restores the model's mode and clears the grads it made."""
    was_training = model.training
    model.eval()

    def step():
        logits, _ = model(tokens)  # [B, T, V]
        if backward:
            targets = tokens.roll(-1, dims=1)  # any targets give the same graph
            F.cross_entropy(logits.flatten(0, 1), targets.flatten()).backward()

    try:
        with torch.enable_grad() if backward else torch.no_grad():
            return trace(step)
    finally:
        model.train(was_training)
        if backward:
            model.zero_grad(set_to_none=True)
