"""One synthetic table set for every study's section (tests/test_figures.py,
tests/test_report_readme.py).

The tables are shaped as ``seqbench.report.collect`` returns them: a ``runs`` table whose
config columns come from the real conf/ files (every dotted key a run records), ``curves``
and ``positions`` beside it, and one table per measurement. The training runs come from the
grids of RUN_CELLS; a measurement's table comes from its study folder
(experiments/<name>/examples.py: ``tables(kit)``, this module as the kit), so a new study
brings its own tables and edits nothing here. The numbers only need plausible shapes
(recurrences fading with distance, the Transformer flat in span, the per-step loops slower
than the fused paths); each cell has three seeds, so every study can draw its intervals.
"""

import importlib
import math
import sys
import zlib
from itertools import product

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from seqbench import studies
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


def config(model, task, seed=0) -> dict:
    """The dotted config columns of a real run of this model, task and seed (conf/ files;
    data.seed follows seed)."""
    nodes = OmegaConf.create({
        "seed": seed,
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
    row = config(model, task, seed) | cell
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


def training_tables(run_cells=RUN_CELLS) -> dict[str, pd.DataFrame]:
    """runs, curves and positions of ``run_cells`` ((study, task, models, grid) entries): a
    study folder's examples.py may call it for training cells of its own."""
    runs = [
        run_row(study, task, model, cell, seed)
        for study, task, models, cells in run_cells
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


# --- measurement tables: each study folder builds its own (examples.py) --------------------
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


def study_tables() -> dict[str, pd.DataFrame]:
    """Every study folder's own synthetic tables: experiments/<name>/examples.py, where there
    is one, defines ``tables(kit) -> {table: DataFrame}`` and gets this module as ``kit``
    (MODELS, FAMILIES, PATHS, SCALE, SEEDS, jitter, skill, measured, training_tables, ...).
    Tables of one name from several studies are stacked."""
    found: dict[str, list] = {}
    for name in studies.names():
        try:
            examples = importlib.import_module(f"{studies.__name__}.{name}.examples")
        except ModuleNotFoundError as e:
            if e.name != f"{studies.__name__}.{name}.examples":
                raise  # a broken examples module fails loudly; a missing one is allowed
            continue
        for table, df in examples.tables(sys.modules[__name__]).items():
            found.setdefault(table, []).append(df)
    return {t: pd.concat(dfs, ignore_index=True) for t, dfs in found.items()}


def synthetic_tables() -> dict[str, pd.DataFrame]:
    """Every table a study reads, shaped as seqbench.report.collect returns them: the shared
    training tables with each study folder's own tables stacked onto them."""
    shared, own = training_tables(), study_tables()
    merged = {
        t: pd.concat([shared[t], df], ignore_index=True) for t, df in own.items() if t in shared
    }
    tables = shared | own | merged
    return tables | {"test_set": test_set_table(tables["runs"])}


def test_set_table(runs: pd.DataFrame) -> pd.DataFrame:
    """seqbench.measure.test_set's rows for the synthetic runs: each complete run scored on its
    test sequences a little below its held-out accuracy (the stopping rule's optimism)."""
    from conftest import measured_test_set

    ok = runs[runs.status == "complete"]
    acc = pd.to_numeric(ok.get("val_acc"), errors="coerce")
    loss = pd.to_numeric(ok.get("val_loss"), errors="coerce")
    return measured_test_set(ok.assign(test_acc=(acc - 0.01).clip(lower=0.0), test_loss=loss))
