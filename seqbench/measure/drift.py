"""what=drift: does a model running on its own outputs drift off the training distribution (C11)?

The model is trained on samples of a source whose true distribution p is known exactly
(``data=source``, seqbench/data/source.py; trained by ``seqbench.train`` under
``what.train_study``, reused when complete). Held-out source sequences x give the prefixes:

    teacher   the true continuation x_{<j}: what training saw
    greedy    x_{<P} then the model's own argmax tokens       (seqbench.generate, temperature 0)
    sampled   x_{<P} then the model's own samples             (temperature ``what.temperature``)
    source    x_{<P} then the source's own samples: a second, independent true continuation
              (the noise floor of the context distance below; its KL gap is ~0)

and at every position j = P + k - 1 of the continuation (k = 1 .. new_tokens, the k-th
generated token) with its prefix y_{<j} (true or the model's own) we score

    kl          KL(p(. | y_<j) || q(. | y_<j)), q the model's next-token distribution: the
                excess loss over the truth. Teacher-forced this is exactly the held-out loss
                minus the source's entropy, so teacher and free rows measure one quantity on
                two prefix distributions, and at k = 1 they share the prefix (gap 0)
    kl_reverse  KL(q || p): the expected excess of what the model writes when it samples
    nll_true    -log p(y_j | y_<j): the true log-likelihood of the token written (teacher:
                of the true next token, whose mean is the source's entropy at j)
    entropy_true, nll_model   H(p(. | y_<j)) and -log q(y_j | y_<j)

each averaged over the batch of prefixes (one row per decoding and k), and per decoding

    context_tv  total variation between the source contexts (the last ``order`` tokens, what
                the truth reads) after each continuation token, pooled over the batch and k,
                and the same for the true continuation: how far the text leaves the source's
                own contexts (teacher 0; source: the floor two independent samples of the
                same size leave)

The drift study takes the gap free - teacher at each k, over seeds. The model is trained by
the harness, so ``train.budget`` multiplies its steps there (``train_steps`` records them).
Generated sequences never run past the training length, so position j is one the model was
trained at; a free sequence is scored by one forward pass over it (the same logits the cached
decoding used: tests/test_generate.py).
"""

from pathlib import Path

import torch
import torch.nn.functional as F

from seqbench.config import ConfigError
from seqbench.data import seeded
from seqbench.env import pick_device
from seqbench.generate import check_sampling, generate
from seqbench.measure.common import (
    check_train_study,
    choice_list,
    model_columns,
    need,
    positive_int,
    progress,
    training_config,
)
from seqbench.train import trained_model

DECODINGS = ("greedy", "sampled")
REFERENCE = "source"  # the source continuing the same prefixes: the context distance's floor
COLUMNS = (
    "model family impl d_model n_layers decoding k position kl kl_reverse nll_true"
    " entropy_true nll_model context_tv n prefix_len temperature vocab_size entropy_rate"
    " val_loss lr train_steps train.budget train.lr_step train_run"
).split()


def new_tokens(cfg) -> int:
    """Tokens generated after the prefix; null: up to the training length."""
    n = cfg.what.new_tokens
    return cfg.data.seq_len - cfg.what.prefix_len if n is None else n


def check(cfg, task) -> None:
    w = cfg.what
    if not (hasattr(task, "conditional") and hasattr(task, "contexts")):
        raise ConfigError(
            f"data._target_={cfg.data._target_!r} is not allowed: what=drift scores against "
            "the exact distribution and contexts of a synthetic source (data=source)"
        )
    for key in ("prefix_len", "batch_size"):
        positive_int(w, key)
    if w.new_tokens is not None:
        positive_int(w, "new_tokens")
    need(
        w.prefix_len + new_tokens(cfg) <= cfg.data.seq_len,
        "what.new_tokens",
        w.new_tokens,
        f"prefix_len + new_tokens <= data.seq_len = {cfg.data.seq_len} (no position past "
        "the training length)",
    )
    choice_list(w, "decodings", DECODINGS)
    check_sampling(w.temperature, w.top_k)
    need(w.temperature > 0, "what.temperature", w.temperature, "a number > 0 (sampled decoding)")
    check_train_study(w)


