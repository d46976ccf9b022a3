"""Claims studies C5-C8: every experiment file composes and its sweep jobs validate and
instantiate; the bench jobs name existing experiments and measurements; the order measurement
reuses the posenc training runs."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from seqbench.config import CONF_DIR, _experiment_sweeps, build_model, build_task, validate

EXPERIMENTS = (
    "recall_vs_distance",
    "mqar",
    "posenc_copy",
    "posenc_recall",
    "data_efficiency",
    "causal_vs_masked",
    "text_positions",
)


@pytest.fixture(scope="module")
def hydra_ctx():
    with initialize_config_dir(str(CONF_DIR), version_base=None):
        yield


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_and_instantiates(hydra_ctx, name):
    cfg = compose("config", overrides=[f"+experiment={name}"], return_hydra_config=True)
    assert cfg.study and cfg.hydra.sweeper.params
    jobs = _experiment_sweeps(cfg, [f"+experiment={name}"])
    for job in jobs[:: max(1, len(jobs) // 12)] + [jobs[-1]]:  # a spread of the sweep
        job_cfg = compose("config", overrides=job)
        task = validate(job_cfg)
        model = build_model(job_cfg.model, task.vocab_size)  # on meta: allocates nothing
        assert task.seq_len == job_cfg.data.seq_len and model is not None


def test_recall_sweep_pairs_seq_len_with_distance(hydra_ctx):
    cfg = compose("config", overrides=["+experiment=recall_vs_distance"], return_hydra_config=True)
    jobs = _experiment_sweeps(cfg, ["+experiment=recall_vs_distance"])
    pairs = {
        (c.data.distance, c.data.seq_len)
        for c in (
            compose("config", overrides=j) for j in jobs if "model=rnn" in j and "seed=0" in j
        )
    }
    assert max(d for d, _ in pairs) >= 256 and all(t == d + 8 for d, t in pairs)


def test_masked_text_data_config_builds():
    task = build_task(OmegaConf.load(CONF_DIR / "data" / "masked_text.yaml"))
    assert task.mask_rate == 0.15 and task.vocab_size == task.mask_id + 1


@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu"])
def test_bench_jobs_name_existing_experiments_and_measurements(profile):
    jobs = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "bench" / profile / "30_claims.yaml"))[
        "jobs"
    ]
    assert {j["module"] for j in jobs} <= {"seqbench.train", "seqbench.measure"}
    for job in jobs:
        for arg in job["args"]:
            key, _, value = str(arg).partition("=")
            if key == "+experiment":
                assert (CONF_DIR / "experiment" / f"{value}.yaml").exists()
            if key == "what":
                assert (CONF_DIR / "what" / f"{value}.yaml").exists()
    measured = {a.split("=")[1] for j in jobs for a in j["args"] if str(a).startswith("what=")}
    assert measured == {"order", "prefix_eval"}


def test_order_measurement_reuses_the_posenc_training_run(hydra_ctx):
    from seqbench.measure.order import _variant
    from seqbench.store import content_key

    train_cfg = compose("config", overrides=["+experiment=posenc_copy", "model.pos=none"])
    measure_cfg = compose("measure", overrides=["what=order", "+experiment=posenc_copy"])
    assert content_key(_variant(measure_cfg, "none", True)) == content_key(train_cfg)


def test_every_experiment_file_of_this_study_set_exists():
    assert all((Path(CONF_DIR) / "experiment" / f"{n}.yaml").exists() for n in EXPERIMENTS)
