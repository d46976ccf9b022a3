"""The report: run directories -> results/{*.csv, *.png, README.md}.

    python -m seqbench.report --runs runs/bench-cpu --results results

``collect`` turns run files into pandas tables; every study module (seqbench/studies/)
computes its verdicts and draws its section from them; ``claims`` builds the claims table
that opens README.md; ``generic`` adds what belongs to no study (hardware, incomplete and
unreadable runs, bench times, runs of other studies); ``plot`` gives every figure one look.
Nothing here knows any study by name.
"""
