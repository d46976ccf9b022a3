"""seqbench's side of every perf comparison: the harness itself.

The seqbench side is ``seqbench.train.Run`` built from the main config (conf/config.yaml with
perf's data, size, threads and compile), and one step of it is ``Run.train_step`` (AdamW,
clipping, schedule, non-finite check), exactly what the training loop calls. Both sides are
timed by ``seqbench.timer.interleave`` (A B, B A, A B, ...), and every row says where it
was timed (``stamp``).
"""

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from seqbench.config import CONF_DIR
from seqbench.env import hardware
from seqbench.runs import Record
from seqbench.train import Run


def harness(tcfg, task, directory) -> Run:
    """seqbench's own model, optimiser and schedule, built by the harness (Run.build)."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    run = Run(tcfg, task, Record(tcfg, "train", "perf", Path(directory)))
    run.build()
    return run


def train_cfg(cfg, model, seq_len, batch_size, **train):
    """The main config (conf/config.yaml) for one model, with perf's data, size and threads."""
    overrides = [f"model={model}"]
    if GlobalHydra.instance().is_initialized():
        tcfg = compose("config", overrides=overrides)
    else:
        with initialize_config_dir(str(CONF_DIR), version_base=None):
            tcfg = compose("config", overrides=overrides)
    tcfg.data = OmegaConf.merge(cfg.data, {"seq_len": seq_len})
    tcfg.model.size = cfg.size
    for k, v in {"seed": cfg.seed, "device": cfg.device, "study": cfg.study}.items():
        tcfg[k] = v
    for k, v in {
        "threads": cfg.threads,
        "batch_size": batch_size,
        "compile": cfg.compile,
        **train,
    }.items():
        tcfg.train[k] = v
    return tcfg


def stamp(cfg, device) -> dict:
    """The columns that say where and how a row was timed: the device by its name, torch's
    threads, and whether both sides were compiled."""
    return hardware(device, ("device", "threads"), named=True) | {"compile": int(bool(cfg.compile))}
