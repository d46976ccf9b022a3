"""The table of bad inputs (issue 13, items 8 and 9, and more): each must be refused before any
work with one line, ``seqbench: error: <key>=<value> is not allowed: ...``, and exit code 2.

    python -m tests.bad_inputs               # runs the table here, prints the counts
    python -m tests.bad_inputs --subprocess  # each row as its own process (slow, exact)

A row is (entry point, arguments, the key the message must name). Arguments may use
``{file}`` (a regular file), ``{dir}`` (an empty directory), ``{fifo}`` (a named pipe),
``{loop}`` (a symbolic link to itself), ``{dangling}`` (a link to nothing), ``{dothydra}`` (a
folder whose ``.hydra`` is a file), ``{pickle}`` (a pickle that, loaded, creates a file in
``{outside}``), ``{evil}`` (a config folder whose experiment ``bad`` names a foreign
``_target_``) and ``{tmp}`` (the scratch folder holding them, also the working directory);
``{outside}`` is a folder outside ``{tmp}`` and ``{canary}`` a file in it that no row may
touch. The Hydra entry points get ``out_dir={tmp}/runs`` unless the row sets out_dir itself.
``attempt`` runs one row in this process, the way a user runs it (seqbench's command line,
Hydra, the validating sweeper), under an alarm; ``attempt_in_a_process`` as its own process.
Either says how it ended:

    refused        exit 2, one line naming the key, nothing written under {tmp}
    wrong message  exit 2 and one line, but it names another key (or wrote something)
    traceback      an exception escaped, or Hydra printed one (exit 1)
    accepted       it started work (exit 0, or still running when the alarm rang with run
                   directories written)
    hang           still running at the alarm, nothing written
    security       something was written in {outside} (a file created outside the scratch
                   folder: a path escaped, or code named on the command line ran)
    lost           {canary} was changed or removed (a file seqbench was not given destroyed)
"""

import contextlib
import io
import os
import pickle
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

HYDRA_ENTRIES = ("train", "measure", "perf")
TIMEOUT_S = 60  # preflight takes about a second; a minute means it hangs or trains
OUTCOMES = ("refused", "wrong message", "traceback", "accepted", "hang", "security", "lost")
CANARY = "a file no row may touch\n"
SLURM_HERE = bool(shutil.which("sbatch") or shutil.which("srun"))  # never submit from a test


@dataclass(frozen=True)
class Bad:
    entry: str  # train | measure | perf | report | bench
    argv: tuple
    key: str  # the message must contain f"{key}="
    says: str = ""  # ... and this, when the reason matters as much as the key
    owner: str = ""  # a file another helper owns that must change for this row to pass

    @property
    def id(self) -> str:
        return f"{self.entry}: {' '.join(self.argv)}"


def _rows(entry, *rows, owner=""):
    """Rows of one entry point: (arguments, key) or (arguments, key, says)."""
    return [Bad(entry, tuple(argv.split()), *rest, owner=owner) for argv, *rest in rows]


T = "model=transformer"

