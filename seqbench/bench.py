"""make bench: run every study's jobs for a profile, then write the report.

    python -m seqbench.bench --profile cpu --runs runs/bench-cpu --results results [--fresh]

Each study folder lists its jobs per profile in experiments/<study>/profiles.yaml (read by
``seqbench.studies.bench_jobs``); a job is one command line of a seqbench entry point, usually
a Hydra multirun over the study's experiment file. Jobs run by rank (``Job.rank``), then in
report order. Nothing is hidden: the commands are printed, and each study's README quotes the
same ones, written from the same file (``--write-readmes``, ``make readmes``).

Runs resume by default (complete runs are skipped, interrupted ones continue from their
checkpoint); ``--fresh`` moves the runs folder aside (``<runs>.previous-<n>``, nothing
deleted) and starts every run, learning-rate calibrations included, in an empty one, so the
report reads only this bench's runs (with ``--only``, the named jobs' runs start over in place
and the others stay). A job that fails does not stop the others; the bench exits 1 at the end
if any did.

A job with a cap (``Job.cap_s``) and a profile run with ``--budget-s`` are stopped in time:
SIGTERM to the job's process group at min(cap, budget left), SIGKILL ``GRACE_S`` later.
What the job finished is kept (complete runs; an interrupted training run's checkpoint, a
measurement's rows so far), ``bench_jobs.csv`` says ``capped``, and a later bench resumes it.
Jobs left when the budget is spent are recorded ``not run``. The table is rewritten after
every job, so a killed bench keeps the timings of the jobs it finished.
"""

import argparse
import contextlib
import csv
import io
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from seqbench import store, studies
from seqbench.errors import ConfigError, fail
from seqbench.launch import stop_on_signals

GRACE_S = 30.0  # after SIGTERM at a cap: time to checkpoint before SIGKILL
COLUMNS = ["job", "status", "returncode", "seconds", "cap_s", "profile", "command"]


def profile_jobs(profile: str) -> list:
    """The profile's jobs in the order they run: by rank, then the studies' report order."""
    order = [studies.study_name(m) for m in studies.all_studies()]
    return studies.bench_jobs(profile, order)


def run_job(
    cmd: list[str], cap_s: float | None, grace_s: float | None = None, log: Path | None = None
) -> tuple[int, bool]:
    """(returncode, capped) of one job, run in its own process group so that a cap stops its
    launcher's workers too; Ctrl-C or SIGTERM of the bench is passed on the same way.
    ``grace_s`` (default GRACE_S): time to checkpoint after SIGTERM. ``log``: the job's
    output (stdout and stderr) goes to this file instead of the terminal."""
    with open(log, "a") if log is not None else contextlib.nullcontext() as out:
        proc = subprocess.Popen(cmd, start_new_session=True, stdout=out, stderr=out)
        try:
            return proc.wait(timeout=cap_s), False
        except subprocess.TimeoutExpired:
            return _stop(proc, signal.SIGTERM, grace_s), True
        except BaseException:
            _stop(proc, signal.SIGINT, grace_s)
            raise


def _stop(proc: subprocess.Popen, sig: int, grace_s: float | None = None) -> int:
    """Signal the job's group, give it the grace to checkpoint, then SIGKILL what is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        return proc.wait(timeout=GRACE_S if grace_s is None else grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait()


MARKER = ".seqbench-runs"  # written into every runs folder a bench made; --fresh moves no other


def _is_runs_folder(runs: Path) -> bool:
    """True for a folder a bench wrote (its marker, or the bench_jobs.csv of a bench older than
    the marker); --fresh renames nothing else, so a user's project is never moved."""
    return (runs / MARKER).is_file() or (runs / "bench_jobs.csv").is_file()


def _move_aside(runs: Path) -> Path:
    """Rename the runs folder to the first free ``<runs>.previous-<n>``; return that path."""
    if not _is_runs_folder(runs):
        raise ValueError(
            f"--runs={runs} is not allowed with --fresh: it is not a seqbench runs folder "
            f"(no {MARKER} in it), so it is not moved; name another folder"
        )
    runs = runs.resolve()  # "." or "sub/.." has no name to number
    n = 1
    while (old := runs.with_name(f"{runs.name}.previous-{n}")).exists():
        n += 1
    runs.rename(old)
    return old


class Stopped(KeyboardInterrupt):
    """SIGTERM (or SIGINT) to the bench: the running job is stopped and recorded, no traceback."""

    def __init__(self, signum: int):
        super().__init__(f"received {signal.Signals(signum).name}")
        self.signum = signum


def _raise_stopped(signum):
    raise Stopped(signum)


def profiles() -> list[str]:
    """The profiles the study folders list (smoke, cpu, full, gpu: those in use)."""
    return studies.profile_names()


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
        COLUMNS,
        lineterminator="\n",
        extrasaction="ignore",
    )
    w.writeheader()
    w.writerows(rows.values())
    store.atomic_write_text(path, text.getvalue())


