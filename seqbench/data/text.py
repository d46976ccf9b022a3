"""Next-word language modelling on real text (C1), with a char or a word tokenizer.

The default corpus needs no network: a fixed list of Python standard-library modules read from
the running interpreter (real prose and code nobody here wrote). Its sha256 and size go into
every run.json; ``data.path=`` trains on any local UTF-8 file instead. The last ``val_frac``
of the token stream is held out; batches are random windows of seq_len + 1 tokens.
"""

import functools
import hashlib
import re
import sysconfig
from collections import Counter
from pathlib import Path

import torch

from seqbench.data import Task

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
TOKENIZERS = ("char", "word")
WORD = re.compile(r"\w+|[^\w\s]|\n")
UNK = "<unk>"


@functools.lru_cache(maxsize=4)
def load_corpus(path: str | None) -> tuple[str, dict]:
    """(text, fingerprint). ``path=None`` reads the standard-library corpus."""
    if path is None:
        root = Path(sysconfig.get_paths()["stdlib"])
        files = [root / f for f in STDLIB_FILES if (root / f).is_file()]
        raw = b"".join(f.read_bytes() for f in files)
        source = f"python{sysconfig.get_python_version()} stdlib ({len(files)} files)"
    else:
        p = Path(path).expanduser()
        if not p.is_file():
            raise ValueError(f"data.path={path} is not allowed: no such file")
        raw = p.read_bytes()
        source = str(p.resolve())
        if not raw.strip():
            raise ValueError(f"data.path={path} is not allowed: the file is empty")
        if b"\0" in raw[:65536]:
            raise ValueError(f"data.path={path} is not allowed: binary file, need UTF-8 text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"data.path={path} is not allowed: not UTF-8 text ({e.reason} at byte {e.start})"
        ) from None
    return text, {
        "corpus": source,
        "corpus_sha256": hashlib.sha256(raw).hexdigest(),
        "corpus_bytes": len(raw),
    }


class Text(Task):
    def __init__(
        self,
        seq_len: int = 128,
        tokenizer: str = "char",
        vocab_size: int = 2048,
        path: str | None = None,
        val_frac: float = 0.1,
        seed: int = 0,
        n_train: int | None = None,
    ):
        super().__init__(seed, n_train)
        if tokenizer not in TOKENIZERS:
            raise ValueError(
                f"data.tokenizer={tokenizer!r} is not allowed: one of {list(TOKENIZERS)}"
            )
        if not 0 < val_frac < 1:
            raise ValueError(f"data.val_frac={val_frac} is not allowed: 0 < val_frac < 1")
        if vocab_size < 2:
            raise ValueError(f"data.vocab_size={vocab_size} is not allowed: >= 2")
        text, self.corpus = load_corpus(path)
        pieces = list(text) if tokenizer == "char" else WORD.findall(text)
        # cap the vocabulary by frequency; everything rarer becomes <unk> (id 0)
        common = [w for w, _ in Counter(pieces).most_common(vocab_size - 1)]
        self.itos = [UNK] + sorted(common)
        stoi = {w: i for i, w in enumerate(self.itos)}
        ids = torch.tensor([stoi.get(w, 0) for w in pieces], dtype=torch.long)
        n_val = int(len(ids) * val_frac)
        self.streams = {"train": ids[:-n_val], "val": ids[-n_val:]}
        shortest = min(len(s) for s in self.streams.values())
        if shortest <= seq_len + 1:
            raise ValueError(
                f"data.seq_len={seq_len} is not allowed: the corpus gives only "
                f"{shortest} tokens per split; need seq_len + 2 or more"
            )
        self.seq_len, self.tokenizer, self.vocab_size = seq_len, tokenizer, len(self.itos)
        self.unk_rate = float((ids == 0).float().mean())
        # what a model that ignores all context can reach: val cross-entropy under the
        # (add-one smoothed) unigram distribution of the training split
        counts = torch.bincount(self.streams["train"], minlength=self.vocab_size).double() + 1
        logp = (counts / counts.sum()).log()
        self.unigram_xent = float(-logp[self.streams["val"]].mean())

    def _generate(self, gen, n, split):
        stream = self.streams[split]
        starts = torch.randint(0, len(stream) - self.seq_len - 1, (n,), generator=gen)
        windows = torch.stack([stream[s : s + self.seq_len + 1] for s in starts.tolist()])
        return windows[:, :-1], windows[:, 1:]  # every position is scored

    def decode(self, ids) -> str:
        sep = "" if self.tokenizer == "char" else " "
        return sep.join(self.itos[i] for i in ids)

    def fingerprint(self):
        return (
            super().fingerprint()
            | self.corpus
            | {
                "tokenizer": self.tokenizer,
                "unk_rate": round(self.unk_rate, 5),
                "unigram_xent": round(self.unigram_xent, 5),
                "train_tokens": len(self.streams["train"]),
                "val_tokens": len(self.streams["val"]),
            }
        )
