"""Bad input: one line naming the key, the value and what is allowed; exit 2; nothing runs."""

import subprocess
import sys
from pathlib import Path

import pytest

from seqbench import cli

ROOT = Path(__file__).resolve().parents[1]


def run_cli(argv, entry="train") -> int:
    """seqbench's command line in this process: pre-Hydra checks, then Hydra and the
    validating sweeper (which exits 2 itself)."""
    try:
        return cli.main(entry, argv)
    except SystemExit as e:
        return e.code


# The bad command lines (each refused in one line naming its key, exit 2, nothing written) are
# the table in tests/bad_inputs.py, run by tests/test_garbage.py.


@pytest.mark.parametrize(
    "content,why",
    [
        (b"", "empty"),
        (b"\x00\x01binary", "binary"),
        (b"\xff\xfe not utf8 " * 20, "UTF-8"),
        (b"short text", "tokens"),
    ],
)
def test_bad_corpus_files(tmp_path, capsys, content, why):
    path = tmp_path / "corpus.txt"
    path.write_bytes(content)
    assert run_cli(["data=text", f"data.path={path}", f"out_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "data." in err and why in err, err


def test_good_input_passes_preflight(capsys):
    cli.preflight(
        "config", ["-m", "model=rnn,transformer", "data=lag_recall", "data.distance=4,30"]
    )
    assert capsys.readouterr().err == ""


def test_the_real_cli_exits_2_before_writing_anything(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "seqbench.train",
            "-m",
            "model=lstm,gru",
            "train.steps=10,-1",
            f"out_dir={tmp_path}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "seqbench: error: train.steps=-1 is not allowed: an integer in [1, 1000000000] "
        f"(job 2 of 4: model=lstm train.steps=-1 out_dir={tmp_path})"
    ]
    assert not any(tmp_path.iterdir())
