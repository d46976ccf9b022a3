"""The verdict vocabulary of the report: the five verdicts, a rule whose sentence is generated
from its thresholds, and the claims-table row a study's ``verdicts(tables)`` returns."""

import string
from dataclasses import dataclass

VERDICTS = ("supported", "not supported", "nuanced", "inconclusive", "not measured")


class Rule:
    """A verdict rule: its thresholds, and its sentence formatted from the same numbers, so
    the text in the claims table can never disagree with the code (``RULE.ratio``)."""

    def __init__(self, template: str, **thresholds):
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f}
        unstated = set(thresholds) - {f.split(".")[0].split("[")[0] for f in fields}
        if unstated:
            raise ValueError(f"rule thresholds {sorted(unstated)} are not in its sentence")
        self.template, self.thresholds = template, dict(thresholds)
        self.text = template.format(**thresholds)

    def __getattr__(self, name):
        try:
            return self.__dict__["thresholds"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __str__(self) -> str:
        return self.text


@dataclass
class Verdict:
    claim: str  # "C3"
    experiment: str  # which study (and setting) measured it
    measured: str  # the figure(s), with interval and seed count
    rule: str  # the rule's sentence (Rule.text)
    verdict: str  # one of VERDICTS
    hardware: str = ""  # where timing-based figures were measured
    stability: str = ""  # "stable", or what flips the verdict
    budget: str = ""  # "1x" / "4x": the step budget of the runs it was read on ("": none)
    preliminary: bool = False  # trained, but no run at 4x the budget confirms it

    def __post_init__(self):
        self.rule = str(self.rule)
        special = ("failed: ", "not measured on ")  # code that raised; hardware that cannot
        if self.verdict not in VERDICTS and not self.verdict.startswith(special):
            raise ValueError(f"verdict {self.verdict!r} is not one of {VERDICTS}")
