"""python -m seqbench.report --runs DIR [--results DIR] [--force]: aggregate runs, write the report.

The report reads run directories and writes ``<results>/{README.md, study_<name>.md, runs.md,
*.csv, *.png}``: README.md opens with the claims table and the contact sheet
(contact_sheet.png), each study's rule, figures and tables are on its page, the bench's jobs
and runs of no study on runs.md (seqbench/report/write.py). By default ``<runs>/report``, so
re-aggregating some other runs folder never touches the committed ``results/`` (``make bench``
passes ``--results results``). A results folder remembers which runs folder wrote it and which
files (``.report.json``): writing it from another one needs ``--force``, and a folder holding
files the report did not write (a project, the runs folder) is refused
(seqbench/report/folder.py: the report is staged and moved in whole, under a lock, and never
deletes or replaces a file it did not write). Files the previous report wrote and this one does
not are removed, and studies the previous report had and this one lacks are named, on the
terminal and in the README.
"""

import argparse
import sys
from pathlib import Path

from seqbench import studies
from seqbench.errors import ConfigError, fail
from seqbench.report.write import write_report
from seqbench.runs import first_line
from seqbench.store import check_dir


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
        help="let this runs folder replace the report another runs folder wrote in --results, "
        "and write beside files the report did not write (never replacing or deleting one)",
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
        return fail(f"--runs={args.runs} is not allowed: no such directory")
    results = args.results if args.results is not None else str(runs / "report")
    try:
        check_dir(f"--results={results}", results)
        out = write_report(runs, results, args.force, args.compare)
    except ConfigError as e:
        return fail(str(e))
    except OSError as e:  # a full disk, a folder made read-only meanwhile: the old report stands
        why = e.strerror or first_line(e)
        print(f"seqbench: error: cannot write the report to {results}: {why}", file=sys.stderr)
        return 1
    print(f"seqbench: wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
