"""The report writer: discovers the studies and drives them over the collected runs.

``write_report(runs, results)`` writes ``<results>/{README.md, study_<name>.md, runs.md, *.csv,
*.png}``. README.md is the first screen a student reads: one paragraph (what was run, on what,
for how long), the claims table (seqbench/report/claims.py: one short row per verdict, linked to
its study's page), ``contact_sheet.png`` (one tile per claim, the figure that decides it:
seqbench/report/contact.py), and pointers to the pages. Each study's rule, measurements, figures
and tables are on its page ``study_<name>.md``; the bench's jobs, incomplete runs, unreadable
files and calibration runs on ``runs.md``. A results folder remembers which runs folder wrote it
and which files (``.report.json``); ``check_results`` refuses, before any work, a folder that
holds the runs folder, another runs folder's report (without ``force``) or files the report did
not write (seqbench/report/folder.py: the report is staged and moved in whole, under a lock,
and never deletes or replaces a file it did not write).

Pipeline: ``collect`` (run files -> tables) -> every study's ``verdicts`` (pure) and
``section`` (figures + text), each in its own ``try``: a study whose verdict code raises
shows ``failed: <first line>`` in the claims table, one whose figures raise says so on its
page, and neither touches the others.

Layers: this module sits above the studies (it is the one report module that imports them);
the report library below (stats, verdict, markdown, axes, plot, hardware, claims, collect,
folder, stability, generic, contact, analysis) never imports a study or this writer. The
command line (``python -m seqbench.report``, the bench, gpu-unpack) calls it.
"""

import os
import re
import sys
from pathlib import Path

import matplotlib
import pandas as pd

matplotlib.use("Agg")

from seqbench import store, studies  # noqa: E402
from seqbench.errors import ConfigError  # noqa: E402
from seqbench.report import contact, folder, generic, hardware, stability  # noqa: E402
from seqbench.report.claims import LECTURE, Evidence, claims_table, legend, page  # noqa: E402
from seqbench.report.collect import OWN_TABLES, collect, regular_problem  # noqa: E402
from seqbench.report.plot import Figures  # noqa: E402
from seqbench.report.verdict import Verdict  # noqa: E402
from seqbench.runs import first_line  # noqa: E402
from seqbench.studies._common import family_of  # noqa: E402

MANIFEST = folder.MANIFEST
README = "README.md"
RUNS_PAGE = "runs.md"  # the parts of the report that belong to no study
VERDICTS = "verdicts"  # <results>/verdicts.csv: a table no measurement may name


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
    """(verdicts, markdown) of one study, each contained, read on the runs of the
    experiment's own budget and rate (stability.at: 1x, lr step 0); stability.annotate reads
    the 4x and lr-neighbour runs beside them, and reports a verdict that differs at 4x the
    budget from the longer runs. A study with such a verdict draws its section on the 4x
    runs where they exist (stability.preferring), and says so under its heading.
    The figures the section marks with ``decides`` go on the contact sheet; a section that
    marks none lends all its figures to the claims the study decides."""
    name = studies.study_name(module)
    before, marked = len(figs.written), {p for ps in figs.deciding.values() for p in ps}
    own = stability.own(module, tables)
    try:
        verdicts = stability.annotate(module, name, tables, list(module.verdicts(own)))
    except Exception as e:
        verdicts = [Verdict(c, name, "-", "-", f"failed: {first_line(e)}") for c in module.DECIDES]
    longer = [v.claim for v in verdicts if v.budget == f"{stability.LONGER}x"]
    if longer:  # drawn where its verdict was read: the 4x runs where the full profile has them
        own = stability.preferring(tables)
    try:
        md = module.section(own, figs.of(name))
        if longer:
            md = _drawn_longer(md, sorted(set(longer)))
    except OSError:  # a full disk is the report's fault, not the study's: nothing is written
        raise
    except Exception as e:
        md = f"_This section failed to render: {first_line(e)}_"
    finally:
        figs.of(None)
    new = figs.written[before:]
    if not {p for ps in figs.deciding.values() for p in ps} - marked:
        for claim in module.DECIDES:
            figs.deciding.setdefault(claim, []).extend(new)
    return verdicts, md


def budgets(module, tables, verdicts: list) -> list[str]:
    """What trained the runs each verdict was read on ('800 steps, 3 seeds, cpu'): the
    study's own budget, or the longer one for a verdict reported from its 4x runs."""
    reads = (studies.study_name(module), *getattr(module, "READS", ()))
    longer = f"{stability.LONGER}x"
    spent = {"": generic.budget(stability.own(module, tables), *reads)}
    if any(v.budget == longer for v in verdicts):
        spent[longer] = generic.budget(stability.at(tables, stability.LONGER), *reads)
    return [spent.get(v.budget, spent[""]) for v in verdicts]