@torch.no_grad()
def score(model, task, seq, prefix_len) -> dict:
    """Per-position scores of the continuation of ``seq`` [B, L] after ``prefix_len`` tokens:
    {name: [L - prefix_len] batch means} under the model's and the source's conditionals."""
    logits, _ = model(seq[:, :-1])  # [B, L-1, V]: logits at i predict token i + 1
    logq = F.log_softmax(logits.double().cpu(), dim=-1)[:, prefix_len - 1 :]  # [B, n, V]
    p = task.conditional(seq[:, :-1].cpu())[:, prefix_len - 1 :]  # [B, n, V] the truth
    logp = p.log()
    written = seq[:, prefix_len:].cpu()[..., None]  # [B, n, 1] the token at each j
    q = logq.exp()
    per = {
        "kl": (p * (logp - logq)).sum(-1),
        "kl_reverse": (q * (logq - logp)).sum(-1),
        "nll_true": -logp.gather(2, written).squeeze(2),
        "entropy_true": -(p * logp).sum(-1),
        "nll_model": -logq.gather(2, written).squeeze(2),
    }  # each [B, n]
    return {name: v.mean(0) for name, v in per.items()}  # [n]


@torch.no_grad()
def source_continuation(task, prefix, n, gen) -> torch.Tensor:
    """prefix [B, P] -> the prefix then ``n`` tokens the source itself samples [B, P + n]: a
    true continuation drawn independently of the held-out one (the noise floor)."""
    seq = prefix.cpu()
    for _ in range(n):
        p = task.conditional(seq)[:, -1]  # [B, V] the truth after the last token
        seq = torch.cat([seq, torch.multinomial(p, 1, generator=gen)], dim=1)  # [B, P + i + 1]
    return seq


def context_counts(task, seq, prefix_len) -> torch.Tensor:
    """seq [B, L] -> how often each source context ends on a continuation token [C]: the
    contexts the text visits, where the truth reads its next token."""
    ctx = task.contexts(seq.cpu())[:, prefix_len:]  # [B, L - P]
    return torch.bincount(ctx.flatten(), minlength=task.n_contexts)


def total_variation(a, b) -> float:
    """Total variation between two count vectors' distributions: 0 same, 1 disjoint."""
    return 0.5 * float((a / a.sum() - b / b.sum()).abs().sum())


def measure(cfg, task, log) -> dict:
    w, device = cfg.what, pick_device(cfg.device)
    model, summary = trained_model(training_config(cfg), device)
    model.eval()
    P, n = w.prefix_len, new_tokens(cfg)
    tokens, targets = task.batch("val", 0, w.batch_size)  # held-out source samples
    truth = torch.cat([tokens[:, :1], targets], dim=1)[:, : P + n].to(device)  # [B, P + n]
    # after training (its own bar): generate each decoding, then score it and the truth
    with progress(cfg, 2 * len(w.decodings) + 2, unit="pass") as bar:
        gen = seeded("drift", REFERENCE, cfg.seed)  # the floor's draw varies with the replicate
        runs = {"teacher": truth, REFERENCE: source_continuation(task, truth[:, :P], n, gen)}
        for decoding in w.decodings:
            temperature = 0.0 if decoding == "greedy" else w.temperature
            runs[decoding] = generate(
                model, truth[:, :P], n, temperature=temperature, top_k=w.top_k, seed=cfg.seed
            )  # [B, P + n]: the true prefix, then the model's own tokens
            bar.update()
        fixed = model_columns(cfg, model) | {
            "n": w.batch_size,
            "prefix_len": P,
            "temperature": w.temperature,
            "vocab_size": task.vocab_size,
            "entropy_rate": task.entropy_rate,
            "val_loss": summary.get("val_loss"),
            "lr": summary.get("lr"),
            "train_steps": summary.get("step"),  # the steps actually run (x train.budget)
            "train.budget": cfg.train.budget,  # the report reads one setting at a time
            "train.lr_step": cfg.train.lr_step,
            "train_run": Path(summary["run_dir"]).name,
        }
        true_contexts = context_counts(task, truth, P)
        out = {}
        for decoding, seq in runs.items():
            scores = score(model, task, seq.to(device), P)
            tv = total_variation(context_counts(task, seq, P), true_contexts)
            for i in range(n):
                row = {name: float(v[i]) for name, v in scores.items()} | {"context_tv": tv}
                log(fixed | row | {"decoding": decoding, "k": i + 1, "position": P + i})
            out[f"{decoding}_kl"] = float(scores["kl"].mean())
            out[f"{decoding}_context_tv"] = tv
            bar.update()
    return out
