"""seqbench: measure why Transformers replaced RNNs, and where that story is wrong."""
