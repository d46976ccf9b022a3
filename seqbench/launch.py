"""Launching sweeps: torch threads per job, handing a preemption back to the cluster, ending
the workers a dead launch leaves behind, and the signal handling of every run
(``stop_on_signals``).

The first two live in one Hydra callback, ``LaunchCallback``, that runs inside every job
process (enable it under ``hydra.callbacks`` in conf/config.yaml, or on the command line with
``++hydra.callbacks.launch._target_=seqbench.launch.LaunchCallback``).

Threads (on job start). Torch's intra-op pool defaults to every core, so N parallel jobs would
start N x cores threads that fight for the cores. The callback reads the running launcher:

    joblib (hydra/launcher=local|joblib)      cores // n_jobs   (n_jobs < 0: joblib's rule,
                                                                 cores + 1 + n_jobs workers)
    submitit (hydra/launcher=slurm|slurm_local)  cpus_per_task  (what the scheduler granted)
    anything else                             torch's default (one job at a time)

and sets ``torch.set_num_threads`` unless ``train.threads`` is given (the harness applies that
after us). ``cores`` is the CPUs this process may use (``os.sched_getaffinity``: cgroups and
cpusets count, the machine's total does not). The split is a property of the launch, not of
the computation, so it stays out of the config and out of the run's content key; the run
records the threads it actually had (run.json ``env.threads``).

Requeue (on job end). On SLURM, submitit asks sbatch for USR2 ``signal_delay_s`` before the
time limit and handles it by calling the launcher's ``checkpoint()`` (hydra-submitit-launcher
resubmits the same job) and requeueing. The harness resumes any run from its ckpt.pt, so a
requeued job continues from the last checkpoint. When the harness also catches USR2 (finish
the step, write ckpt.pt, return ``interrupted``), ``hand_back_preemption`` raises the signal
again once the job function has returned, and submitit's handler, which the harness restored
on its way out, requeues the job: no step is lost.

Orphans. A joblib (loky) worker does not notice that the process that launched the sweep has
died (killed, or its terminal closed): it would go on training, unseen, on cores someone else
now uses. Every job of every entry point runs through ``seqbench.cli.Job``, which in a worker
(a child of the launching process, named in SEQBENCH_LAUNCH_PID) starts ``watch_parent``: a
daemon thread that, once the worker's parent pid changes (it was re-parented: the parent is
gone), sends the worker SIGTERM (a run finishes its step, writes ckpt.pt and records
``interrupted``, so a relaunch resumes it) and ends the process as soon as its job has
returned, or ``GRACE_S`` later whatever it is doing.
"""

import os
import signal
import threading
import time
from contextlib import contextmanager

from hydra.core.utils import JobStatus
from hydra.experimental.callback import Callback

PREEMPT_SIGNAL = "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")  # submitit's choice
LAUNCH_PID = "SEQBENCH_LAUNCH_PID"  # set by seqbench.cli.launch in the launching process
WATCH_S = 0.5  # how often a worker looks at its parent pid
GRACE_S = 30.0  # SIGTERM, then this long to checkpoint, then the worker ends


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS has no affinity API
        return os.cpu_count() or 1


def split_threads(launcher: dict, n_cores: int) -> int | None:
    """Torch threads for one job under ``launcher`` (the hydra.launcher node) on n_cores."""
    target = str(launcher.get("_target_", "")).lower()
    if "joblib" in target:
        n_jobs = int(launcher.get("n_jobs") or 1)
        workers = n_cores + 1 + n_jobs if n_jobs < 0 else n_jobs  # joblib: -1 = every core
        return max(1, n_cores // max(1, min(workers, n_cores)))
    if "submitit" in target:
        cpus = launcher.get("cpus_per_task")
        return int(cpus) if cpus else None
    return None


def threads_per_job() -> int | None:
    """The split for the Hydra job running in this process (None outside a Hydra job)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    if not HydraConfig.initialized():
        return None
    return split_threads(OmegaConf.to_container(HydraConfig.get().launcher), cores())


def hand_back_preemption(summary) -> bool:
    """If the run stopped because of the cluster's preemption/time-out signal, raise that
    signal again now that ckpt.pt is written, so submitit requeues the job. Does nothing for
    a run that finished, failed, or was stopped by Ctrl-C or scancel's SIGTERM, or outside
    a submitit job. Returns whether it signalled."""
    if not isinstance(summary, dict) or summary.get("status") != "interrupted":
        return False
    if PREEMPT_SIGNAL not in str(summary.get("error") or ""):
        return False
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return False  # not a submitit job: nobody to requeue it
    os.kill(os.getpid(), getattr(signal, PREEMPT_SIGNAL))
    return True


_idle = threading.Event()  # set while this process runs no job (an orphan then ends at once)
_idle.set()


@contextmanager
def job_running():
    """Marks the block as a job of this process, for the orphan watchdog."""
    _idle.clear()
    try:
        yield
    finally:
        _idle.set()


def watch_parent(interval=WATCH_S, grace=GRACE_S) -> threading.Thread | None:
    """In a worker process of the launch (its parent is the process SEQBENCH_LAUNCH_PID
    names), start the orphan watchdog once; returns it (None elsewhere: the launching
    process itself, a SLURM job, a plain python call)."""
    launcher = os.environ.get(LAUNCH_PID, "")
    parent = os.getppid()
    if not launcher.isdigit() or int(launcher) != parent or os.getpid() == parent:
        return None
    for thread in threading.enumerate():  # a worker runs many jobs: one watchdog
        if thread.name == "seqbench-watch-parent":
            return thread

    def watch():
        while os.getppid() == parent:
            time.sleep(interval)
        os.kill(os.getpid(), signal.SIGTERM)  # the main thread checkpoints and returns
        _idle.wait(grace)
        os._exit(128 + signal.SIGTERM)

    thread = threading.Thread(target=watch, name="seqbench-watch-parent", daemon=True)
    thread.start()
    return thread


@contextmanager
def stop_on_signals(handler, signals=(signal.SIGINT, signal.SIGTERM)):
    """Inside the block, each of ``signals`` calls ``handler(signum)`` (which may set a flag
    the loop reads, or raise) in place of its usual handler; the first one puts the usual
    handlers back, so a second signal does what it always does (Ctrl-C twice stops at
    once). The one home of seqbench's signal handling (training, measurements, the bench).
    Only the main thread may set handlers: elsewhere the block runs without them."""
    saved = {}

    def handle(signum, frame):
        for sig, old in saved.items():
            signal.signal(sig, old)
        handler(signum)

    if threading.current_thread() is threading.main_thread():
        for sig in signals:
            saved[sig] = signal.signal(sig, handle)
    try:
        yield
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)


class LaunchCallback(Callback):
    def on_job_start(self, config, **kwargs) -> None:
        import torch

        threads = threads_per_job()
        explicit = (config.get("train") or {}).get("threads")
        if threads and not explicit:
            torch.set_num_threads(threads)

    def on_job_end(self, config, job_return, **kwargs) -> None:
        if job_return.status == JobStatus.COMPLETED:
            hand_back_preemption(job_return.return_value)
