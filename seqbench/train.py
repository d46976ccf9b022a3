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
import platform
import signal
import subprocess
import sys
import threading
import time
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace

import hydra
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from seqbench import store
from seqbench.config import CONF_DIR, ConfigError, build_model, preflight, validate
from seqbench.data import IGNORE
from seqbench.models import param_counts

COLUMNS = (
    "step",
    "tokens_seen",
    "wall_s",
    "train_loss",
    "lr",
    "grad_norm",
    "tokens_per_s",
    "val_loss",
    "val_acc",
    "val_ppl",
)
TIMING_COLUMNS = ("wall_s", "tokens_per_s")  # the only columns allowed to differ between reruns


class Diverged(Exception):
    pass


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def run_name(cfg: DictConfig, key: str) -> str:
    model = cfg.model._target_.rsplit(".", 1)[-1].lower()
    data = cfg.data._target_.rsplit(".", 1)[-1].lower()
    return f"{cfg.study}-{model}-{data}-{key[:12]}"


def train(cfg: DictConfig) -> dict:
    task = validate(cfg)  # raises ConfigError before anything is built or written
    key = store.content_key(cfg)
    run_dir = Path(cfg.out_dir) / run_name(cfg, key)
    run_dir.mkdir(parents=True, exist_ok=True)
    with store.claimed(run_dir) as busy:
        if busy:
            return busy
        done = store.previous_summary(run_dir, cfg.fresh)
        if done:
            return done | {"executed_steps": 0}
        if cfg.fresh:
            for f in ("run.json", "metrics.csv", "ckpt.pt", "model.pt", "position_loss.csv"):
                (run_dir / f).unlink(missing_ok=True)
        return Run(cfg, task, key, run_dir).execute()


