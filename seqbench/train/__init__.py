"""The one next-token training harness (C1): every model and every task goes through here.

    python -m seqbench.train model=lstm data=lag_recall data.distance=32 train.steps=300
    python -m seqbench.train -m model=rnn,lstm,gru,transformer seed=0,1

``train(cfg) -> summary`` is a plain function (tests call it) that receives a validated
config; ``python -m seqbench.train`` (train/__main__.py) belongs to the entry layer
(seqbench.cli). One loop for every model: AdamW (or plain SGD, ``train.optimizer``) with
linear warm-up and cosine decay (constant after the warm-up when a criterion may stop the
run: a decay tied to the cap would hide a late breakout), gradient clipping, periodic held-out
evaluation, and
optionally the lr divided by ``train.plateau_factor`` whenever an evaluation fails to beat
the best; the data order is a function of the step alone. ``train.budget`` multiplies the
step cap (the full profile's 4x runs); ``train.lr_step`` trains at a neighbour of the
calibrated rate (seqbench.calibrate). Failures are contained: a run
ends ``complete``, ``diverged``, ``oom``, ``interrupted`` or ``failed``, its files stay
readable, and the function returns normally so a sweep goes on. A rerun skips complete runs
and resumes the others from their checkpoint. A finished run records why it stopped
(``stop_reason``: criterion, converged or cap, and ``censored``: seqbench.evaluate.stop_reason,
the rule the report applies to runs recorded before the field); the loop never acts on it.

A run is ``diverged`` when its loss or gradient is not finite, or when a logged training loss
is above DIVERGED_ABOVE x max(ln vocab, the loss of its first step): a model that does that
much worse than a uniform guess has left training, whatever number it still prints. A
checkpoint carries the run's content key, seed and step and is resumed only when they are
this run's; one that is not, or cannot be loaded, is set aside (runs.set_aside_files) and the
run starts over. A complete run is skipped only while its corpus still has the sha256 it read.

Text corpora (seqbench.data.text) add the language-modelling protocol: with
``data.stream=true`` the batches are consecutive windows of the corpus, and the model's state
is carried from one window to the next and detached (truncated BPTT, Williams & Peng 1990;
Zaremba et al. 2014) through the one contract ``forward(tokens, state)``; evaluation then
reads the whole held-out stream the same way. Which state can be carried is asked of the model
by what it returns (``carries_state``), never of its name or family: a state of fixed size (a
recurrent hidden state, a running sum) is carried; one that grows with the tokens read (the
Transformer's KV cache) is not, and such a model reads every window fresh, its fixed window.
Every text run ends with the valid (and, from a corpus folder, test) loss and perplexity over
the whole stream (``val_stream_ppl``, ``test_stream_ppl``).
"""

import math
import signal
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from seqbench import runs, store
from seqbench.calibrate import calibrate
from seqbench.config import _build_task, build_model, build_task, describe_model
from seqbench.data.text import Text
from seqbench.env import autocast, pick_device, set_deterministic, show_progress
from seqbench.evaluate import eval_history, held_out, stop_reason, stream_loss
from seqbench.launch import stop_on_signals
from seqbench.models import param_counts
from seqbench.runs import Diverged, first_line
from seqbench.step import carries_state, detach, make_optimizer, train_step

COLUMNS = (
    "step tokens_seen wall_s train_loss lr grad_norm tokens_per_s val_loss val_acc val_ppl"
).split()
TIMING_COLUMNS = ("wall_s", "tokens_per_s")  # the only columns allowed to differ between reruns
DIVERGED_ABOVE = 2.0  # x max(ln vocab, first step's loss): a logged loss above it has diverged


class ForeignCheckpoint(ValueError):
    """A checkpoint whose key, seed or step is not this run's (copied from another run)."""


def train(cfg: DictConfig) -> dict:
    """Train one run (or skip it when complete, or resume it); returns its summary. With
    ``train.lr_grid`` the learning rate is first calibrated (``calibrate``). ``cfg`` is a
    validated config (seqbench.cli.validate_job checks every job before it runs; a library
    caller calls it first): the harness trusts it, and keeps only the guards that building
    and recording need anyway (each node's keys as its class is built, a run directory that
    stays inside out_dir)."""
    task = _task(cfg)
    parts = [runs.model_part(cfg), runs.task_part(cfg)]

    def body(record):
        calibration = calibrate(cfg, train)
        if calibration:
            record.fields["lr_calibration"] = calibration
        return Run(cfg, task, record, lr=calibration and calibration["used"]).execute()

    def data_problem(record):  # a stored run that read other data than this config reads now
        recorded = record.get("data")
        return task.changed_since(recorded) if isinstance(recorded, dict) else None

    return runs.execute(cfg, "train", parts, body, resume=True, check=data_problem)


