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


def _profiles_help() -> str:
    """Each profile's jobs, in the order they run (from the studies' BENCH)."""
    import textwrap

    lines = ["Profiles and their jobs (seqbench/studies/*.py, BENCH):"]
    for p in profiles():
        names = ", ".join(j.name for j in profile_jobs(p))
        lines += textwrap.wrap(names, 96, initial_indent=f"  {p}: ", subsequent_indent="    ")
    return "\n".join(lines)


def fail(message) -> int:
    print(f"seqbench: error: {message}", file=sys.stderr)
    return 2


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m seqbench.bench",
        description=__doc__,
        epilog=_profiles_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--profile",
        default="cpu",
        help=f"which jobs to run: {', '.join(profiles())} (listed below; default: cpu)",
    )
    ap.add_argument(
        "--runs",
        default=None,
        metavar="DIR",
        help="where the run directories go (default: runs/bench-PROFILE)",
    )
    ap.add_argument(
        "--results",
        default=None,
        metavar="DIR",
        help="where the report goes (default: <runs>/report; make bench passes results)",
    )
    ap.add_argument(
        "--fresh",
        action="store_true",
        help="discard the existing runs and start every one over (default: complete runs are "
        "skipped, interrupted ones resume)",
    )
    ap.add_argument(
        "--only",
        default=None,
        metavar="JOB,...",
        help="run only these jobs of the profile (comma-separated names, listed below)",
    )
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
    only = set(args.only.split(",")) if args.only is not None else None  # "": no job named
    if only is not None:
        unknown = sorted(only - {j.name for j in jobs})
        if unknown:
            return fail(
                f"--only={args.only} is not allowed: no job named {', '.join(unknown)} "
                f"in profile {args.profile} (jobs: {', '.join(j.name for j in jobs)})"
            )
    for flag, value in (("--runs", args.runs), ("--results", args.results)):
        if value is not None and not value.strip():  # Path("") would be the current folder
            return fail(f"{flag}={value!r} is not allowed: an empty path")
    runs = Path(args.runs or f"runs/bench-{args.profile}")
    results = Path(args.results) if args.results else runs / "report"
    from seqbench.cli import check_dir
    from seqbench.report.__main__ import check_results, write_report

    try:  # refuse before hours of work, not after: both folders must be writable
        check_dir(f"--runs={runs}", runs)
        check_dir(f"--results={results}", results)
        check_results(runs, results, args.force)
        runs.mkdir(parents=True, exist_ok=True)
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
