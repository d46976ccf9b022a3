"""Tasks: deterministic batches of (tokens[B, T], targets[B, T]); targets are -100 where
nothing is scored.

A batch is a pure function of (task config, seed, split, index): the training stream position
is just the step number, so two models see the same examples in the same order and a resumed
run continues exactly where it stopped. Each task subclass implements ``_generate(gen, n, split)``
returning ``n`` examples of ``split`` as (tokens[n, T], targets[n, T]).

``n_train`` (C7, data efficiency) restricts training to a finite pool of unique examples:
example j of the pool is fixed by the seed, and each batch draws its rows from the pool.

Three held-out uses, three streams: ``val`` is what training selects on (evaluation, the
criterion, early stopping, lr calibration); ``test`` is what the report scores a trained
model on (seqbench.measure.test_set), drawn from its own seed so nothing that chose the model
ever saw it. Each split's generator is seeded by (seed, split number, index), so adding the
test split left every train, val and pool batch as it was.
"""

import hashlib

import torch

IGNORE = -100
SPLITS = {"train": 0, "val": 1, "pool": 2, "test": 3}  # never renumber: runs key on the data
POOL_CHUNK = 256
TEST_CHUNK = 256  # the test set is drawn in chunks of this size, whatever batch scores it
TEST_SEQUENCES = 1024  # the fewest a reported figure rests on: a 0.9 bar read to +-0.02 (95%)


def seeded(*parts) -> torch.Generator:
    """A CPU generator whose seed is a stable hash of ``parts`` (no Python hash salt)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


class Task:
    vocab_size: int
    seq_len: int

    def __init__(self, seed: int = 0, n_train: int | None = None):
        if n_train is not None and n_train < 1:
            raise ValueError(f"data.n_train={n_train} must be a positive integer or null")
        self.seed, self.n_train = seed, n_train
        self._chunks = {}
        self.has_test = True  # a generated task draws a test split from its own seed

    def batch(self, split: str, index: int, batch_size: int):
        """The ``index``-th batch of ``split`` ('train', 'val' or 'test'): (tokens, targets)
        [B, T]."""
        if split == "train" and self.n_train is not None:
            rows = torch.randint(
                self.n_train, (batch_size,), generator=seeded(self.seed, "pick", index)
            )
            pairs = [self._pool_example(int(j)) for j in rows]
            return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
        return self._generate(seeded(self.seed, SPLITS[split], index), batch_size, split)

    def test_examples(self, n: int):
        """The first ``n`` sequences of the test split: (tokens, targets) [n, T]. Drawn in
        chunks of TEST_CHUNK, so sequence j is the same whatever ``n`` or batch size reads
        it, and from the generator of (seed, SPLITS["test"], chunk), which no training,
        validation or pool batch uses."""
        chunks = [self.batch("test", c, TEST_CHUNK) for c in range(-(-n // TEST_CHUNK))]
        tokens = torch.cat([t for t, _ in chunks])[:n]  # [n, T]
        targets = torch.cat([y for _, y in chunks])[:n]  # [n, T]
        return tokens, targets

    def _pool_example(self, j: int):
        chunk = j // POOL_CHUNK
        if chunk not in self._chunks:
            self._chunks[chunk] = self._generate(
                seeded(self.seed, SPLITS["pool"], chunk), POOL_CHUNK, "train"
            )
        tokens, targets = self._chunks[chunk]
        return tokens[j % POOL_CHUNK], targets[j % POOL_CHUNK]

    def _generate(self, gen: torch.Generator, n: int, split: str):
        raise NotImplementedError  # each task defines how one batch of examples is drawn

    def stale(self) -> bool:
        """Has what this task was built from changed since it was built (an edited corpus
        file)? A generated task is a function of its config alone: never."""
        return False

    def changed_since(self, recorded: dict) -> str | None:
        """Why a run that recorded ``recorded`` (run.json ``data``) did not see the data this
        task gives now (None when it did). A generated task: nothing to compare beyond the
        config, which the run's content key already covers."""
        return None

    def fingerprint(self) -> dict:
        """What identifies the data a run saw (recorded in run.json)."""
        return {
            "task": type(self).__name__,
            "vocab_size": self.vocab_size,
            "seq_len": self.seq_len,
            "seed": self.seed,
            "n_train": self.n_train,
        }