def _task(cfg: DictConfig):
    """The run's task, built once per process; read again when its corpus changed since."""
    task = build_task(cfg.data)
    if task.stale():
        _build_task.cache_clear()
        task = build_task(cfg.data)
    return task


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
    task = _task(cfg)
    device = pick_device(cfg.device) if device is None else device
    model = build_model(cfg.model, task.vocab_size, device)
    state = store.load_torch(Path(summary["run_dir"]) / "model.pt", map_location=device)
    model.load_state_dict(state)
    return model, summary


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
        scaled(self.t)  # train.budget: the step cap as a multiple of the experiment's
        self.device = record.device
        self.stop_signal = None
        self.step, self.resumed_from, self.tokens_seen, self.wall_before = 0, None, 0, 0.0
        self.best, self.since_best = math.inf, 0  # early stopping (train.patience)
        self.best_weights = None  # with train.patience: the weights of the best evaluation
        self.anneal, self.anneals = 1.0, 0  # lr multiplier from plateaus (train.plateau_factor)
        self.state = None  # what the last training window left (data.stream=true)
        self.start_loss = None  # the loss of the first step: the divergence limit scales with it
        self.final, self.last_stream_val = {}, None  # the whole-stream figures at the end
        self.finished = False  # the loop ended by itself: criterion, early stopping or cap
        self.started_loop = time.perf_counter()
        record.summarize = self.summary_values

    # --- set-up ------------------------------------------------------------------------
    def build(self):
        if self.t.threads:
            torch.set_num_threads(self.t.threads)
        if self.t.deterministic:
            set_deterministic()
        self.initialise()
        self.autocast = autocast(self.device)
        self.clip = self.t.grad_clip if self.t.grad_clip else float("inf")
        self.first_bad = torch.tensor(-1, device=self.device)  # checked lazily: no sync a step
        # a text corpus: whole-stream evaluation, and with data.stream=true its stream batches
        self.text = self.task if isinstance(self.task, Text) else None
        self.stream = bool(self.text and self.text.stream)
        self.carry = self.stream and carries_state(self.model, self.device)
        self.resume(self.dir / "ckpt.pt")
        # rows logged after the checkpoint (or after step 0 when there is none) are redone
        self.metrics = store.MetricsLog(self.dir / "metrics.csv", COLUMNS)
        self.metrics.truncate_after(self.step)
        for row in store.read_metrics_rows(self.dir / "metrics.csv")[0]:  # patience, plateaus
            if row.get("val_loss"):  # the weights of those steps are gone: the checkpoint's
                self.observe(float(row["val_loss"]), keep=False)  # best_weights stand
        data = self.task.fingerprint()
        self.record.fields |= describe_model(self.model, self.cfg.model) | {
            "params": param_counts(self.model),
            "data": data,
        }
        if self.text:
            self.record.fields["stream"] = {"batches": self.stream, "state_carried": self.carry}
        if data.get("unk_from_cap"):  # a capped vocabulary silently changes the task: say so
            print(
                f"seqbench: data.vocab_size={self.task.vocab_size} maps "
                f"{data['unk_from_cap']:.1%} of the training tokens to <unk> "
                "(data.vocab_size=null keeps every token type)",
                file=sys.stderr,
            )

    def initialise(self):
        """Model, optimiser and schedule at step 0: the same every time (seeded), so a run
        that starts over after a refused checkpoint is the run that never had one."""
        torch.manual_seed(self.cfg.seed)  # model init; the data follows data.seed (= seed)
        self.model = build_model(self.cfg.model, self.task.vocab_size, self.device)
        self.params = list(self.model.parameters())
        self.opt = make_optimizer(self.params, self.t, self.device)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, self.lr_factor)
        self.forward = torch.compile(self.model) if self.t.compile else self.model
        self.step, self.resumed_from, self.tokens_seen, self.wall_before = 0, None, 0, 0.0
        self.state, self.start_loss = None, None

    def resume(self, ckpt: Path):
        """Continue from ckpt.pt when it is this run's. One whose bytes fail their checksum
        is kept beside it (ckpt.pt.corrupt-<n>); one of another run (key, seed, step) or one
        that cannot be loaded (a refused pickle, other weights, not a file) is set aside with
        the run's files (untrusted-<n>/). Either way the run starts over and run.json says why."""
        if not (ckpt.exists() or ckpt.is_symlink()):
            return
        try:
            self.load(ckpt)
        except store.CorruptFile as e:
            kept = store.set_aside(ckpt)
            self.record.fields["recovered"] = f"{e}; kept as {kept.name}; restarted at 0"
            self.initialise()
        except Exception as e:
            if runs.out_of_memory(e):  # no fault of the file: the run ends oom
                raise
            why = str(e) if isinstance(e, ForeignCheckpoint) else first_line(e)
            reason = f"ckpt.pt: {why}"
            self.record.fields["recovered"] = runs.set_aside_files(self.dir, reason)
            self.initialise()

    def lr_factor(self, step):
        """Linear warm-up to 1, then cosine down to min_lr_frac at the last step (warmup=0 and
        min_lr_frac=1: constant), times the plateau annealing so far."""
        warm, total, floor = self.t.warmup, self.t.steps, self.t.min_lr_frac
        if self.t.criterion:  # constant after warm-up: a decay at the cap hides a late breakout
            floor = 1.0
        if step < warm:
            return (step + 1) / warm * self.anneal
        progress = (step - warm) / max(1, total - warm)
        cosine = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        return cosine * self.anneal

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
            disable=not show_progress(t.progress),
            desc=self.dir.name,
            leave=False,
        )
        clock, span_tokens = time.perf_counter(), 0
        self.model.train()
        while self.step < t.steps and not self.stop_signal:
            if self.carry and self.text.starts_pass(self.step, t.batch_size):
                self.state = None  # a new pass over the stream starts from the zero state
            tokens, targets = task.batch("train", self.step, t.batch_size)
            loss, grad_norm = self.train_step(tokens.to(device), targets.to(device))
            if self.start_loss is None:  # one host sync, once: where training started
                self.start_loss = loss.item()
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
            if row["train_loss"] > self.loss_limit():  # finite, and far above the start
                raise Diverged(
                    f"train loss {row['train_loss']:.4g} at step {self.step} is above "
                    f"{self.loss_limit():.4g} = {DIVERGED_ABOVE:g} x max(ln vocab, the first "
                    f"step's loss {self.start_loss:.4g})"
                )
            if eval_now and (self.reached(row) or self.observe(row["val_loss"], keep=True)):
                break  # a criterion reached, or no new best for train.patience evaluations
            if self.step % t.ckpt_every == 0 and self.step < t.steps:
                self.save()
            bar.set_postfix(loss=f"{row['train_loss']:.3f}")
            clock, span_tokens = time.perf_counter(), 0
        bar.close()
        if self.stop_signal:
            self.save()
            return
        self.finished = True
        if self.best_weights is not None:  # early stopping: the model is its best evaluation's
            self.model.load_state_dict(self.best_weights)
            self.last_stream_val = None  # the last evaluation scored later weights
            self.record.fields["weights"] = "best held-out loss (train.patience)"
        # the trained weights, for generation and measurements on trained models
        store.save_torch(self.model.state_dict(), self.dir / "model.pt")
        if self.text and (self.stream or self.text.has_splits):
            # the language-modelling protocol asked for (stream batches, or a corpus with its
            # own valid/test files): the published figures, over the whole held-out streams
            self.final = self.final_evaluation()

    def loss_limit(self) -> float:
        """Above this a logged training loss has diverged: DIVERGED_ABOVE times the larger
        of ln(vocab), a uniform guess's loss, and the loss the run started from."""
        return DIVERGED_ABOVE * max(math.log(self.task.vocab_size), self.start_loss or 0.0)

    def observe(self, val_loss, keep: bool) -> bool:
        """One held-out loss: track the best (with train.patience and ``keep``, a copy of its
        weights: model.pt is the best evaluation's, as early stopping means, so a test figure
        scores the model the held-out set chose); without a new best, divide the lr by
        train.plateau_factor (pytorch/examples divides by 4); True once train.patience
        evaluations passed without a new best (early stopping)."""
        if val_loss < self.best:
            self.best, self.since_best = val_loss, 0
            if keep and self.t.patience is not None:
                self.best_weights = {k: v.detach().to("cpu", copy=True)
                                     for k, v in self.model.state_dict().items()}  # fmt: skip
        else:
            self.since_best += 1
            if self.t.plateau_factor:
                self.anneal /= self.t.plateau_factor
                self.anneals += 1
        return self.t.patience is not None and self.since_best >= self.t.patience

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
        loss, grad_norm, state = train_step(
            self.forward,
            self.params,
            self.opt,
            tokens,
            targets,
            self.clip,
            self.autocast,
            self.state if self.carry else None,
        )
        if self.carry:  # truncated BPTT: the next window starts from here, without its history
            self.state = detach(state)
        if self.step == self.t.inject_nan_at:  # fault injection for the reliability tests
            loss = loss * float("nan")
        finite = torch.isfinite(loss) & torch.isfinite(grad_norm)
        self.first_bad = torch.where((self.first_bad < 0) & ~finite, self.step, self.first_bad)
        self.sched.step()
        self.step += 1
        return loss, grad_norm

    def evaluate(self) -> dict:
        """Held-out loss, accuracy and perplexity (seqbench.evaluate), and the loss at each
        context position (position_loss.csv: the last evaluation's is what a run leaves).
        With data.stream=true: the whole held-out stream, read as training reads it."""
        if self.stream:
            loss, acc = self.stream_loss(self.text.streams["val"])
            self.last_stream_val = (self.step, loss, acc)
            return {"val_loss": loss, "val_acc": acc, "val_ppl": math.exp(min(loss, 50.0))}
        metrics, positions = held_out(
            self.model, self.task, self.t.eval_batches, self.t.batch_size, self.device
        )
        store.atomic_write_text(self.dir / "position_loss.csv", positions)
        return metrics

    def stream_loss(self, ids) -> tuple[float, float]:
        B = self.t.eval_batch_size or self.t.batch_size
        return stream_loss(self.model, ids, B, self.task.seq_len, self.device, self.carry)

    def final_evaluation(self) -> dict:
        """Loss and perplexity over the whole valid and test streams (the figures published
        for WikiText and PTB); the last evaluation already read the valid one in stream mode."""
        out = {}
        for split, ids in self.text.eval_streams().items():
            if split == "val" and self.last_stream_val and self.last_stream_val[0] == self.step:
                loss, acc = self.last_stream_val[1:]
            else:
                loss, acc = self.stream_loss(ids)
            out |= {
                f"{split}_stream_loss": loss,
                f"{split}_stream_acc": acc,
                f"{split}_stream_ppl": math.exp(min(loss, 50.0)),
            }
        return out

    # --- checkpoints and records -------------------------------------------------------
    def save(self):
        store.save_torch(
            {
                "key": self.record.key,  # whose checkpoint this is: checked on load
                "seed": self.cfg.seed,
                "start_loss": self.start_loss,
                "model": self.model.state_dict(),
                "opt": self.opt.state_dict(),
                "sched": self.sched.state_dict(),
                "step": self.step,
                "tokens_seen": self.tokens_seen,
                "state": self.state,  # the carried state (data.stream=true), or None
                "best_weights": self.best_weights,  # train.patience: the best evaluation's
                "wall_s": self.wall_now(),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            self.dir / "ckpt.pt",
        )

    def load(self, path):
        ckpt = store.load_torch(path, map_location=self.device)
        self.check_checkpoint(ckpt)
        self.model.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["opt"])
        self.sched.load_state_dict(ckpt["sched"])
        self.step, self.tokens_seen, self.wall_before = (
            ckpt["step"],
            ckpt["tokens_seen"],
            ckpt["wall_s"],
        )
        self.state = ckpt.get("state")  # absent in checkpoints from before data.stream
        self.best_weights = ckpt.get("best_weights")  # absent before early stopping kept them
        self.start_loss = ckpt["start_loss"]
        torch.set_rng_state(ckpt["torch_rng"].cpu())
        if ckpt["cuda_rng"]:
            torch.cuda.set_rng_state_all([s.cpu() for s in ckpt["cuda_rng"]])
        self.resumed_from = self.step

    def check_checkpoint(self, ckpt) -> None:
        """Raise ForeignCheckpoint unless ckpt is this run's: its content key and seed, and
        a step inside its budget."""
        if not isinstance(ckpt, dict):
            raise ForeignCheckpoint("not a checkpoint (not a mapping)")
        key, seed, step = ckpt.get("key"), ckpt.get("seed"), ckpt.get("step")
        if key != self.record.key or seed != self.cfg.seed:
            raise ForeignCheckpoint(
                f"the checkpoint of another run (key {str(key)[:12]}, seed {seed}), not of "
                f"this one (key {self.record.key[:12]}, seed {self.cfg.seed})"
            )
        if not (isinstance(step, int) and 0 < step <= self.t.steps):
            raise ForeignCheckpoint(f"step {step!r} is outside this run's 1..{self.t.steps}")

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
            "metric_rows": len(rows),  # a skip checks metrics.csv still holds them all
        }
        if evals:
            values |= {k: _num(evals[-1][k]) for k in ("val_loss", "val_acc", "val_ppl")}
            best = min(evals, key=lambda r: float(r["val_loss"]))  # the early-stopping estimate
            values |= {
                "best_val_loss": _num(best["val_loss"]),
                "best_step": int(float(best["step"])),
            }
        values["lr"] = self.t.lr
        if self.t.plateau_factor:
            values["lr_anneals"] = self.anneals  # evaluations that divided the lr
        values |= self.final  # val_stream_ppl, test_stream_ppl, ... (text corpora)
        if self.t.criterion:  # censored at the cap: None when no evaluation reached it
            hit = next((r for r in evals if self.reached({k: _num(v) for k, v in r.items()})), None)
            values |= {
                "criterion": f"{self.t.criterion} {'>=' if self.t.criterion == 'val_acc' else '<='}"
                f" {self.t.target}",
                "steps_to_criterion": int(float(hit["step"])) if hit else None,
                "stopped_early": bool(hit) and int(float(hit["step"])) < self.t.steps,
            }
        if self.finished:  # why it stopped: the rule the report applies to older runs too
            reached = values.get("steps_to_criterion") is not None
            data = self.record.fields.get("data")
            values |= stop_reason(eval_history(evals), self.t.steps, reached, data)
        return values

    def signals(self):
        """SIGINT/SIGTERM (and SIGUSR2: what SLURM/submitit send before a time limit or on
        preemption) ask the loop to stop at the next step boundary and checkpoint;
        seqbench.launch.LaunchCallback hands SIGUSR2 back to submitit once ckpt.pt is written."""
        self.started_loop = time.perf_counter()
        return stop_on_signals(self.stop, (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2))

    def stop(self, signum):
        self.stop_signal = f"received {signal.Signals(signum).name}"


