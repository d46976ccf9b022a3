"""The one next-token training harness (C1): every model and every task goes through here.

    python -m seqbench.train model=lstm data=lag_recall data.distance=32 train.steps=300
    python -m seqbench.train -m model=rnn,lstm,gru,transformer seed=0,1

``train(cfg) -> summary`` is a plain function (tests call it); ``main`` is a thin Hydra
wrapper. One AdamW loop with linear warm-up and cosine decay, gradient clipping and periodic
held-out evaluation, identical for every model; the data order is a function of the step
alone. Failures are contained: a run ends ``complete``, ``diverged``, ``oom``,
``interrupted`` or ``failed``, its files stay readable, and the function returns normally so
a sweep goes on. A rerun skips complete runs and resumes the others from their checkpoint.
"""

import math
import signal
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from seqbench import runs, store
from seqbench.config import build_model, describe_model, validate
from seqbench.data import IGNORE
from seqbench.env import autocast, pick_device, set_deterministic
from seqbench.models import param_counts
from seqbench.runs import Diverged

COLUMNS = (
    "step tokens_seen wall_s train_loss lr grad_norm tokens_per_s val_loss val_acc val_ppl"
).split()
TIMING_COLUMNS = ("wall_s", "tokens_per_s")  # the only columns allowed to differ between reruns
RUN_FILES = ("metrics.csv", "ckpt.pt", "model.pt", "position_loss.csv")


def train(cfg: DictConfig) -> dict:
    """Train one run (or skip it when complete, or resume it); returns its summary. With
    ``train.lr_grid`` the learning rate is first calibrated (``calibrate``)."""
    task = validate(cfg)  # raises ConfigError before anything is built or written
    parts = [runs.model_part(cfg), runs.task_part(cfg)]

    def body(record):
        calibration = calibrate(cfg)
        if calibration:
            record.fields["lr_calibration"] = calibration
        return Run(cfg, task, record, lr=calibration and calibration["chosen"]).execute()

    return runs.execute(cfg, "train", parts, body, resume=True)


# --- a learning rate chosen by data ------------------------------------------------------------
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


def calibrate(cfg: DictConfig) -> dict | None:
    """One short run per learning rate of train.lr_grid on the control setting (per model and
    task: every cell of a study shares them, and reruns reuse them by content key); the best
    by ``calibration_score`` wins, the smaller lr on a tie. A run another worker is training
    (locked) is waited for."""
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
    chosen = min(grid, key=lambda lr: (calibration_score(summaries[lr]), lr))
    return {
        "grid": list(grid),
        "control": OmegaConf.to_container(cfg.train.lr_control),
        "val_loss": [summaries[lr].get("val_loss") for lr in grid],
        "steps_to_criterion": [summaries[lr].get("steps_to_criterion") for lr in grid],
        "runs": [summaries[lr].get("run") for lr in grid],
        "chosen": chosen,
    }


def trained_model(cfg: DictConfig, device=None):
    """(model with the trained weights, training summary): trains the run of ``cfg`` unless
    a complete one exists, then loads its model.pt from the run directory (found from the
    config, never from a stored path). Raises RuntimeError if the run did not complete."""
    summary = train(cfg)
    if summary.get("status") != "complete":
        raise RuntimeError(
            f"training run {Path(summary.get('run_dir', '?')).name} ended "
            f"{summary.get('status')}: {summary.get('error') or summary.get('reason')}"
        )
    task = validate(cfg)
    device = pick_device(cfg.device) if device is None else device
    model = build_model(cfg.model, task.vocab_size, device)
    state = store.load_torch(Path(summary["run_dir"]) / "model.pt", map_location=device)
    model.load_state_dict(state)
    return model, summary


def make_optimizer(params, t, device) -> torch.optim.Optimizer:
    """The one optimiser recipe: AdamW, with PyTorch's fused kernel where it has one (CUDA
    and CPU): one kernel for every parameter's update instead of a Python loop over them,
    the same arithmetic (tests/test_train.py compares the two)."""
    fused = torch.device(device).type in ("cuda", "cpu")
    return torch.optim.AdamW(
        params,
        lr=t.lr,
        betas=tuple(t.betas),
        weight_decay=t.weight_decay,
        fused=fused or None,
    )


def train_step(forward, params, opt, tokens, targets, clip, amp):
    """One optimisation step on one batch -> (loss, grad_norm), both left on the device (no
    host sync). Everything that trains or times a step calls this: the harness, timing, MFU.
    ``forward`` is the model (or its compiled form), ``params`` the parameters to clip."""
    with amp:
        logits, _ = forward(tokens)  # [B, T, V]
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
    opt.step()
    return loss, grad_norm


