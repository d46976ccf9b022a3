"""Next-token language modelling on real text (C1): a corpus, a tokenizer, two ways to read it.

Corpora (seqbench/data/corpora.py): the offline standard-library corpus by default, any UTF-8
file or a folder of train.txt / valid.txt / test.txt with ``data.path=``, a named corpus with
``data.corpus=`` (fetched once into a cache, sha256-checked). A single file's last
``val_frac`` of tokens is held out; a folder's splits are its files. A test split (scored by
seqbench.measure.test_set, never selected on) exists where the corpus has a test.txt, and for
the standard-library corpus (other files of the same library, corpora.STDLIB_TEST_FILES); a
single file has none, since cutting one from its tail would change the validation data of
every existing run.

Tokenizers:
    char        every character is a token, newlines included
    word        a regex: a run of word characters, one punctuation mark, or a newline
    whitespace  ``line.split()`` for every line plus one ``<eos>`` per line, empty lines too:
                how WikiText and PTB are counted in published perplexities (pytorch/examples'
                word_language_model, data.py); WikiText's own ``<unk>`` is seqbench's <unk>

The vocabulary comes from the training split alone: all of its token types (``vocab_size``
null, the default), or the ``vocab_size - 1`` most frequent plus <unk> (id 0). What maps to
<unk> is recorded per split (``unk_share``), and the share the cap alone causes
(``unk_from_cap``, which the harness prints when it is not 0).

Two ways to read the training split:
    random windows (default)  each batch is B windows of seq_len + 1 tokens at random offsets,
                              a pure function of the step (seqbench.data.Task)
    data.stream=true          the classic protocol (Zaremba et al. 2014; pytorch/examples): the
                              split cut into B contiguous columns side by side ("batchify") and
                              read in order, one window of seq_len after the other ("bptt"); the
                              harness carries the model's state from window to window
Whole-stream evaluation (``eval_streams`` + ``stream_windows``) scores every held-out token once.
"""

import functools
import io
import math
import re
from array import array
from collections import Counter

import torch

from seqbench.data import Task
from seqbench.data.corpora import (
    SPLIT_FILES,
    STDLIB_FILES,
    STDLIB_TEST_FILES,
    corpus_stamp,
    read_named,
    read_path,
    read_stdlib,
)

__all__ = ["STDLIB_FILES", "Text", "batchify", "load_corpus", "stream_windows", "tokenize"]

TOKENIZERS = ("char", "word", "whitespace")
WORD = re.compile(r"\w+|[^\w\s]|\n")
UNK, EOS = "<unk>", "<eos>"


def load_corpus(path: str | None = None, corpus: str | None = None, stamp=None):
    """({split: text}, fingerprint); split "all" for one file (split later by val_frac). Read
    once per process while the files are unchanged: the cache is keyed by ``corpus_stamp``
    (pass the one taken before reading, else it is taken now), so an edited file is read
    again."""
    return _load_corpus(path, corpus, corpus_stamp(path, corpus) if stamp is None else stamp)


@functools.lru_cache(maxsize=4)
def _load_corpus(path: str | None, corpus: str | None, stamp: tuple) -> tuple[dict, dict]:
    if corpus is not None:
        return read_named(corpus)
    return read_stdlib() if path is None else read_path(path)


def tokenize(text: str, tokenizer: str):
    """An iterator over the tokens of text (never a list: WikiText-103 has 100M of them)."""
    if tokenizer == "char":
        return iter(text)
    if tokenizer == "word":
        return (m.group() for m in WORD.finditer(text))
    return _whitespace(text)


def _whitespace(text):
    for line in io.StringIO(text, newline=None):  # universal newlines, as open() reads a file
        yield from line.split()
        yield EOS


def encode(tokens, stoi) -> torch.Tensor:
    ids = array("q", (stoi.get(w, 0) for w in tokens))  # 8 bytes a token, no Python list
    if not ids:
        return torch.zeros(0, dtype=torch.long)
    return torch.frombuffer(ids, dtype=torch.int64).clone()


