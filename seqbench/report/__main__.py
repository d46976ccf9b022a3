"""python -m seqbench.report --runs DIR [--results DIR] [--force]: aggregate runs, write the report.

The report reads run directories and writes ``<results>/{README.md, *.csv, *.png}``: the
README opens with the claims table and, after it, ``contact_sheet.png``, the figures that
decide each claim at a glance (seqbench/report/contact.py); then one section per study. By
default ``<runs>/report``, so re-aggregating some other runs folder never touches the
committed ``results/`` (``make bench`` passes ``--results results``). A results folder
remembers which runs folder wrote it (``.report.json``): writing it from another one needs
``--force``. Files the previous report wrote and this one does not are removed, and studies
the previous report had and this one lacks are named, on the terminal and in the README.

Pipeline: ``collect`` (run files -> tables) -> every study's ``verdicts`` (pure) and
``section`` (figures + text), each in its own ``try``: a study whose verdict code raises
shows ``failed: <first line>`` in the claims table, one whose figures raise says so in its
section, and neither touches the others.
"""

import argparse
import os
import sys
from pathlib import Path

import matplotlib
import pandas as pd

matplotlib.use("Agg")

from seqbench import store, studies  # noqa: E402
from seqbench.errors import ConfigError  # noqa: E402
from seqbench.report import contact, generic, stability  # noqa: E402
from seqbench.report.claims import claims_table, legend  # noqa: E402
from seqbench.report.collect import collect  # noqa: E402
from seqbench.report.plot import Figures  # noqa: E402
from seqbench.runs import first_line  # noqa: E402
from seqbench.studies import Verdict, family_of  # noqa: E402

MANIFEST = ".report.json"


def model_families(tables) -> dict:
    """model -> family over every table and every conf/model file, for stable colours."""
    from seqbench.config import build_model, model_configs

    families = {}
    for name, node in model_configs().items():
        try:
            families[name] = build_model(node, 64).family
        except Exception:  # a broken model file is the tests' business, not the report's
            continue
    for df in tables.values():
        if "model" in df and "family" in df:
            families |= family_of(df)
    return {m: f for m, f in families.items() if isinstance(m, str)}


def study_parts(module, tables, figs):
    """(verdicts, markdown) of one study, each contained. The figures the section marks with
    ``decides`` go on the contact sheet; a section that marks none lends all its figures to
    the claims the study decides."""
    name = studies.study_name(module)
    before, marked = len(figs.written), {p for ps in figs.deciding.values() for p in ps}
    try:
        verdicts = stability.annotate(module, name, tables, list(module.verdicts(tables)))
    except Exception as e:
        verdicts = [Verdict(c, name, "-", "-", f"failed: {first_line(e)}") for c in module.DECIDES]
    try:
        md = module.section(tables, figs)
    except Exception as e:
        md = f"_This section failed to render: {first_line(e)}_"
    new = figs.written[before:]
    if not {p for ps in figs.deciding.values() for p in ps} - marked:
        for claim in module.DECIDES:
            figs.deciding.setdefault(claim, []).extend(new)
    return verdicts, md


def other_machines(results: Path, compare) -> dict:
    """{label: verdicts table} of other reports to quote (``--compare``; by default the
    ``gpu/`` report inside this results folder, which `make gpu-unpack` writes)."""
    dirs = [Path(c) for c in compare] if compare is not None else [results / "gpu"]
    out = {}
    for d in dirs:
        path = d / "verdicts.csv"
        if path.is_file():
            try:
                out[d.name] = pd.read_csv(path)
            except Exception:  # another report's damaged file: quoted as absent, not fatal
                continue
    return out


