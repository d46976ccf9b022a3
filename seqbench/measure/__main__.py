"""``python -m seqbench.measure what=<name> model=<name> data=<name> ...`` (Hydra; ``-m`` sweeps).

    python -m seqbench.measure what=span model=lstm what.lengths=[16,64,256]
    python -m seqbench.measure -m +experiment=span_vs_length hydra/launcher=joblib

Every job of a command line is validated before the first one starts (seqbench.cli and the
seqbench sweeper), then each runs through ``run.run_measurement``.
"""

import sys

from seqbench import cli

if __name__ == "__main__":
    sys.exit(cli.main("measure"))
