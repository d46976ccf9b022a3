"""``python -m seqbench.perf [key=value ...]`` (Hydra, conf/perf.yaml): harness overhead and
MFU. Exit 2 on a bad config value (one line), 1 if a table did not complete."""

import sys

from seqbench import cli

if __name__ == "__main__":
    sys.exit(cli.main("perf"))
