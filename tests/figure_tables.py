"""One synthetic table set for every study's section (tests/test_figures.py).

The tables are shaped as ``seqbench.report.collect`` returns them: a ``runs`` table whose
config columns come from the real conf/ files (every dotted key a run records), ``curves``
and ``positions`` beside it, and one table per measurement. Everything is generated from the
grids below, so a new study is one entry of RUN_CELLS or MEASURED, and a new column one key
of a row. The numbers only need plausible shapes (recurrences fading with distance, the
Transformer flat in span, the per-step loops slower than the fused paths); each cell has
three seeds, so every study can draw its intervals.
"""

import math
import zlib
from itertools import product

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from seqbench.config import CONF_DIR
from seqbench.report.collect import flat
from tests.conftest import FAMILY as FAMILIES

PATHS = {"recurrent": ("fused", "unrolled"), "attention": ("-",), "scan": ("scan", "sequential")}
TRACED = {"recurrent": ("unrolled",), "attention": ("-",), "scan": ("scan", "sequential")}
REACH = {"transformer": 1024, "gru": 64, "lstm": 48, "rnn": 8, "mingru": 32, "minlstm": 24}
MODELS = list(REACH)  # every compared model (the bag of words is the floor, drawn apart)
# per-model scale of costs and chain lengths, so no two models' curves coincide by accident
# (the one coincidence kept on purpose: rnn and gru carry states of the same size)
SCALE = {m: 1 + 0.3 * i for i, m in enumerate(MODELS)}
CLASSIC = ["rnn", "lstm", "gru", "transformer"]
SEEDS = (0, 1, 2)
DATA_FILE = {"lagrecall": "lag_recall", "copy": "copy", "text": "text", "mqar": "mqar"}
VOCAB = {"text": 96, "mqar": 256}  # the rest: 64
POS = ("none", "sinusoidal", "learned", "rope")
POS_SKILL = {"none": 0.1, "sinusoidal": 1.0, "learned": 0.9, "rope": 1.0}
# training runs: (study, task, models, grid of config overrides); one run per cell and seed
RUN_CELLS = [
    ("core", "lagrecall", MODELS, {"data.distance": [8, 48]}),
    ("core", "copy", MODELS, {}),
    ("core", "text", MODELS, {"data.seq_len": [64]}),
    ("recall", "lagrecall", CLASSIC, {"data.distance": [4, 16, 64, 256]}),
    ("mqar", "mqar", CLASSIC, {"data.seq_len": [64, 128], "model.d_model": [32, 64, 128]}),
    ("data_efficiency", "text", CLASSIC, {"data.n_train": [10, 100, 1000, 10000]}),
    ("posenc", "copy", ["transformer"], {"model.pos": POS}),
    ("posenc", "lagrecall", ["transformer"], {"model.pos": POS, "data.distance": [32]}),
    ("text_positions", "text", CLASSIC, {"data.seq_len": [256]}),
    ("core.lr", "lagrecall", CLASSIC, {"train.lr": [1e-3, 3e-3, 1e-2], "data.distance": [8]}),
    ("adhoc", "copy", ["lstm", "bow"], {}),
    # short sequences and batches: the study counts each cell's FLOPs on the real model
    (
        "scaling",
        "text",
        CLASSIC,
        {"model.size": ["xs", "s", "m"], "data.seq_len": [16], "train.batch_size": [2]},
    ),
    ("stream", "text", ["lstm"], {"data.stream": [False, True]}),
]
WIDTH = {"xs": 64, "s": 128, "m": 256}  # d_model of a size preset, for the parameter counts
STEPS = 400  # every run's budget; curves log every 25 steps, evaluate every 50


def jitter(*key, scale=0.02) -> float:
    """Reproducible noise from a cell's key (another seed, another draw)."""
    return scale * (zlib.crc32(repr(key).encode()) / 2**32 - 0.5)


def grid(cells: dict) -> list[dict]:
    keys = list(cells)
    return [dict(zip(keys, vs)) for vs in product(*(cells[k] for k in keys))] or [{}]


def skill(model, cell) -> float:
    """Accuracy in [0, 1]: falls once the distance passes the model's reach, rises with width."""
    d = cell.get("data.distance") or cell.get("data.seq_len", 32) / 4
    width = min(1.0, cell.get("model.d_model", 64) / 64)
    pos = POS_SKILL[cell.get("model.pos", "rope")]
    return pos * width / (1 + (d / REACH.get(model, 4)) ** 2)


