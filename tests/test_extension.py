"""A user's own model and study, written in a temp folder outside the checkout and named by
SEQBENCH_PATH, pass the model- and study-parametrised tests and train through the command
line, and nothing shared is edited: the folder is the whole change.

The model is a realistic one of a family nobody listed: a diagonal linear state-space
recurrence (family "ssm") with a parallel scan path and a per-step path, size presets
matched to the Transformer with the helpers the shipped models use, and the state contract.
The study is one folder (module, experiment config, profiles, README)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from seqbench import searchpath, studies
from seqbench.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
# the YAML is named after the class, lowercased: the run tables name a model by its class
MODEL_NAME, MODULE, STUDY = "diagssm", "diag_ssm", "throwaway"

MODEL = '''
"""A diagonal linear state-space recurrence (S4D, Gu et al. 2022; LRU, Orvieto et al. 2023),
real and time-invariant, in pre-LN residual blocks like minrnn's:

    u_t = W_in LN(x_t),   h_t = a ⊙ h_{t-1} + b ⊙ u_t,   a = σ(ν) per channel,
    x_t = x_t + W_out h_t,   x_t = x_t + MLP(LN(x_t))

Two paths compute the same function from the same parameters:
- ``impl="scan"``: a Hillis & Steele (1986) doubling scan over time; a is the same at every
  step, so round k adds a^(2^k) times the value 2^k steps back (ceil(log2 T) rounds);
- ``impl="sequential"``: the per-step loop the tracer reads.
The state is the last h of every layer, [L, B, D]: a fixed size, carried across windows.
"""

import torch
import torch.nn as nn

from seqbench.models import SequenceModel, resolve_size, size_presets


def scan(a, u, h0=None):
    """h_t = a h_{t-1} + u_t for every t at once. a: [D]; u: [B, T, D]; h0: [B, D] or None."""
    T, h, power, offset = u.size(1), u, a, 1
    while offset < T:  # after the round with offset 2^k, h_t sums a^j u_{t-j} for j < 2^(k+1)
        h = torch.cat([h[:, :offset], h[:, offset:] + power * h[:, :-offset]], 1)
        power, offset = power * power, offset * 2
    if h0 is not None:  # plus a^(t+1) h0
        steps = torch.arange(1, T + 1, device=u.device, dtype=u.dtype)[:, None]  # [T, 1]
        h = h + a**steps * h0[:, None]
    return h


class Block(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.w_in, self.w_out = nn.Linear(d, d), nn.Linear(d, d)
        a = torch.empty(d).uniform_(0.9, 0.999)  # LRU's ring: slow and fast decays
        self.nu = nn.Parameter(torch.log(a / (1 - a)))  # a = sigmoid(nu), in (0, 1)
        self.b = nn.Parameter((1 - a * a).sqrt())  # LRU's normalisation: h stays O(u)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x, h0, impl):
        """x: [B, T, D]; h0: [B, D] or None -> (x, h_T)."""
        a, u = torch.sigmoid(self.nu), self.b * self.w_in(self.ln1(x))  # [D], [B, T, D]
        if impl == "scan":
            h = scan(a, u, h0)
        else:
            prev, hs = u.new_zeros(u[:, 0].shape) if h0 is None else h0, []
            for t in range(u.size(1)):
                prev = a * prev + u[:, t]  # [B, D]
                hs.append(prev)
            h = torch.stack(hs, 1)  # [B, T, D]
        x = x + self.w_out(h)
        return x + self.mlp(self.ln2(x)), h[:, -1]


class DiagSSM(SequenceModel):
    family = "ssm"
    impls = ("scan", "sequential")
    # non-embedding parameters within 10% of the Transformer's at every size
    presets = size_presets("17x1 26x1 44x1 53x2 70x2 140x2 210x4 280x4")

    def __init__(
        self,
        vocab_size: int,
        impl: str = "scan",
        **shape,  # size, d_model, n_layers: SequenceModel resolves the preset
    ):
        super().__init__(**{"size": "xs", **shape})
        if impl not in self.impls:
            raise ValueError(f"model.impl={impl!r} is not allowed: one of {list(self.impls)}")
        self.impl = impl
        self.embed = nn.Embedding(vocab_size, self.d_model)
        self.blocks = nn.ModuleList(Block(self.d_model) for _ in range(self.n_layers))
        self.ln_f = nn.LayerNorm(self.d_model)
        self.head = nn.Linear(self.d_model, vocab_size, bias=False)

    def hparams(self):
        return {"d_model": self.d_model, "n_layers": self.n_layers, "impl": self.impl}

    def forward(self, tokens, state=None):
        x, last = self.embed(tokens), []  # [B, T, D]
        for i, block in enumerate(self.blocks):
            x, h = block(x, None if state is None else state[i], self.impl)
            last.append(h)
        return self.head(self.ln_f(x)), torch.stack(last)  # [B, T, V], [L, B, D]
'''

MODEL_YAML = """\
# A diagonal linear state-space recurrence (S4D/LRU-style): a user's model, outside the checkout.
_target_: diag_ssm.DiagSSM
size: xs            # 5xs | 4xs | 3xs | 2xs | xs | s | m | l (matched non-embedding params)
d_model: null       # null: the preset's width
n_layers: null      # null: the preset's depth
impl: scan          # scan (parallel doubling scan) | sequential (per-step loop)
"""

STUDY_MODULE = '''\
"""A throw-away study: every model's held-out loss against a cap (C99)."""