class Run:
    """One training run inside its directory (``runs.execute`` gives it its record)."""

    def __init__(self, cfg, task, record, lr=None):
        self.cfg, self.task, self.record = cfg, task, record
        self.dir = record.dir
        # a plain namespace: reading a DictConfig attribute costs ~10 us and the loop reads
        # about a dozen per step (see the _tiny rows of python -m seqbench.perf)
        self.t = SimpleNamespace(**OmegaConf.to_container(cfg.train, resolve=True))
        if lr is not None:  # calibrated on the control setting (train.lr_grid)
            self.t.lr = lr
        self.device = record.device
        self.stop_signal = None
        self.step, self.resumed_from, self.tokens_seen, self.wall_before = 0, None, 0, 0.0
        self.best, self.since_best = math.inf, 0  # early stopping (train.patience)
        self.started_loop = time.perf_counter()
        record.summarize = self.summary_values

    # --- set-up ------------------------------------------------------------------------
    def build(self):
        if self.t.threads:
            torch.set_num_threads(self.t.threads)
        if self.t.deterministic:
            set_deterministic()
        torch.manual_seed(self.cfg.seed)  # model init; the data has its own data.seed
        self.model = build_model(self.cfg.model, self.task.vocab_size, self.device)
        self.params = list(self.model.parameters())
        self.opt = make_optimizer(self.params, self.t, self.device)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, self.lr_factor)
        self.forward = torch.compile(self.model) if self.t.compile else self.model
        self.autocast = autocast(self.device)
        self.clip = self.t.grad_clip if self.t.grad_clip else float("inf")
        self.first_bad = torch.tensor(-1, device=self.device)  # checked lazily: no sync a step
        ckpt = self.dir / "ckpt.pt"
        if ckpt.exists():
            try:
                self.load(ckpt)
            except store.CorruptFile as e:  # set aside, start from zero, say so in run.json
                kept = store.set_aside(ckpt)
                self.record.fields["recovered"] = f"{e}; kept as {kept.name}; restarted at 0"
        # rows logged after the checkpoint (or after step 0 when there is none) are redone
        self.metrics = store.MetricsLog(self.dir / "metrics.csv", COLUMNS)
        self.metrics.truncate_after(self.step)
        for row in store.read_metrics_rows(self.dir / "metrics.csv")[0]:  # patience, resumed
            if row.get("val_loss"):
                self.out_of_patience(float(row["val_loss"]))
        self.record.fields |= describe_model(self.model, self.cfg.model) | {
            "params": param_counts(self.model),
            "data": self.task.fingerprint(),
        }

    def lr_factor(self, step):
        """Linear warm-up to 1, then cosine down to min_lr_frac at the last step."""
        warm, total, floor = self.t.warmup, self.t.steps, self.t.min_lr_frac
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total - warm)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    # --- the loop ----------------------------------------------------------------------
    def execute(self) -> dict:
        self.build()
        self.record.write("running", **self.summary_values())
        with self.signals():
            self.loop()
        if self.stop_signal:
            return {"status": "interrupted", "error": self.stop_signal}
        return {}

    def loop(self):
        t, task, device = self.t, self.task, self.device
        tokens_per_step = t.batch_size * task.seq_len
        bar = tqdm(
            total=t.steps,
            initial=self.step,
            disable=not _show_progress(t.progress),
            desc=self.dir.name,
            leave=False,
        )
        clock, span_tokens = time.perf_counter(), 0
        self.model.train()
        while self.step < t.steps and not self.stop_signal:
            tokens, targets = task.batch("train", self.step, t.batch_size)
            loss, grad_norm = self.train_step(tokens.to(device), targets.to(device))
            self.tokens_seen += tokens_per_step
            span_tokens += tokens_per_step
            bar.update()
            log_now = self.step % t.log_every == 0 or self.step == t.steps
            eval_now = self.step % t.eval_every == 0 or self.step == t.steps
            if not (log_now or eval_now or self.step % t.ckpt_every == 0):
                continue
            if int(self.first_bad) >= 0:
                raise Diverged(f"non-finite loss or gradient at step {int(self.first_bad)}")
            now = time.perf_counter()
            row = {
                "step": self.step,
                "tokens_seen": self.tokens_seen,
                "train_loss": loss.item(),
                "lr": self.sched.get_last_lr()[0],
                "grad_norm": grad_norm.item(),
                "tokens_per_s": span_tokens / max(now - clock, 1e-9),
            }
            if eval_now:
                row |= self.evaluate()
            row["wall_s"] = self.wall_now()
            self.metrics.append(row)
            if eval_now and (self.reached(row) or self.out_of_patience(row["val_loss"])):
                break  # a criterion reached, or no new best for train.patience evaluations
            if self.step % t.ckpt_every == 0 and self.step < t.steps:
                self.save()
            bar.set_postfix(loss=f"{row['train_loss']:.3f}")
            clock, span_tokens = time.perf_counter(), 0
        bar.close()
        if self.stop_signal:
            self.save()
        else:  # the trained weights, for generation and measurements on trained models
            store.save_torch(self.model.state_dict(), self.dir / "model.pt")

    def out_of_patience(self, val_loss) -> bool:
        """Early stopping: True once train.patience evaluations passed without a new best."""
        if self.t.patience is None:
            return False
        if val_loss < self.best:
            self.best, self.since_best = val_loss, 0
        else:
            self.since_best += 1
        return self.since_best >= self.t.patience

    def reached(self, row) -> bool:
        """Has the held-out metric reached train.target (val_acc >=, val_loss <=)?"""
        metric, target = self.t.criterion, self.t.target
        if metric is None:
            return False
        return row[metric] >= target if metric == "val_acc" else row[metric] <= target

    def train_step(self, tokens, targets):
        """One step of the loop: ``train_step`` plus the schedule and the non-finite check,
        recorded in self.first_bad without a host sync (the loop reads it when it logs).
        seqbench.perf times exactly this against a bare PyTorch loop."""
        loss, grad_norm = train_step(
            self.forward, self.params, self.opt, tokens, targets, self.clip, self.autocast
        )
        if self.step == self.t.inject_nan_at:  # fault injection for the reliability tests
            loss = loss * float("nan")
        finite = torch.isfinite(loss) & torch.isfinite(grad_norm)
        self.first_bad = torch.where((self.first_bad < 0) & ~finite, self.step, self.first_bad)
        self.sched.step()
        self.step += 1
        return loss, grad_norm

    @torch.no_grad()
    def evaluate(self) -> dict:
        """Held-out loss, accuracy and perplexity over the scored positions, and the mean loss
        at each position in the context (position_loss.csv, C5, Kaplan Fig. 7): the last
        evaluation's is what a run leaves."""
        self.model.eval()
        T = self.task.seq_len
        loss_sum, correct, count = 0.0, 0, 0
        pos_loss, pos_count = torch.zeros(T), torch.zeros(T)
        for i in range(self.t.eval_batches):
            tokens, targets = self.task.batch("val", i, self.t.batch_size)
            tokens, targets = tokens.to(self.device), targets.to(self.device)
            logits, _ = self.model(tokens)  # [B, T, V]
            scored = targets != IGNORE  # [B, T]
            losses = F.cross_entropy(
                logits.float().transpose(1, 2), targets, ignore_index=IGNORE, reduction="none"
            )  # [B, T]
            loss_sum += float(losses[scored].sum())
            correct += int((logits.argmax(-1) == targets)[scored].sum())
            count += int(scored.sum())
            pos_loss += losses.cpu().sum(0)
            pos_count += scored.cpu().sum(0)
        self.model.train()
        seen = pos_count > 0
        lines = ["position,loss,count"] + [
            f"{p},{float(pos_loss[p] / pos_count[p])!r},{int(pos_count[p])}"
            for p in range(T)
            if seen[p]
        ]
        store.atomic_write_text(self.dir / "position_loss.csv", "\n".join(lines) + "\n")
        val_loss = loss_sum / max(count, 1)
        return {
            "val_loss": val_loss,
            "val_acc": correct / max(count, 1),
            "val_ppl": math.exp(min(val_loss, 50.0)),
        }

    # --- checkpoints and records -------------------------------------------------------
    def save(self):
        store.save_torch(
            {
                "model": self.model.state_dict(),
                "opt": self.opt.state_dict(),
                "sched": self.sched.state_dict(),
                "step": self.step,
                "tokens_seen": self.tokens_seen,
                "wall_s": self.wall_now(),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            self.dir / "ckpt.pt",
        )

    def load(self, path):
        ckpt = store.load_torch(path, map_location=self.device)
        self.model.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["opt"])
        self.sched.load_state_dict(ckpt["sched"])
        self.step, self.tokens_seen, self.wall_before = (
            ckpt["step"],
            ckpt["tokens_seen"],
            ckpt["wall_s"],
        )
        torch.set_rng_state(ckpt["torch_rng"].cpu())
        if ckpt["cuda_rng"]:
            torch.cuda.set_rng_state_all([s.cpu() for s in ckpt["cuda_rng"]])
        self.resumed_from = self.step

    def wall_now(self):
        return self.wall_before + time.perf_counter() - self.started_loop

    def summary_values(self) -> dict:
        """The figures of the summary, read back from metrics.csv (on any outcome)."""
        rows, torn = store.read_metrics_rows(self.dir / "metrics.csv")
        last = rows[-1] if rows else {}
        evals = [r for r in rows if r.get("val_loss")]
        values = {
            "step": self.step,
            "executed_steps": self.step - (self.resumed_from or 0),
            "resumed_from": self.resumed_from,
            "train_loss": _num(last.get("train_loss")),
            "wall_s": _num(last.get("wall_s")),
            "torn_metric_lines": torn,
        }
        if evals:
            values |= {k: _num(evals[-1][k]) for k in ("val_loss", "val_acc", "val_ppl")}
            best = min(evals, key=lambda r: float(r["val_loss"]))  # the early-stopping estimate
            values |= {
                "best_val_loss": _num(best["val_loss"]),
                "best_step": int(float(best["step"])),
            }
        values["lr"] = self.t.lr
        if self.t.criterion:  # censored at the cap: None when no evaluation reached it
            hit = next((r for r in evals if self.reached({k: _num(v) for k, v in r.items()})), None)
            values |= {
                "criterion": f"{self.t.criterion} {'>=' if self.t.criterion == 'val_acc' else '<='}"
                f" {self.t.target}",
                "steps_to_criterion": int(float(hit["step"])) if hit else None,
                "stopped_early": bool(hit) and int(float(hit["step"])) < self.t.steps,
            }
        return values

    def signals(self):
        return _StopOnSignal(self)


