"""what=ngram: add-k count n-gram baselines on the held-out windows the models are scored on.

A bar that says "the model learned from context" must sit below what counting does: an
add-0.1 bigram on the core text scores 2.38 nats, well under 0.9 x the unigram (issue 22).
For the composed text config this fits, on the TRAINING data of the same ``Text`` task (the
whole training split; with ``data.n_train`` the pool of N windows the models draw from), the
count models of every order n in ``what.orders``:

    p_1(w)     = (C(w) + k) / (N + k V)                 N training tokens, V = vocab size
    p_n(w | c) = (C(c w) + k) / (C(c) + k V)            c the n - 1 tokens before w,
                                                        C(c) = times c is followed by a token

with k = ``what.k``. Back-off rule: where C(c) = 0 (a context never seen in training), or
fewer than n - 1 tokens precede w in the window, the order-n model uses its order-(n - 1)
distribution on the shorter context, down to p_1. A model at window position t reads tokens
x_0..x_t and predicts x_{t+1}: a bigram has its one token of context everywhere, a trigram
backs off to the bigram at t = 0 only. No interpolation: a plain, stated baseline.

It scores them on exactly the windows ``seqbench.evaluate.held_out`` scores a model on
(``task.batch("val", i, B)`` for i < eval_batches: same generator, seed, batch size, seq_len;
``what.eval_batches`` / ``what.batch_size`` null take ``train.``'s), as sample 0, and on
``what.samples`` more held-out samples of as many windows from other seeds (sample s >= 1),
so the sampling noise of the text shows beside any figure read from one sample. Rows (table
``ngram``), per order and sample: ``scope=windows`` the mean loss over every scored position
(``val_loss``), ``scope=position`` the mean loss at each position t (``loss``; Kaplan's
loss-by-position curve of a count model), and once per order ``scope=stream`` the loss over
the whole held-out stream read as one sequence (``val_loss``); where the corpus has a test
split, once per order ``scope=test_stream``, the same over the whole test stream
(``test_loss``).

Where the corpus has a test split, the figures a verdict reports are read there: per order
and per data seed s in ``what.test_seeds`` (sample = s), ``scope=test`` the mean loss
(``test_loss``) and ``scope=test_position`` the loss at each position over the first
TEST_SEQUENCES windows of ``task.test_examples`` for data.seed = s: exactly the windows
``what=test_set`` scores the replicate of that data seed on (the count model fitted on that
seed's pool where there is one). Runs in seconds on a CPU.
"""

import copy
import math

import torch
from omegaconf import DictConfig, ListConfig

from seqbench.config import ConfigError
from seqbench.data import TEST_SEQUENCES, seeded
from seqbench.data.text import Text
from seqbench.measure.common import MAX_COUNT, int_list, need

COLUMNS = (
    "model family order k sample scope position loss val_loss test_loss count windows eval_batches"
    " batch_size seq_len n_train data_seed tokenizer vocab_size fit_tokens unigram_xent"
).split()
NAMES = {1: "unigram", 2: "bigram", 3: "trigram"}  # beyond: "<n>-gram"
MAX_ORDER = 5  # V**n keys must fit in int64 for every corpus seqbench reads
MAX_SAMPLES = 64


def name(order: int) -> str:
    """'bigram-count': the model column of an order's rows."""
    return f"{NAMES.get(order, f'{order}-gram')}-count"


# --- counting ----------------------------------------------------------------------------------
def _keys(seqs: list[torch.Tensor], n: int, V: int) -> torch.Tensor:
    """Every n-gram inside each sequence as one int64 key sum_j x_{i+j} V^(n-1-j)."""
    parts = []
    for s in seqs:
        if len(s) < n:
            continue
        grams = s.unfold(0, n, 1)  # [L - n + 1, n]
        key = torch.zeros(len(grams), dtype=torch.long)
        for j in range(n):
            key = key * V + grams[:, j]
        parts.append(key)
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)


