"""A learning rate chosen by data (``train.lr_grid``), the same procedure for every family.

One short run per learning rate of the grid on the study's control setting
(``train.lr_control``), per model and task, seed 0, under study ``<study>.lr``: every cell of a
study shares them, and reruns reuse them by content key. The best by ``calibration_score``
wins (with a criterion: reaching it, then reaching it sooner; then the held-out loss), the
smaller rate on a tie; run.json records the grid, each rate's result and the choice. Only a
rate whose run completed can win: a diverged one (non-finite, or a loss far above its start)
never does, and a grid where none completed ends the run ``failed`` with the reason.
"""

import math
import time

from omegaconf import DictConfig, OmegaConf


def calibration_config(cfg: DictConfig, lr: float) -> DictConfig:
    """The calibration run of ``lr``: this config on its control setting (train.lr_control),
    seed 0, under study ``<study>.lr``, without a grid of its own."""
    node = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    node.pop("hydra", None)
    for key, value in cfg.train.lr_control.items():
        OmegaConf.update(node, key, value, force_add=False)
    node.train.lr, node.train.lr_grid, node.train.lr_control = lr, None, {}
    node.seed, node.study, node.fresh = 0, f"{cfg.study}.lr", False
    return node


def calibration_score(summary: dict) -> tuple:
    """Lower is better: a failed run last; with a criterion, reaching it first and sooner;
    then the final held-out loss."""
    if summary.get("status") != "complete":
        return (2, math.inf, math.inf)
    loss = summary.get("val_loss")
    loss = math.inf if loss is None or not math.isfinite(loss) else loss
    if summary.get("criterion"):
        steps = summary.get("steps_to_criterion")
        return (0, steps, loss) if steps is not None else (1, math.inf, loss)
    return (0, 0, loss)


def calibrate(cfg: DictConfig, train) -> dict | None:
    """One short run per learning rate of train.lr_grid on the control setting (per model and
    task: every cell of a study shares them, and reruns reuse them by content key); the best
    by ``calibration_score`` wins, the smaller lr on a tie. A run another worker is training
    (locked) is waited for. ``train(cfg) -> summary`` trains each run: the harness hands
    itself in (seqbench.train), so this module stays below it."""
    grid = cfg.train.lr_grid
    if not grid:
        return None
    summaries, pending = {}, list(grid)
    while pending:
        lr = pending.pop(0)
        summary = train(calibration_config(cfg, lr))
        if summary["status"] == "skipped":  # another process holds it: back of the queue
            pending.append(lr)
            time.sleep(0.5 if len(pending) == 1 else 0.0)
            continue
        summaries[lr] = summary
    statuses = [summaries[lr].get("status") for lr in grid]
    completed = [lr for lr, status in zip(grid, statuses) if status == "complete"]
    if not completed:
        ended = ", ".join(f"{lr:g} {status}" for lr, status in zip(grid, statuses))
        raise RuntimeError(f"no rate of train.lr_grid completed its calibration run ({ended})")
    chosen = min(completed, key=lambda lr: (calibration_score(summaries[lr]), lr))
    return {
        "grid": list(grid),
        "control": OmegaConf.to_container(cfg.train.lr_control),
        "status": statuses,
        "val_loss": [summaries[lr].get("val_loss") for lr in grid],
        "steps_to_criterion": [summaries[lr].get("steps_to_criterion") for lr in grid],
        "runs": [summaries[lr].get("run") for lr in grid],
        "chosen": chosen,
    }
