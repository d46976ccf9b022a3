"""Where the text of a language-modelling run comes from, and how it is checked.

    (nothing)            the standard-library corpus: Python sources of the running
                         interpreter (STDLIB_FILES), offline; the tail data.val_frac is held out
    data.path=<file>     any UTF-8 file, split the same way
    data.path=<folder>   train.txt, valid.txt and optionally test.txt: the WikiText / PTB layout
                         (Merity et al. 2016; Mikolov et al. 2010), each split its own file
    data.corpus=<name>   a named corpus (CORPORA), downloaded the first time it is asked for into
                         the cache ($SEQBENCH_CACHE, else $XDG_CACHE_HOME/seqbench, else
                         ~/.cache/seqbench), its archive checked against a pinned sha256, then
                         read as a folder. Nothing is ever downloaded unless data.corpus is set.
                         The cached folder is used as that corpus only while its corpus.json
                         names the pinned archive and each split file still has the sha256 it
                         was extracted with (``verify_cache``); anything else is refused.

Every refusal is one line naming the key (``data.path=x is not allowed: ...``); the loaders
return the text of each split and a fingerprint (sources, sha256, bytes) for run.json.
"""

import hashlib
import json
import os
import shutil
import stat
import sys
import sysconfig
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

STDLIB_FILES = (
    "textwrap.py",
    "argparse.py",
    "difflib.py",
    "pydoc.py",
    "inspect.py",
    "typing.py",
    "dataclasses.py",
    "functools.py",
    "random.py",
    "statistics.py",
    "fractions.py",
    "calendar.py",
    "shutil.py",
    "tarfile.py",
    "zipfile.py",
    "json/decoder.py",
    "json/encoder.py",
    "logging/__init__.py",
    "email/message.py",
    "http/client.py",
)
# the standard-library corpus's test split: other sources of the same library, read by
# nothing that trains or selects (seqbench.measure: what=test_set, what=ngram what.split=test);
# outside its fingerprint (corpus_sha256), so the runs made before it existed stay this corpus's
STDLIB_TEST_FILES = ("ast.py", "pathlib.py", "threading.py")
SPLIT_FILES = {"train": "train.txt", "val": "valid.txt", "test": "test.txt"}  # test optional
DONE = "corpus.json"  # written last into a fetched folder: what was fetched, and its sha256


@dataclass(frozen=True)
class Corpus:
    """A named corpus: one archive at ``url`` whose sha256 must match, and where each split
    lies in it (``members``: split -> path inside the archive), or, with ``byte_split``, one
    member cut into train / valid / test by byte counts (enwik8's 90M / 5M / 5M)."""

    url: str
    sha256: str | None  # None: not pinned, and then never fetched
    members: dict = field(default_factory=dict)
    byte_split: tuple[int, int, int] | None = None
    about: str = ""


_WT = "https://s3.amazonaws.com/research.metamind.io/wikitext/"


def _splits(pattern: str) -> dict:
    """{train, val, test: the archive member} from a pattern with {} for train/valid/test."""
    return {
        s: pattern.format(n) for s, n in (("train", "train"), ("val", "valid"), ("test", "test"))
    }


