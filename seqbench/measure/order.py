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
"""

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from seqbench.config import ConfigError, build_model
from seqbench.env import pick_device
from seqbench.measure.common import progress
from seqbench.models.transformer import POSITIONS
from seqbench.train import trained_model

COLUMNS = (
    "causal pos state equivariance_error probe_r2 val_acc val_loss seq_len train_run"
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
    return summary