def _profiles_help() -> str:
    """Each profile's jobs, in the order they run (from the studies' profiles.yaml)."""
    import textwrap

    lines = ["Profiles and their jobs (experiments/*/profiles.yaml):"]
    for p in profiles():
        names = ", ".join(j.name for j in profile_jobs(p))
        lines += textwrap.wrap(names, 96, initial_indent=f"  {p}: ", subsequent_indent="    ")
    return "\n".join(lines)


def _run_jobs(jobs, only, runs: Path, args, log: list) -> None:
    """Run the jobs in order, each within its cap and the budget left; ``log`` gets a row
    per job and bench_jobs.csv is rewritten after each. The terminal gets one line as a job
    starts (its place, time so far, an estimate of what is left) and one as it ends; what the
    job prints goes to ``<logs>/<job>.log`` (the last lines of a failed one are shown)."""
    deadline = None if args.budget_s is None else time.monotonic() + args.budget_s
    todo = [job for job in jobs if not only or job.name in only]
    before = _previous_seconds(runs / "bench_jobs.csv")  # a resumed bench knows its jobs
    logs = None if args.show_output else Path(args.job_logs or runs / "logs")
    start = time.monotonic()
    for i, job in enumerate(todo, 1):
        cmd = [sys.executable, "-m", *job.command(), f"out_dir={runs}"]
        if args.fresh and only:  # the other jobs' runs stay; these start over in place
            cmd.append("fresh=true")
        row = {"job": job.name, "cap_s": job.cap_s, "profile": args.profile,
               "command": shlex.join(cmd[2:])}  # fmt: skip
        place = f"[{i}/{len(todo)}] {job.name}"
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            log.append(row | {"status": "not run: the budget was spent", "seconds": 0.0})
            print(f"{place}: not run, the --budget-s of {args.budget_s:g} s is spent", flush=True)
            _record_jobs(runs / "bench_jobs.csv", log)
            continue
        caps = [c for c in (job.cap_s, left) if c is not None]
        cap = min(caps) if caps else None
        eta = _estimate([j.name for j in todo[i - 1 :]], before, log)
        print(f"{place}: started, {_clock(time.monotonic() - start)} so far{eta}", flush=True)
        out = None if logs is None else logs / f"{job.name}.log"
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            store.atomic_write_text(out, f"$ {shlex.join(cmd[1:])}\n")  # the command, first
        else:
            print(f"   $ {shlex.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        try:
            rc, capped = run_job(cmd, cap, args.grace_s, out)
        except KeyboardInterrupt:  # the bench was stopped: the job's row says so, then stop
            seconds = round(time.perf_counter() - t0, 1)
            log.append(row | {"status": "interrupted", "seconds": seconds})
            raise
        seconds = round(time.perf_counter() - t0, 1)
        status = f"capped at {cap:.0f} s" if capped else ("ok" if rc == 0 else "failed")
        log.append(row | {"status": status, "returncode": rc, "seconds": seconds})
        print(f"{place}: {status} in {_clock(seconds)}" + (f" (log: {out})" if out else "")
              + ("" if rc == 0 or capped else f", exit {rc}"), flush=True)  # fmt: skip
        if out is not None and status == "failed":  # why it failed; a capped job's
            print(_tail(out), flush=True)  # traceback stays in its file
        _record_jobs(runs / "bench_jobs.csv", log)  # after every job: a killed bench keeps it


def _previous_seconds(path: Path) -> dict[str, float]:
    """{job: seconds} of an earlier bench in this runs folder ({} when there is none)."""
    try:
        with open(path, newline="") as f:
            return {r["job"]: float(r["seconds"]) for r in csv.DictReader(f) if r.get("seconds")}
    except (OSError, ValueError, KeyError, csv.Error, UnicodeDecodeError):
        return {}


def _estimate(names: list[str], before: dict, log: list) -> str:
    """', about 12m left': each job left at its earlier duration, else at the median of this
    bench's jobs so far; nothing before anything is known."""
    done = sorted(r["seconds"] for r in log if r["status"] == "ok")
    typical = done[len(done) // 2] if done else None
    guesses = [before.get(n, typical) for n in names]
    if any(g is None for g in guesses):
        return ""
    return f", about {_clock(sum(guesses))} left"


def _clock(seconds: float) -> str:
    """93.4 -> '1m33s'; 7 -> '7s'."""
    m, s = divmod(round(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def _tail(path: Path, lines: int = 15) -> str:
    """The last lines of a job's output file, indented."""
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join(f"   | {line}" for line in text)


def main(argv=None) -> int:
    try:  # a profiles.yaml that does not check out: its one line, before anything runs
        epilog = _profiles_help()
    except ConfigError as e:
        return fail(str(e))
    ap = argparse.ArgumentParser(
        prog="python -m seqbench.bench",
        description=__doc__,
        epilog=epilog,
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
        help="move the runs folder aside to <runs>.previous-<n> and start every run over in an "
        "empty one; with --only, start those jobs' runs over in place (default: complete runs "
        "are skipped, interrupted ones resume)",
    )
    ap.add_argument(
        "--only",
        default=None,
        metavar="JOB,...",
        help="run only these jobs of the profile (comma-separated names, listed below)",
    )
    ap.add_argument(
        "--budget-s",
        type=float,
        default=None,
        metavar="S",
        help="wall-clock budget of the whole profile: each job is capped at the time left and "
        "jobs left when it is spent are recorded 'not run' (default: no budget)",
    )
    ap.add_argument(
        "--force",
        action="store_true",
        help="let the report replace another runs folder's report in --results",
    )
    ap.add_argument(
        "--grace-s",
        type=float,
        default=None,
        metavar="S",
        help=f"after a cap's SIGTERM, seconds to checkpoint before SIGKILL (default {GRACE_S:g})",
    )
    ap.add_argument(
        "--job-logs",
        default=None,
        metavar="DIR",
        help="each job's output to DIR/<job>.log (default: <runs>/logs); the terminal gets one "
        "line as each job starts and ends",
    )
    ap.add_argument(
        "--show-output",
        action="store_true",
        help="let the jobs print to the terminal instead of their log files",
    )
    ap.add_argument(
        "--no-report",
        action="store_true",
        help="run the jobs, write no report (the GPU run packs the runs first, then reports)",
    )
    ap.add_argument(
        "--write-readmes",
        action="store_true",
        help="rewrite the generated blocks of every study's README (commands from its "
        "profiles.yaml, rule sentences from its module), run nothing (make readmes)",
    )
    args = ap.parse_args(argv)
    if args.write_readmes:
        from seqbench import readmes

        for path in readmes.write_all():
            print(f"seqbench: wrote {path}")
        return 0
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
    if args.budget_s is not None and not 0 < args.budget_s < float("inf"):
        return fail(f"--budget-s={args.budget_s:g} is not allowed: a number of seconds above 0")
    if args.grace_s is not None and not 0 <= args.grace_s < float("inf"):
        return fail(f"--grace-s={args.grace_s:g} is not allowed: a number of seconds >= 0")
    for flag, value in (("--runs", args.runs), ("--results", args.results)):
        if value is not None and not value.strip():  # Path("") would be the current folder
            return fail(f"{flag}={value!r} is not allowed: an empty path")
    runs = Path(args.runs or f"runs/bench-{args.profile}")
    if runs.name in ("", ".", ".."):  # "." has no name to number when --fresh moves it aside
        runs = Path(os.path.abspath(runs))
    results = Path(args.results) if args.results else runs / "report"
    from seqbench.report.write import check_results, write_report
    from seqbench.store import check_dir

    try:  # refuse before hours of work, not after: both folders must be writable
        check_dir(f"--runs={runs}", runs)
        check_dir(f"--results={results}", results)
        check_results(runs, results, args.force)
        # with --only, those jobs start over in place; an empty folder needs no moving
        if args.fresh and only is None and runs.exists() and any(runs.iterdir()):
            print(f"seqbench: --fresh: the previous runs are kept in {_move_aside(runs)}")
        runs.mkdir(parents=True, exist_ok=True)
        if not any(runs.iterdir()) or _is_runs_folder(runs):
            (runs / MARKER).touch()  # an empty or bench-made folder: ours from now on
    except (OSError, ValueError) as e:
        return fail(
            str(e) if isinstance(e, ValueError) else f"--runs={runs} is not allowed: {e.strerror}"
        )
    log = []
    try:  # SIGTERM: the running job is stopped, not orphaned
        with stop_on_signals(_raise_stopped, (signal.SIGTERM,)):
            _run_jobs(jobs, only, runs, args, log)
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM via _sigterm: the job is already stopped
        signum = getattr(e, "signum", signal.SIGINT)
        _record_jobs(runs / "bench_jobs.csv", log)
        print(
            f"seqbench: bench stopped ({signal.Signals(signum).name}) after {len(log)} jobs; "
            f"what they finished is kept in {runs}, a rerun resumes",
            file=sys.stderr,
        )
        return 128 + signum
    if not args.no_report:
        try:
            print(f"\nseqbench: wrote {write_report(runs, results, args.force)}")
        except (OSError, ConfigError) as e:  # a full disk, a folder taken meanwhile: the runs stay
            why = str(e) if isinstance(e, ConfigError) else f"{results}: {e.strerror or e}"
            print(f"seqbench: error: cannot write the report: {why}", file=sys.stderr)
            return 1
    total = sum(r["seconds"] for r in log)
    failed = [r["job"] for r in log if r["status"] == "failed"]
    stopped = [r["job"] for r in log if r["status"] != "ok" and r["job"] not in failed]
    print(
        f"seqbench: bench profile {args.profile}: {len(log)} jobs, {total:.0f} s"
        + (f"; failed: {', '.join(failed)}" if failed else "")
        + (f"; capped or not run: {', '.join(stopped)}" if stopped else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