def scaled(t) -> SimpleNamespace:
    """``t`` (train settings) with steps multiplied by ``t.budget`` (1 in the experiments; the
    full profile's longer runs say 4). Evaluations keep their interval, so steps to a criterion
    are read at the same resolution at every budget; the warm-up and the lr are unchanged."""
    t.steps *= getattr(t, "budget", 1) or 1
    return t


def _num(v):
    return float(v) if v not in (None, "") else None


def job(cfg: DictConfig) -> dict:
    """The Hydra task function of ``python -m seqbench.train`` (one job of a sweep)."""
    summary = train(cfg)
    keys = ("status", "step", "executed_steps", "val_loss", "val_acc")
    line = {k: summary.get(k) for k in keys}
    line |= {k: summary[k] for k in ("val_stream_ppl", "test_stream_ppl") if k in summary}
    line["run_dir"] = summary.get("run_dir")
    print(f"seqbench: {line}", flush=True)
    reason = summary.get("error") or ""
    if summary["status"] == "interrupted" and ("SIGINT" in reason or "SIGTERM" in reason):
        # the run is checkpointed; Ctrl-C or a kill stops the sweep, not just this job.
        # (SIGUSR2, a cluster's preemption notice, returns: seqbench.launch requeues the job)
        sys.exit(128 + (signal.SIGTERM if "SIGTERM" in reason else signal.SIGINT))
    return summary
