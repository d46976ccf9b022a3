"""Report sections, discovered automatically; see seqbench/report/__init__.py for the contract."""
