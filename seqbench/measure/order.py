"""Does attention see order? Exact equivariance checks and a position probe (C6).

Self-attention without positional encoding is permutation-equivariant: for a permutation
matrix P, Attn(P X) = P Attn(X), because softmax(P Q K^T P^T) P V = P softmax(Q K^T) V, and
embeddings, LayerNorm and the MLP act on each position alone. So a *bidirectional*
Transformer without positions sees a bag of words: permute the input and the output is
permuted the same way (checked here to 1e-5). A *causal* mask breaks the symmetry: position t
attends to t tokens, so the model can count and infer where it is (Haviv et al. 2022,
"Transformer language models without positional encodings still learn positional
information"). Two measured quantities:

- ``equivariance_error``: max |f(P x) - P f(x)| over the logits, for random permutations;
- ``position_probe``: how much of the absolute position a least-squares linear probe reads
  off the final hidden states (held-out R^2; Haviv et al. probe the same way). Zero for a
  bag of words, high when the model knows where it is.

``measure`` (``what=order``) runs both on untrained models of each variant (causal or not,
each positional encoding), and on the trained causal models of the current task, obtained
from ``seqbench.train.train`` (which reuses complete runs of the same config). Bidirectional
models are not trained here: next-token targets would be visible to them.

On ``copy`` it also scores the *order-blind floor* (``state`` = ``floor``): the best any
predictor that sees only the bag of its prefix can do, computed exactly from the task's
generator (``order_blind_posterior``) and scored on the same test sequences as
``what=test_set``; C6's order degree is measured from it. Beside it, for reference, the
predictor that also knows which side of the delimiter each token sits (``two_bags``): one
bit of order per token, so not order-blind (~0.32 on copy, where the exact floor is ~0.25).
"""

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from seqbench.config import ConfigError, build_model
from seqbench.data import IGNORE, TEST_SEQUENCES
from seqbench.data.synthetic import Copy
from seqbench.env import pick_device
from seqbench.measure.common import progress
from seqbench.models.transformer import POSITIONS
from seqbench.train import trained_model

COLUMNS = (
    "causal pos state equivariance_error probe_r2 val_acc val_loss seq_len train_run "
    "predictor test_acc test_sequences"
).split()


@torch.no_grad()
def equivariance_error(model, tokens, n_perms: int = 4, seed: int = 0) -> float:
    """max over ``n_perms`` random permutations P of max |f(P x) - P f(x)| (logits)."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    base, _ = model(tokens)  # [B, T, V]
    worst = 0.0
    for _ in range(n_perms):
        perm = torch.randperm(tokens.size(1), generator=g).to(tokens.device)  # [T]
        permuted, _ = model(tokens[:, perm])  # f(P x)
        worst = max(worst, float((permuted - base[:, perm]).abs().max()))
    return worst


@torch.no_grad()
def hidden_states(model, tokens) -> torch.Tensor:
    """The final hidden states (input to the output head), [B, T, D]."""
    captured = {}
    handle = model.head.register_forward_hook(lambda m, args, out: captured.update(h=args[0]))
    try:
        model.eval()
        model(tokens)
    finally:
        handle.remove()
    return captured["h"]


def position_probe(model, tokens, ridge: float = 1e-3) -> float:
    """Held-out R^2 of a linear (ridge) probe predicting the position t from h_t.

    Sequences are split in half: the probe is fit on the first half's states, scored on the
    second's, so memorising individual states earns nothing."""
    h = hidden_states(model, tokens).double()  # [B, T, D]
    B, T, D = h.shape
    pos = torch.arange(T, dtype=torch.double, device=h.device).expand(B, T)  # [B, T]
    x = torch.cat([h, torch.ones(B, T, 1, dtype=h.dtype, device=h.device)], -1)  # bias column
    half = B // 2
    xf, yf = x[:half].reshape(-1, D + 1), pos[:half].reshape(-1)
    xt, yt = x[half:].reshape(-1, D + 1), pos[half:].reshape(-1)
    gram = xf.T @ xf + ridge * len(xf) * torch.eye(D + 1, dtype=h.dtype, device=h.device)
    w = torch.linalg.solve(gram, xf.T @ yf)  # [D + 1]
    residual = ((xt @ w - yt) ** 2).sum()
    return float(1 - residual / ((yt - yt.mean()) ** 2).sum())