TABLE = [
    # --- issue 13, item 8: tracebacks -----------------------------------------------------
    *_rows(
        "train",
        ("train.betas=5", "train.betas"),
        ("-m seed=0,", "seed"),
        ("-m seed=choice(0,1", "seed"),
        ("out_dir={file}/runs", "out_dir"),
        ("out_dir={file}", "out_dir"),
    ),
    *_rows("perf", ("mfu.seq_lens=5", "mfu.seq_lens")),
    *_rows("measure", ("what._target_=os.system", "what._target_")),
    *_rows("report", ("--runs {file}/runs", "--runs"), ("--runs {file}", "--runs")),
    *_rows("report", ("--runs {dir} --results {file}/results", "--results")),
    *_rows(
        "bench",
        ("--profile smoke --runs {file}/runs", "--runs"),
        ("--profile smoke --runs {tmp}/runs --results {file}/results", "--results"),
    ),
    # --- item 8: silently accepted ----------------------------------------------------------
    *_rows(
        "train",
        ("train.deterministic=maybe", "train.deterministic"),
        ("train.compile=maybe", "train.compile"),
        (f"{T} model.tie_weights=maybe", "model.tie_weights"),
        ("fresh=maybe", "fresh"),
        ("fresh=1", "fresh"),
        ("+foo=1", "foo"),
        ("+train.foo=1", "train.foo"),
        ("data.seed=abc", "data.seed"),
        ("data.n_keys=2.5", "data.n_keys"),
        ("data.n_train=100.5", "data.n_train"),
        ("seed=18446744073709551616", "seed"),
        ("data.seed=18446744073709551616", "data.seed"),
        (f"{T} model.pos=learned model.max_len=8 data.seq_len=16 data.distance=4", "model.max_len"),
    ),
    *_rows("perf", ("size=xl", "size")),
    # --- item 8: messages that must name the right key --------------------------------------
    *_rows(
        "train",
        (f"{T} model.dropout=2", "model.dropout"),
        (f"{T} model.dropout=abc", "model.dropout"),
        ("data=mqar data.power_a=abc", "data.power_a"),
        ("data=text data.val_frac=abc", "data.val_frac"),
        ("data.distance=null", "data.distance"),
        ("~train", "train"),
        ("~model", "model"),
    ),
    *_rows("train", ("data=text data.path={dir}", "data.path")),  # an empty corpus folder
    *_rows("train", ("data=text data.val_frac=1e-9", "data.val_frac")),  # not seq_len
    *_rows("train", ("data=text data.path={fifo}", "data.path", "regular file")),
    # --- item 9: hangs ----------------------------------------------------------------------
    *_rows(
        "measure",
        ("what=timing what.min_run_time=inf", "what.min_run_time"),
        ("what=timing what.min_run_time=nan", "what.min_run_time"),
        ("what=timing what.max_call_s=inf", "what.max_call_s"),
        ("what=timing what.min_run_time=1e9", "what.min_run_time"),
        ("what=decode what.min_run_time=inf", "what.min_run_time"),
        ("what=kernels what.min_run_time=inf", "what.min_run_time"),
        ("what=timing what.lengths=[10000000000]", "what.lengths"),
    ),
    *_rows(
        "train",
        ("model.n_layers=100000", "model.n_layers"),
        ("-m seed=range(0,100000)", "seed"),
        ("-m seed=range(0,200) data.seed=range(0,200)", "seed"),
        ("model.d_model=10000000", "model.d_model"),
        ("data.seq_len=100000000", "data.seq_len"),
        ("train.steps=100000000000", "train.steps"),
    ),
    # --- issue 13, item 7: paths ------------------------------------------------------------
    *_rows(
        "train",
        ("study=../../x", "study"),
        ("study=/tmp/abs", "study"),
        ("study=a/b", "study"),
        ("study=''", "study"),
        ("study=.hidden", "study"),
        ("out_dir=''", "out_dir"),
        ("-m seed=0,1 out_dir={file}/runs", "out_dir"),
    ),
    # --- found while building the table ---------------------------------------------------
    *_rows(
        "train",
        ("train.steps=${oops}", "train.steps"),
        ("data.seq_len=${data.seq_len}", "data.seq_len"),
        ("=5", "", "=5 is not allowed"),
        ("+train.lr_control={data.nope:1} train.lr_grid=[0.01]", "train.lr_control.data.nope"),
        ("+train.lr_control={train.steps:0} train.lr_grid=[0.01]", "train.lr_control.train.steps"),
        ("model._target_=torch.nn.Linear", "model._target_"),
        ("model._target_=os.system", "model._target_"),
        ("data._target_=builtins.eval", "data._target_"),
        ("hydra/launcher=nope", "hydra/launcher"),
        ("-m seed=0,1 hydra/launcher=local hydra.launcher.n_jobs=abc", "hydra.launcher.n_jobs"),
        ("hydra.sweeper.params.seed=choice(0,", "seed"),
        ("-m seed=glob(*)", "seed"),
        ("-m seed=range(0,10,0)", "seed"),
        ("-m seed=range(10,0)", "seed"),
        ("-m seed=interval(0,1)", "seed"),
        ("-m model=glob(nomatch*)", "model"),
        ("train.lr=1e400", "train.lr"),
        ("train.betas=[0.9,0.95,0.99]", "train.betas"),
        ("train.criterion=val_acc train.target=abc", "train.target"),
        ("train.eval_batches=100000000", "train.eval_batches"),
        ("train.threads=100000", "train.threads"),
        ("data.n_train=100000000000", "data.n_train"),
    ),
    *_rows(
        "measure",
        ("what.lengths=[8,abc]", "what.lengths"),
        ("what=timing what.impls=[foo]", "what.impls"),
        ("what._target_=seqbench.measure.nope", "what._target_"),
        (f"{T} what=order what.positions=[foo]", "what.positions"),
    ),
    *_rows(
        "perf",
        ("overhead.tiny.seq_len=1000", "overhead.tiny.seq_len"),
        ("mfu.models=[foo]", "mfu.models"),
    ),
    *_rows("report", ("--runs {dir} --results=", "--results")),  # the cwd!
    *_rows(
        "bench",
        ("--profile smoke --runs {tmp}/runs --results=", "--results"),
        ("--profile smoke --runs=", "--runs"),
        ("--profile smoke --only= --runs {tmp}/runs", "--only"),
        ("--profile smoke --only no_such_job --runs {tmp}/runs --results {tmp}/res", "--only"),
        ("--profile smoke --only core_recall, --runs {tmp}/runs --results {tmp}/res", "--only"),
        ("--profile nope --runs {tmp}/runs", "--profile"),
    ),
    # --- types and ranges of every node -------------------------------------------------------
    *_rows(
        "train",
        ("model=foo", "model"),
        ("data=nope", "data"),
        ("-m model=rnn,foo", "model"),
        ("+experiment=nope", "experiment"),
        ("train.stpes=5", "train.stpes"),
        ("model.dmodel=5", "model.dmodel"),
        ("train.steps=0", "train.steps"),
        ("train.steps=1.5", "train.steps"),
        ("train.steps=abc", "train.steps"),
        ("train.steps=true", "train.steps"),
        ("train.batch_size=-4", "train.batch_size"),
        ("train.lr=nan", "train.lr"),
        ("train.lr=inf", "train.lr"),
        ("train.lr=-0.1", "train.lr"),
        ("train.lr=abc", "train.lr"),
        ("train.betas=[0.9]", "train.betas"),
        ("train.betas=[0.9,abc]", "train.betas"),
        ("train.betas=[0.9,1.5]", "train.betas"),
        ("train.weight_decay=-1", "train.weight_decay"),
        ("train.warmup=-1", "train.warmup"),
        ("train.min_lr_frac=2", "train.min_lr_frac"),
        ("train.grad_clip=0", "train.grad_clip"),
        ("train.eval_every=0", "train.eval_every"),
        ("train.ckpt_every=0", "train.ckpt_every"),
        ("train.log_every=abc", "train.log_every"),
        ("train.threads=0", "train.threads"),
        ("train.progress=maybe", "train.progress"),
        ("train.inject_nan_at=-1", "train.inject_nan_at"),
        ("train.criterion=acc", "train.criterion"),
        ("train.criterion=val_acc", "train.target"),
        ("train.target=0.9", "train.target"),
        ("train.patience=0", "train.patience"),
        ("train.lr_grid=[]", "train.lr_grid"),
        ("train.lr_grid=[0.1,-1]", "train.lr_grid"),
        ("train.lr_control={foo.bar:1}", "train.lr_control"),
        ("+train.lr_control={foo.bar:1}", "train.lr_control.foo.bar"),
        ("train=5", "train"),
        ("seed=-1", "seed"),
        ("seed=1.5", "seed"),
        ("seed=true", "seed"),
        ("seed=abc", "seed"),
        ("device=tpu", "device"),
        ("device=cuda", "device"),
        ("device=cuda:x", "device"),
        ("device=5", "device"),
        ("model.d_model=0", "model.d_model"),
        ("model.n_layers=0", "model.n_layers"),
        ("model.n_layers=abc", "model.n_layers"),
        ("model.n_layers=2.0", "model.n_layers"),
        ("model.size=xl", "model.size"),
        ("model.impl=cudnn", "model.impl"),
        (f"{T} model.n_heads=3", "model.n_heads"),
        (f"{T} model.pos=alibi", "model.pos"),
        (f"{T} model.causal=maybe", "model.causal"),
        ("data.distance=70", "data.distance"),
        ("data.distance=abc", "data.distance"),
        ("-m data.distance=8,500", "data.distance"),
        (
            "-m +experiment=recall hydra.sweeper.params.data="
            "'{distance:8,seq_len:16},{distance:300,seq_len:24}'",
            "data.distance",
        ),
        ("data.vocab_size=10", "data.vocab_size"),
        ("data.vocab_size=abc", "data.vocab_size"),
        ("data=mqar data.num_kv_pairs=40", "data.num_kv_pairs"),
        ("data=mqar data.vocab_size=8", "data.vocab_size"),
        ("data=copy data.seq_len=15", "data.seq_len"),
        ("data=text data.tokenizer=bpe", "data.tokenizer"),
        ("data=text data.path=/no/such/file.txt", "data.path"),
        ("data=text data.val_frac=1.5", "data.val_frac"),
    ),
    *_rows(
        "measure",
        ("what=nope", "what"),
        ("what.table='bad name'", "what.table"),
        ("what=influence what.trained=[maybe]", "what.trained"),
        ("what=influence what.split=pool", "what.split"),
        ("what=influence what.train_study=../x", "what.train_study"),
        ("what=influence what.train_study=/abs", "what.train_study"),
        ("what=timing what.lengths=[]", "what.lengths"),
        ("what=timing what.lengths=[0,8]", "what.lengths"),
        ("what=timing what.min_run_time=-1", "what.min_run_time"),
        ("what=timing what.batch_size=abc", "what.batch_size"),
        ("what=span what.layers=[100000]", "model.n_layers"),
        ("train.deterministic=maybe", "train.deterministic"),
    ),
    *_rows(
        "perf",
        ("tables=[foo]", "tables"),
        ("threads=0", "threads"),
        ("compile=maybe", "compile"),
        ("overhead.models=[gru]", "overhead.models"),
        ("mfu.seq_lens=[0]", "mfu.seq_lens"),
        ("mfu.seq_lens=[100000000]", "mfu.seq_lens"),
        ("fresh=maybe", "fresh"),
        ("+foo=1", "foo"),
    ),
    # --- issue 21 ---------------------------------------------------------------------------
    # code named on the command line: only seqbench's own classes are built, whatever
    # override (a whole node replaced, a Hydra flag, a callback, a logging handler) names it
    *_rows(
        "train",
        ("~data +data={_target_:logging.FileHandler,filename:{canary},mode:w}", "data._target_"),
        (
            "~model +model={_target_:seqbench.store.atomic_write_text,path:{outside}/x,text:x}",
            "model._target_",
            "seqbench.models",
        ),
        (
            f"{T} +model.extra={{_target_:logging.FileHandler,filename:{{canary}},mode:w}}",
            "model.extra._target_",
        ),
        ("--experimental-rerun {pickle}", "--experimental-rerun"),
        ("--exp {pickle}", "--experimental-rerun"),
        ("--config-dir {evil} +experiment=bad", "--config-dir"),
        ("-cd {evil} +experiment=bad", "--config-dir"),
        ("--config-path {evil} --config-name bad", "--config-path"),
        ("-cn measure", "--config-name"),
        ("+hydra.callbacks.x._target_=os.system", "hydra.callbacks.x._target_"),
        ("-m seed=0 hydra.launcher._target_=os.system", "hydra.launcher._target_"),
        (
            "hydra.job_logging.handlers.file.filename={canary}",
            "hydra.job_logging.handlers.file.filename",
        ),
        (
            "+hydra.job_logging.handlers.x={class:logging.handlers.SocketHandler,host:a,port:9}",
            "hydra.job_logging.handlers.x.class",
        ),
        (
            "hydra.job_logging.handlers.console.stream=ext://os.system",
            "hydra.job_logging.handlers.console.stream",
        ),
        ("+hydra.job.env_set.LD_PRELOAD={outside}/x.so", "hydra.job.env_set"),
        ("hydra.job.name=../x", "hydra.job.name"),
    ),
    *_rows(
        "measure",
        ("~model +model={_target_:logging.FileHandler,filename:{canary},mode:w}", "model._target_"),
        # a table name becomes <results>/<table>.csv: an identifier, never the report's own
        ("what=span what.table=runs", "what.table", "the report writes runs.csv"),
        ("what=span what.table=verdicts", "what.table", "the report writes verdicts.csv"),
        ("what=span what.table=../../x", "what.table", "a name of 1-64"),
    ),
    *_rows(
        "perf",
        ("~data +data={_target_:logging.FileHandler,filename:{canary},mode:w}", "data._target_"),
    ),
    # Hydra's folders: inside out_dir, never a user's config.yaml
    *_rows(
        "train",
        ("hydra.output_subdir={outside}", "hydra.output_subdir", "inside"),
        ("hydra.output_subdir=../../..", "hydra.output_subdir", "inside"),
        ("hydra.run.dir=''", "hydra.run.dir"),
        ("hydra.run.dir={outside}", "hydra.run.dir", "below"),
        ("hydra.run.dir={tmp}", "hydra.run.dir", "below"),
        ("-m seed=0 hydra.sweep.dir={outside}", "hydra.sweep.dir", "below"),
        ("-m seed=0 hydra.sweep.subdir=../../..", "hydra.sweep.subdir", "below"),
        ("-m seed=0 hydra.sweep.subdir={outside}", "hydra.sweep.subdir", "below"),
        ("hydra.job.chdir=true", "hydra.job.chdir"),
    ),
    # tracebacks that became one line
    *_rows(
        "train",
        ("out_dir={loop}", "out_dir", "symbolic link"),
        ("out_dir={loop}/runs", "out_dir", "symbolic link"),
        ("out_dir={dangling}", "out_dir", "symbolic link"),
        ("out_dir={dothydra}", "out_dir", ".hydra is a file"),
        ("-m seed=0,1 hydra/launcher=local hydra.launcher.n_jobs=0", "hydra.launcher.n_jobs"),
        ("-m seed=0,1 hydra.sweeper.max_batch_size=0", "hydra.sweeper.max_batch_size"),
        ("model.d_model=60000 model.n_layers=200", "model", "too big"),
        ("data=text data.path={file}", "data.path", "tokens"),
    ),
    *(
        []
        if SLURM_HERE
        else _rows(
            "train",
            ("-m seed=0,1 hydra/launcher=slurm", "hydra/launcher", "not available here"),
            ("-m seed=0,1 hydra/launcher=submitit_slurm", "hydra/launcher", "not available"),
        )
    ),
    # a criterion's target outside its metric's range
    *_rows(
        "train",
        ("train.criterion=val_acc train.target=2", "train.target", "(0, 1]"),
        ("train.criterion=val_acc train.target=-1", "train.target", "(0, 1]"),
        ("train.criterion=val_acc train.target=0", "train.target", "(0, 1]"),
        ("train.criterion=val_loss train.target=0", "train.target", "> 0"),
        ("train.criterion=val_loss train.target=100", "train.target", "uniform guess"),
    ),
]