CORPORA = {
    # sha256 of the archives as published by Salesforce Research (the same values pinned by
    # independent loaders, e.g. Julia's MLDatasets DataDeps registrations)
    "wikitext-2": Corpus(
        _WT + "wikitext-2-v1.zip",
        "92675f1d63015c1c8b51f1656a52d5bdbc33aafa60cc47a218a66e7ee817488c",
        _splits("wikitext-2/wiki.{}.tokens"),
        about="WikiText-2 (Merity et al. 2016), word level, <unk> applied: tokenizer=whitespace",
    ),
    "wikitext-2-raw": Corpus(
        _WT + "wikitext-2-raw-v1.zip",
        "ef7edb566e3e2b2d31b29c1fdb0c89a4cc683597484c3dc2517919c615435a11",
        _splits("wikitext-2-raw/wiki.{}.raw"),
        about="WikiText-2 raw (no <unk>): tokenizer=char",
    ),
    "wikitext-103": Corpus(
        _WT + "wikitext-103-v1.zip",
        "242ba0f20b329cfdf1ccc61e9e9e5b59becf189db7f7a81cd2a0e2fc31539590",
        _splits("wikitext-103/wiki.{}.tokens"),
        about="WikiText-103, word level: tokenizer=whitespace",
    ),
    "wikitext-103-raw": Corpus(
        _WT + "wikitext-103-raw-v1.zip",
        "91c00ae287f0d699e18605c84afc9e45c192bc6b7797ff8837e5474655a33794",
        _splits("wikitext-103-raw/wiki.{}.raw"),
        about="WikiText-103 raw: tokenizer=char",
    ),
    # not pinned: no sha256 we could check against a second source; refused until one is
    "ptb": Corpus(
        "http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz",
        None,
        _splits("./simple-examples/data/ptb.{}.txt"),
        about="Penn Treebank, Mikolov's preprocessing: tokenizer=whitespace",
    ),
    "enwik8": Corpus(
        "http://mattmahoney.net/dc/enwik8.zip",
        None,
        {"all": "enwik8"},
        byte_split=(90_000_000, 5_000_000, 5_000_000),
        about="enwik8 (Hutter Prize), 90M/5M/5M bytes: tokenizer=char",
    ),
}


# --- reading ----------------------------------------------------------------------------------
def decode(raw: bytes, key: str, value, what: str = "the file") -> str:
    """UTF-8 text, or one line saying why not."""
    if not raw.strip():
        raise ValueError(f"{key}={value} is not allowed: {what} is empty")
    if b"\0" in raw[:65536]:
        raise ValueError(f"{key}={value} is not allowed: {what} is binary, need UTF-8 text")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{key}={value} is not allowed: {what} is not UTF-8 text ({e.reason} at byte {e.start})"
        ) from None


def fingerprint(source: str, raws: dict) -> dict:
    """sources, sha256 (of one file, or of the per-file digests) and bytes, for run.json."""
    digests = {name: hashlib.sha256(raw).hexdigest() for name, raw in raws.items()}
    whole = (
        digests[next(iter(digests))]
        if len(digests) == 1
        else hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest()
    )
    out = {"corpus": source, "corpus_sha256": whole, "corpus_bytes": sum(map(len, raws.values()))}
    return out | ({"corpus_files": digests} if len(digests) > 1 else {})


