"""make bench: run every study of a profile, then write the report.

    python -m seqbench.bench --profile cpu --runs runs/bench-cpu --results results [--fresh]

A profile is a folder ``conf/bench/<name>/``; each file in it (taken in name order, one file
per study) holds a list of jobs, each one command line of a seqbench entry point (usually a
Hydra multirun over an experiment file). Nothing is hidden here: the
commands are printed, and experiments/*/README.md quote the same ones. Runs resume by
default (complete runs are skipped, interrupted ones continue from their checkpoint);
``--fresh`` starts every run over. A job that fails does not stop the others; the bench exits
non-zero at the end if any did.
"""

import argparse
import csv
import io
import shlex
import subprocess
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

from seqbench import store
from seqbench.config import CONF_DIR
from seqbench.report.__main__ import write_report


def profiles() -> list[str]:
    return sorted(p.name for p in (CONF_DIR / "bench").iterdir() if p.is_dir())


def profile_jobs(profile: str) -> list[dict]:
    jobs = []
    for path in sorted((CONF_DIR / "bench" / profile).glob("*.yaml")):
        jobs += OmegaConf.to_container(OmegaConf.load(path))["jobs"]
    return jobs


def _record_jobs(path: Path, log: list[dict]) -> None:
    """Merge this invocation's job timings into path (a job run again replaces its row), so
    a bench resumed with --only keeps the timings of the jobs it did not rerun."""
    rows = {}
    if path.exists():
        with open(path, newline="") as f:
            rows = {r["job"]: r for r in csv.DictReader(f)}
    rows |= {r["job"]: r for r in log}
    text = io.StringIO()
    w = csv.DictWriter(text, ["job", "returncode", "seconds", "command"], lineterminator="\n")
    w.writeheader()
    w.writerows(rows.values())
    store.atomic_write_text(path, text.getvalue())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m seqbench.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--runs", default=None, help="run directory root (default runs/bench-PROFILE)")
    ap.add_argument("--results", default="results")
    ap.add_argument("--fresh", action="store_true", help="discard existing runs, start over")
    ap.add_argument("--only", default=None, help="comma-separated job names to run")
    args = ap.parse_args(argv)
    if args.profile not in profiles():
        print(
            f"seqbench: error: PROFILE={args.profile} is not allowed: choose one of "
            f"{', '.join(profiles())}",
            file=sys.stderr,
        )
        return 2
    runs = Path(args.runs or f"runs/bench-{args.profile}")
    runs.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(",")) if args.only else None
    log = []
    for job in profile_jobs(args.profile):
        if only and job["name"] not in only:
            continue
        cmd = [sys.executable, "-m", job["module"], *map(str, job["args"]), f"out_dir={runs}"]
        if args.fresh:
            cmd.append("fresh=true")
        print(f"\n== {job['name']}: {shlex.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.run(cmd).returncode
        log.append(
            {
                "job": job["name"],
                "returncode": rc,
                "seconds": round(time.perf_counter() - t0, 1),
                "command": shlex.join(cmd[2:]),
            }
        )
        print(f"== {job['name']}: exit {rc} after {log[-1]['seconds']} s", flush=True)
    _record_jobs(runs / "bench_jobs.csv", log)
    print(f"\nseqbench: wrote {write_report(runs, args.results)}")
    total = sum(r["seconds"] for r in log)
    failed = [r["job"] for r in log if r["returncode"] != 0]
    print(
        f"seqbench: bench profile {args.profile}: {len(log)} jobs, {total:.0f} s"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
