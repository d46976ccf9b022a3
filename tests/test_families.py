"""Every family is counted or named (issue 22 item 7). A rule names the families it compares;
a model of any other family in the table (a user's ``ssm``) is either counted by a rule that
reads every model, or gets its own line in the measured column with what the rule would say
of it: never a silent omission. Checked on every study's synthetic tables (tests/
figure_tables.py) with a copy of the Transformer's rows relabelled as model ``s4`` of family
``ssm``: each verdict stays as it was, and its measured column names the new model."""

import pandas as pd
import pytest
from figure_tables import synthetic_tables

from seqbench import studies
from seqbench.studies._common import as_family, unnamed_families, unnamed_text

LIKE, NEW, FAMILY = "transformer", "s4", "ssm"


def with_new_family(tables: dict) -> dict:
    """Every table with the rows of LIKE copied as model NEW of family FAMILY (runs renamed,
    so curves and positions follow their copies)."""
    runs = tables["runs"]
    copied = {r: f"{r}-{NEW}" for r in runs.run[runs.model == LIKE]}
    out = {}
    for name, df in tables.items():
        if df is None or df.empty or not ({"model", "run"} & set(df)):
            out[name] = df
            continue
        rows = df[df.model == LIKE] if "model" in df else df[df.run.isin(copied)]
        rows = rows.copy()
        if "model" in rows:
            rows["model"] = NEW
        if "family" in rows:
            rows["family"] = FAMILY
        if "run" in rows:
            rows["run"] = rows.run.map(lambda r: copied.get(r, f"{r}-{NEW}"))
        if "train_run" in rows:  # a measurement of a trained run (test_set): its copy's
            rows["train_run"] = rows.train_run.map(lambda r: copied.get(r, r))
        out[name] = pd.concat([df, rows], ignore_index=True)
    return out


@pytest.fixture(scope="module")
def both():
    tables = synthetic_tables()
    return tables, with_new_family(tables)


def named_families(module) -> set:
    """The families a study's rules compare, as it declares them (COMPARES, KAPLAN_COMPARES):
    a study that declares none reads every model it is given."""
    return {f for k, v in vars(module).items() if k.endswith("COMPARES") for f in v}


@pytest.mark.parametrize("name", studies.names())
def test_a_new_family_leaves_the_verdict_and_is_named(name, both):
    module = studies.load(name)
    before, after = ({(v.claim, v.experiment): v for v in module.verdicts(t)} for t in both)
    assert {k: v.verdict for k, v in after.items() if k in before} == {
        k: v.verdict for k, v in before.items()
    }
    for key, v in after.items():
        if key not in before:  # a rule per model or family: the new one got its own verdict
            assert NEW in v.experiment, key
        elif LIKE in v.measured and named_families(module):
            assert f"{FAMILY} (not compared by this rule: {NEW})" in v.measured, v.measured
        elif LIKE in v.measured:  # a rule over every model: the new one is counted
            assert NEW in v.measured, v.measured


def test_unnamed_text_says_what_the_rule_would_say_on_each_side():
    df = pd.DataFrame({"model": ["t", "r", "s"], "family": ["attention", "recurrent", "ssm"]})
    named = ("attention", "recurrent")
    assert unnamed_families(df, named) == {"ssm": ["s"]}
    # s stands as the attention side in place of t; the recurrent side stays
    relabelled = as_family(df, ["s"], "attention", named)
    assert dict(zip(relabelled.model, relabelled.family)) == {"s": "attention", "r": "recurrent"}

    def judge(t):  # a toy rule: supported when the attention side has the model "t"
        return "supported" if "t" in set(t.model[t.family == "attention"]) else "not supported"

    text = unnamed_text(df, named, {"attention": "attention", "a recurrence": "recurrent"}, judge)
    assert text == (
        "; ssm (not compared by this rule: s): as attention, not supported; "
        "as a recurrence, supported"
    )
    assert unnamed_text(df[df.family != "ssm"], named, {"x": "attention"}, judge) == ""