def _drawn_longer(md: str, claims: list) -> str:
    """The section, after a note that its figures and tables show the 4x runs."""
    note = (
        f"_{', '.join(claims)} read at {stability.LONGER}x the step budget (the full profile's "
        f"longer runs), so the figures and tables below show those runs wherever they exist; "
        f"the 1x runs are in runs.csv._"
    )
    return f"{note}\n\n{md}"


def other_machines(results: Path, compare) -> dict:
    """{label: verdicts table} of other reports to quote (``--compare``; by default the
    ``gpu/`` report inside this results folder, which `make gpu-unpack` writes)."""
    dirs = [Path(c) for c in compare] if compare is not None else [results / "gpu"]
    out = {}
    for d in dirs:
        path = d / f"{VERDICTS}.csv"
        if not regular_problem(path):
            try:
                out[d.name] = pd.read_csv(path)
            except Exception:  # another report's damaged file: quoted as absent, not fatal
                continue
    return out


def write_report(runs_root, results, force=False, compare=None) -> Path:
    """Write the report of ``runs_root`` into ``results``, a folder the report owns (see
    seqbench/report/folder.py): staged beside the previous report, moved in when whole."""
    runs_root, results = Path(runs_root), Path(results)
    check_results(runs_root, results, force)
    results.mkdir(parents=True, exist_ok=True)
    with folder.locked(results):
        previous = check_results(runs_root, results, force)  # another report may have won
        with folder.staged(results) as tmp:
            manifest = build(runs_root, results, tmp, compare, previous)
            folder.commit(results, tmp, previous.get("files", []), manifest)
    return results / "README.md"


def build(runs_root: Path, results: Path, out: Path, compare, previous: dict) -> dict:
    """Every file of the report into ``out``; returns the manifest of ``results``."""
    tables = collect(runs_root, reserved=(VERDICTS,))
    written = []
    for name, df in tables.items():
        store.atomic_write_text(out / f"{name}.csv", df.to_csv(index=False))
        written.append(f"{name}.csv")
    modules = studies.all_studies()
    extra = {c: t for m in modules for c, t in getattr(m, "CLAIMS", {}).items()}
    figs = Figures(out, model_families(tables), claims=LECTURE | extra)
    evidence, pages, present, made_by = [], {}, set(), {}
    for module in modules:
        name = studies.study_name(module)
        before = len(figs.written)
        v, md = study_parts(module, tables, figs)
        made_by |= dict.fromkeys(figs.written[before:], name)
        evidence += [Evidence(x, name, spent) for x, spent in zip(v, budgets(module, tables, v))]
        if md or v:
            pages[page(name)] = study_page(module, v, md, extra)
        if md:
            present.add(name)
    names = {studies.study_name(m) for m in modules}  # the rest are "other runs"
    runs_md, pointers = runs_page(tables, names, figs)
    verdicts = [e.verdict for e in evidence]
    table = generic.verdict_rows(verdicts)
    store.atomic_write_text(out / f"{VERDICTS}.csv", table.to_csv(index=False))
    written.append(f"{VERDICTS}.csv")
    sheet = contact.sheet(out, figs.deciding, evidence, made_by, extra)
    both = generic.machines(table, other_machines(results, compare))
    lost = sorted(set(previous.get("studies", [])) - present)
    if lost:
        print(
            f"seqbench: note: this report has no section for {', '.join(lost)}, which the "
            f"previous report in {results} had",
            file=sys.stderr,
        )
    for name, md in {**pages, RUNS_PAGE: runs_md}.items():
        store.atomic_write_text(out / name, md)
    readme = "\n".join(
        [
            "# seqbench results",
            "",
            generic.opening(tables, runs_root),
            "",
            "## The lecture's claims, and what the data says",
            "",
            claims_table(evidence, extra),
            "",
            legend(),
            "",
            *(["### On each machine", "", both, ""] if both else []),
            *(["## The evidence at a glance", "", sheet, ""] if sheet else []),
            "## Studies",
            "",
            *[
                f"- [{m.TITLE}]({page(studies.study_name(m))})"
                for m in modules
                if page(studies.study_name(m)) in pages
            ],  # fmt: skip
            *([f"- Missing here, present in the previous report: {', '.join(lost)}"] * bool(lost)),
            "",
            "## Hardware and versions",
            "",
            hardware.listing(tables),
            "",
            "## Runs and jobs",
            "",
            *pointers,
            "",
        ]
    )
    store.atomic_write_text(out / README, readme)
    written += [README, RUNS_PAGE, *pages, *figs.written, *([contact.NAME] if sheet else [])]
    return {
        "runs": _relative(runs_root, results),
        "files": sorted(set(written)),
        "studies": sorted(present),
    }


