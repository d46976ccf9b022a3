"""A synthetic language whose true distribution is known exactly (C11): a seeded sparse n-gram.

    p(x_{t+1} = v | x_{<=t}) = (1 - eps) q(v | c_t) + eps / V,     c_t = (x_{t-k+1}, ..., x_t)

Each of the V^k contexts c allows ``support`` next tokens, drawn at random, with weights
q(v | c) proportional to E_v^sharpness, E_v ~ Exp(1) (sharpness 1: uniform on the simplex,
a Dirichlet(1, ..., 1)); the smoothing ``eps`` gives every token a little mass, so every
sequence has a non-zero probability and every log-likelihood and KL divergence is finite.
A sequence continues the chain from the all-zero context: x_0 ~ p(. | 0, ..., 0). The table
is a pure function of (vocab_size, order, support, sharpness, smoothing, language_seed); the
samples of a split also depend on ``seed``, as for every task.

Because the table is the truth, everything a drift measurement needs is exact, not estimated:
``conditional(tokens)`` the true next-token distribution after every position,
``log_likelihood(seq)`` the log-probability of whole sequences, ``position_entropy(T)`` the
expected loss of the true model at each position (the floor a trained model approaches) and
``entropy_rate`` its stationary value. tests/test_source.py checks them against brute-force
counts on a tiny alphabet.
"""

import functools

import torch
import torch.nn.functional as F

from seqbench.data import Task, seeded
from seqbench.schema import need

MAX_TABLE = 2**24  # V^k contexts x V entries, float64


