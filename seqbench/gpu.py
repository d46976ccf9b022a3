"""The GPU run: one prepared call for a lent GPU machine, and its unpacking here.

On the GPU machine, whose python3 has torch, numpy, pandas and matplotlib but no Hydra (the
wheels of hydra-core, omegaconf, antlr4, the launcher plugins and submitit travel in .whl/,
fetched here by ``make gpu-wheels``), one command and nothing else (no make):

    bash scripts/gpu-run.sh "$OUT"     # the wheels into a temp site dir, then `gpu run`

``python -m seqbench.gpu run --out $OUT`` runs the gpu profile, each job's output in
``<runs>/logs/<job>.log`` and one line per job on the terminal, then packs the run
directories of ``runs/bench-gpu`` (records, tables and logs; checkpoints and weights left out)
into ``$OUT/seqbench-gpu.tar.gz`` *before* it writes the report, so whatever fails next the
runs come back; the report runs in its own process (output in ``runs/report.log``, kept in the
archive when it fails) and the archive is packed again, with the report or its error. The script
tees the whole terminal into ``$OUT/gpu-run.log``. Here:

    make gpu-unpack ARCHIVE=<path>/seqbench-gpu.tar.gz

unpacks the runs into ``runs/bench-gpu`` (refusing, one line each, members that are links,
absolute, hold ``..`` or would land outside it) and regenerates ``results/gpu/`` from whatever
came back, and the CPU report (``make report``) shows the GPU verdicts for C4 (time) and C9.

The call fits the device time twice (15 minutes, a rerun included): ``CALL_S`` = machine
start + wheel install + the jobs' ``BUDGET_S`` + one checkpoint grace + report + packing.
Jobs run by ``Job.rank``: those ranked up to ``PLANNED_RANK`` (C4's time and C9, kernels per
step, MFU, recall) have caps that sum to at most ``BUDGET_S``; later ones (MQAR, then the
rest) run with what is left, usually nothing. Caps were set from start-up measured on the CPU
side (python, torch, Hydra and the sweep's validation: 2.9 s to the first job on the 2-core
VM) plus ``JOB_START_S`` for it and CUDA's initialisation (context, cuBLAS/cuDNN handles,
lazily loaded kernels: not measured here, no GPU was lent), plus the work each job can finish;
a capped job keeps what it finished, so a cap trades points for time, never a whole job.
No job shares a process with another: the kernels and time pairs differ in (model, impl)
pairs that one Hydra sweep cannot pair (a sweep is a product), so each pays its start-up.

``dry_run(profile)`` composes and validates every job of every bench command of a profile
(with ``device=cpu``, so it runs on any machine) without running any: ``make test`` does it
for the gpu profile, so a typo in it fails here, not in the 15 minutes of a lent GPU.
"""

import argparse
import io
import os
import subprocess
import sys
import tarfile
import tempfile
from contextlib import redirect_stdout
from pathlib import Path, PurePosixPath

ARCHIVE = "seqbench-gpu.tar.gz"
# one call's device time, start-up to archive (s): twice this and a margin fit 15 minutes
CALL_S = 360.0
START_S = 90.0  # the machine's start and the tree's transfer ("a minute or more")
INSTALL_S = 15.0  # pip --target of the six carried wheels, no compile
BUDGET_S = 180.0  # the jobs: CALL_S less every other allowance here
GRACE_S = 5.0  # after a cap's SIGTERM: a measurement has its rows; a training run its step
REPORT_S = 60.0  # the report's own process is stopped here (the first archive stands)
PACK_S = 10.0  # two archives of records and tables (a few MB)
JOB_START_S = 10.0  # per job process: 2.9 s measured on CPU + CUDA's initialisation
PLANNED_RANK = 5  # jobs ranked up to here must fit BUDGET_S by their caps
SKIPPED = {"ckpt.pt", "ckpt.pt.sha256", "model.pt", "model.pt.sha256", "lock"}  # size; no use
WEIGHTS = (".pt", ".pth", ".ckpt", ".safetensors", ".bin")  # never packed, whatever the name


def dry_run(profile: str, extra=("device=cpu",)) -> dict[str, int]:
    """{job name: jobs validated} for every bench command of ``profile``; raises SystemExit
    (code 2, one line on stderr) at the first bad one."""
    from seqbench import cli
    from seqbench.bench import profile_jobs

    counts = {}
    out_dir = tempfile.mkdtemp(prefix="seqbench-dry-run-")  # checked writable, never written
    for job in profile_jobs(profile):
        argv = [*map(str, job.args), *extra, f"out_dir={out_dir}"]
        entry = job.entry  # train | measure | perf (profiles.yaml)
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


def call_seconds(jobs) -> float:
    """The planned call's device seconds: every allowance and the planned jobs' caps."""
    caps = sum(j.cap_s for j in jobs if j.rank <= PLANNED_RANK)
    return START_S + INSTALL_S + caps + GRACE_S + REPORT_S + PACK_S


def _packed(path: Path) -> bool:
    return path.is_file() and path.name not in SKIPPED and not path.name.endswith(WEIGHTS)


