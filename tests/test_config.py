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


BAD = [  # (command line, the key the message must name)
    (["model=foo"], "model"),
    (["data=nope"], "data"),
    (["-m", "model=rnn,foo"], "model"),
    (["train.stpes=5"], "train.stpes"),
    (["model.dmodel=5"], "model.dmodel"),
    (["train.steps=0"], "train.steps"),
    (["train.batch_size=-4"], "train.batch_size"),
    (["train.steps=abc"], "train.steps"),
    (["model.d_model=0"], "model.d_model"),
    (["model=transformer", "model.n_heads=3"], "model.n_heads"),
    (["data.distance=70"], "data.distance"),
    (["-m", "data.distance=8,500"], "data.distance"),
    (
        [
            "-m",
            "+experiment=recall",
            "hydra.sweeper.params.data='{distance:8,seq_len:16},{distance:300,seq_len:24}'",
        ],
        "data.distance",
    ),
    (["data=mqar", "data.num_kv_pairs=40"], "data.num_kv_pairs"),
    (["data.vocab_size=10"], "data.vocab_size"),
    (["data=mqar", "data.vocab_size=8"], "data.vocab_size"),
    (["train.lr=nan"], "train.lr"),
    (["train.lr=-0.1"], "train.lr"),
    (["device=tpu"], "device"),
    (["device=cuda"], "device"),
    (["model.size=xl"], "model.size"),
    (["model=transformer", "model.pos=alibi"], "model.pos"),
    (["model.impl=cudnn"], "model.impl"),
    (["data=copy", "data.seq_len=15"], "data.seq_len"),
    (["data=text", "data.tokenizer=bpe"], "data.tokenizer"),
    (["data=text", "data.path=/no/such/file.txt"], "data.path"),
]


@pytest.mark.parametrize("argv,key", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_gives_one_line_naming_the_key_and_exit_2(argv, key, capsys, tmp_path):
    assert run_cli([*argv, f"out_dir={tmp_path / 'runs'}"]) == 2
    assert not (tmp_path / "runs").exists()  # refused before anything was written
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("seqbench: error: ")
    assert f"{key}=" in err and "is not allowed" in err, err


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
