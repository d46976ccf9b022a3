"""Experiment configs that other parts rely on: recall pairs seq_len with distance, the
masked task builds, and the order measurement reuses the posenc training run."""

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from seqbench.config import CONF_DIR, build_task


@pytest.fixture(scope="module")
def hydra_ctx():
    with initialize_config_dir(str(CONF_DIR), version_base=None):
        yield


def test_recall_sweep_pairs_seq_len_with_distance(hydra_ctx):
    cfg = compose("config", overrides=["+experiment=recall"], return_hydra_config=True)
    settings = str(cfg.hydra.sweeper.params.data).split("},")
    pairs = {
        (c.data.distance, c.data.seq_len)
        for c in (
            compose("config", overrides=["+experiment=recall", f"data={s.rstrip('}')}}}"])
            for s in settings
        )
    }
    assert max(d for d, _ in pairs) >= 256 and all(t == d + 8 for d, t in pairs)


def test_masked_text_data_config_builds():
    root = OmegaConf.create(
        {"seed": 0, "data": OmegaConf.load(CONF_DIR / "data" / "masked_text.yaml")}
    )
    task = build_task(root.data)  # data.seed follows the root's seed, as composed
    assert task.mask_rate == 0.15 and task.vocab_size == task.mask_id + 1


def test_order_measurement_reuses_the_posenc_training_run(hydra_ctx):
    from seqbench.measure.order import _variant
    from seqbench.store import content_key

    train_cfg = compose("config", overrides=["+experiment=posenc_copy", "model.pos=none"])
    measure_cfg = compose("measure", overrides=["what=order", "+experiment=posenc_copy"])
    assert content_key(_variant(measure_cfg, "none", True)) == content_key(train_cfg)
