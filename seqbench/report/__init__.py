"""The report: run directories -> results/{*.csv, *.png, README.md}.

    python -m seqbench.report --runs runs/bench-cpu --results results

Pipeline: ``collect`` (run files -> pandas tables) -> every section in
``seqbench/report/sections/`` (tables -> figures + markdown + claim rows) -> README.md that
opens with the claims table. A section is a module with

    ORDER: int                                   # position in the report
    TITLE: str
    def render(tables, out: Path) -> str         # markdown body; saves its own figures in out
    def claims(tables) -> list[Claim]            # optional: verdicts this section computes

and is discovered automatically, so a new study is one new file here. Verdicts are computed
by code from the tables; a claim no section measured is listed as ``not measured``.
"""

from dataclasses import dataclass

VERDICTS = ("supported", "not supported", "nuanced", "not measured")


@dataclass
class Claim:
    claim: str  # "C3"
    experiment: str  # which study measured it
    measured: str  # the figure(s), with spread
    rule: str  # the rule the verdict applies, in words
    verdict: str  # one of VERDICTS

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} is not one of {VERDICTS}")