def config(model, task) -> dict:
    """The dotted config columns of a real run of this model and task (conf/ files)."""
    nodes = OmegaConf.create({
        "model": OmegaConf.load(CONF_DIR / "model" / f"{model}.yaml"),
        "data": OmegaConf.load(CONF_DIR / "data" / f"{DATA_FILE[task]}.yaml"),
        "train": OmegaConf.load(CONF_DIR / "train" / "default.yaml"),
    })  # fmt: skip
    return flat(OmegaConf.to_container(nodes, resolve=True))  # run.json records it resolved


def run_row(study, task, model, cell, seed) -> dict:
    acc = float(np.clip(skill(model, cell) + jitter(study, model, cell, seed), 0, 1))
    vocab = VOCAB.get(task, 64)
    width = cell.get("model.d_model") or WIDTH[cell.get("model.size", "xs")]
    pool = 1 + math.log10(cell.get("data.n_train") or 1e4) / 8  # more data, lower loss
    loss = math.log(vocab) * (1 - 0.7 * acc) / pool / (1 + 0.1 * math.log2(width / 64))
    row = config(model, task) | cell
    return row | {
        "tokens_seen": STEPS * row["train.batch_size"] * row["data.seq_len"],
        "run": f"{study}-{model}-{task}-{zlib.crc32(repr((cell, seed)).encode()):08x}",
        "study": study,
        "status": "complete",
        "model": model,
        "family": FAMILIES[model],
        "task": task,
        "seed": seed,
        "vocab_size": vocab,
        "unigram_xent": 3.3 if task == "text" else None,
        "hp_d_model": width,
        "params_non_embedding": 12 * width**2 * (2 if model == "transformer" else 1),
        "step": STEPS,
        "val_loss": loss,
        "val_acc": acc,
        "train_loss": 0.95 * loss,
        "wall_s": STEPS * speed(model),
        "lr": cell.get("train.lr", 3e-3),
        "best_val_loss": loss,
        "best_step": STEPS,
        "steps_to_criterion": STEPS * (1 - acc / 2) if acc > 0.9 else None,
        "stopped_early": acc > 0.9,
        "criterion": "val_acc",
        "device": "cpu",
        "threads": 1,
        "torch": "2.13",
    }


def speed(model) -> float:
    return 0.05 if FAMILIES[model] == "attention" else 0.1  # seconds per step


def curve_rows(run) -> list[dict]:
    keys = {k: run[k] for k in ("run", "study", "model", "family", "task")}
    rows = []
    for step in range(0, STEPS + 1, 25):
        loss = run["val_loss"] * (1 + 2 * (1 - step / STEPS) ** 2)
        evaluated = step % 50 == 0
        rows.append(
            keys
            | {
                "step": step,
                "train_loss": loss,
                "val_loss": loss if evaluated else None,
                "val_acc": run["val_acc"] * step / STEPS if evaluated else None,
                "wall_s": step * speed(run["model"]),
                "tokens_seen": step * run["train.batch_size"] * run["data.seq_len"],
            }
        )
    return rows


def position_rows(run) -> list[dict]:
    """Held-out loss at each context position: the Transformer keeps gaining late."""
    T = int(run["data.seq_len"])
    late = 0.3 if run["family"] == "attention" else 0.1
    return [
        {"run": run["run"], "position": p,
         "loss": run["val_loss"] + 1.5 / (1 + p) - late * math.log1p(p) / math.log(T)}
        for p in range(T)
    ]  # fmt: skip


def training_tables() -> dict[str, pd.DataFrame]:
    runs = [
        run_row(study, task, model, cell, seed)
        for study, task, models, cells in RUN_CELLS
        for cell, model, seed in product(grid(cells), models, SEEDS)
    ]
    curves = [r for run in runs for r in curve_rows(run)]
    positions = [r for run in runs if run["task"] == "text" for r in position_rows(run)]
    return {
        "runs": pd.DataFrame(runs),
        "curves": pd.DataFrame(curves),
        "positions": pd.DataFrame(positions),
        "unreadable": pd.DataFrame(columns=["run", "file", "reason"]),
    }


# --- measurement tables: one builder per table, rows over a grid ----------------------------
def measured(study, rows, task="lagrecall") -> pd.DataFrame:
    """A measurement table as collect() returns it: complete rows tagged with their run."""
    df = pd.DataFrame(rows)
    return df.assign(
        study=study,
        status="complete",
        run=df.model.astype(str) + "-" + study,
        task=task,
        device="cpu",
        threads=1,
        dtype="float32",
    )


