"""The GPU run: one prepared command for a lent GPU machine, and its unpacking here.

On the GPU machine (its python3 has torch; hydra-core, omegaconf, antlr4, the launcher plugins
and submitit travel as wheels in .whl/, fetched here by `make gpu-wheels`):

    make gpu-run OUT=$OUT     # install the wheels, run the gpu profile, pack one archive

writes ``$OUT/seqbench-gpu.tar.gz``: the run directories of ``runs/bench-gpu`` (records and
tables; checkpoints and weights left out) and their report. Here:

    make gpu-unpack ARCHIVE=<path>/seqbench-gpu.tar.gz

unpacks it into ``runs/bench-gpu`` and regenerates ``results/gpu/`` from it, and the CPU
report (``make report``) shows the GPU verdicts for C4 (time) and C9 beside the CPU ones.

The profile fits the device budget by construction: its jobs run in the order of what they
decide (C4's time and C9 first: ``Job.rank``), each within its cap (``Job.cap_s``), and the
whole run within ``BUDGET_S`` (``--budget-s``): a job stopped at a cap keeps what it
finished, jobs left when the budget is spent are recorded ``not run`` (bench_jobs.csv).

``dry_run(profile)`` composes and validates every job of every bench command of a profile
(with ``device=cpu``, so it runs on any machine) without running any: ``make test`` does it
for the gpu profile, so a typo in it fails here, not in the 15 minutes of a lent GPU.
"""

import argparse
import io
import shutil
import sys
import tarfile
import tempfile
from contextlib import redirect_stdout
from pathlib import Path

ARCHIVE = "seqbench-gpu.tar.gz"
# 15 device minutes per task, start-up and one rerun included: 5.5 minutes of jobs, then the
# report and the archive (a capped job's checkpoint grace, bench.GRACE_S, comes on top)
BUDGET_S = 330.0
SKIPPED = {"ckpt.pt", "ckpt.pt.sha256", "model.pt", "model.pt.sha256", "lock"}  # size; no use


def dry_run(profile: str, extra=("device=cpu",)) -> dict[str, int]:
    """{job name: jobs validated} for every bench command of ``profile``; raises SystemExit
    (code 2, one line on stderr) at the first bad one."""
    from seqbench import cli
    from seqbench.bench import profile_jobs

    entries = {"seqbench.train": "train", "seqbench.measure": "measure", "seqbench.perf": "perf"}
    counts = {}
    out_dir = tempfile.mkdtemp(prefix="seqbench-dry-run-")  # checked writable, never written
    for job in profile_jobs(profile):
        argv = [*map(str, job.args), *extra, f"out_dir={out_dir}"]
        entry = entries[job.module]
        if "-m" in argv or "--multirun" in argv:
            out = io.StringIO()
            with redirect_stdout(out):
                rc = cli.main(entry, [*argv, "hydra.sweeper.dry_run=true"])
            text = out.getvalue()
            if rc != 0 or "jobs validated" not in text:
                raise SystemExit(rc or 2)
            counts[job.name] = int(text.rsplit("dry run: ", 1)[1].split()[0])
        else:
            config = cli.ENTRIES[entry][0]
            cli.preflight(config, argv)
            counts[job.name] = 1
    return counts


def pack(runs: Path, report: Path, archive: Path) -> Path:
    """One archive of the run directories (without checkpoints and weights) and the report."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(runs.rglob("*")):
            if path.is_file() and path.name not in SKIPPED and report not in path.parents:
                tar.add(path, arcname=Path("runs") / path.relative_to(runs))
        if report.is_dir():
            for path in sorted(report.rglob("*")):
                if path.is_file():
                    tar.add(path, arcname=Path("report") / path.relative_to(report))
    return archive


def unpack(archive: Path, runs: Path, results: Path) -> Path:
    """Extract an archive made by ``pack`` into ``runs`` and write its report to ``results``."""
    from seqbench.report.__main__ import write_report

    runs.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.startswith("runs/")]
        for m in members:
            target = runs / Path(m.name).relative_to("runs")
            if target.resolve().is_relative_to(runs.resolve()):  # no path leaves runs/
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(m) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    return write_report(runs, results, force=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m seqbench.gpu",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="verb", required=True)
    run = sub.add_parser("run", help="on the GPU machine: the gpu profile, then one archive")
    run.add_argument("--out", required=True, help="folder for the archive ($OUT)")
    run.add_argument("--runs", default="runs/bench-gpu")
    run.add_argument("--only", default=None, help="comma-separated job names")
    run.add_argument(
        "--budget-s",
        default=BUDGET_S,
        type=float,
        help=f"wall-clock seconds for the profile's jobs (default {BUDGET_S:g})",
    )
    dry = sub.add_parser("dry-run", help="validate every job of a profile, run none")
    dry.add_argument("--profile", default="gpu")
    up = sub.add_parser("unpack", help="here: unpack an archive and write its report")
    up.add_argument("archive")
    up.add_argument("--runs", default="runs/bench-gpu")
    up.add_argument("--results", default="results/gpu")
    args = ap.parse_args(argv)
    if args.verb == "dry-run":
        counts = dry_run(args.profile)
        print(
            f"seqbench: {args.profile} profile: {len(counts)} commands, "
            f"{sum(counts.values())} jobs validated"
        )
        return 0
    if args.verb == "unpack":
        print(f"seqbench: wrote {unpack(Path(args.archive), Path(args.runs), Path(args.results))}")
        return 0
    from seqbench import bench

    runs = Path(args.runs)
    report = runs / "report"
    bench_args = ["--profile", "gpu", "--runs", str(runs), "--results", str(report), "--force",
                  "--budget-s", str(args.budget_s)]  # fmt: skip
    rc = bench.main(bench_args + (["--only", args.only] if args.only else []))
    out = pack(runs, report, Path(args.out) / ARCHIVE)
    print(f"seqbench: packed {out} ({out.stat().st_size / 1e6:.1f} MB); bench exit {rc}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
