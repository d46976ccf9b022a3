"""Measurements of the sequential-versus-parallel argument (claims C2, C3, C4, C5, C9).

    trace.py        dataflow tracer: work, span, parallelism of the real aten ops
    timing.py       wall-clock forward / train step vs sequence length (torch.utils.benchmark)
    decode_cost.py  per-token generation latency and state/KV-cache bytes vs context
    influence.py    gradient of log p(x_t) wrt the input embedding at t - d (path length)
    span.py         the span/work sweep measurement built on trace.py
    run.py          a measurement through the one run lifecycle (seqbench.runs): rows.csv
    common.py       model variants, random inputs, checks of the ``what`` config node

Entry point: ``python -m seqbench.measure what=<name> model=<name> data=<name> ...``; each
``conf/what/<name>.yaml`` names the measurement function by ``_target_``:

    def measure(cfg, task, log) -> dict    # log(row) appends one rows.csv line
"""
