"""A new model of a family nobody listed, and a new study, each one file in a temp dir, flow
through train, measure, report and the claims table with their own family and colour, and
nothing shared is edited."""

import textwrap

import pandas as pd
from omegaconf import OmegaConf, open_dict

from seqbench import studies
from seqbench.measure.run import run_measurement
from seqbench.report.__main__ import model_families, write_report
from seqbench.report.collect import collect
from seqbench.report.plot import palette
from seqbench.train import train
from tests.conftest import compose_cfg

MODEL = '''
"""A causal convolution: y_t = W * [x_{t-k+1}, ..., x_t]; the state is the last k-1 inputs."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from seqbench.models import SequenceModel


class CausalConv(SequenceModel):
    family = "conv"

    def __init__(self, vocab_size: int, d_model: int = 16, kernel: int = 3):
        super().__init__()
        self.d_model, self.kernel = d_model, kernel
        self.embed = nn.Embedding(vocab_size, d_model)
        self.conv = nn.Conv1d(d_model, d_model, kernel)
        self.head = nn.Linear(d_model, vocab_size, bias=False)

    def hparams(self):
        return {"d_model": self.d_model, "kernel": self.kernel}

    def forward(self, tokens, state=None):
        x = self.embed(tokens).transpose(1, 2)  # [B, D, T]
        B, D, _ = x.shape
        past = x.new_zeros(B, D, self.kernel - 1) if state is None else state
        x = torch.cat([past, x], dim=2)  # [B, D, k - 1 + T]
        y = F.relu(self.conv(x)).transpose(1, 2)  # [B, T, D]
        return self.head(y), x[:, :, x.size(2) - (self.kernel - 1):]
'''

STUDY = '''
"""A throw-away study: every model's held-out loss against a cap."""
from seqbench.report.verdict import Rule, Verdict
from seqbench.studies._common import complete

TITLE = "Throw-away study"
ORDER = 99
DECIDES = ("C99",)
CLAIMS = {"C99": "a throw-away claim"}
BENCH = {"smoke": [], "cpu": [], "gpu": []}
RULE = Rule("supported if every model ends below {cap} nats", cap=100.0)


def verdicts(tables):
    runs = complete(tables["runs"], "throwaway")
    if runs.empty:
        return []
    ok = bool((runs.val_loss < RULE.cap).all())
    families = ", ".join(f"{m} ({f})" for m, f in zip(runs.model, runs.family))
    return [Verdict("C99", "throwaway", families, RULE, "supported" if ok else "not supported")]


def section(tables, figs):
    runs = complete(tables["runs"], "throwaway")
    fig, axes = figs.figure()
    for m, g in runs.groupby("model"):
        axes[0].bar(m, g.val_loss.mean(), color=figs.color(m))
    return figs.save(fig, "throwaway_loss")
'''


def test_a_new_model_and_a_new_study_flow_through_everything(tmp_path, monkeypatch):
    (tmp_path / "throwaway_conv.py").write_text(textwrap.dedent(MODEL))
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "throwaway.py").write_text(textwrap.dedent(STUDY))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(studies, "__path__", [*studies.__path__, str(tmp_path / "studies")])
    runs = tmp_path / "runs"
    common = [
        "device=cpu",
        "train.threads=1",
        "train.steps=6",
        "train.eval_every=6",
        "train.eval_batches=1",
        "train.batch_size=4",
        "data.seq_len=16",
        "data.distance=4",
        f"out_dir={runs}",
        "study=throwaway",
    ]
    for name in ("lstm", "conv"):
        cfg = compose_cfg(common)
        if name == "conv":
            with open_dict(cfg):
                cfg.model = OmegaConf.create({"_target_": "throwaway_conv.CausalConv"})
        assert train(cfg)["status"] == "complete"
    mcfg = compose_cfg(
        [*common, "what=span", "what.lengths=[8,16]", "what.layers=[1]"], config_name="measure"
    )
    with open_dict(mcfg):
        mcfg.model = OmegaConf.create({"_target_": "throwaway_conv.CausalConv"})
    assert run_measurement(mcfg)["status"] == "complete"

    readme = write_report(runs, tmp_path / "results").read_text()
    table = pd.read_csv(tmp_path / "results" / "runs.csv")
    assert dict(zip(table.model, table.family)) == {"lstm": "recurrent", "causalconv": "conv"}
    assert set(pd.read_csv(tmp_path / "results" / "span.csv").family) == {"conv"}
    row = next(line for line in readme.splitlines() if line.startswith("| C99 |"))
    assert "a throw-away claim" in row and "causalconv (conv)" in row and "**supported**" in row
    page = (tmp_path / "results" / "study_throwaway.md").read_text()  # its own page, linked
    assert "# Throw-away study" in page and "[Throw-away study](study_throwaway.md)" in readme
    assert (tmp_path / "results" / "throwaway_loss.png").exists()
    colours = palette(model_families(collect(runs)))
    assert len({colours[m] for m in colours}) == len(colours)  # every model its own colour
    assert colours["causalconv"] not in {colours[m] for m in colours if m != "causalconv"}