def study_page(module, verdicts: list, md: str, extra: dict) -> str:
    """A study's page: its verdicts in full (claim, measured, rule, hardware, stability), then
    its section (figures and tables)."""
    texts = LECTURE | extra
    lines = [f"# {module.TITLE}", "", "[All claims and verdicts](README.md)", ""]
    if verdicts:
        lines += ["## Verdicts", ""]
    for v in verdicts:
        lines.append(f"- **{v.claim}** ({texts.get(v.claim, 'beyond the lecture')}), "
                     f"{v.experiment}: **{v.verdict}**")  # fmt: skip
        for what in ("measured", "rule", "hardware", "stability"):
            if getattr(v, what) not in ("", "-"):
                lines.append(f"  - {what}: {getattr(v, what)}")
    return "\n".join([*lines, "", *([md, ""] if md else [])])


GENERIC = (  # (title, part): the report's sections that belong to no study, on RUNS_PAGE
    ("Bench jobs and their wall time", lambda t, names, figs: generic.bench_jobs(t)),
    ("Runs that did not complete", lambda t, names, figs: generic.incomplete(t)),
    ("Files that could not be read", lambda t, names, figs: generic.unreadable(t)),
    ("Learning-rate calibration", lambda t, names, figs: generic.calibration(t)),
    ("Other runs", lambda t, names, figs: generic.other_runs(t, names, figs)),
)


def runs_page(tables, names: set, figs) -> tuple[str, list[str]]:
    """RUNS_PAGE (the bench's jobs, runs that did not complete, unreadable files, learning
    rate calibration, runs of no study) and one README line per part it holds: the part's
    first sentence, linked."""
    lines, pointers = ["# Runs and jobs", "", "[All claims and verdicts](README.md)", ""], []
    for title, part in GENERIC:
        md = part(tables, names, figs)
        if not md:
            continue
        lines += [f"## {title}", "", md, ""]
        anchor = re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")
        pointers.append(f"- [{title}]({RUNS_PAGE}#{anchor}): {first_sentence(md)}")
    lines += ["## Hardware and versions", "", hardware.listing(tables), ""]
    return "\n".join(lines), pointers


def first_sentence(md: str, most: int = 200) -> str:
    """The opening sentence of a markdown part (up to '. ' or ':' + newline), or its first
    table's row count when it opens with a table."""
    if md.startswith("|"):
        rows = sum(1 for line in md.splitlines() if line.startswith("|")) - 2
        return f"a table of {rows} rows."
    text = re.split(r"(?<=\.)\s|:\n", md.strip(), maxsplit=1)[0].replace("\n", " ")
    return text if len(text) <= most else text[: most - 1].rsplit(" ", 1)[0] + " …"


def _relative(runs_root: Path, results: Path) -> str:
    """The runs folder as seen from the results folder (the same in every clone)."""
    return os.path.relpath(runs_root.resolve(), results.resolve())


def check_results(runs_root: Path, results: Path, force: bool) -> dict:
    """The previous manifest, checked; refused (ConfigError) before any work: a results folder
    that is or holds the runs folder, holds files the report did not write, or (without
    ``force``) holds another runs folder's report."""
    runs_root, results = Path(runs_root), Path(results)
    if results.exists() and not results.is_dir():
        raise ConfigError(f"--results={results} is not allowed: it is a file, not a directory")
    try:
        mine, runs = results.resolve(), runs_root.resolve()
    except (OSError, RuntimeError) as e:
        raise ConfigError(f"--results={results} is not allowed: {first_line(e)}") from None
    if not force and (mine == runs or mine in runs.parents):
        raise ConfigError(
            f"--results={results} is not allowed: it {'is' if mine == runs else 'holds'} the "
            f"runs folder {runs_root}; the report needs a folder of its own (default: "
            "<runs>/report)"
        )
    previous = folder.read_manifest(results) if results.is_dir() else {}
    theirs = previous.get("runs")
    if theirs and theirs != _relative(runs_root, results) and not force:
        raise ConfigError(
            f"--results={results} is not allowed: it holds the report of the runs folder "
            f"{theirs!r} (relative to it); "
            "choose another folder or pass --force to replace it"
        )
    others = folder.foreign(results, previous.get("files", []))
    if others and not force:
        raise ConfigError(
            f"--results={results} is not allowed: it holds files the report did not write "
            f"({folder.names(others)}); choose a new or empty folder, or pass --force to "
            "write beside them (never deleting or replacing one)"
        )
    clash = [f for f in always_written() if f in others]
    if clash:
        raise ConfigError(
            f"--results={results} is not allowed: its {folder.names(clash)} is not the "
            "report's and the report writes a file of that name (--force never replaces "
            "a file the report did not write); choose another folder"
        )
    return previous


def always_written() -> list[str]:
    """The files every report writes, whatever its runs: README, verdicts, collect's tables."""
    return [README, RUNS_PAGE, f"{VERDICTS}.csv", *(f"{t}.csv" for t in OWN_TABLES)]