def pack(runs: Path, report: Path, archive: Path) -> Path:
    """One archive of the run directories (without checkpoints and weights) and the report,
    written beside and renamed over the last one, so a pack cut short leaves the last whole."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    part = archive.with_name(archive.name + ".part")
    with tarfile.open(part, "w:gz") as tar:
        for path in sorted(runs.rglob("*")) if runs.is_dir() else []:
            if _packed(path) and report not in path.parents:
                tar.add(path, arcname=Path("runs") / path.relative_to(runs))
        for path in sorted(report.rglob("*")) if report.is_dir() else []:
            if path.is_file():
                tar.add(path, arcname=Path("report") / path.relative_to(report))
    os.replace(part, archive)
    return archive


def refusal(member: tarfile.TarInfo, runs: Path) -> str | None:
    """Why an archive member is not extracted into ``runs`` (None: it is, as a file)."""
    name = PurePosixPath(member.name)
    if member.issym() or member.islnk():
        return "a link"
    if name.is_absolute():
        return "an absolute path"
    if ".." in name.parts:
        return "a path with '..'"
    if not member.isfile():
        return "not a regular file"
    if name.parts[0] != "runs" or len(name.parts) < 2:
        return "not under runs/"
    target = runs.joinpath(*name.parts[1:]).resolve()
    if not target.is_relative_to(runs.resolve()):
        return "it would land outside the runs folder"
    return None


def unpack(archive: Path, runs: Path, results: Path) -> Path:
    """Extract the runs of an archive made by ``pack`` into ``runs`` (one line per refused
    member, nothing written for it; the packed report is made again here) and write the
    report of whatever came back to ``results``."""
    from seqbench.report.write import write_report

    runs.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        for m in tar.getmembers():
            if m.isdir() or (m.isfile() and m.name.startswith("report/")):
                continue
            why = refusal(m, runs)
            if why:
                print(f"seqbench: refused archive member {m.name!r}: {why}")
                continue
            target = runs.joinpath(*PurePosixPath(m.name).parts[1:])
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(m) as src:
                target.write_bytes(src.read())
    return write_report(runs, results, force=True)


# the rehearsal's stand-in for a report that raises (--fail-report)
FAILING_REPORT = "raise RuntimeError('the report was made to fail (gpu run --fail-report)')"


def report(runs: Path, results: Path, fail: bool = False) -> bool:
    """Write the report in its own process, its output in ``runs/report.log``; False when it
    failed or ran past REPORT_S (the log then holds its traceback or says so)."""
    cmd = [sys.executable, "-m", "seqbench.report", "--runs", str(runs), "--results",
           str(results), "--force"]  # fmt: skip
    if fail:
        cmd = [sys.executable, "-c", FAILING_REPORT]
    log = runs / "report.log"
    with open(log, "w") as out:
        try:
            rc = subprocess.run(cmd, stdout=out, stderr=out, timeout=REPORT_S).returncode
        except subprocess.TimeoutExpired:
            out.write(f"\nseqbench: the report was stopped after {REPORT_S:g} s\n")
            rc = None
    if rc != 0:
        last = (log.read_text(errors="replace").strip().splitlines() or ["no output"])[-1]
        print(f"seqbench: the report failed ({last}); its output is in {log}", flush=True)
    return rc == 0


def run(args) -> int:
    """The gpu profile, then the archive, the report, and the archive again."""
    from seqbench import bench

    runs = Path(args.runs)
    results = runs / "report"
    archive = Path(args.out) / ARCHIVE
    bench_args = ["--profile", args.profile, "--runs", str(runs), "--results", str(results),
                  "--force", "--budget-s", str(args.budget_s), "--grace-s", str(args.grace_s),
                  "--job-logs", str(runs / "logs"), "--no-report"]  # fmt: skip
    rc = 1
    try:
        rc = bench.main(bench_args + (["--only", args.only] if args.only else []))
    finally:  # whatever stopped the jobs, what they finished comes back
        pack(runs, results, archive)
        print(f"seqbench: packed {archive} before the report; bench exit {rc}", flush=True)
    if rc == 2:  # refused before any work: nothing to report
        return rc
    ok = report(runs, results, args.fail_report)
    pack(runs, results, archive)  # with the report, or with report.log saying why not
    what = "the report" if ok else "the report's error"
    print(f"seqbench: packed {archive} with {what} ({archive.stat().st_size / 1e6:.1f} MB)")
    return rc if ok else (rc or 1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m seqbench.gpu",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="verb", required=True)
    run_ap = sub.add_parser("run", help="on the GPU machine: the gpu profile, then one archive")
    run_ap.add_argument("--out", required=True, help="folder for the archive ($OUT)")
    run_ap.add_argument("--runs", default="runs/bench-gpu")
    run_ap.add_argument("--profile", default="gpu", help="gpu (smoke: the CPU rehearsal)")
    run_ap.add_argument("--only", default=None, help="comma-separated job names")
    run_ap.add_argument(
        "--budget-s",
        default=BUDGET_S,
        type=float,
        help=f"wall-clock seconds for the jobs (default {BUDGET_S:g})",
    )
    run_ap.add_argument(
        "--grace-s",
        default=GRACE_S,
        type=float,
        help=f"after a cap's SIGTERM, seconds to stop (default {GRACE_S:g})",
    )
    run_ap.add_argument(
        "--fail-report",
        action="store_true",
        help="rehearsal only: a report that raises (the runs still come back)",
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
        from seqbench.errors import ConfigError

        try:
            wrote = unpack(Path(args.archive), Path(args.runs), Path(args.results))
        except (OSError, tarfile.TarError, ConfigError) as e:  # a bad archive, a full disk
            print(f"seqbench: error: cannot unpack {args.archive}: {e}", file=sys.stderr)
            return 1
        print(f"seqbench: wrote {wrote}")
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