class Run:
    """One training run inside its directory; ``execute`` never raises for run failures."""

    def __init__(self, cfg, task, key, run_dir):
        self.cfg, self.task, self.key, self.dir = cfg, task, key, Path(run_dir)
        # a plain namespace: reading a DictConfig attribute costs ~10 us and the loop reads
        # about a dozen per step (see the _tiny rows of python -m seqbench.perf)
        self.t = SimpleNamespace(**OmegaConf.to_container(cfg.train, resolve=True))
        self.device = pick_device(cfg.device)
        self.stop_signal = None

    # --- set-up ------------------------------------------------------------------------
    def build(self):
        if self.t.threads:
            torch.set_num_threads(self.t.threads)
        if self.t.deterministic:
            set_deterministic()
        torch.manual_seed(self.cfg.seed)  # model init; the data has its own data.seed
        self.model = build_model(self.cfg.model, self.task.vocab_size, self.device)
        fused = self.device.type == "cuda"
        self.opt = torch.optim.AdamW(
            self.model.parameters(),
            lr=self.t.lr,
            betas=tuple(self.t.betas),
            weight_decay=self.t.weight_decay,
            fused=fused or None,
        )
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, self.lr_factor)
        self.forward = torch.compile(self.model) if self.t.compile else self.model
        self.autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if self.device.type == "cuda"
            else nullcontext()
        )
        self.first_bad = torch.tensor(-1, device=self.device)  # checked lazily: no sync a step
        self.step, self.tokens_seen, self.wall_before = 0, 0, 0.0
        ckpt = self.dir / "ckpt.pt"
        if ckpt.exists():
            self.load(ckpt)
        self.metrics = store.MetricsLog(self.dir / "metrics.csv", COLUMNS)
        if self.step:
            self.metrics.truncate_after(self.step)

    def lr_factor(self, step):
        """Linear warm-up to 1, then cosine down to min_lr_frac at the last step."""
        warm, total, floor = self.t.warmup, self.t.steps, self.t.min_lr_frac
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total - warm)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    # --- the loop ----------------------------------------------------------------------
    def execute(self) -> dict:
        self.started = time.time()
        try:
            self.build()
            self.write_record("running")
            with self.signals():
                self.loop()
            status, error = (
                ("interrupted", self.stop_signal) if self.stop_signal else ("complete", None)
            )
        except Diverged as e:
            status, error = "diverged", str(e)
        except torch.OutOfMemoryError as e:
            status, error = "oom", str(e).splitlines()[0]
        except ConfigError:
            raise
        except Exception as e:  # contained: the sweep goes on, the reason is recorded
            status, error = (
                "failed",
                f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
            )
        return self.write_record(status, error)

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
                row |= self.evaluate(final=self.step == t.steps)
            row["wall_s"] = self.wall_before + time.perf_counter() - self.started_loop
            self.metrics.append(row)
            if self.step % t.ckpt_every == 0 and self.step < t.steps:
                self.save()
            bar.set_postfix(loss=f"{row['train_loss']:.3f}")
            clock, span_tokens = time.perf_counter(), 0
        bar.close()
        if self.stop_signal:
            self.save()
        else:  # the trained weights, for generation and measurements on trained models
            store.atomic_torch_save(self.model.state_dict(), self.dir / "model.pt")

    def train_step(self, tokens, targets):
        """One optimisation step on one batch -> (loss, grad_norm), both left on the device;
        a non-finite value is recorded in self.first_bad without a host sync (the loop reads
        it when it logs). seqbench.perf times exactly this against a bare PyTorch loop."""
        t = self.t
        with self.autocast:
            logits, _ = self.forward(tokens)  # [B, T, V]
            loss = F.cross_entropy(
                logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE
            )
        if t.inject_nan_at is not None and self.step == t.inject_nan_at:
            loss = loss * float("nan")  # fault-injection hook for the reliability tests
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        clip = t.grad_clip if t.grad_clip else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        finite = torch.isfinite(loss) & torch.isfinite(grad_norm)
        self.first_bad = torch.where((self.first_bad < 0) & ~finite, self.step, self.first_bad)
        self.opt.step()
        self.sched.step()
        self.step += 1
        return loss, grad_norm

    @torch.no_grad()
    def evaluate(self, final=False) -> dict:
        """Held-out loss, accuracy and perplexity over the scored positions; on the final
        evaluation also the mean loss at each position in the context (C5, Kaplan Fig. 7)."""
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
        if final:
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
        store.atomic_torch_save(
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
        ckpt = torch.load(path, map_location=self.device, weights_only=True)
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
        return self.wall_before + time.perf_counter() - getattr(self, "started_loop", 0.0)

    def write_record(self, status, error=None) -> dict:
        rows, torn = store.read_metrics_rows(self.dir / "metrics.csv")
        last = rows[-1] if rows else {}
        evals = [r for r in rows if r.get("val_loss")]
        summary = {
            "status": status,
            "error": error,
            "key": self.key,
            "run_dir": str(self.dir),
            "study": self.cfg.study,
            "step": getattr(self, "step", 0),
            "executed_steps": getattr(self, "step", 0) - getattr(self, "resumed_from", 0),
            "resumed_from": getattr(self, "resumed_from", None),
            "train_loss": _num(last.get("train_loss")),
            "wall_s": _num(last.get("wall_s")),
            "torn_metric_lines": torn,
        }
        if evals:
            summary |= {k: _num(evals[-1][k]) for k in ("val_loss", "val_acc", "val_ppl")}
        record = {
            "status": status,
            "key": self.key,
            "summary": summary,
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            "model_hparams": _model_hparams(getattr(self, "model", None)),
            "params": param_counts(self.model) if hasattr(self, "model") else None,
            "data": self.task.fingerprint(),
            "env": environment(self.device),
            "started": self.started,
            "finished": time.time() if status != "running" else None,
        }
        store.atomic_write_json(self.dir / "run.json", record)
        return summary

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


def set_deterministic():
    """Bitwise-reproducible kernels where PyTorch has them. CUBLAS_WORKSPACE_CONFIG must be set
    before CUDA initialises, so main() also exports it when the flag is on."""
    import os

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def environment(device) -> dict:
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                cwd=Path(__file__).parent,
                timeout=5,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.TimeoutExpired):
        commit = None
    env = {
        "device": str(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "threads": torch.get_num_threads(),
        "git_commit": commit,
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def _cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _model_hparams(model):
    if model is None:
        return None
    keys = ("d_model", "n_layers", "impl", "pos", "causal", "max_len")
    return {k: getattr(model, k) for k in keys if hasattr(model, k)}


def _num(v):
    return float(v) if v not in (None, "") else None


def _show_progress(setting):
    return sys.stderr.isatty() if setting == "auto" else bool(setting)


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base=None)
def _hydra_main(cfg: DictConfig) -> dict:
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


def main():
    preflight(sys.argv[1:])
    _hydra_main()


if __name__ == "__main__":
    # Run the importable module, not __main__: the joblib and submitit launchers pickle the
    # task function, and a function of __main__ is pickled by value with all it reaches
    # (torch.backends is not picklable: "cannot pickle 'GenericModule' object").
    from seqbench.train import main as _main

    _main()