# --- the order-blind floor on copy ---------------------------------------------------------
def _times(a, b) -> torch.Tensor:
    """Product of polynomials in z (coefficients on the last axis), truncated to its length."""
    out = torch.zeros_like(a)
    D = a.shape[-1]
    for i in range(D):
        out[..., i:] += a[..., i : i + 1] * b[..., : D - i]
    return out


def copy_posterior(counts: torch.Tensor, copied: torch.Tensor, n: int) -> torch.Tensor:
    """P(next = c | the bag of the prefix) on copy, exactly: [M, S] for ``counts`` [M, S]
    (each segment symbol's count in the prefix) with ``copied`` [M] tokens already copied.

    The segment is n i.i.d. uniform symbols; the prefix holds it whole, the delimiter and its
    first k symbols again, so C_c = 2 a_c + b_c with a the copied and b the remaining counts
    (sum a = k). Each split has weight multinomial(k; a) * multinomial(n - k; b), and the next
    symbol is c with chance b_c / (n - k): P(c) ~ [z^k] h_c(z) prod_{c' != c} g_c'(z), with
    g_c = sum_a z^a / (a! (C_c - 2a)!) and h_c the same terms times b_c. Products of
    polynomials rather than an enumeration of splits: exact and fast for every sequence."""
    M, S = counts.shape
    a = torch.arange(n, dtype=torch.long)
    b = counts[:, :, None] - 2 * a  # [M, S, n]: remaining counts for each a_c
    log_fact = torch.lgamma(torch.arange(2 * n + 2, dtype=torch.double) + 1)
    g = torch.where(b >= 0, torch.exp(-log_fact[a] - log_fact[b.clamp(min=0)]), 0.0)
    h = g * b.clamp(min=0)  # [M, S, n]
    one = torch.zeros(M, n, dtype=torch.double)
    one[:, 0] = 1
    before, after = [one], [one]  # prod over symbols < s, and > s
    for s in range(S):
        before.append(_times(before[-1], g[:, s]))
        after.insert(0, _times(after[0], g[:, S - 1 - s]))
    rows = torch.arange(M)
    score = torch.stack(
        [_times(_times(before[s], h[:, s]), after[s + 1])[rows, copied] for s in range(S)], 1
    )  # [M, S]
    return score / score.sum(1, keepdim=True)


def order_blind_posterior(tokens, vocab_size: int) -> torch.Tensor:
    """The Bayes-optimal order-blind prediction at each scored copy position: [N, n, V], from
    the bag of the prefix alone (any reordering of the prefix gives the same prediction)."""
    N, T = tokens.shape
    n = T // 2  # the segment's length; positions n..2n-1 predict it again
    onehot = torch.nn.functional.one_hot(tokens, vocab_size)  # [N, T, V]
    counts = onehot[:, :, 1:].cumsum(1)[:, n:]  # [N, n, S]: the prefix's bag, symbols only
    copied = torch.arange(n).repeat(N)  # [N * n]
    post = copy_posterior(counts.reshape(N * n, -1), copied, n).reshape(N, n, -1)
    return torch.cat([torch.zeros(N, n, 1, dtype=post.dtype), post], -1)  # the delimiter: 0


def two_bags(tokens, vocab_size: int) -> torch.Tensor:
    """Counts of each symbol of the segment not yet copied: [N, n, V] (the guess is the most
    frequent). Knows which side of the delimiter each token sits, so it is not order-blind;
    shown beside the floor only."""
    n = tokens.shape[1] // 2
    onehot = torch.nn.functional.one_hot(tokens, vocab_size)  # [N, T, V]
    segment = onehot[:, :n].sum(1, keepdim=True)  # [N, 1, V]
    copied = torch.cat([torch.zeros_like(segment), onehot[:, n + 1 :].cumsum(1)], 1)  # [N, n, V]
    return (segment - copied).double()


def fair_accuracy(scores, wanted) -> float:
    """Accuracy of guessing the highest score, ties broken at random (in expectation): exact
    and the same on every machine, where an argmax would pick among equal scores by rounding."""
    top = scores >= scores.amax(-1, keepdim=True) * (1 - 1e-9)  # [N, n, V]
    hit = top.gather(-1, wanted[..., None]).squeeze(-1)  # [N, n]
    return float((hit.double() / top.sum(-1)).mean())


