"""A learning rate chosen by data (``train.lr_grid``), the same procedure for every family.

One run per learning rate of the grid on the study's control setting (``train.lr_control``),
per model and task, seed 0, budget 1, under study ``<study>.lr``: every cell of a study shares
them, and reruns reuse them by content key. A calibration run trains its whole control budget
(no criterion stop) under the schedule the run it calibrates trains with (a run with a
criterion keeps its rate constant after warm-up, so its calibration runs do too: a cosine
decay at the end favours rates too large to train at for good), and the lowest held-out loss
at its end wins (the smaller rate on a tie).
A best rate at an edge of the grid extends the grid by one factor of EXTEND on that side, at
most MAX_EXTENSIONS times; a choice still at an edge is recorded (``at_edge``) and the report
flags it. Only a rate whose run completed can win: a diverged one (non-finite, or a loss far
above its start) never does, and a grid where none completed ends the run ``failed`` with the
reason. ``train.lr_step`` then trains at a neighbour of the choice (-1: the next smaller rate
of the extended grid, +1: the next larger; beyond the grid, one factor of EXTEND per step):
the stability check at the neighbouring learning rate.
"""

import math
import time

from omegaconf import DictConfig, OmegaConf

EXTEND = 3.0  # one step of a grid spaced by ~x3 (1e-3, 3e-3, 1e-2)
MAX_EXTENSIONS = 2


def calibration_config(cfg: DictConfig, lr: float) -> DictConfig:
    """The calibration run of ``lr``: this config on its control setting (train.lr_control),
    seed 0, budget 1, no criterion stop but its schedule (constant after warm-up where the
    run has a criterion), under study ``<study>.lr``, without a grid."""
    node = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    node.pop("hydra", None)
    for key, value in cfg.train.lr_control.items():
        OmegaConf.update(node, key, value, force_add=False)
    node.train.lr, node.train.lr_grid, node.train.lr_control = lr, None, {}
    if cfg.train.criterion:  # the schedule the criterion run trains with (train.lr_factor)
        node.train.min_lr_frac = 1.0
    node.train.criterion, node.train.target = None, None  # the loss at the end decides
    node.train.budget, node.train.lr_step = 1, 0
    node.seed, node.study, node.fresh = 0, f"{cfg.study}.lr", False
    if "seed" in node.data:  # seed 0's data too, also where a caller resolved ${seed} (the
        node.data.seed = 0  # masked task of prefix_eval): one calibration for every seed
    return node


def calibration_score(summary: dict) -> tuple:
    """Lower is better: a run that did not complete last, then the held-out loss at its end."""
    if summary.get("status") != "complete":
        return (1, math.inf)
    loss = summary.get("val_loss")
    return (0, math.inf if loss is None or not math.isfinite(loss) else loss)


def _train_all(cfg, rates, train, summaries: dict) -> None:
    """Train the calibration run of each rate not yet in ``summaries``; a run another worker
    holds (locked, ``skipped``) goes to the back of the queue and is waited for."""
    pending = [lr for lr in rates if lr not in summaries]
    while pending:
        lr = pending.pop(0)
        summary = train(calibration_config(cfg, lr))
        if summary["status"] == "skipped":
            pending.append(lr)
            time.sleep(0.5 if len(pending) == 1 else 0.0)
            continue
        summaries[lr] = summary


def choose(grid: list, score) -> tuple[float, list, bool]:
    """(choice, the grid as extended, still at an edge) for ``score(lr) -> tuple`` (lower is
    better; an infinite first element: the rate did not complete). A best rate at the top or
    the bottom of the grid adds a rate one factor of EXTEND beyond it, at most MAX_EXTENSIONS
    times; the smaller rate wins a tie. Pure: tests drive it with a synthetic score."""
    grid, extensions = sorted(grid), 0
    while True:
        done = [lr for lr in grid if score(lr)[0] == 0]
        if not done:
            return None, grid, False
        best = min(done, key=lambda lr: (score(lr), lr))
        edge = len(grid) > 1 and best in (grid[0], grid[-1])
        if not edge or extensions == MAX_EXTENSIONS:
            return best, grid, edge
        beyond = best * EXTEND if best == grid[-1] else best / EXTEND
        grid = sorted([*grid, float(f"{beyond:.3g}")])  # 9e-3, not 9.000000000000001e-3
        extensions += 1


def neighbour(grid: list, chosen: float, step: int) -> float:
    """The rate ``step`` positions from ``chosen`` on the sorted grid; beyond its ends, one
    factor of EXTEND per position."""
    grid = sorted(grid)
    i = grid.index(chosen) + step
    if 0 <= i < len(grid):
        return grid[i]
    end = grid[-1] if i >= len(grid) else grid[0]
    beyond = i - (len(grid) - 1) if i >= len(grid) else i
    return float(f"{end * EXTEND**beyond:.3g}")


def calibrate(cfg: DictConfig, train) -> dict | None:
    """Calibrate the lr on train.lr_grid (see the module's docstring); ``train(cfg) ->
    summary`` trains each run: the harness hands itself in (seqbench.train), so this module
    stays below it. Returns what run.json records, with ``used``: the rate the run trains at."""
    if not cfg.train.lr_grid:
        return None
    summaries = {}

    def score(lr):
        _train_all(cfg, [lr], train, summaries)
        return calibration_score(summaries[lr])

    chosen, grid, at_edge = choose(list(cfg.train.lr_grid), score)
    statuses = [summaries[lr].get("status") for lr in grid]
    if chosen is None:
        ended = ", ".join(f"{lr:g} {status}" for lr, status in zip(grid, statuses))
        raise RuntimeError(f"no rate of train.lr_grid completed its calibration run ({ended})")
    step = cfg.train.get("lr_step", 0) or 0
    return {
        "grid": list(grid),
        "control": OmegaConf.to_container(cfg.train.lr_control),
        "status": statuses,
        "val_loss": [summaries[lr].get("val_loss") for lr in grid],
        "runs": [summaries[lr].get("run") for lr in grid],
        "chosen": chosen,
        "at_edge": at_edge,
        "lr_step": step,
        "used": neighbour(grid, chosen, step),
    }
