"""``python -m seqbench.perf [key=value ...]`` (Hydra, conf/perf.yaml): a thin wrapper around
``seqbench.perf.run``. Exit 2 on a bad config value (one line), 1 if a table did not complete.
"""

import sys

import hydra
from omegaconf import DictConfig

from seqbench.config import CONF_DIR, ConfigError
from seqbench.perf import run


@hydra.main(config_path=str(CONF_DIR), config_name="perf", version_base=None)
def _hydra_main(cfg: DictConfig) -> None:
    try:
        out = run(cfg)
    except ConfigError as e:
        print(f"seqbench: error: {e}", file=sys.stderr)
        sys.exit(2)
    for table, summary in out.items():
        print(f"seqbench.perf: {table}: {summary}", flush=True)
    if any(s["status"] != "complete" for s in out.values()):
        sys.exit(1)


if __name__ == "__main__":
    _hydra_main()
