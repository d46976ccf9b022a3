"""seqbench against what a language-modelling user would run instead, at that code's own shapes.

pytorch/examples' word_language_model at main.py's defaults (seqbench/perf/examples.py):
embedding = hidden = 200, 2 layers, bptt 35, batch 20, SGD at lr 20, clip 0.25, dropout 0.2,
the LSTM's state carried between windows; its Transformer has 2 heads and a feed-forward
width of 200. Here on the stdlib corpus with the ``whitespace`` tokenizer (one ``<eos>`` a
line, as that example counts WikiText), every token type of the training split in the
vocabulary. Three sides, timed as one interleave (A B C, C B A, ...), each reading the next
window of the same stream every step:

    seqbench   Run.train_step of conf/config.yaml set to that recipe: data.stream=true,
               train.optimizer=sgd, constant lr (warmup 0, min_lr_frac 1), plateau annealing
               on, model.d_model=200 (d_embed 200; n_heads 2 and d_ff 200 for the Transformer)
    careful    the bare loop of seqbench.perf.bare at the same shapes (fused SGD, no schedule;
               compiled when seqbench's side is, compile=true)
    examples   the example's own step (never compiled: the example is not)

and two rows of table ``perf``: ``<model>_peer_careful`` (goal GOAL) and
``<model>_peer_examples`` (goal PEER_GOAL), ratios paired by repeat. Dropout makes the sides'
losses differ, so ``loss_diff`` is left empty (tests/test_perf.py checks the twins' equality
without it).
"""

import numpy as np
import torch
from omegaconf import OmegaConf

from seqbench.config import CONF_DIR, build_task
from seqbench.perf.bare import autocast, bare_model, bare_step, make_opt
from seqbench.perf.examples import DEFAULTS, Examples
from seqbench.perf.harness import harness, stamp, train_cfg
from seqbench.perf.overhead import GOAL, PEER_GOAL, ratio_row
from seqbench.timer import interleave, watch_load

MODEL = {  # the example's sizes in seqbench's keys
    "lstm": {"d_model": 200, "d_embed": 200, "n_layers": 2, "dropout": DEFAULTS["dropout"]},
    "transformer": {"d_model": 200, "n_layers": 2, "n_heads": 2, "d_ff": 200,
                    "dropout": DEFAULTS["dropout"]},
}  # fmt: skip
RECIPE = {  # main.py's optimisation in seqbench's train keys
    "optimizer": "sgd",
    "lr": DEFAULTS["lr"],
    "grad_clip": DEFAULTS["clip"],
    "weight_decay": 0.0,
    "warmup": 0,
    "min_lr_frac": 1.0,
    "plateau_factor": 4.0,
}


def peer_config(cfg, name):
    """conf/config.yaml set to the example's recipe and shapes (the seqbench side)."""
    p = cfg.peer
    tcfg = train_cfg(cfg, name, p.seq_len, p.batch_size, **RECIPE)
    text = OmegaConf.load(CONF_DIR / "data" / "text.yaml")
    tcfg.data = OmegaConf.merge(
        text, {"tokenizer": p.tokenizer, "seq_len": p.seq_len, "stream": True}
    )
    tcfg.model = OmegaConf.merge(
        tcfg.model, MODEL[name], {"max_len": p.seq_len} if "max_len" in tcfg.model else {}
    )
    return tcfg


def peer_overhead(cfg, device, log, tmp):
    for name in cfg.peer.models or []:
        for row in _peer(cfg, name, device, tmp / f"peer-{name}"):
            log(row)


def _peer(cfg, name, device, tmp) -> list[dict]:
    p = cfg.peer
    T, B = p.seq_len, p.batch_size
    tcfg = peer_config(cfg, name)
    task = build_task(tcfg.data)
    run = harness(tcfg, task, tmp)
    careful = bare_model(name, run.model, task.vocab_size, T, MODEL[name]["dropout"]).to(device)
    careful.load_state_dict(run.model.state_dict())
    opt = make_opt(careful.parameters(), tcfg.train, device)
    careful_fwd = torch.compile(careful) if cfg.compile else careful  # as seqbench's side
    example = Examples(name, task.streams["train"], task.vocab_size, device, bptt=T, batch_size=B)
    amp, clip = autocast(device), tcfg.train.grad_clip
    at = {"seqbench": 0, "careful": 0}  # each side walks the same stream from its start
    state = [None]

    def batch(side):
        tokens, targets = task.batch("train", at[side], B)
        at[side] += 1
        return tokens.to(device), targets.to(device)

    def seqbench_block():
        for _ in range(p.steps):
            run.train_step(*batch("seqbench"))  # carries and detaches its state itself

    def careful_block():
        for _ in range(p.steps):
            _, state[0] = bare_step(careful_fwd, opt, None, *batch("careful"), clip, amp, state[0])

    def examples_block():
        for _ in range(p.steps):
            example.step()

    sides = {"seqbench": seqbench_block, "careful": careful_block, "examples": examples_block}
    with watch_load() as loads:
        times = interleave(sides, p.repeats, p.warmup, device)
    sb = np.asarray(times["seqbench"])
    extra = {"loss_diff": None, "spread_blocks": cfg.spread_blocks, **loads} | stamp(cfg, device)
    return [
        ratio_row(
            f"{name}_peer_{other}",
            name,
            {"seqbench": sb, "bare": np.asarray(times[other])},
            p.steps,
            T,
            B,
            goal=goal,
            **extra,
        )
        for other, goal in (("careful", GOAL), ("examples", PEER_GOAL))
    ]