from seqbench.report.verdict import Rule, Verdict
from seqbench.studies._common import complete

TITLE = "Throw-away study"
ORDER = 99
DECIDES = ("C99",)
CLAIMS = {"C99": "a throw-away claim"}
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

STUDY_YAML = """\
# @package _global_
# The throw-away study: every ssm-family model on lag_recall for a few steps.
defaults:
  - override /data: lag_recall
study: throwaway
data:
  seq_len: 16
  distance: 4
train:
  steps: 4
  eval_every: 4
  eval_batches: 1
  batch_size: 4
  threads: 1
hydra:
  sweeper:
    params:
      model: "@ssm"
      seed: 0
"""

PROFILES = """\
# What `make bench PROFILE=<profile>` runs for the throwaway study.
smoke:
  - job: throwaway
    entry: train
    args: [-m, +experiment=throwaway]
cpu:
  - job: throwaway
    entry: train
    args: [-m, +experiment=throwaway]
gpu: []
"""

README = """\
# Throw-away study (C99)

Every ssm-family model on lag_recall for four steps: `python -m seqbench.train -m
+experiment=throwaway`.
"""


def write_user_folder(root: Path) -> Path:
    """The user's folder: a model module and its YAML, a study folder of four parts."""
    (root / "model").mkdir(parents=True)
    (root / f"{MODULE}.py").write_text(MODEL)
    (root / "model" / f"{MODEL_NAME}.yaml").write_text(MODEL_YAML)
    study = root / "studies" / STUDY
    study.mkdir(parents=True)
    for name, text in {
        "__init__.py": STUDY_MODULE,
        f"{STUDY}.yaml": STUDY_YAML,
        "profiles.yaml": PROFILES,
        "README.md": README,
    }.items():
        (study / name).write_text(text)
    # its commands and rule sentence written into the README as `make readmes` does
    render = (
        "from seqbench import readmes as r; p = r.readme_path('{0}'); p.write_text(r.render('{0}'))"
    )
    subprocess.run(
        [sys.executable, "-c", render.format(STUDY)], cwd=ROOT, env=user_env(root), check=True
    )
    return root


@pytest.fixture(scope="module")
def user(tmp_path_factory) -> Path:
    return write_user_folder(tmp_path_factory.mktemp("user"))


@pytest.fixture
def on_path(user, monkeypatch):
    """SEQBENCH_PATH names the user's folder in this process (sys.path restored after)."""
    before = [f for f in os.environ.get(searchpath.ENV, "").split(os.pathsep) if f]
    monkeypatch.setenv(searchpath.ENV, str(user))
    # a suite run under SEQBENCH_PATH (another copy of this folder): only this one counts here
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in before])
    monkeypatch.delitem(sys.modules, "diag_ssm", raising=False)
    return user


def user_env(user: Path) -> dict:
    return {**os.environ, searchpath.ENV: str(user), "PYTHONDONTWRITEBYTECODE": "1"}


def test_the_users_model_joins_the_sets_and_only_its_module_is_trusted(on_path, monkeypatch):
    from seqbench.config import group_options, model_configs
    from seqbench.guard import allowed_target
    from seqbench.sets import families, members

    assert MODEL_NAME in group_options("model") and MODEL_NAME in model_configs()
    assert families()[MODEL_NAME] == "ssm"
    assert members("ssm") == [MODEL_NAME]
    assert MODEL_NAME in members("compared") and MODEL_NAME in members("all")
    assert MODEL_NAME not in members("lecture")
    assert allowed_target("model", "diag_ssm.DiagSSM")
    assert allowed_target("data", "diag_ssm.DiagSSM")  # the user's trust covers tasks too
    assert not allowed_target("what", "diag_ssm.DiagSSM")  # measurements stay seqbench's
    assert not allowed_target("model", "os.system")  # a module the folder does not hold
    monkeypatch.delenv(searchpath.ENV)
    assert not allowed_target("model", "diag_ssm.DiagSSM")  # no folder named, no trust


def test_a_module_of_the_folder_that_imports_from_elsewhere_is_not_trusted(tmp_path, monkeypatch):
    """A file named like an installed module (json.py) is shadowed, since the folder goes
    after sys.path: it never becomes an allowed prefix."""
    (tmp_path / "json.py").write_text("def loads(s): return 'mine'\n")
    monkeypatch.setenv(searchpath.ENV, str(tmp_path))
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert "json." not in searchpath.target_prefixes()