class Counts:
    """The n-gram counts of orders 1..max_order of some token sequences (none crosses a
    sequence's end), as sorted keys with counts: what ``loss`` looks a context up in."""

    def __init__(self, seqs: list[torch.Tensor], vocab_size: int, max_order: int):
        self.V, self.max_order = vocab_size, max_order
        self.unigram = torch.bincount(torch.cat(seqs), minlength=vocab_size).double()
        self.tokens = int(self.unigram.sum())
        self.grams, self.contexts = {}, {}
        for n in range(2, max_order + 1):
            keys, counts = torch.unique(_keys(seqs, n, vocab_size), return_counts=True)
            self.grams[n] = (keys, counts)
            # C(c): how often context c is followed by a token, summed over the tokens
            ctx, inverse = torch.unique(keys // vocab_size, return_inverse=True)
            self.contexts[n] = (ctx, torch.zeros(len(ctx), dtype=torch.long).index_add_(
                0, inverse, counts))  # fmt: skip


def _lookup(table: tuple, query: torch.Tensor) -> torch.Tensor:
    """The count of each query key in (sorted keys, counts); 0 where absent."""
    keys, counts = table
    if len(keys) == 0:
        return torch.zeros(query.shape, dtype=torch.long)
    i = torch.searchsorted(keys, query).clamp(max=len(keys) - 1)
    return torch.where(keys[i] == query, counts[i], 0)


def loss(counts: Counts, order: int, k: float, tokens: torch.Tensor, targets: torch.Tensor):
    """[B, T] cross-entropy (nats) of the add-k order-``order`` model with back-off (module
    docstring) for targets[b, t] = x_{t+1} after tokens[b, :t+1]."""
    V = counts.V
    unigram = (counts.unigram + k) / (counts.tokens + k * V)
    out = -unigram.log()[targets]  # [B, T]
    T = tokens.size(1)
    for n in range(2, order + 1):
        ctx = torch.zeros_like(tokens)  # [B, T]: key of the context x_{t-n+2} .. x_t
        for j in range(n - 1):
            ctx[:, n - 2 :] = ctx[:, n - 2 :] * V + tokens[:, j : T - (n - 2) + j]
        seen = _lookup(counts.contexts[n], ctx)
        full = torch.arange(T) >= n - 2  # enough tokens before the target for this order
        use = (seen > 0) & full  # [B, T]; elsewhere the lower order stands (back-off)
        joint = _lookup(counts.grams[n], ctx * V + targets).double()
        p = (joint + k) / (seen.double() + k * V)
        out = torch.where(use, -p.log(), out)
    return out  # float64


# --- what is counted and what is scored --------------------------------------------------------
def training_sequences(task: Text) -> list[torch.Tensor]:
    """What the models train on: the pool of ``n_train`` windows when there is one (each
    window of seq_len + 1 tokens, as training draws them), else the whole training split."""
    if task.n_train is None:
        return [task.streams["train"]]
    pairs = [task._pool_example(j) for j in range(task.n_train)]
    return [torch.cat([x, y[-1:]]) for x, y in pairs]


def held_out_windows(task: Text, sample: int, n_batches: int, batch_size: int):
    """(tokens [B, T], targets [B, T]) of held-out sample ``sample``: 0 is the harness's own
    (``Task.batch('val', i, B)``, what evaluate.held_out scores), s >= 1 the same number of
    val windows drawn from the generator seeded by (data.seed, 'ngram-sample', s, i)."""
    for i in range(n_batches):
        if sample == 0:
            yield task.batch("val", i, batch_size)
        else:
            yield task._generate(seeded(task.seed, "ngram-sample", sample, i), batch_size, "val")


def scored(counts, order, k, task, sample, n_batches, batch_size) -> tuple[float, list, list]:
    """(mean loss, per-position mean loss, per-position count) over one held-out sample."""
    pos_sum = torch.zeros(task.seq_len, dtype=torch.float64)
    pos_n = torch.zeros(task.seq_len, dtype=torch.long)
    for tokens, targets in held_out_windows(task, sample, n_batches, batch_size):
        pos_sum += loss(counts, order, k, tokens, targets).double().sum(0)
        pos_n += tokens.size(0)
    per_pos = (pos_sum / pos_n).tolist()
    return float(pos_sum.sum() / pos_n.sum()), per_pos, pos_n.tolist()


# --- the measurement ---------------------------------------------------------------------------
def windows_of(cfg: DictConfig) -> tuple[int, int]:
    """(eval_batches, batch_size): the what node's, else the training config's."""
    w = cfg.what
    return (w.eval_batches or cfg.train.eval_batches, w.batch_size or cfg.train.batch_size)


def check(cfg: DictConfig, task) -> None:
    w = cfg.what
    if not isinstance(task, Text):
        raise ConfigError(
            f"data._target_={cfg.data._target_} is not allowed: what=ngram counts text (data=text)"
        )
    int_list(w, "orders", 1, MAX_ORDER)
    need(
        isinstance(w.k, int | float) and not isinstance(w.k, bool) and 0 < w.k <= 100,
        "what.k", w.k, "a number in (0, 100]: the add-k smoothing constant",
    )  # fmt: skip
    need(task.vocab_size ** max(w.orders) < 2**62, "what.orders", list(w.orders),
         f"orders whose keys fit in 64 bits at vocab_size {task.vocab_size}")  # fmt: skip
    allowed = f"an integer in [0, {MAX_SAMPLES}]: held-out samples beside the harness's own"
    need(_whole(w.samples, 0, MAX_SAMPLES), "what.samples", w.samples, allowed)
    seeds = w.get("test_seeds")
    need(isinstance(seeds, list | tuple | ListConfig) and len(seeds) <= MAX_SAMPLES and
         all(_whole(v, 0, 2**31) for v in seeds), "what.test_seeds", seeds,
         f"a list of at most {MAX_SAMPLES} data seeds (integers >= 0), [] for none")  # fmt: skip
    for key in ("eval_batches", "batch_size"):
        v = w.get(key)
        need(v is None or _whole(v, 1, MAX_COUNT), f"what.{key}", v,
             f"null (train's) or an integer in [1, {MAX_COUNT}]")  # fmt: skip


def _whole(v, low, high) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


def measure(cfg: DictConfig, task: Text, log) -> dict:
    w = cfg.what
    n_batches, batch_size = windows_of(cfg)
    counts = Counts(training_sequences(task), task.vocab_size, max(w.orders))
    common = {"family": "count", "k": float(w.k), "windows": n_batches * batch_size,
              "eval_batches": n_batches, "batch_size": batch_size, "seq_len": task.seq_len,
              "n_train": task.n_train, "data_seed": task.seed, "tokenizer": task.tokenizer,
              "vocab_size": task.vocab_size, "fit_tokens": counts.tokens,
              "unigram_xent": task.unigram_xent}  # fmt: skip
    out = {}
    for order in sorted(set(w.orders)):
        row = common | {"model": name(order), "order": order}
        for sample in range(w.samples + 1):
            mean, per_pos, n = scored(counts, order, w.k, task, sample, n_batches, batch_size)
            log(row | {"sample": sample, "scope": "windows", "val_loss": mean, "count": sum(n)})
            for t, (value, c) in enumerate(zip(per_pos, n)):
                log(row | {"sample": sample, "scope": "position", "position": t, "loss": value,
                           "count": c})  # fmt: skip
            if sample == 0:
                out[f"{name(order)}_loss"] = mean
        ids = task.streams["val"]
        log(row | {"scope": "stream", "val_loss": _stream(counts, order, w.k, ids),
                   "count": len(ids) - 1})  # fmt: skip
        if task.has_test:  # the whole test stream, as what=protocols split=test reads it
            ids = task.streams["test"]
            log(row | {"scope": "test_stream", "test_loss": _stream(counts, order, w.k, ids),
                       "count": len(ids) - 1})  # fmt: skip
    if task.has_test:
        for seed in w.test_seeds:
            _test_rows(w, task, int(seed), counts, common, log)
    return {k: v for k, v in out.items() if math.isfinite(v)}


def _stream(counts: Counts, order: int, k: float, ids: torch.Tensor) -> float:
    """Mean loss over a whole held-out stream ids [N] read as one sequence."""
    return float(loss(counts, order, k, ids[None, :-1], ids[None, 1:]).double().mean())


def _test_rows(w, task: Text, seed: int, counts: Counts, common: dict, log) -> None:
    """Rows ``scope=test`` / ``test_position`` of data seed ``seed`` (module docstring)."""
    other = copy.copy(task)  # the same corpus and vocabulary, drawn with another data seed
    other.seed, other._chunks = seed, {}
    if task.n_train is not None and seed != task.seed:  # that seed's pool: its own counts
        counts = Counts(training_sequences(other), task.vocab_size, max(w.orders))
    tokens, targets = other.test_examples(TEST_SEQUENCES)  # [n, T] each
    for order in sorted(set(w.orders)):
        per = loss(counts, order, w.k, tokens, targets).double()  # [n, T]
        row = common | {"model": name(order), "order": order, "sample": seed,
                        "data_seed": seed, "windows": len(tokens)}  # fmt: skip
        log(row | {"scope": "test", "test_loss": float(per.mean()), "count": per.numel()})
        for t, value in enumerate(per.mean(0).tolist()):
            log(row | {"scope": "test_position", "position": t, "loss": value,
                       "count": len(tokens)})  # fmt: skip