def batchify(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """[B, N]: row b is the b-th contiguous chunk of the stream; the last len % B tokens are
    dropped (as pytorch/examples' batchify, which lays the same chunks out as [N, B])."""
    n = len(ids) // batch_size
    return ids[: batch_size * n].view(batch_size, n)


def stream_windows(ids: torch.Tensor, batch_size: int, seq_len: int):
    """(tokens [B, t], targets [B, t]) covering the batchified stream in order, t = seq_len
    except for a shorter last window: every token after each column's first is scored once."""
    columns = batchify(ids, batch_size)  # [B, N]
    N = columns.size(1)
    for p in range(0, N - 1, seq_len):
        t = min(seq_len, N - 1 - p)
        yield columns[:, p : p + t], columns[:, p + 1 : p + 1 + t]


class Text(Task):
    def __init__(
        self,
        seq_len: int = 128,
        tokenizer: str = "char",
        vocab_size: int | None = None,
        path: str | None = None,
        corpus: str | None = None,
        val_frac: float | None = None,
        stream: bool = False,
        **task,
    ):
        super().__init__(**task)
        if tokenizer not in TOKENIZERS:
            raise ValueError(
                f"data.tokenizer={tokenizer!r} is not allowed: one of {list(TOKENIZERS)}"
            )
        if val_frac is not None and not 0 < val_frac < 1:
            raise ValueError(f"data.val_frac={val_frac} is not allowed: 0 < val_frac < 1")
        if vocab_size is not None and vocab_size < 2:
            raise ValueError(f"data.vocab_size={vocab_size} is not allowed: >= 2, or null")
        if path is not None and corpus is not None:
            raise ValueError(f"data.corpus={corpus} is not allowed together with data.path=")
        if stream and self.n_train is not None:
            raise ValueError(
                f"data.n_train={self.n_train} is not allowed with data.stream=true: a stream is "
                "read whole, in order"
            )
        self.source, self.stamp = (path, corpus), corpus_stamp(path, corpus)
        texts, self.corpus = load_corpus(path, corpus, self.stamp)
        if "all" in texts:  # one file: its tail is held out
            pieces = list(tokenize(texts["all"], tokenizer))
            cut = len(pieces) - int(len(pieces) * (0.1 if val_frac is None else val_frac))
            if len(pieces) - cut < seq_len + 2:  # blame the key that made the split too small
                key = (
                    f"data.val_frac={val_frac}"
                    if val_frac is not None
                    else (
                        f"data.path={path}" if path is not None else "data.path=null (the stdlib)"
                    )
                )
                raise ValueError(
                    f"{key} is not allowed: the held-out tail (data.val_frac={val_frac}, null: "
                    f"0.1) is {len(pieces) - cut} of {len(pieces)} tokens, fewer than "
                    f"data.seq_len + 2 = {seq_len + 2}"
                )
            tokens = {"train": pieces[:cut], "val": pieces[cut:]}
            counts = Counter(tokens["train"])
            if "test" in texts:  # the standard-library corpus: other files of the library
                tokens["test"] = tokenize(texts["test"], tokenizer)
        elif val_frac is not None:
            key = "data.corpus" if corpus else "data.path"
            raise ValueError(
                f"data.val_frac={val_frac} is not allowed with {key}={corpus or path}: "
                "the folder's valid.txt is the held-out split (val_frac: null)"
            )
        else:  # a folder: tokenized as streams, never as lists
            counts = Counter(tokenize(texts["train"], tokenizer))
            tokens = {s: tokenize(t, tokenizer) for s, t in texts.items()}
        counts.pop(UNK, None)  # the corpus's own <unk> is id 0
        kept = counts.most_common(None if vocab_size is None else vocab_size - 1)
        self.itos = [UNK] + sorted(w for w, _ in kept)
        stoi = {w: i for i, w in enumerate(self.itos)}
        self.streams = {s: encode(t, stoi) for s, t in tokens.items()}
        self.has_splits = "all" not in texts  # a corpus folder: its own valid (and test) files
        # a test split only where the corpus has one (test.txt; the standard-library corpus:
        # STDLIB_TEST_FILES): a single file's tail is the validation set, and cutting a test
        # slice from it would change every existing run's
        self.has_test = "test" in self.streams
        shortest = min(len(s) for s in self.streams.values())
        if shortest <= seq_len + 1:
            raise ValueError(
                f"data.seq_len={seq_len} is not allowed: the corpus gives only "
                f"{shortest} tokens per split; need seq_len + 2 or more"
            )
        self.seq_len, self.tokenizer, self.vocab_size = seq_len, tokenizer, len(self.itos)
        self.stream, self._columns = bool(stream), {}
        n_train_tokens = len(self.streams["train"])
        self.unk_from_cap = (sum(counts.values()) - sum(c for _, c in kept)) / n_train_tokens
        self.unk_share = {s: float((ids == 0).double().mean()) for s, ids in self.streams.items()}
        self.unk_rate = sum(int((ids == 0).sum()) for ids in self.streams.values()) / sum(
            len(ids) for ids in self.streams.values()
        )
        # what a model that ignores all context can reach: val cross-entropy under the
        # (add-one smoothed) unigram distribution of the training split
        freq = torch.bincount(self.streams["train"], minlength=self.vocab_size).double() + 1
        logp = (freq / freq.sum()).log()
        self.unigram_xent = float(-logp[self.streams["val"]].mean())

    # --- random windows ----------------------------------------------------------------------
    def _generate(self, gen, n, split):
        stream = self.streams[split]
        starts = torch.randint(0, len(stream) - self.seq_len - 1, (n,), generator=gen)
        windows = torch.stack([stream[s : s + self.seq_len + 1] for s in starts.tolist()])
        return windows[:, :-1], windows[:, 1:]  # every position is scored

    # --- the stream (data.stream=true) ---------------------------------------------------------
    def batch(self, split, index, batch_size):
        """With data.stream=true, training batch ``index`` is window ``index % windows_per_pass``
        of the batchified training split, in order; everything else as Task.batch."""
        if not (self.stream and split == "train"):
            return super().batch(split, index, batch_size)
        columns = self.columns(batch_size)  # [B, N]
        p = (index % self.windows_per_pass(batch_size)) * self.seq_len
        window = columns[:, p : p + self.seq_len + 1]  # [B, T + 1]
        return window[:, :-1], window[:, 1:]

    def columns(self, batch_size) -> torch.Tensor:
        if batch_size not in self._columns:
            columns = batchify(self.streams["train"], batch_size)
            if columns.size(1) < self.seq_len + 1:
                raise ValueError(
                    f"train.batch_size={batch_size} is not allowed with data.stream=true: each "
                    f"column of the training split holds {columns.size(1)} tokens, fewer than "
                    f"data.seq_len + 1 = {self.seq_len + 1}"
                )
            self._columns[batch_size] = columns
        return self._columns[batch_size]

    def windows_per_pass(self, batch_size) -> int:
        """Full windows in one pass over the training split (a short last one is skipped, so
        every step has the same shape)."""
        return (self.columns(batch_size).size(1) - 1) // self.seq_len

    def starts_pass(self, index, batch_size) -> bool:
        """Does training batch ``index`` begin a new pass over the stream (state from zero)?"""
        return index % self.windows_per_pass(batch_size) == 0

    def eval_streams(self) -> dict:
        """The held-out token streams scored whole at the end of training: val, and test for
        a corpus folder."""
        return {s: ids for s, ids in self.streams.items() if s != "train"}

    # --- what the run read ---------------------------------------------------------------------
    def stale(self) -> bool:
        """Have the corpus files changed since this task read them?"""
        return corpus_stamp(*self.source) != self.stamp

    def changed_since(self, recorded: dict) -> str | None:
        """A run's recorded corpus sha256 against the corpus now: why they differ, naming the
        files that changed (None when they agree)."""
        now, then = self.corpus.get("corpus_sha256"), recorded.get("corpus_sha256")
        if now == then:
            return None
        was = recorded.get("corpus_files") if isinstance(recorded.get("corpus_files"), dict) else {}
        files = [n for n, d in self.corpus.get("corpus_files", {}).items() if was.get(n) != d]
        what = ", ".join(files) if files else self.corpus.get("corpus")
        return (
            f"data: the corpus ({what}) now has sha256 {str(now)[:12]}, the run read "
            f"{str(then)[:12]}; its results are not this corpus's"
        )

    def held_out_source(self, split: str) -> tuple[str, str]:
        """(the setting that gives held-out ``split``, the part of it that is held out), for
        a message that blames the corpus, not an unrelated key."""
        path, corpus = self.source
        setting = f"data.corpus={corpus}" if corpus else f"data.path={path}"
        if path is None and corpus is None:
            setting = "data.path=null (the standard-library corpus)"
        if split == "test" and not self.has_splits:
            return setting, "its test files (" + ", ".join(STDLIB_TEST_FILES) + ")"
        return setting, (f"its {SPLIT_FILES[split]}" if self.has_splits else "its held-out tail")

    def decode(self, ids) -> str:
        words = [self.itos[i] for i in ids]
        if self.tokenizer == "whitespace":
            return "".join("\n" if w == EOS else w + " " for w in words)
        return ("" if self.tokenizer == "char" else " ").join(words)

    def fingerprint(self):
        return (
            super().fingerprint()
            | self.corpus
            | {
                "tokenizer": self.tokenizer,
                "stream": self.stream,
                "unk_rate": round(self.unk_rate, 5),
                "unk_share": {s: round(v, 5) for s, v in self.unk_share.items()},
                "unk_from_cap": round(self.unk_from_cap, 5),
                "unigram_xent": round(self.unigram_xent, 5),
                "unigram_ppl": round(math.exp(self.unigram_xent), 2),
            }
            | {f"{s}_tokens": len(ids) for s, ids in self.streams.items()}
        )
