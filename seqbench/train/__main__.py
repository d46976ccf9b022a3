"""``python -m seqbench.train [-m] [overrides]``: one run, or a sweep with ``-m`` (the entry
layer, seqbench.cli, validates every job; Hydra runs seqbench.train.job for each)."""

import sys

from seqbench import cli

if __name__ == "__main__":
    sys.exit(cli.main("train"))
