"""Studies: one module per claim test, discovered by name.

A study ``X`` lives in exactly three places, all named X:

    conf/experiment/X.yaml (or X_<variant>.yaml)   its runs: `study: X` and the sweep
    seqbench/studies/X.py                          rule, verdicts, section, bench jobs
    experiments/X/README.md                        claim, method, exact commands

and the module holds

    TITLE: str                  the section heading
    ORDER: int                  position in the report
    DECIDES: tuple[str, ...]    the claims its verdicts speak to ("C5", ...)
    CLAIMS: dict (optional)     claims beyond the lecture it adds: {"C3*": "one line"}
    READS: tuple (optional)     other studies whose runs its verdicts read (for stability)
    OWNS: tuple (optional)      names its jobs file runs under besides its own (listed
                                with the study, never as "other runs")
    BENCH: dict                 profile -> list of Job (smoke, cpu, gpu)
    RULE / *_RULE: Rule         thresholds, and the rule's sentence generated from them
    def verdicts(tables) -> list[Verdict]     pure: tables in, verdicts out
    def section(tables, figs) -> str          markdown; figures through figs (report.plot)

Adding a study adds these three and edits nothing shared: the bench, the report and the
claims table find it here; tests/test_layout.py keeps the names in step.
"""

import importlib
import pkgutil
import string
from dataclasses import dataclass, field

import pandas as pd

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

    def __post_init__(self):
        self.rule = str(self.rule)
        special = ("failed: ", "not measured on ")  # code that raised; hardware that cannot
        if self.verdict not in VERDICTS and not self.verdict.startswith(special):
            raise ValueError(f"verdict {self.verdict!r} is not one of {VERDICTS}")


@dataclass
class Job:
    """One bench command: ``python -m <module> <args> out_dir=<runs>``.

    ``cap_s``: its wall-clock cap (the bench stops it there with SIGTERM: a training run
    checkpoints, a measurement keeps the rows it wrote, complete runs stay complete).
    ``rank``: its place in the profile, lower first (a profile orders its jobs by what they
    decide); jobs of one rank run in the studies' report order."""

    name: str
    module: str
    args: list = field(default_factory=list)
    cap_s: float | None = None
    rank: int = 9

    def command(self) -> list[str]:
        return [self.module, *map(str, self.args)]


def train(name, *args, cap_s=None, rank=9) -> Job:
    return Job(name, "seqbench.train", list(args), cap_s, rank)


def measure(name, *args, cap_s=None, rank=9) -> Job:
    return Job(name, "seqbench.measure", list(args), cap_s, rank)


def perf(name, *args, cap_s=None, rank=9) -> Job:
    return Job(name, "seqbench.perf", list(args), cap_s, rank)


def names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def load(name: str):
    return importlib.import_module(f"{__name__}.{name}")


def all_studies() -> list:
    """Every study module, in report order."""
    return sorted((load(n) for n in names()), key=lambda m: (m.ORDER, m.__name__))


def study_name(module) -> str:
    return module.__name__.rsplit(".", 1)[-1]


# --- helpers the studies share: which rows, which families ---------------------------------
def complete(df: pd.DataFrame | None, study: str | None = None) -> pd.DataFrame:
    """The complete rows of a table (optionally of one study); empty when there are none."""
    if df is None or df.empty or "status" not in df:
        return pd.DataFrame()
    ok = df[df.status == "complete"]
    if study is not None and "study" in ok:
        ok = ok[ok.study == study]
    return ok.copy()


def family_of(df: pd.DataFrame) -> dict:
    """model -> family, as the runs recorded it (the model class declares its family)."""
    if df is None or df.empty or "family" not in df:
        return {}
    pairs = df[["model", "family"]].dropna().drop_duplicates()
    return dict(zip(pairs.model, pairs.family))


def in_family(df: pd.DataFrame, *families) -> list[str]:
    """The models of a table that belong to any of ``families``, sorted."""
    fam = family_of(df)
    return sorted(m for m, f in fam.items() if f in families)
