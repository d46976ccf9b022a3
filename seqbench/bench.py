"""make bench: run every study's jobs for a profile, then write the report.

    python -m seqbench.bench --profile cpu --runs runs/bench-cpu --results results [--fresh]

Each study module (seqbench/studies/) lists its jobs per profile (``BENCH``); a job is one
command line of a seqbench entry point, usually a Hydra multirun over the study's experiment
file. Studies run in report order. Nothing is hidden: the commands are printed, and
experiments/*/README.md quote the same ones. Runs resume by default (complete runs are
skipped, interrupted ones continue from their checkpoint); ``--fresh`` starts every run
over. A job that fails does not stop the others; the bench exits 1 at the end if any did.
"""

import argparse
import csv
import io
import shlex
import subprocess
import sys
import time
from pathlib import Path

from seqbench import store, studies


def profile_jobs(profile: str) -> list:
    return [job for m in studies.all_studies() for job in m.BENCH.get(profile, [])]


def profiles() -> list[str]:
    return sorted({p for m in studies.all_studies() for p in m.BENCH})


def _record_jobs(path: Path, log: list[dict]) -> None:
    """Merge this invocation's job timings into path (a job run again replaces its row), so
    a bench resumed with --only keeps the timings of the jobs it did not rerun."""
    rows = {}
    if path.exists():
        try:
            with open(path, newline="") as f:
                rows = {r["job"]: r for r in csv.DictReader(f) if r.get("job")}
        except (OSError, UnicodeDecodeError, csv.Error, KeyError):
            rows = {}  # a damaged timing file is replaced, never a reason to stop
    rows |= {r["job"]: r for r in log}
    text = io.StringIO()
    w = csv.DictWriter(
        text,
        ["job", "returncode", "seconds", "command"],
        lineterminator="\n",
        extrasaction="ignore",
    )
    w.writeheader()
    w.writerows(rows.values())
    store.atomic_write_text(path, text.getvalue())


def fail(message) -> int:
    print(f"seqbench: error: {message}", file=sys.stderr)
    return 2


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m seqbench.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--runs", default=None, help="run directory root (default runs/bench-PROFILE)")
    ap.add_argument("--results", default=None, help="report folder (default <runs>/report)")
    ap.add_argument("--fresh", action="store_true", help="discard existing runs, start over")
    ap.add_argument("--only", default=None, help="comma-separated job names to run")
    ap.add_argument(
        "--force",
        action="store_true",
        help="let the report replace another runs folder's report in --results",
    )
    args = ap.parse_args(argv)
    if args.profile not in profiles():
        return fail(
            f"--profile={args.profile} is not allowed: choose one of {', '.join(profiles())}"
        )
    jobs = profile_jobs(args.profile)
    only = set(args.only.split(",")) if args.only else None
    if only is not None:
        unknown = sorted(only - {j.name for j in jobs})
        if unknown:
            return fail(
                f"--only={args.only} is not allowed: no job named {', '.join(unknown)} "
                f"in profile {args.profile} (jobs: {', '.join(j.name for j in jobs)})"
            )
    runs = Path(args.runs or f"runs/bench-{args.profile}")
    results = Path(args.results) if args.results else runs / "report"
    from seqbench.report.__main__ import check_results, write_report

    try:
        runs.mkdir(parents=True, exist_ok=True)
        check_results(runs, results, args.force)  # refuse before hours of work, not after
    except (OSError, ValueError) as e:
        return fail(
            str(e) if isinstance(e, ValueError) else f"--runs={runs} is not allowed: {e.strerror}"
        )
    log = []
    for job in jobs:
        if only and job.name not in only:
            continue
        cmd = [sys.executable, "-m", *job.command(), f"out_dir={runs}"]
        if args.fresh:
            cmd.append("fresh=true")
        print(f"\n== {job.name}: {shlex.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.run(cmd).returncode
        log.append(
            {
                "job": job.name,
                "returncode": rc,
                "seconds": round(time.perf_counter() - t0, 1),
                "command": shlex.join(cmd[2:]),
            }
        )
        print(f"== {job.name}: exit {rc} after {log[-1]['seconds']} s", flush=True)
    _record_jobs(runs / "bench_jobs.csv", log)
    print(f"\nseqbench: wrote {write_report(runs, results, args.force)}")
    total = sum(r["seconds"] for r in log)
    failed = [r["job"] for r in log if r["returncode"] != 0]
    print(
        f"seqbench: bench profile {args.profile}: {len(log)} jobs, {total:.0f} s"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
