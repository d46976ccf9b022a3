"""Synthetic probes of memory: lag_recall, mqar and copy.

Token ranges are disjoint by construction so that a correct answer can only come from memory,
never from the local context. Each generator is vectorised over the batch.
"""

import torch

from seqbench.data import IGNORE, Task
from seqbench.schema import need


class LagRecall(Task):
    """One key-value pair, then distractors, then the key again: answer with the value.

        ... k v  d d d ... d  k -> v        (query k sits exactly ``distance`` tokens after v)

    Keys are tokens [0, n_keys), values [n_keys, 2 n_keys), distractors [2 n_keys, vocab_size).
    Only the answer (the target at the query position) is scored; chance is 1 / n_keys.
    """

    def __init__(
        self,
        seq_len: int = 64,
        distance: int = 16,
        vocab_size: int = 64,
        n_keys: int = 16,
        **task,
    ):
        super().__init__(**task)
        need(seq_len >= 3, "data.seq_len", seq_len, "an integer >= 3")
        need(
            1 <= distance <= seq_len - 2,
            "data.distance",
            distance,
            f"1 <= distance <= seq_len - 2 = {seq_len - 2}",
        )
        need(n_keys >= 2, "data.n_keys", n_keys, "an integer >= 2")
        need(
            vocab_size >= 2 * n_keys + 1,
            "data.vocab_size",
            vocab_size,
            f">= 2 * n_keys + 1 = {2 * n_keys + 1} (keys, values and distractors)",
        )
        self.seq_len, self.distance, self.vocab_size, self.n_keys = (
            seq_len,
            distance,
            vocab_size,
            n_keys,
        )

    def _generate(self, gen, n, split):
        T, d, K = self.seq_len, self.distance, self.n_keys
        seq = torch.randint(2 * K, self.vocab_size, (n, T + 1), generator=gen)  # distractors
        key = torch.randint(0, K, (n,), generator=gen)
        value = torch.randint(K, 2 * K, (n,), generator=gen)
        pair = torch.randint(0, T - 1 - d, (n,), generator=gen)  # key position p, value at p+1
        query = pair + 1 + d  # the query key; its target (the value) is seq[query + 1]
        rows = torch.arange(n)
        seq[rows, pair], seq[rows, pair + 1] = key, value
        seq[rows, query] = key
        seq[rows, query + 1] = value
        targets = torch.full((n, T), IGNORE)
        targets[rows, query] = value
        return seq[:, :T], targets

    def fingerprint(self):
        return super().fingerprint() | {"distance": self.distance, "n_keys": self.n_keys}


class MQAR(Task):
    """Multi-query associative recall, Zoology's generator (Arora et al. 2023,
    ``zoology/data/multiquery_ar.py``, with its default ``random_non_queries=True``).

        k1 v1 k2 v2 ... kP vP  x x k2 x x x k1 x ...     (x: filler; a query k sits at an
        .  .  .  .  ...  .  .  . . v2 . . . v1 . ...      even offset after the context)

    ``num_kv_pairs`` = P pairs open the sequence: keys drawn without replacement from
    [1, V/2), values without replacement from [V/2, V). Each key is then queried once: the
    i-th key at offset 2 g_i after the context, the gaps g drawn without replacement with
    p(g) ~ (g + 1)^(power_a - 1), g in [0, (T - 2P) / 2). The label (the key's value) sits at
    the query position and the answer is never fed back: the next input is filler, like
    every other position that is neither context nor query (a random token of [0, V), or 0
    with ``random_non_queries=False``). Chance is 1 / (V - V/2).
    """

    def __init__(
        self,
        seq_len: int = 64,
        num_kv_pairs: int = 4,
        vocab_size: int = 8192,
        power_a: float = 0.01,
        random_non_queries: bool = True,
        **task,
    ):
        super().__init__(**task)
        need(num_kv_pairs >= 1, "data.num_kv_pairs", num_kv_pairs, "an integer >= 1")
        need(
            seq_len >= 4 * num_kv_pairs,
            "data.num_kv_pairs",
            num_kv_pairs,
            f"4 * num_kv_pairs <= seq_len = {seq_len} (context plus query slots)",
        )
        need(
            vocab_size // 2 - 1 >= num_kv_pairs,
            "data.vocab_size",
            vocab_size,
            f">= 2 * (num_kv_pairs + 1) = {2 * (num_kv_pairs + 1)} (distinct keys in [1, V/2))",
        )
        need(0 < power_a <= 1, "data.power_a", power_a, "0 < power_a <= 1")
        self.seq_len, self.num_kv_pairs, self.vocab_size, self.power_a = (
            seq_len,
            num_kv_pairs,
            vocab_size,
            power_a,
        )
        self.random_non_queries = random_non_queries

    def _generate(self, gen, n, split):
        T, P, V, half = self.seq_len, self.num_kv_pairs, self.vocab_size, self.vocab_size // 2
        # without replacement: the first P of a random permutation of each range
        keys = torch.rand(n, half - 1, generator=gen).argsort(dim=1)[:, :P] + 1  # [n, P]
        values = torch.rand(n, V - half, generator=gen).argsort(dim=1)[:, :P] + half  # [n, P]
        if self.random_non_queries:
            seq = torch.randint(0, V, (n, T), generator=gen)
        else:
            seq = torch.zeros(n, T, dtype=torch.long)
        seq[:, 0 : 2 * P : 2], seq[:, 1 : 2 * P : 2] = keys, values
        # query slots after the context; multinomial without replacement draws in order, as
        # numpy's choice does, so the i-th key takes the i-th gap drawn (Zoology's pairing)
        slots = (T - 2 * P) // 2
        weights = (torch.arange(1, slots + 1, dtype=torch.float) ** (self.power_a - 1)).expand(
            n, slots
        )
        gaps = torch.multinomial(weights, P, replacement=False, generator=gen)  # [n, P]
        positions = 2 * P + 2 * gaps  # [n, P] query positions
        seq.scatter_(1, positions, keys)
        targets = torch.full((n, T), IGNORE)
        targets.scatter_(1, positions, values)
        return seq, targets

    def fingerprint(self):
        return super().fingerprint() | {
            "num_kv_pairs": self.num_kv_pairs,
            "power_a": self.power_a,
            "random_non_queries": self.random_non_queries,
        }


class Copy(Task):
    """A random segment, a delimiter, then the segment again: ``s_1..s_n | s_1..s_n``.

    seq_len = 2n; tokens come from [1, vocab_size), 0 is the delimiter; the n positions that
    must reproduce the segment are scored. Order decides everything here (C6).
    """

    def __init__(self, seq_len: int = 32, vocab_size: int = 16, **task):
        super().__init__(**task)
        need(
            seq_len >= 2 and seq_len % 2 == 0,
            "data.seq_len",
            seq_len,
            "an even integer >= 2 (segment, delimiter, segment)",
        )
        need(vocab_size >= 3, "data.vocab_size", vocab_size, "an integer >= 3")
        self.seq_len, self.vocab_size = seq_len, vocab_size

    def _generate(self, gen, n, split):
        half = self.seq_len // 2
        seg = torch.randint(1, self.vocab_size, (n, half), generator=gen)
        seq = torch.cat([seg, torch.zeros(n, 1, dtype=torch.long), seg], dim=1)  # [n, 2h+1]
        targets = torch.full((n, self.seq_len), IGNORE)
        targets[:, half:] = seq[:, half + 1 :]
        return seq[:, :-1], targets
