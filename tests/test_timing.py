"""The engine's one home for clocks and machine columns (seqbench.timer, seqbench.env.hardware),
and a task that hands its base's keys on (``**task``) being checked on those keys too."""

import pytest
import torch
from omegaconf import OmegaConf

from seqbench.config import ConfigError, build_task
from seqbench.env import HARDWARE, hardware
from seqbench.measure import decode_cost, kernels, timing
from seqbench.timer import interleave, watch_load


def test_hardware_columns_are_named_once_and_taken_in_order():
    row = hardware("cpu")
    assert tuple(row) == HARDWARE
    assert row["device"] == "cpu" and row["cuda"] is None and row["dtype"] == "fp32"
    assert row["threads"] == torch.get_num_threads() and row["torch"] == torch.__version__
    # the perf tables name the device in `device` itself, and keep the columns they list
    assert hardware("cpu", ("device", "threads"), named=True) == {
        "device": "cpu",
        "threads": torch.get_num_threads(),
    }
    # every timed table records the machine in the same columns, in the same place
    for module in (timing, decode_cost):
        cols = module.COLUMNS
        assert cols[cols.index("threads") :][: len(HARDWARE)] == list(HARDWARE)
    assert {"threads", "device"} <= set(kernels.COLUMNS)


def test_watch_load_brackets_the_timed_block():
    with watch_load() as loads:
        assert loads["load_end"] is None  # filled when the block ends
        times = interleave({"a": lambda: None, "b": lambda: None}, 4, 1, "cpu")
    assert set(loads) == {"load_start", "load_end"}
    assert loads["load_end"] is not None or loads["load_start"] is None  # None: no loadavg
    assert {k: len(v) for k, v in times.items()} == {"a": 4, "b": 4}


@pytest.mark.parametrize(
    "data, says",
    [
        ({"_target_": "seqbench.data.masked.MaskedText", "n_train": "many"}, "n_train='many'"),
        ({"_target_": "seqbench.data.masked.MaskedText", "stream": True}, "random windows"),
        ({"_target_": "seqbench.data.synthetic.LagRecall", "seed": 1.5}, "seed=1.5"),
        # an unknown key lists the class's own keys and then its base's
        ({"_target_": "seqbench.data.synthetic.Copy", "n_trian": 4}, "vocab_size, seed, n_train"),
    ],
)
def test_a_task_is_checked_on_the_keys_it_hands_to_its_base(data, says):
    with pytest.raises(ConfigError) as e:
        build_task(OmegaConf.create({"seq_len": 16, **data}))
    line = str(e.value)
    assert says in line and "\n" not in line
    assert ("not a parameter" in line) == ("n_trian" in data), line  # a base key is a key


def test_keys_handed_to_the_base_reach_it():
    node = {"_target_": "seqbench.data.synthetic.LagRecall", "seq_len": 16, "distance": 4}
    a, b = (build_task(OmegaConf.create(node | {"seed": s, "n_train": 8})) for s in (3, 4))
    assert (a.seed, a.n_train) == (3, 8)
    assert not torch.equal(a.batch("val", 0, 4)[0], b.batch("val", 0, 4)[0])
