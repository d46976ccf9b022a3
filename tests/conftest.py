"""Shared test helpers: compose real configs from conf/ and shrink them to CPU size."""

import pytest
from hydra import compose, initialize_config_dir

from seqbench.config import CONF_DIR
from seqbench.studies import register_experiments

# +experiment=<name> composes the study folder's config in every test that composes directly
# (the entry layer does this for the command line)
register_experiments()

# model -> family, as the model classes declare it: for synthetic tables in the study tests
FAMILY = {
    "rnn": "recurrent",
    "lstm": "recurrent",
    "gru": "recurrent",
    "transformer": "attention",
    "mingru": "scan",
    "minlstm": "scan",
    "bow": "baseline",
}

# a Transformer on a pool of 8 copy sequences: its held-out loss soon stops improving
SMALL_POOL = ["model=transformer", "data=copy", "data.seq_len=12", "data.n_train=8"]

TINY = [
    "device=cpu",
    "train.threads=1",
    "train.log_every=5",
    "train.eval_every=20",
    "train.eval_batches=2",
    "train.batch_size=8",
    "train.warmup=5",
]


def compose_cfg(overrides=(), config_name="config"):
    with initialize_config_dir(str(CONF_DIR), version_base=None):
        return compose(config_name, overrides=list(overrides))


@pytest.fixture
def make_cfg(tmp_path):
    """make_cfg(*overrides) -> a tiny composed config writing under tmp_path/runs."""

    def make(*overrides):
        return compose_cfg([*TINY, f"out_dir={tmp_path / 'runs'}", *overrides])

    return make


def measured_test_set(runs):
    """The test_set table (seqbench.measure.test_set) of synthetic run rows that carry their
    test figures (``test_acc``, optional ``test_loss``): one complete row per training run,
    as collect() reads it, so a study's verdicts(tables) joins them back by run."""
    import pandas as pd

    return pd.DataFrame(
        {
            "run": "test-" + runs.run.astype(str),
            "train_run": runs.run,
            "study": runs.study,
            "status": "complete",
            "model": runs.model,
            "seed": runs.seed,
            "test_acc": runs.test_acc,
            "test_loss": runs.test_loss if "test_loss" in runs else float("nan"),
            "test_sequences": 1024,
            "train_steps": runs.step if "step" in runs else float("nan"),
        }
    )
