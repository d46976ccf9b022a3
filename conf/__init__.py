"""seqbench's Hydra configs, installed as the package seqbench.conf (pkg://seqbench.conf)."""
