"""Start-up cost (table ``startup``): what a command costs before it does any work.

Each command runs as a fresh ``python`` process, ``startup.repeats`` times, round-robin so
that machine load hits all alike; its CPU time (user + system, the child's ``getrusage``) is
compared with ``python -c "import torch"``, the floor every PyTorch program pays:

    beyond_torch_s = median CPU s of the command - median CPU s of importing torch

The goal (STARTUP_GOAL) applies to the answers that do no work: ``--help`` and a refused
value. ``train 1 step`` (a whole run of one step, evaluation and files included) is there for
scale. Each process also reports whether ``torch._dynamo`` (about 1.5 s of CPU to import) was
imported: seqbench imports it only for train.compile=true; torch.optim imports it on its own
the first time an optimiser is built, so a run that trains pays it, as any torch.optim user does.
"""

import resource
import subprocess
import sys
import time

import numpy as np

from seqbench.timer import quartiles

STARTUP_GOAL = 0.5  # CPU seconds beyond importing torch, for --help and a refused value
STARTUP_COLUMNS = (
    "command argv repeats cpu_s_median cpu_s_q25 cpu_s_q75 wall_s_median beyond_torch_s"
    " imports_dynamo returncode goal meets_goal"
).split()
# run inside each process: say at exit whether torch._dynamo was imported
RUNNER = (
    "import atexit, runpy, sys\n"
    "atexit.register(lambda: sys.stderr.write("
    "'\\nseqbench-startup dynamo=%d\\n' % ('torch._dynamo' in sys.modules)))\n"
    "mode, *args = sys.argv[1:]\n"
    "if mode == '-c':\n"
    "    exec(args[0])\n"
    "else:\n"
    "    sys.argv = args\n"
    "    runpy.run_module(args[0], run_name='__main__', alter_sys=True)\n"
)


def commands(tmp) -> dict:
    """label -> (argv after python, goal or None)."""
    one_step = (
        "train.steps=1 train.eval_batches=1 train.threads=1 train.progress=false device=cpu "
        f"fresh=true out_dir={tmp}/startup-runs"
    ).split()
    return {
        "import torch": (["-c", "import torch"], None),
        "train --help": (["-m", "seqbench.train", "--help"], STARTUP_GOAL),
        "train refused value": (["-m", "seqbench.train", "train.steps=0"], STARTUP_GOAL),
        "train 1 step": (["-m", "seqbench.train", *one_step], None),
    }


def timed(argv, cwd) -> tuple[float, float, int, int]:
    """(CPU s, wall s, return code, dynamo imported 0/1) of one python process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, *argv], cwd=cwd, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    dynamo = int("seqbench-startup dynamo=1" in proc.stderr)
    return cpu, wall, proc.returncode, dynamo


def startup(cfg, device, log, tmp):
    todo = commands(tmp)
    runs = {label: [] for label in todo}
    for _ in range(cfg.startup.repeats):
        for label, (argv, _) in todo.items():
            runs[label].append(timed(argv, tmp))
    floor = float(np.median([r[0] for r in runs["import torch"]]))
    for label, (argv, goal) in todo.items():
        cpu = [r[0] for r in runs[label]]
        q25, med, q75 = quartiles(cpu)
        beyond = med - floor
        log(
            {
                "command": label,
                "argv": "python " + " ".join(argv).replace(str(tmp), "<tmp>"),
                "repeats": len(cpu),
                "cpu_s_median": med,
                "cpu_s_q25": q25,
                "cpu_s_q75": q75,
                "wall_s_median": float(np.median([r[1] for r in runs[label]])),
                "beyond_torch_s": beyond,
                "imports_dynamo": max(r[3] for r in runs[label]),
                "returncode": runs[label][-1][2],
                "goal": goal,
                "meets_goal": None if goal is None else int(beyond <= goal),
            }
        )
