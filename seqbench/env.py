"""Where a run executes: device choice, autocast, synchronisation and the machine's record.

Training, every measurement and the perf benchmark ask this module, so a timing on CUDA is
always synchronised the same way, every run.json describes its machine the same way
(``environment``) and every timed row names its hardware the same way (``hardware``).
"""

import functools
import os
import platform
import subprocess
from contextlib import nullcontext
from pathlib import Path

import torch


def pick_device(name: str) -> torch.device:
    """``auto`` -> cuda > mps > cpu; anything else as torch spells it (cpu, cuda:1, mps)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def device_name(device) -> str:
    """The accelerator's marketing name (``NVIDIA H200``), or ``cpu``/``mps``."""
    device = torch.device(device)
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type


def autocast(device):
    """The precision recipe every timed or trained step uses: bf16 autocast on CUDA, fp32
    elsewhere (CPU autocast is slower than fp32 for these sizes)."""
    if torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def dtype_label(device) -> str:
    return "bf16-autocast" if torch.device(device).type == "cuda" else "fp32"


def show_progress(setting) -> bool:
    """A progress bar (train.progress): ``auto`` shows it only on a terminal."""
    import sys

    return sys.stderr.isatty() if setting == "auto" else bool(setting)


def sync(device) -> None:
    """Wait for queued kernels: a CUDA timer without this measures the launch, not the work."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def set_deterministic() -> None:
    """Bitwise-reproducible kernels where PyTorch has them. CUBLAS_WORKSPACE_CONFIG must be
    set before CUDA initialises, so this runs before the model is built."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


HARDWARE = ("threads", "device", "device_name", "torch", "cuda", "dtype")  # in a table's order


def hardware(device, columns=HARDWARE, named=False) -> dict:
    """The ``columns`` (from HARDWARE) that say what a timed row ran on, recorded the same
    way by every table that times: a verdict on timings names them, and a CPU row cannot
    decide a claim about parallel hardware. ``named``: the ``device`` column holds the
    accelerator's name (the perf tables, which have no ``device_name`` column)."""
    device = torch.device(device)
    facts = {
        "threads": torch.get_num_threads(),
        "device": device_name(device) if named else str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "cuda": f"CUDA {torch.version.cuda}" if device.type == "cuda" else None,  # text, not 12.1
        "dtype": dtype_label(device),
    }
    return {k: facts[k] for k in columns}


def environment(device) -> dict:
    """What run.json records about the machine a run used."""
    device = torch.device(device)
    env = {
        "device": str(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "threads": torch.get_num_threads(),
        "git_commit": _git_commit(),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


@functools.cache
def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


@functools.cache
def _cpu_name() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None