# --- running one row ---------------------------------------------------------------------------
class _Alarm(BaseException):
    pass


class _Plant:
    """Loaded by pickle, creates the file it names: code from a file ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def scratch(tmp: Path) -> dict:
    """The placeholders of a row, made under tmp (and the canary, in a folder beside it)."""
    (tmp / "a_file").write_text("a regular file\n")
    (tmp / "a_dir").mkdir()
    os.mkfifo(tmp / "a_fifo")
    (tmp / "a_loop").symlink_to(tmp / "a_loop")
    (tmp / "a_dangling").symlink_to(tmp / "nothing_here")
    (tmp / "a_dothydra").mkdir()
    (tmp / "a_dothydra" / ".hydra").write_text("a file where Hydra's folder goes\n")
    outside = Path(tempfile.mkdtemp(prefix="seqbench-outside-"))
    (outside / "canary.txt").write_text(CANARY)
    (tmp / "a_pickle").write_bytes(pickle.dumps(_Plant(outside / "pickle_ran")))
    (tmp / "a_evil" / "experiment").mkdir(parents=True)
    (tmp / "a_evil" / "experiment" / "bad.yaml").write_text(
        "# @package _global_\ndata:\n  _target_: logging.FileHandler\n"
        f"  filename: {outside / 'canary.txt'}\n  mode: w\n"
    )
    named = ("file", "dir", "fifo", "loop", "dangling", "dothydra", "pickle", "evil")
    return {
        "tmp": tmp,
        "outside": outside,
        "canary": outside / "canary.txt",
        **{name: tmp / f"a_{name}" for name in named},
    }


def damage(paths: dict) -> str | None:
    """security / lost when the row touched what lies outside its folder; clears it away."""
    outside = paths["outside"]
    try:
        if {p.name for p in outside.iterdir()} != {"canary.txt"}:
            return "security"
        canary = paths["canary"]
        return None if canary.is_file() and canary.read_text() == CANARY else "lost"
    except OSError:
        return "lost"
    finally:
        shutil.rmtree(outside, ignore_errors=True)


def fill(arg: str, paths: dict) -> str:
    for name, path in paths.items():
        arg = arg.replace("{" + name + "}", str(path))
    return arg


def listing(tmp: Path) -> set:
    return {str(p.relative_to(tmp)) for p in tmp.rglob("*")}


def entry_main(entry: str):
    if entry in HYDRA_ENTRIES:
        from seqbench import cli

        return lambda argv: cli.main(entry, argv)
    if entry == "report":
        from seqbench.report.__main__ import main

        return main
    from seqbench.bench import main

    return main


def entry_module(entry: str) -> str:
    return f"seqbench.{entry}"


def prepare(row: Bad, tmp: Path) -> tuple[list, set, dict]:
    """(the row's arguments with its placeholders made under tmp, tmp's listing before, the
    placeholders)."""
    paths = scratch(Path(tmp))
    argv = [fill(a, paths) for a in row.argv]
    if row.entry in HYDRA_ENTRIES and not any(a.startswith("out_dir=") for a in argv):
        argv.append(f"out_dir={paths['tmp'] / 'runs'}")
    return argv, listing(Path(tmp)), paths


def _worse(verdict: tuple[str, str], paths: dict) -> tuple[str, str]:
    """A row that wrote outside its folder or destroyed the canary is that, whatever it said."""
    harm = damage(paths)
    return (harm, f"{harm}: {verdict[1]}") if harm else verdict


def attempt(row: Bad, tmp: Path, timeout=TIMEOUT_S) -> tuple[str, str]:
    """(outcome, what it printed or raised) of one row run in this process."""
    argv, before, paths = prepare(row, tmp)
    err, out = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(tmp)  # a relative path a row names lands in the scratch folder

    def ring(signum, frame):
        raise _Alarm

    old_handler = signal.signal(signal.SIGALRM, ring)
    old_timer = signal.setitimer(signal.ITIMER_REAL, timeout)  # pytest-timeout's, if any
    rc, raised = None, None
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                rc = entry_main(row.entry)(argv)
            except SystemExit as e:
                rc = e.code
    except _Alarm:
        raised = "alarm"
    except Exception as e:  # noqa: BLE001  what a user would see as a traceback
        raised = f"{type(e).__name__}: {e}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, *old_timer)
        signal.signal(signal.SIGALRM, old_handler)
        os.chdir(cwd)
    return _worse(judge(row, rc, raised, err.getvalue(), listing(Path(tmp)) != before), paths)


def attempt_in_a_process(row: Bad, tmp: Path, timeout=120) -> tuple[str, str]:
    """The same, as its own ``python -m seqbench.<entry>`` process (slower, exact)."""
    import subprocess

    argv, before, paths = prepare(row, tmp)
    command = [sys.executable, "-m", entry_module(row.entry), *argv]
    try:
        proc = subprocess.run(command, cwd=tmp, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr
        verdict = judge(row, None, "alarm", err or "", listing(Path(tmp)) != before)
    else:
        verdict = judge(row, proc.returncode, None, proc.stderr, listing(Path(tmp)) != before)
    return _worse(verdict, paths)


def judge(row: Bad, rc, raised, stderr: str, wrote: bool) -> tuple[str, str]:
    text = stderr.strip()
    if raised == "alarm":
        return ("accepted" if wrote else "hang"), text[-300:]
    if raised or "Traceback" in text or "HYDRA_FULL_ERROR" in text:
        return "traceback", raised or text[-300:]
    lines = text.splitlines()
    if rc == 2 and len(lines) == 1 and lines[0].startswith("seqbench: error: "):
        named = f"{row.key}=" in lines[0] and "is not allowed" in lines[0] and row.says in lines[0]
        return ("refused" if named and not wrote else "wrong message"), lines[0]
    return "accepted", f"exit {rc}: {text[-300:]}"


def main(argv=None) -> int:
    """python -m tests.bad_inputs [--subprocess]: run the table, print the counts."""
    argv = sys.argv[1:] if argv is None else argv
    run = attempt_in_a_process if "--subprocess" in argv else attempt
    counts: dict = {}
    for row in TABLE:
        with tempfile.TemporaryDirectory(prefix="seqbench-bad-") as tmp:
            outcome, said = run(row, Path(tmp))
        counts[outcome] = counts.get(outcome, 0) + 1
        if outcome != "refused":
            owner = f" (needs {row.owner})" if row.owner else ""
            print(f"{outcome:14} {row.id}{owner}\n               {said}", file=sys.stderr)
    print(f"inputs tried: {len(TABLE)}")
    for outcome in OUTCOMES:
        print(f"{outcome}: {counts.get(outcome, 0)}")
    return 0 if counts.get("refused", 0) == len(TABLE) else 1


if __name__ == "__main__":
    sys.exit(main())