def test_a_users_name_may_not_shadow_a_shipped_one(tmp_path, monkeypatch):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "lstm.yaml").write_text(MODEL_YAML)
    (tmp_path / "studies" / "recall").mkdir(parents=True)
    (tmp_path / "studies" / "recall" / "__init__.py").write_text("")
    monkeypatch.setenv(searchpath.ENV, str(tmp_path))
    monkeypatch.setattr(sys, "path", list(sys.path))
    with pytest.raises(ConfigError, match=r"model/lstm.yaml reuses the name"):
        searchpath.model_files()
    with pytest.raises(ConfigError, match=r"studies/recall reuses the name"):
        searchpath.study_folders(studies.HERE)
    monkeypatch.setenv(searchpath.ENV, str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match=r"SEQBENCH_PATH=.*nowhere is not allowed: .*not a"):
        searchpath.folders()


# the test files that parametrise over the discovered models or studies, and within them the
# tests that take the user's (by parameter) or loop over every model file
SUITE = ["tests/test_models.py", "tests/test_generate.py", "tests/test_corpora.py"]
SUITE += ["tests/test_layout.py", "tests/test_figures.py"]
LOOPS = ["size_presets", "fixed_size", "every_constructor_argument", "every_recurrence"]


def test_the_model_and_study_parametrised_tests_pass_with_them(user):
    """The suite run in a fresh process with SEQBENCH_PATH set: it passes, and the user's
    model and study were among its parameters (not merely tolerated)."""
    cmd = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", *SUITE]
    cmd += ["-k", " or ".join([MODEL_NAME, STUDY, *LOOPS])]
    done = subprocess.run(cmd, cwd=ROOT, env=user_env(user), capture_output=True, text=True)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    for test in (
        f"test_causal[{MODEL_NAME}]",
        f"test_stepping_with_state_equals_full_forward[{MODEL_NAME}]",
        f"test_every_execution_path_agrees_in_outputs_state_and_gradients[{MODEL_NAME}-sequential]",
    ):
        assert f"{test} PASSED" in out, test
    assert f"[{STUDY}] PASSED" in out  # a study-parametrised test took it


def test_the_users_model_trains_through_the_command_line(user, tmp_path):
    """python -m seqbench.train with the user's experiment and model: one run, recorded with
    the family its class declares."""
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "seqbench.train", f"+experiment={STUDY}", f"model={MODEL_NAME}"]
    cmd += ["device=cpu", "model.size=3xs", f"out_dir={runs}"]
    done = subprocess.run(cmd, cwd=tmp_path, env=user_env(user), capture_output=True, text=True)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    records = list(runs.rglob("run.json"))
    assert len(records) == 1
    run = json.loads(records[0].read_text())
    assert run["status"] == "complete" and run["family"] == "ssm"
    assert run["config"]["study"] == STUDY and run["config"]["model"]["impl"] == "scan"


def test_without_the_path_the_users_model_is_refused_in_one_line(user, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != searchpath.ENV}
    cmd = [sys.executable, "-m", "seqbench.train", f"model={MODEL_NAME}", f"out_dir={tmp_path}"]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().startswith(f"seqbench: error: model='{MODEL_NAME}' is not allowed")
    assert len(done.stderr.strip().splitlines()) == 1


def test_the_users_model_and_study_flow_through_train_measure_and_the_report(
    on_path, tmp_path, monkeypatch
):
    """Trained and traced beside a shipped model, in the report with its own family, colour,
    claim row and study page."""
    from seqbench.measure.run import run_measurement
    from seqbench.report.collect import collect
    from seqbench.report.plot import palette
    from seqbench.report.write import model_families, write_report
    from seqbench.train import train
    from tests.conftest import compose_cfg

    searchpath.register_models()  # as the command line does, before composing
    monkeypatch.setattr(studies, "__path__", [*studies.__path__, str(on_path / "studies")])
    runs = tmp_path / "runs"
    common = ["device=cpu", "train.threads=1", "train.steps=6", "train.eval_every=6"]
    common += ["train.eval_batches=1", "train.batch_size=4", "data.seq_len=16"]
    common += ["data.distance=4", "model.size=3xs", f"out_dir={runs}", f"study={STUDY}"]
    for name in ("lstm", MODEL_NAME):
        assert train(compose_cfg([f"model={name}", *common]))["status"] == "complete"
    span = ["what=span", "what.lengths=[8,16]", "what.layers=[1]", f"model={MODEL_NAME}"]
    assert run_measurement(compose_cfg([*common, *span], "measure"))["status"] == "complete"

    readme = write_report(runs, tmp_path / "results").read_text()
    table = pd.read_csv(tmp_path / "results" / "runs.csv")
    assert dict(zip(table.model, table.family)) == {"lstm": "recurrent", MODEL_NAME: "ssm"}
    assert set(pd.read_csv(tmp_path / "results" / "span.csv").family) == {"ssm"}
    row = next(line for line in readme.splitlines() if line.startswith("| C99 |"))
    assert "a throw-away claim" in row and f"{MODEL_NAME} (ssm)" in row
    assert "**supported**" in row
    page = (tmp_path / "results" / f"study_{STUDY}.md").read_text()  # its own page, linked
    assert "# Throw-away study" in page and f"(study_{STUDY}.md)" in readme
    assert (tmp_path / "results" / "throwaway_loss.png").exists()
    colours = palette(model_families(collect(runs)))
    assert colours[MODEL_NAME] not in {c for m, c in colours.items() if m != MODEL_NAME}