def write_report(runs_root, results, force=False, compare=None) -> Path:
    runs_root, results = Path(runs_root), Path(results)
    previous = check_results(runs_root, results, force)
    results.mkdir(parents=True, exist_ok=True)
    tables = collect(runs_root)
    written = []
    for name, df in tables.items():
        store.atomic_write_text(results / f"{name}.csv", df.to_csv(index=False))
        written.append(f"{name}.csv")
    figs = Figures(results, model_families(tables))
    verdicts, body, extra, present = [], [], {}, set()
    modules = studies.all_studies()
    for module in modules:
        extra |= getattr(module, "CLAIMS", {})
        v, md = study_parts(module, tables, figs)
        verdicts += v
        if md:
            body.append(f"## {module.TITLE}\n\n{md}\n")
            present.add(studies.study_name(module))
    names = {studies.study_name(m) for m in modules}
    for title, md in (
        ("Learning-rate calibration", generic.calibration(tables)),
        ("Other runs", generic.other_runs(tables, names, figs)),
        ("Runs that did not complete", generic.incomplete(tables)),
        ("Files that could not be read", generic.unreadable(tables)),
        ("Bench jobs and their wall time", generic.bench_jobs(tables)),
    ):
        if md:
            body.append(f"## {title}\n\n{md}\n")
    sheet = contact.sheet(results, figs.deciding)
    table = generic.verdict_rows(verdicts)
    store.atomic_write_text(results / "verdicts.csv", table.to_csv(index=False))
    written.append("verdicts.csv")
    both = generic.machines(table, other_machines(results, compare))
    lost = sorted(set(previous.get("studies", [])) - present)
    if lost:
        print(
            f"seqbench: note: this report has no section for {', '.join(lost)}, which the "
            f"previous report in {results} had",
            file=sys.stderr,
        )
    readme = "\n".join(
        [
            "# seqbench results",
            "",
            "Generated by `python -m seqbench.report` from the run directories in "
            f"`{runs_root}`; every number and verdict below is computed from those runs. "
            "Do not edit by hand: rerun `make bench`.",
            "",
            "## The lecture's claims, and what the data says",
            "",
            legend(),
            "",
            claims_table(verdicts, extra),
            "",
            *(["### On each machine", "", both, ""] if both else []),
            *([sheet, ""] if sheet else []),
            *(
                [f"Studies of the previous report missing here: {', '.join(lost)}.", ""]
                if lost
                else []
            ),
            "## Hardware and versions",
            "",
            generic.hardware(tables),
            "",
            *body,
        ]
    )
    out = results / "README.md"
    store.atomic_write_text(out, readme)
    written += ["README.md", *figs.written, *([contact.NAME] if sheet else [])]
    for stale in set(previous.get("files", [])) - set(written):
        (results / stale).unlink(missing_ok=True)
    manifest = {
        "runs": _relative(runs_root, results),
        "files": sorted(written),
        "studies": sorted(present),
    }
    store.atomic_write_json(results / MANIFEST, manifest)
    return out


def _relative(runs_root: Path, results: Path) -> str:
    """The runs folder as seen from the results folder (the same in every clone)."""
    return os.path.relpath(runs_root.resolve(), results.resolve())


def check_results(runs_root: Path, results: Path, force: bool) -> dict:
    """The previous manifest; refuse (ConfigError) to overwrite another runs folder's report."""
    if results.exists() and not results.is_dir():
        raise ConfigError(f"--results={results} is not allowed: it is a file, not a directory")
    previous = store.read_json(results / MANIFEST) or {}
    if not isinstance(previous, dict):
        previous = {}
    theirs = previous.get("runs")
    if theirs and theirs != _relative(runs_root, results) and not force:
        raise ConfigError(
            f"--results={results} is not allowed: it holds the report of the runs folder "
            f"{theirs!r} (relative to it); "
            "choose another folder or pass --force to replace it"
        )
    return previous


def main(argv=None) -> int:
    order = ", ".join(studies.study_name(m) for m in studies.all_studies())
    ap = argparse.ArgumentParser(
        prog="python -m seqbench.report",
        description=__doc__.replace("``", ""),
        epilog=f"Sections, in report order (seqbench/studies/): {order}.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--runs",
        default="runs",
        metavar="DIR",
        help="the folder holding the run directories (train/measure/perf out_dir; default: runs)",
    )
    ap.add_argument(
        "--results",
        default=None,
        metavar="DIR",
        help="where README.md, the tables (*.csv) and the figures (*.png) go "
        "(default: <runs>/report; make bench writes results/)",
    )
    ap.add_argument(
        "--force",
        action="store_true",
        help="let this runs folder replace the report another runs folder wrote in --results",
    )
    ap.add_argument(
        "--compare",
        nargs="*",
        default=None,
        metavar="DIR",
        help="other reports (folders with verdicts.csv) whose hardware-stamped verdicts "
        "(C4 time, C9) are shown beside this one's (default: <results>/gpu if it exists)",
    )
    args = ap.parse_args(argv)
    runs = Path(args.runs)
    if not runs.is_dir():
        print(
            f"seqbench: error: --runs={args.runs} is not allowed: no such directory",
            file=sys.stderr,
        )
        return 2
    try:
        from seqbench.cli import check_dir

        results = args.results if args.results is not None else str(runs / "report")
        check_dir(f"--results={results}", results)
        out = write_report(runs, results, args.force, args.compare)
    except ConfigError as e:
        print(f"seqbench: error: {e}", file=sys.stderr)
        return 2
    print(f"seqbench: wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