def read_stdlib() -> tuple[dict, dict]:
    """({"all": STDLIB_FILES, "test": STDLIB_TEST_FILES}, fingerprint): "all" is split into
    train and its held-out tail as a single file is; "test" is recorded beside the corpus's
    own sha256 (``test_sha256``), never in it."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = [root / f for f in STDLIB_FILES if (root / f).is_file()]
    raw = b"".join(f.read_bytes() for f in files)
    source = f"python{sysconfig.get_python_version()} stdlib ({len(files)} files)"
    out, stamp = {"all": raw.decode("utf-8")}, fingerprint(source, {"stdlib": raw})
    tests = [root / f for f in STDLIB_TEST_FILES if (root / f).is_file()]
    if tests and len(tests) == len(STDLIB_TEST_FILES):  # a partial library: no test split
        test = b"".join(f.read_bytes() for f in tests)
        out["test"] = test.decode("utf-8")
        stamp |= {"test_corpus": f"{', '.join(STDLIB_TEST_FILES)} of the same library",
                  "test_sha256": hashlib.sha256(test).hexdigest()}  # fmt: skip
    return out, stamp


def read_path(path: str, key: str = "data.path") -> tuple[dict, dict]:
    """({"all": text} for a file, or {"train", "val"[, "test"]: text} for a folder, fingerprint)."""
    p = Path(path).expanduser()
    if p.is_dir():
        return read_folder(p, key, path)
    if p.exists() and not p.is_file():
        raise ValueError(
            f"{key}={path} is not allowed: not a regular file or folder (a FIFO, socket or "
            "device is never read)"
        )
    if not p.is_file():
        raise ValueError(f"{key}={path} is not allowed: no such file or folder")
    raw = p.read_bytes()
    return {"all": decode(raw, key, path)}, fingerprint(str(p.resolve()), {p.name: raw})


def read_folder(folder: Path, key: str, value, source: str | None = None) -> tuple[dict, dict]:
    """train.txt and valid.txt must be there and hold text; test.txt is optional."""
    present = sorted(p.name for p in folder.iterdir() if p.is_file())
    for split in ("train", "val"):
        if not (folder / SPLIT_FILES[split]).is_file():
            raise ValueError(
                f"{key}={value} is not allowed: no {SPLIT_FILES[split]} there (a corpus folder "
                "holds train.txt, valid.txt and optionally test.txt; found: "
                f"{', '.join(present) or 'nothing'})"
            )
    raws = {
        s: (folder / name).read_bytes()
        for s, name in SPLIT_FILES.items()
        if (folder / name).is_file()
    }
    texts = {s: decode(raw, key, value, SPLIT_FILES[s]) for s, raw in raws.items()}
    named = {SPLIT_FILES[s]: raw for s, raw in raws.items()}
    return texts, fingerprint(source or str(folder.resolve()), named)


# --- named corpora ------------------------------------------------------------------------------
def cache_root() -> Path:
    base = os.environ.get("SEQBENCH_CACHE") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "seqbench"
    )
    return Path(base) / "corpora"


def read_named(name: str) -> tuple[dict, dict]:
    """A named corpus from the cache, fetched first if it is not there, and recorded as the
    pinned corpus only once the cached folder is verified against it (``verify_cache``)."""
    if name not in CORPORA:
        raise ValueError(f"data.corpus={name} is not allowed: one of {', '.join(CORPORA)}")
    spec = CORPORA[name]
    folder = fetch(name, spec, cache_root())
    texts, fp = read_folder(folder, "data.corpus", name, source=f"{name} ({spec.url})")
    verify_cache(name, spec, folder, fp.get("corpus_files") or {})
    return texts, fp | {"corpus_archive_sha256": spec.sha256}


def verify_cache(name: str, spec: Corpus, folder: Path, digests: dict) -> None:
    """Raise ValueError unless the cached folder is the pinned corpus: its corpus.json (written
    by ``fetch`` after the archive's sha256 matched) names the pinned sha256, and every split
    file there (``digests``: name -> sha256, as read) has the sha256 it was extracted with."""
    fix = f"remove {folder} to fetch it again"
    try:
        with open(folder / DONE, "rb") as f:  # fetch's own small file: bounded read
            done = json.loads(f.read(1 << 16).decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        done = None
    if not isinstance(done, dict) or done.get("sha256") != spec.sha256:
        got = done.get("sha256") if isinstance(done, dict) else None
        raise ValueError(
            f"data.corpus={name} is not allowed: the cached folder comes from an archive with "
            f"sha256 {got}, not the pinned {spec.sha256}; {fix}"
        )
    extracted = done.get("files")
    if not isinstance(extracted, dict):
        raise ValueError(
            f"data.corpus={name} is not allowed: the cached folder does not record the sha256 "
            f"of its files (fetched by an older seqbench), so it cannot be verified; {fix}"
        )
    for file in sorted(set(digests) | set(extracted)):
        if extracted.get(file) != digests.get(file):
            raise ValueError(
                f"data.corpus={name} is not allowed: the cached {file} is not the file "
                f"extracted from the pinned archive (changed or missing); {fix}"
            )


def corpus_stamp(path: str | None = None, corpus: str | None = None) -> tuple:
    """What changes whenever a corpus file does (inode, size, mtime, ctime of each file it
    is read from): a cache of the text keyed by this never serves an edited file. The
    standard-library corpus cannot change under a running interpreter: ()."""
    if corpus is not None:
        folder = cache_root() / corpus
        names = (DONE, *SPLIT_FILES.values()) if corpus in CORPORA else ()
        files = [folder / n for n in names]
    elif path is None:
        return ()
    else:
        p = Path(path).expanduser()
        files = [p / n for n in SPLIT_FILES.values()] if p.is_dir() else [p]
    return tuple(_stat(f) for f in files)


def _stat(path: Path) -> tuple:
    try:
        st = os.stat(path)
    except OSError:
        return (str(path), None)
    kind = stat.S_IFMT(st.st_mode)
    return (str(path), kind, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def fetch(name: str, spec: Corpus, root: Path) -> Path:
    """root/name/{train,valid,test}.txt, downloaded and checked once; later calls read the
    cache. Nothing is kept when the sha256 does not match."""
    folder = Path(root) / name
    if (folder / DONE).is_file():
        return folder
    if spec.sha256 is None:
        raise ValueError(
            f"data.corpus={name} is not allowed: no sha256 is pinned for {spec.url} "
            "(seqbench/data/corpora.py); fetch it yourself and use data.path=<folder with "
            "train.txt, valid.txt, test.txt>"
        )
    Path(root).mkdir(parents=True, exist_ok=True)
    print(f"seqbench: fetching {name} from {spec.url} into {folder}", file=sys.stderr)
    with tempfile.TemporaryDirectory(dir=root, prefix=f".{name}-") as tmp:
        archive = Path(tmp) / "archive"
        digest = download(spec.url, archive, name)
        if digest != spec.sha256:
            raise ValueError(
                f"data.corpus={name} is not allowed: {spec.url} has sha256 {digest}, "
                f"expected {spec.sha256}; nothing was kept"
            )
        staging = Path(tmp) / "folder"
        staging.mkdir()
        files = extract(spec, archive, staging)
        done = {"url": spec.url, "sha256": digest, "files": files}
        (staging / DONE).write_text(json.dumps(done) + "\n")
        shutil.rmtree(folder, ignore_errors=True)  # a folder without DONE is a torn fetch
        try:
            staging.rename(folder)
        except OSError:  # another process finished the same fetch first
            if not (folder / DONE).is_file():
                raise
    return folder


def download(url: str, dest: Path, name: str) -> str:
    """Stream url to dest; returns the sha256 of the bytes."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as f:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                f.write(chunk)
    except OSError as e:  # URLError, timeouts, refused connections
        raise ValueError(
            f"data.corpus={name} is not allowed: downloading {url} failed "
            f"({getattr(e, 'reason', e)}); put the files in a folder and use data.path="
        ) from None
    return digest.hexdigest()


def extract(spec: Corpus, archive: Path, folder: Path) -> dict:
    """Write folder/{train,valid,test}.txt from the archive (zip or tar); returns the sha256
    of each file written (corpus.json records them: ``verify_cache``)."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            members = {s: z.read(m) for s, m in spec.members.items()}
    else:
        with tarfile.open(archive) as t:
            members = {s: t.extractfile(m).read() for s, m in spec.members.items()}
    if spec.byte_split:
        members = split_bytes(members["all"], spec.byte_split)
    for split, raw in members.items():
        (folder / SPLIT_FILES[split]).write_bytes(raw)
    return {SPLIT_FILES[s]: hashlib.sha256(raw).hexdigest() for s, raw in members.items()}


def split_bytes(raw: bytes, sizes: tuple[int, int, int]) -> dict:
    """train / valid / test of ``sizes`` bytes, each cut moved forward to the next UTF-8
    character start (at most 3 bytes), so that every split decodes on its own."""
    cuts = [0]
    for n in sizes:
        at = min(len(raw), cuts[-1] + n)
        while at < len(raw) and raw[at] & 0xC0 == 0x80:  # a continuation byte: not a start
            at += 1
        cuts.append(at)
    return {s: raw[a:b] for s, a, b in zip(("train", "val", "test"), cuts, cuts[1:])}
