"""Runs that did not complete: listed with their status and reason, never plotted."""

from seqbench.report.plot import md_table

ORDER = 90
TITLE = "Runs that did not complete"


def render(tables, out) -> str:
    runs = tables["runs"]
    if runs.empty:
        return ""
    bad = runs[runs.status != "complete"]
    if bad.empty:
        return f"All {len(runs)} training runs completed."
    cols = [c for c in ("study", "model", "task", "status", "step", "error", "run") if c in bad]
    return (
        f"{len(bad)} of {len(runs)} training runs did not complete; figures and verdicts "
        "above leave them out.\n\n" + md_table(bad[cols])
    )
