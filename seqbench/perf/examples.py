"""pytorch/examples' word_language_model, re-implemented for timing: the step a language-modelling
user runs instead of seqbench (github.com/pytorch/examples, word_language_model/model.py and
main.py's train()), at main.py's defaults:

    --emsize 200 --nhid 200 --nlayers 2 --bptt 35 --batch_size 20 --lr 20 --clip 0.25
    --dropout 0.2 (--nhead 2 for --model Transformer)

What makes it that code and not seqbench's: time-major tensors [T, B] (batchify's ``.t()``),
a decoder with a bias, log_softmax + NLLLoss, plain SGD written as
``p.data.add_(p.grad, alpha=-lr)`` over every parameter, a ``loss.item()`` every step (the
running total it logs), the LSTM's hidden state repackaged (detached) between windows. Its
Transformer is nn.TransformerEncoder (post-LN, ReLU, feed-forward width nhid) under a float
causal mask, the embedding scaled by sqrt(ninp), sinusoidal positions with dropout. Kept
apart from seqbench's code on purpose: it is the reference seqbench is timed against.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

DEFAULTS = dict(emsize=200, nhid=200, nlayers=2, bptt=35, batch_size=20, lr=20.0, clip=0.25,
                dropout=0.2, nhead=2)  # fmt: skip


class RNNModel(nn.Module):
    def __init__(self, ntoken, ninp, nhid, nlayers, dropout):
        super().__init__()
        self.ntoken, self.nhid, self.nlayers = ntoken, nhid, nlayers
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def forward(self, input, hidden):
        emb = self.drop(self.encoder(input))  # [T, B, ninp]
        output, hidden = self.rnn(emb, hidden)
        decoded = self.decoder(self.drop(output)).view(-1, self.ntoken)  # [T * B, V]
        return F.log_softmax(decoded, dim=1), hidden

    def init_hidden(self, bsz):
        weight = next(self.parameters())
        zeros = weight.new_zeros(self.nlayers, bsz, self.nhid)
        return (zeros, zeros.clone())


class PositionalEncoding(nn.Module):
    def __init__(self, d_model, dropout, max_len=5000):
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        position = torch.arange(max_len, dtype=torch.float).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, d_model)
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)
        self.register_buffer("pe", pe.unsqueeze(0).transpose(0, 1))  # [max_len, 1, d]

    def forward(self, x):
        return self.dropout(x + self.pe[: x.size(0), :])


class TransformerModel(nn.Module):
    def __init__(self, ntoken, ninp, nhead, nhid, nlayers, dropout):
        super().__init__()
        self.src_mask, self.ninp = None, ninp
        self.pos_encoder = PositionalEncoding(ninp, dropout)
        layer = nn.TransformerEncoderLayer(ninp, nhead, nhid, dropout)
        # nested tensors only serve evaluation with a padding mask; the default (on) only warns
        self.transformer_encoder = nn.TransformerEncoder(layer, nlayers, enable_nested_tensor=False)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.decoder = nn.Linear(ninp, ntoken)
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def forward(self, src):
        if self.src_mask is None or self.src_mask.size(0) != len(src):
            mask = torch.triu(torch.ones(len(src), len(src), device=src.device)) == 1
            mask = mask.transpose(0, 1).float()
            self.src_mask = mask.masked_fill(mask == 0, float("-inf")).masked_fill(mask == 1, 0.0)
        src = self.pos_encoder(self.encoder(src) * math.sqrt(self.ninp))  # [T, B, ninp]
        output = self.decoder(self.transformer_encoder(src, self.src_mask))
        return F.log_softmax(output, dim=-1)  # [T, B, V]


def batchify(ids, bsz, device):
    nbatch = ids.size(0) // bsz
    return ids[: nbatch * bsz].view(bsz, -1).t().contiguous().to(device)  # [N, B]


def get_batch(source, i, bptt):
    seq_len = min(bptt, len(source) - 1 - i)
    return source[i : i + seq_len], source[i + 1 : i + 1 + seq_len].reshape(-1)


class Examples:
    """main.py's ``train()``, one window per ``step()``; ``model`` is "lstm" or "transformer"."""

    def __init__(self, model, ids, ntoken, device, **overrides):
        a = {**DEFAULTS, **overrides}
        self.a, self.ntoken, self.i = a, ntoken, 0
        self.train_data = batchify(ids, a["batch_size"], device)
        if model == "lstm":
            self.model = RNNModel(ntoken, a["emsize"], a["nhid"], a["nlayers"], a["dropout"])
        else:
            self.model = TransformerModel(
                ntoken, a["emsize"], a["nhead"], a["nhid"], a["nlayers"], a["dropout"]
            )
        self.model.to(device).train()
        self.recurrent = isinstance(self.model, RNNModel)
        self.hidden = self.model.init_hidden(a["batch_size"]) if self.recurrent else None
        self.criterion = nn.NLLLoss()
        self.total_loss = 0.0

    def step(self):
        a, model = self.a, self.model
        if self.i >= self.train_data.size(0) - 1:  # the next epoch
            self.i = 0
            self.hidden = model.init_hidden(a["batch_size"]) if self.recurrent else None
        data, targets = get_batch(self.train_data, self.i, a["bptt"])
        self.i += a["bptt"]
        model.zero_grad()
        if self.recurrent:
            self.hidden = tuple(h.detach() for h in self.hidden)  # repackage_hidden
            output, self.hidden = model(data, self.hidden)
        else:
            output = model(data).view(-1, self.ntoken)
        loss = self.criterion(output, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), a["clip"])
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-a["lr"])
        self.total_loss += loss.item()
        return loss