class _StopOnSignal:
    """SIGINT/SIGTERM ask the loop to stop at the next step boundary and checkpoint; a second
    signal falls through to the default behaviour. (Only the main thread may set handlers.)"""

    def __init__(self, run):
        self.run, self.saved = run, {}

    def __enter__(self):
        self.run.started_loop = time.perf_counter()
        if threading.current_thread() is threading.main_thread():
            # SIGUSR2: what SLURM/submitit send before a time limit or on preemption;
            # seqbench.launch.LaunchCallback hands it back to submitit once ckpt.pt is written
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2):
                self.saved[sig] = signal.signal(sig, self.handle)

    def handle(self, signum, frame):
        self.run.stop_signal = f"received {signal.Signals(signum).name}"
        for sig, old in self.saved.items():
            signal.signal(sig, old)

    def __exit__(self, *exc):
        for sig, old in self.saved.items():
            signal.signal(sig, old)
        return False


def _num(v):
    return float(v) if v not in (None, "") else None


def _show_progress(setting):
    return sys.stderr.isatty() if setting == "auto" else bool(setting)


def main(argv=None) -> int:
    """``python -m seqbench.train [overrides]``: one run, or a sweep with ``-m``."""
    from seqbench import cli

    return cli.main("train", argv)


def job(cfg: DictConfig) -> dict:
    """The Hydra task function of ``python -m seqbench.train`` (one job of a sweep)."""
    summary = train(cfg)
    line = {
        k: summary.get(k)
        for k in ("status", "step", "executed_steps", "val_loss", "val_acc", "run_dir")
    }
    print(f"seqbench: {line}", flush=True)
    reason = summary.get("error") or ""
    if summary["status"] == "interrupted" and ("SIGINT" in reason or "SIGTERM" in reason):
        # the run is checkpointed; Ctrl-C or a kill stops the sweep, not just this job.
        # (SIGUSR2, a cluster's preemption notice, returns: seqbench.launch requeues the job)
        sys.exit(128 + (signal.SIGTERM if "SIGTERM" in reason else signal.SIGINT))
    return summary


if __name__ == "__main__":
    # Run the importable module, not __main__: the joblib and submitit launchers pickle the
    # task function, and a function of __main__ is pickled by value with all it reaches
    # (torch.backends is not picklable: "cannot pickle 'GenericModule' object").
    from seqbench.train import main as _main

    sys.exit(_main())