class Source(Task):
    def __init__(
        self,
        seq_len: int = 64,
        vocab_size: int = 16,
        order: int = 2,
        support: int = 3,
        sharpness: float = 1.0,
        smoothing: float = 0.01,
        language_seed: int = 0,
        **task,
    ):
        super().__init__(**task)
        need(seq_len >= 1, "data.seq_len", seq_len, "an integer >= 1")
        need(vocab_size >= 2, "data.vocab_size", vocab_size, "an integer >= 2")
        need(order >= 1, "data.order", order, "an integer >= 1 (tokens of context)")
        need(
            vocab_size ** (order + 1) <= MAX_TABLE,
            "data.order",
            order,
            f"vocab_size^(order + 1) <= {MAX_TABLE} (the probability table)",
        )
        need(1 <= support <= vocab_size, "data.support", support, f"1 <= support <= {vocab_size}")
        need(sharpness > 0, "data.sharpness", sharpness, "a number > 0")
        need(
            0 < smoothing <= 1,
            "data.smoothing",
            smoothing,
            "0 < smoothing <= 1 (every sequence keeps a finite log-likelihood)",
        )
        self.seq_len, self.vocab_size, self.order = seq_len, vocab_size, order
        self.support, self.sharpness, self.smoothing = support, sharpness, smoothing
        self.language_seed = language_seed
        self.n_contexts = vocab_size**order
        self.table = self._table()  # [C, V] float64, rows sum to 1
        # the context index of (x_{t-k+1}, ..., x_t) is sum_j x_{t-j} V^j: newest token lowest
        self.powers = vocab_size ** torch.arange(order)  # [k]

    def _table(self) -> torch.Tensor:
        C, V, s = self.n_contexts, self.vocab_size, self.support
        gen = seeded("source", self.language_seed, V, self.order, s, self.sharpness)
        allowed = torch.rand(C, V, generator=gen).argsort(dim=1)[:, :s]  # [C, s] distinct
        weights = (-torch.rand(C, s, generator=gen, dtype=torch.float64).log()) ** self.sharpness
        sparse = torch.zeros(C, V, dtype=torch.float64).scatter_(1, allowed, weights)
        sparse /= sparse.sum(dim=1, keepdim=True)
        return (1 - self.smoothing) * sparse + self.smoothing / V

    # --- exact quantities ----------------------------------------------------------------
    def contexts(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, T] -> the context index after each position [B, T] (zeros before x_0)."""
        k, T = self.order, tokens.size(1)
        padded = F.pad(tokens.long(), (k - 1, 0), value=0)  # [B, T + k - 1]
        # x_{t-j} for every t is the slice starting k - 1 - j places in
        return sum(padded[:, k - 1 - j : k - 1 - j + T] * self.powers[j] for j in range(k))

    def conditional(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, T] -> p(x_{t+1} = v | x_{<=t}) [B, T, V], float64: the true next-token
        distribution after every position (a model's logits at t predict the same thing)."""
        return self.table[self.contexts(tokens.cpu())]

    def log_likelihood(self, seq: torch.Tensor) -> torch.Tensor:
        """seq [B, T] (a whole sequence from x_0) -> log p(seq) [B], float64."""
        seq = seq.cpu().long()
        first = self.table[0, seq[:, 0]].log()  # [B]: x_0 follows the all-zero context
        if seq.size(1) == 1:
            return first
        p = self.conditional(seq[:, :-1]).gather(2, seq[:, 1:, None]).squeeze(2)  # [B, T-1]
        return first + p.log().sum(dim=1)

    def context_distribution(self, steps: int) -> torch.Tensor:
        """[steps, C]: the distribution of the context after x_0, x_1, ... x_{steps-1}."""
        C, V = self.n_contexts, self.vocab_size
        nxt = (torch.arange(C)[:, None] * V) % C + torch.arange(V)  # [C, V] context after v
        pi = torch.zeros(C, dtype=torch.float64)
        pi[0] = 1.0  # the all-zero start
        out = []
        for _ in range(steps):
            pi = torch.zeros_like(pi).index_add_(
                0, nxt.flatten(), (pi[:, None] * self.table).flatten()
            )
            out.append(pi)
        return torch.stack(out)

    def position_entropy(self, steps: int) -> torch.Tensor:
        """[steps]: the expected loss of the true model at each target position, E H(x_{t+1} |
        x_{<=t}) in nats: the floor of a model's held-out loss at position t."""
        return self.context_distribution(steps) @ self.row_entropy  # [steps]

    @functools.cached_property
    def row_entropy(self) -> torch.Tensor:
        return -(self.table * self.table.log()).sum(dim=1)  # [C]

    @functools.cached_property
    def entropy_rate(self) -> float:
        """The stationary entropy per token (the chain is irreducible and aperiodic because
        the smoothing reaches every context): H at a position far from the start."""
        C, V = self.n_contexts, self.vocab_size
        nxt = ((torch.arange(C)[:, None] * V) % C + torch.arange(V)).flatten()
        pi = torch.full((C,), 1.0 / C, dtype=torch.float64)
        for _ in range(10_000):
            new = torch.zeros_like(pi).index_add_(0, nxt, (pi[:, None] * self.table).flatten())
            done = float((new - pi).abs().sum()) < 1e-13
            pi = new
            if done:
                break
        return float(pi @ self.row_entropy)

    # --- samples ---------------------------------------------------------------------------
    def sample(self, gen: torch.Generator, n: int, length: int) -> torch.Tensor:
        """n sequences x_0 .. x_{length-1} from the source [n, length]."""
        V, C = self.vocab_size, self.n_contexts
        ctx = torch.zeros(n, dtype=torch.long)
        out = torch.empty(n, length, dtype=torch.long)
        for t in range(length):
            x = torch.multinomial(self.table[ctx], 1, generator=gen).squeeze(1)  # [n]
            out[:, t] = x
            ctx = (ctx * V) % C + x  # drop the oldest token, append x
        return out

    def _generate(self, gen, n, split):
        seq = self.sample(gen, n, self.seq_len + 1)  # [n, T + 1]
        return seq[:, :-1], seq[:, 1:]  # every position is scored

    def fingerprint(self):
        return super().fingerprint() | {
            "order": self.order,
            "support": self.support,
            "sharpness": self.sharpness,
            "smoothing": self.smoothing,
            "language_seed": self.language_seed,
            "entropy_rate": round(self.entropy_rate, 6),
        }