def floor_rows(task: Copy) -> list[dict]:
    """The order-blind floor and the two-bag reference, scored on the test split's first
    TEST_SEQUENCES sequences (what=test_set scores the models on the same ones)."""
    tokens, targets = task.test_examples(TEST_SEQUENCES)  # [N, T]
    n = tokens.shape[1] // 2
    wanted = targets[:, n:]  # [N, n]: the segment again
    assert (wanted != IGNORE).all(), "copy scores every position after the delimiter"
    return [
        {"pos": "none", "causal": True, "state": "floor", "predictor": name,
         "test_acc": fair_accuracy(scores(tokens, task.vocab_size), wanted),
         "test_sequences": len(tokens), "seq_len": task.seq_len}
        for name, scores in PREDICTORS.items()
    ]  # fmt: skip


PREDICTORS = {  # the floor's rows, by the name the study reads them under
    "bag of the prefix (exact)": order_blind_posterior,
    "two bags (which side of the delimiter)": two_bags,
}


# --- the what=order measurement ------------------------------------------------------------
def check(cfg: DictConfig, task) -> None:
    w = cfg.what
    if not {"pos", "causal"} <= set(cfg.model):  # the options the checks vary
        raise ConfigError(
            f"model._target_={cfg.model._target_!r} is not allowed: the order checks vary "
            "model.pos and model.causal, so they need a model with both (model=transformer)"
        )
    for p in w.positions:
        if p not in POSITIONS:
            raise ConfigError(
                f"what.positions={list(w.positions)} is not allowed: each one of {list(POSITIONS)}"
            )
    for k, least in (("batch_size", 2), ("n_perms", 1)):  # the probe fits on half the batch
        v = w.get(k)
        if not (isinstance(v, int) and not isinstance(v, bool) and v >= least):
            raise ConfigError(f"what.{k}={v!r} is not allowed: an integer >= {least}")
    if not isinstance(w.get("trained"), bool):
        raise ConfigError(f"what.trained={w.get('trained')!r} is not allowed: true or false")


def _variant(cfg, pos, causal) -> DictConfig:
    tree = OmegaConf.to_container(cfg, resolve=True)
    tree.pop("what")
    tree["model"] |= {"pos": pos, "causal": causal}
    return OmegaConf.create(tree)


def measure(cfg: DictConfig, task, log) -> dict:
    device, w = pick_device(cfg.device), cfg.what
    tokens, _ = task.batch("val", 0, w.batch_size)
    tokens = tokens.to(device)  # [B, T]: real task sequences, so the probe sees real inputs
    summary = {}
    # every encoding untrained, bidirectional and causal, then the causal one trained
    points = len(w.positions) * (3 if w.trained else 2)
    with progress(cfg, points, unit="model") as bar:
        for pos in w.positions:
            for causal in (False, True):
                vcfg = _variant(cfg, pos, causal)
                torch.manual_seed(cfg.seed)
                model = build_model(vcfg.model, task.vocab_size, device)
                row = {
                    "causal": causal,
                    "pos": pos,
                    "state": "init",
                    "seq_len": task.seq_len,
                    "equivariance_error": equivariance_error(model, tokens, w.n_perms, cfg.seed),
                    "probe_r2": position_probe(model, tokens),
                }
                log(row)
                summary[f"{'causal' if causal else 'bidir'}_{pos}_equivariance_error"] = row[
                    "equivariance_error"
                ]
                bar.update()
                if not (causal and w.trained):
                    continue
                model, result = trained_model(vcfg, device)  # a complete run is reused
                log(
                    row
                    | {
                        "state": "trained",
                        "equivariance_error": equivariance_error(
                            model, tokens, w.n_perms, cfg.seed
                        ),
                        "probe_r2": position_probe(model, tokens),
                        "val_acc": result.get("val_acc"),
                        "val_loss": result.get("val_loss"),
                        "train_run": Path(result["run_dir"]).name,
                    }
                )
                bar.update()
    if isinstance(task, Copy):  # the floor is computed from copy's generator
        for row, key in zip(floor_rows(task), ("floor_exact_acc", "two_bags_acc")):
            log(row)
            summary[key] = row["test_acc"]
    return summary
