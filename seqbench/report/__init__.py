"""The report: run directories -> results/{*.csv, *.png, README.md}.

    python -m seqbench.report --runs runs/bench-cpu --results results

The library, bottom up: ``stats`` (intervals and ``fmt``), ``verdict`` (the verdict
vocabulary), ``markdown`` (tables), ``hardware`` (every hardware stamp), ``claims`` (the
claims table that opens README.md), ``axes`` and ``plot`` (one look for every figure),
``collect`` (run files -> tables), ``folder`` (a results folder the report owns),
``stability``, ``analysis``, ``generic`` (what belongs to no study), ``contact`` (the contact
sheet). None of it imports a study: the studies (seqbench/studies/) import it. Above the
studies, ``write`` (the report writer) discovers and drives them; ``__main__`` is its command
line. Nothing here knows any study by name.
"""
