"""seqbench's Hydra sweeper: the basic sweeper, validating every job before the first runs."""