def span_table():
    rows = []
    for m, L, p, T in product(MODELS, (1, 2, 4), ("forward", "forward_backward"), (16, 64, 256)):
        for impl in TRACED[FAMILIES[m]]:
            span = {"-": 10 * L + 9, "scan": 6 * math.log2(T) + 3 * L}.get(impl, 7 * (T + L))
            span *= SCALE[m] * (2.1 if p == "forward_backward" else 1)  # backward: a 2nd chain
            rows.append(
                {
                    "model": m,
                    "family": FAMILIES[m],
                    "impl": impl,
                    "n_layers": L,
                    "pass": p,
                    "T": T,
                    "span_ops": span,
                    "work_ops": 100 * T * L,
                    "work_flops": 1e3 * T * L,
                    "parallelism": 100 * T * L / span,
                    "attention_flops": 2 * T * T * L if FAMILIES[m] == "attention" else 0,
                }
            )
    return measured("span_vs_length", rows)


def timing_table():
    cost = {"-": 1.0, "fused": 0.8, "scan": 1.2, "unrolled": 5.0, "sequential": 4.0}
    rows = []
    modes, steps = ("fixed_batch", "fixed_tokens"), ("forward", "train_step")
    for m, mode, step, T in product(MODELS, modes, steps, (32, 128, 512, 2048)):
        for impl in PATHS[FAMILIES[m]]:
            B = 8 if mode == "fixed_batch" else max(1, 4096 // T)
            s = cost[impl] * SCALE[m] * 1e-6 * B * T * (1 + jitter(m, impl, mode, step, T))
            rows.append(
                {"model": m, "family": FAMILIES[m], "impl": impl, "mode": mode, "step": step,
                 "T": T, "batch_size": B, "tokens": B * T, "median_s": s, "iqr_s": 0.1 * s}
            )  # fmt: skip
    return measured("time_vs_length", rows)


def decode_table():
    rows = []
    for m, mode, c in product(MODELS, ("state", "recompute", "teacher_forced"), (16, 64, 256)):
        att = FAMILIES[m] == "attention"
        tps = {"state": 300.0 if att else 500.0, "recompute": 3e4 / c, "teacher_forced": 5e3}[mode]
        tps /= SCALE[m] ** (0.5 if mode == "teacher_forced" else 1)  # speed-ups differ too
        same = {"rnn": 1, "gru": 1, "lstm": 2}.get(m, 1.5)  # rnn and gru: one state vector
        state = (128 * c if att else 512 * same) if mode == "state" else None
        rows.append(
            {"model": m, "family": FAMILIES[m], "impl": PATHS[FAMILIES[m]][0], "mode": mode,
             "context": c, "batch_size": 1, "tokens_per_s": tps, "s_per_token": 1 / tps,
             "iqr_s_per_token": 0.1 / tps, "state_bytes": state}
        )  # fmt: skip
    return measured("decode_cost", rows)


def kernels_table():
    rows = []
    for m in MODELS:
        for impl, path in product(PATHS[FAMILIES[m]], ("eager", "cuda_graph")):
            ops = 10.0 + 30 * (impl in ("unrolled", "sequential")) + len(m)
            ok = path == "eager"  # off CUDA the graph path is skipped, with its reason
            rows.append(
                {"model": m, "family": FAMILIES[m], "impl": impl, "path": path, "context": 64,
                 "batch_size": 1, "steps": 16, "ops_per_step": ops if ok else None,
                 "kernels_per_step": None, "launches_per_step": None,
                 "s_per_step": ops * 3e-6 if ok else None,
                 "iqr_s_per_step": ops * 3e-7 if ok else None, "us_per_op": 3.0,
                 "note": "" if ok else "skipped: CUDA graphs need a CUDA device"}
            )  # fmt: skip
    return measured("kernels", rows)


def influence_table():
    rows = []
    for m, trained, seed, d in product(MODELS, (False, True), SEEDS, range(48)):
        fade = 1.0 if FAMILIES[m] == "attention" else (1 - 0.5 / REACH[m] ** 0.5) ** d
        peak = 3.0 if trained and d == 40 else 1.0  # trained: a path to the value at d = 40
        acc = skill(m, {"data.distance": 40}) if trained else None
        learned = trained and acc > 0.9
        rows.append(
            {"model": m, "family": FAMILIES[m], "trained": trained, "seed": seed, "d": d,
             "T": 48, "grad_norm": fade * peak * (1 + jitter(m, seed, d)), "examples": 64,
             "distance": 40, "val_acc": acc, "criterion": "val_acc" if trained else None,
             "steps_to_criterion": 300 if learned else None, "lr": 3e-3 if trained else None,
             "run_key": f"{m}-{trained}-{seed}"}
        )  # fmt: skip
    return measured("path_length", rows).assign(run=lambda d: d.pop("run_key"))


def order_table():
    rows = []
    for pos, causal, state in product(POS, (False, True), ("init", "trained")):
        if state == "trained" and not causal:
            continue  # only the causal models are trained
        error = (0.5 if causal else 1e-7) if pos == "none" else 0.3
        rows.append(
            {"model": "transformer", "family": "attention", "pos": pos, "causal": str(causal),
             "state": state, "seq_len": 32, "equivariance_error": error,
             "probe_r2": 0.1 if pos == "none" else 0.9,
             "val_acc": 0.5 if state == "trained" else None}
        )  # fmt: skip
    return measured("posenc", rows, task="copy")


def objectives_table():
    rows = []
    for obj, steps, p in product(("causal", "masked"), (250, 500, 1000, 2000), (4, 16, 63)):
        base = 2.0 if obj == "causal" else 2.4
        rows.append(
            {"model": "transformer", "family": "attention", "objective": obj, "steps": steps,
             "prefix_len": p, "prefix_loss": base + 200 / steps + 0.5 / p, "prefix_acc": 0.3,
             "train_flops": 4e8 * steps, "targets_per_pass": 1024 if obj == "causal" else 154,
             "tokens_per_pass": 1024, "val_loss": base + 200 / steps}
        )  # fmt: skip
    return measured("causal_vs_masked", rows, task="text")


def perf_table():
    rows = [
        {"model": "-", "family": None, "comparison": c, "ratio_median": r, "ratio_q25": r - 0.01,
         "ratio_q75": r + 0.01, "ratio_iqr": 0.02, "seq_len": 64, "batch_size": 32,
         "steps_per_block": 1, "repeats": 101, "seqbench_tokens_per_s": 1e5,
         "bare_tokens_per_s": 1e5 / r, "overhead_us_per_step": 12.5, "loss_diff": 0.0}
        for c, r in (("lstm_step", 0.99), ("transformer_step", 0.93), ("train_loop", 0.97))
    ]  # fmt: skip
    return measured("harness_overhead", rows)


def mfu_table():
    rows = [
        {"model": m, "family": FAMILIES[m], "impl": PATHS[FAMILIES[m]][0], "seq_len": T,
         "mfu_measured": 0.05 + 0.1 * (FAMILIES[m] == "attention") + T / 1e4,
         "batch_size": 2048 // T, "flops_counted_on": "unrolled", "flops_per_step": 2e9,
         "step_s_median": 0.01, "step_s_iqr": 0.001, "flops_per_s": 2e11,
         "peak_measured_flops_per_s": 1e12, "peak_measured_how": "fp32 matmul n=1024",
         "mfu_nominal": float("nan")}
        for m, T in product(MODELS, (64, 256))
    ]  # fmt: skip
    return measured("harness_overhead", rows)


def drift_table():
    """Free-running generation scored by the known source: KL and true log-likelihood at each
    generated position k, teacher-forced beside greedy and sampled (the gap grows with k)."""
    rows = []
    for m, seed, decoding, k in product(
        MODELS, SEEDS, ("teacher", "greedy", "sampled"), range(1, 17)
    ):
        grow = (
            0.0
            if decoding == "teacher"
            else 0.02 * k * SCALE[m] / (2 if decoding == "greedy" else 1)
        )
        rows.append(
            {"model": m, "family": FAMILIES[m], "seed": seed, "decoding": decoding, "k": k,
             "kl": 0.1 + grow + jitter(m, seed, decoding, k), "nll_true": 1.5 + grow,
             "entropy_true": 1.2, "entropy_rate": 1.2, "vocab_size": 16, "lr": 3e-3,
             "train_steps": STEPS, "kl_reverse": 0.1 + grow, "nll_model": 1.4 + grow,
             "n": 64, "prefix_len": 16, "position": 16 + k, "temperature": 1.0,
             "val_loss": 1.3, "train_run": f"drift-{m}-{seed}"}
        )  # fmt: skip
    return measured("drift", rows, task="source").assign(
        run=lambda d: d.model + "-" + d.seed.astype(str)
    )


MEASURED = {
    "span": span_table,
    "timing": timing_table,
    "decode": decode_table,
    "kernels": kernels_table,
    "influence": influence_table,
    "order": order_table,
    "objectives": objectives_table,
    "perf": perf_table,
    "mfu": mfu_table,
    "drift": drift_table,
}


def synthetic_tables() -> dict[str, pd.DataFrame]:
    """Every table a study reads, shaped as seqbench.report.collect returns them."""
    return training_tables() | {name: build() for name, build in MEASURED.items()}
