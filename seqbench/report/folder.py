"""The results folder: the report writes only into a folder it owns, and whole or not at all.

A folder is the report's own when each entry in it is listed in its manifest (``.report.json``,
written by every report), is that manifest, or is a report nested in it (a folder with a
manifest of its own: ``gpu/``, which ``make gpu-unpack`` writes). Any other entry is not the
report's: without ``--force`` such a folder is refused; with it the report writes beside those
files but never deletes or overwrites one. The manifest's entries are read from a file, so each
must be a plain file name of a kind the report writes, inside the folder once links are
resolved; one that is not refuses the folder, and nothing is written or deleted.

Writing (``locked`` + ``staged`` + ``commit``): under an exclusive flock (a second report
waits), every file goes into ``.report-tmp-<pid>/`` inside the folder; only when all are
written are they moved in, one rename each, after a manifest that lists the old and the new
files, then the final manifest, then the previous report's files this one lacks are removed.
A raise, a full disk or a kill while writing leaves the previous report byte for byte; a kill
during the renames (milliseconds) leaves a folder whose manifest still lists every file in it,
which the next report replaces.
"""

import fcntl
import os
import re
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

from seqbench import store
from seqbench.errors import ConfigError
from seqbench.report.collect import regular_problem

MANIFEST = ".report.json"
LOCK = ".report.lock"
SUFFIXES = (".csv", ".png", ".md")  # tables, figures, README.md: all a report ever writes
# what a killed report leaves: its staging folder, a torn atomic write of the manifest
LEFTOVER = re.compile(r"\.report-tmp-\d+|\.\.report\.json\.[a-z0-9_]+\.tmp")


def read_manifest(results: Path) -> dict:
    """The previous report's manifest ({} when there is none), each entry checked; refused
    (ConfigError) when it is not one the report could have written."""
    path = results / MANIFEST
    if not os.path.lexists(path):
        return {}
    problem = regular_problem(path)
    data = None if problem else store.read_json(path)
    if problem or not isinstance(data, dict):
        why = problem or "not a JSON mapping"
    else:
        why = _manifest_problem(results, data)
    if why:
        raise ConfigError(
            f"--results={results} is not allowed: its {MANIFEST} is not one the report wrote "
            f"({why}); nothing was written or deleted (remove it if the folder is yours)"
        )
    return data


def _manifest_problem(results: Path, data: dict) -> str | None:
    files, runs, studies = data.get("files", []), data.get("runs"), data.get("studies", [])
    if not isinstance(runs, str | None):
        return "runs is not a path"
    if not isinstance(studies, list) or not all(str(s).isidentifier() for s in studies):
        return "studies is not a list of names"
    if not isinstance(files, list):
        return "files is not a list"
    bad = [f for f in files if not inside(results, f)]
    return f"it lists {bad[0]!r}, not a file of the report inside the folder" if bad else None


def inside(results: Path, entry) -> bool:
    """True for a plain file name of a kind the report writes, which stays inside ``results``
    once links are resolved: never ``..``, an absolute path, a subfolder or a link out."""
    if not isinstance(entry, str) or entry != Path(entry).name or entry.startswith("."):
        return False
    if not entry.endswith(SUFFIXES) or "\x00" in entry:
        return False
    try:
        root = results.resolve()
        return (results / entry).resolve().parent == root
    except (OSError, RuntimeError):  # a symlink loop
        return False


def foreign(results: Path, files) -> list[str]:
    """The entries of ``results`` the report did not write (none when it does not exist)."""
    if not results.is_dir():
        return []
    ours = {*files, MANIFEST, LOCK}
    out = []
    for entry in sorted(os.listdir(results)):
        path = results / entry
        nested = path.is_dir() and not path.is_symlink() and os.path.lexists(path / MANIFEST)
        if not (entry in ours or LEFTOVER.fullmatch(entry) or nested):
            out.append(entry)
    return out


def names(entries, most=4) -> str:
    """File names for a one-line message: quoted (a newline in a name stays ``\\n``)."""
    shown = ", ".join(repr(e) for e in entries[:most])
    return shown + (f" and {len(entries) - most} more" if len(entries) > most else "")


@contextmanager
def locked(results: Path):
    """An exclusive flock on ``<results>/.report.lock`` while the report writes; a second
    report waits for it. The lock file goes when released; a waiter woken on a removed file
    takes the lock again on the current one, so two holders never overlap."""
    path, told = results / LOCK, False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not told:
                print(f"seqbench: waiting for the report writing {results}", file=sys.stderr)
                told = True
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.fstat(fd).st_ino == os.stat(path, follow_symlinks=False).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


@contextmanager
def staged(results: Path):
    """A fresh ``.report-tmp-<pid>/`` inside ``results`` (what killed reports left is removed
    first: the lock is held, so it is nobody's), removed again on the way out."""
    for entry in os.listdir(results):
        path = results / entry
        if LEFTOVER.fullmatch(entry) and not path.is_symlink():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    tmp = results / f".report-tmp-{os.getpid()}"
    tmp.mkdir()
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def commit(results: Path, tmp: Path, previous: list[str], manifest: dict) -> None:
    """Move the staged files in; remove the previous report's files this one lacks. A staged
    file whose name a file the report did not write holds is refused, whatever --force."""
    new = manifest["files"]
    clash = [f for f in new if f not in previous and os.path.lexists(results / f)]
    if clash:
        raise ConfigError(
            f"--results={results} is not allowed: it holds {names(clash)}, which the report "
            "did not write and would replace; nothing was written (--force never overwrites "
            "a file the report did not write)"
        )
    store.atomic_write_json(results / MANIFEST, manifest | {"files": sorted({*previous, *new})})
    for name in new:
        os.replace(tmp / name, results / name)
    store.atomic_write_json(results / MANIFEST, manifest)
    for stale in sorted(set(previous) - set(new)):
        path = results / stale
        if path.is_symlink() or path.is_file():
            path.unlink()
