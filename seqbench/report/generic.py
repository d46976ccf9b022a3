"""Report parts that belong to no study: runs that did not complete, files that
could not be read, bench job times, and runs of studies without a module of their own."""

import pandas as pd

from seqbench.report.claims import deciding
from seqbench.report.hardware import machines_seen, short
from seqbench.report.markdown import md_table


def incomplete(tables) -> str:
    runs = tables["runs"]
    if runs.empty:
        return ""
    bad = runs[runs.status != "complete"]
    if bad.empty:
        return f"All {len(runs)} training runs completed."
    cols = [c for c in ("study", "model", "task", "status", "step", "error", "run") if c in bad]
    return (
        f"{len(bad)} of {len(runs)} training runs did not complete; figures and verdicts "
        "leave them out.\n\n" + md_table(bad[cols])
    )


def unreadable(tables) -> str:
    bad = tables.get("unreadable")
    if bad is None or bad.empty:
        return ""
    return (
        f"{len(bad)} file(s) in the runs folder could not be read and were left out:\n\n"
        + md_table(bad)
    )


def bench_summary(tables) -> str:
    """'The last `make bench` ran 22 jobs in 1494 s (24.9 min) of wall-clock time', and the
    jobs its caps stopped; '' when no bench wrote bench_jobs.csv."""
    jobs = tables.get("bench_jobs")
    if jobs is None or jobs.empty:
        return ""
    total = pd.to_numeric(jobs.seconds, errors="coerce").sum()
    status = jobs.get("status", pd.Series(dtype=object)).fillna("").astype(str)
    stopped = jobs.job[status.str.startswith(("capped", "not run"))]
    profiles = sorted(set(jobs.profile.dropna().astype(str))) if "profile" in jobs else []
    which = f" PROFILE={'/'.join(profiles)}" if profiles else ""
    return (
        f"The last `make bench{which}` ran {len(jobs)} jobs in {total:.0f} s "
        f"({total / 60:.1f} min) "
        "of wall-clock time"
        + (
            f"; stopped by their cap or the profile's budget: {', '.join(map(str, stopped))} "
            "(what they finished is reported, the rest is not measured)"
            if len(stopped)
            else ""
        )
        + "."
    )


def bench_jobs(tables) -> str:
    summary = bench_summary(tables)
    if not summary:
        return ""
    jobs = tables["bench_jobs"].dropna(axis=1, how="all")  # a column no job filled says nothing
    return f"{summary}\n\n" + md_table(jobs, missing="no value recorded for this job")


def opening(tables, runs_root) -> str:
    """The README's first paragraph: what was run, on what hardware, for how long."""
    runs = tables["runs"]
    trained = set(runs.run) if not runs.empty else set()
    measured = set()
    for name, df in tables.items():
        if name not in ("runs", "curves", "positions", "unreadable", "bench_jobs"):
            if df is not None and not df.empty and "run" in df:
                measured |= set(df.run.dropna()) - trained
    where = machines_seen(tables)
    shown = "; ".join(where[:3]) + (f" and {len(where) - 3} more" if len(where) > 3 else "")
    return " ".join(
        x
        for x in (
            f"This report reads {len(trained)} training runs and {len(measured)} measurement "
            f"runs in `{runs_root}`" + (f", run on {shown}." if shown else "."),
            bench_summary(tables),
            "Every number and verdict is computed from those runs (do not edit by hand: rerun "
            "`make bench`); each row links to its study's page, which holds the rule, the "
            "figures and the tables.",
        )
        if x
    )


def budget(tables, *studies: str) -> str:
    """What trained a study's models, in a few words: '200 steps, 3 seeds, cpu' (the steps
    of the complete training runs of ``studies``, the study and those whose runs it reads;
    the device of those or of its measurements)."""
    runs = tables["runs"]
    ok = runs[runs.study.isin(studies) & (runs.status == "complete")] if not runs.empty else runs
    parts = []
    if len(ok) and "train.steps" in ok:
        steps = pd.to_numeric(ok["train.steps"], errors="coerce").dropna()
        if len(steps):
            lo, hi = int(steps.min()), int(steps.max())
            parts.append(f"{lo} steps" if lo == hi else f"{lo}-{hi} steps")
    if len(ok) and "seed" in ok:
        n = ok.groupby("model").seed.nunique() if "model" in ok else ok.seed.nunique()
        lo, hi = int(pd.Series(n).min()), int(pd.Series(n).max())
        parts.append(f"{lo} seed{'s' * (hi > 1)}" if lo == hi else f"{lo}-{hi} seeds")
    devices = set(ok.device.dropna().astype(str)) if len(ok) and "device" in ok else set()
    if not devices:
        for df in tables.values():
            if df is not None and not df.empty and {"study", "device"} <= set(df):
                devices |= set(df.device[df.study.isin(studies)].dropna().astype(str))
    return ", ".join(parts + sorted(devices))


def calibration(tables) -> str:
    """The learning-rate calibration runs (study ``<study>.lr``, train.lr_grid): per study,
    model and task, the held-out result of each learning rate and the one chosen."""
    runs = tables["runs"]
    if runs.empty or "study" not in runs:
        return ""
    cal = runs[runs.study.astype(str).str.endswith(".lr")]
    if cal.empty:
        return ""
    rows = []
    for (study, model, task), group in cal.groupby(["study", "model", "task"]):
        for setting, g in _settings(group):
            rows.append(_calibrated(study, model, task, setting, g))
    table = pd.DataFrame(rows)
    if not table.setting.astype(bool).any():
        table = table.drop(columns="setting")
    return (
        "Learning rates chosen by data (`train.lr_grid`): one short run per rate on each "
        "study's control setting (`train.lr_control`), per model and task (and setting, where "
        "a study calibrates several), seed 0; the rate that reaches the criterion first (else "
        "the lowest held-out loss) is used for every cell of that study.\n\n" + md_table(table)
    )


def _settings(g: pd.DataFrame):
    """(label, rows) per setting of one (study, model, task)'s calibration runs: the model and
    data keys that differ between them ('pos=rope'), so two settings never share a row."""
    keys = [c for c in g.columns if c.startswith(("model.", "data.")) and c != "data.seed"]
    keys = [c for c in keys if g[c].astype(str).nunique() > 1]
    if not keys:
        yield "", g
        return
    for values, part in g.groupby(keys, dropna=False):
        values = values if isinstance(values, tuple) else (values,)
        yield ", ".join(f"{k.split('.', 1)[1]}={v}" for k, v in zip(keys, values)), part


def _calibrated(study, model, task, setting, g) -> dict:
    """One calibration row: every rate's held-out loss (steps to criterion) and the chosen."""
    g = g.sort_values("lr")
    ok = g[g.status == "complete"]
    if "steps_to_criterion" in ok and ok.steps_to_criterion.notna().any():
        best = ok.sort_values(["steps_to_criterion", "val_loss", "lr"]).iloc[0]
    elif not ok.empty:
        best = ok.sort_values(["val_loss", "lr"]).iloc[0]
    else:
        best = None
    return {
        "study": study.removesuffix(".lr"),
        "model": model,
        "task": task,
        "setting": setting,
        "lr: held-out loss (steps to criterion)": ", ".join(
            f"{_num(r.lr, 'g')}: {_num(r.val_loss, '.3g')} ({_steps(r)})" for r in g.itertuples()
        ),
        "chosen": f"{best.lr:g}" if best is not None else "none completed",
    }


def _num(v, spec: str) -> str:
    """A number formatted, or '-': a run cut off before its first evaluation has none (None
    in an object column, which format() refuses), and neither may a record's lr."""
    try:
        return "-" if v is None or pd.isna(v) else format(float(v), spec)
    except (TypeError, ValueError):
        return "-"


def _steps(r) -> str:
    v = getattr(r, "steps_to_criterion", None)
    return "-" if v is None or pd.isna(v) else f"{int(v)}"


def other_runs(tables, studies: set[str], figs) -> str:
    """Training runs of studies with no module (``adhoc`` included): a table of their final
    metrics and their loss curves, one panel per study."""
    runs = tables["runs"]
    if runs.empty:
        return ""
    calibration_runs = runs.study.astype(str).str.endswith(".lr")
    other = runs[(runs.status == "complete") & ~runs.study.isin(studies) & ~calibration_runs]
    if other.empty:
        return ""
    cols = [
        c
        for c in (
            "study",
            "model",
            "family",
            "task",
            "seed",
            "step",
            "val_loss",
            "val_acc",
            "params_non_embedding",
            "run",
        )
        if c in other
    ]
    parts = [md_table(other[cols].sort_values(["study", "model"]))]
    curves = tables["curves"]
    if not curves.empty:
        from matplotlib.ticker import MaxNLocator  # here: the report's text needs no matplotlib

        names = sorted(other.study.unique())
        fig, axes = figs.figure(ncols=len(names), width=6)
        for ax, study in zip(axes, names):
            mine = curves[curves.run.isin(other[other.study == study].run)]
            for model, g in mine.groupby("model"):  # the mean over a model's runs (seeds, ...)
                by_step = g.groupby("step").train_loss
                mean, lo, hi = by_step.mean(), by_step.min(), by_step.max()
                n = g.run.nunique()
                label = f"{model} ({n} run{'s' * (n > 1)})"
                figs.line(
                    ax, mean.index, mean.values, lo.values, hi.values, model=model, label=label
                )
            ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))  # steps: few, whole
            ax.set(title=f"'{study}' (no study module):\nmean over runs, band min-max",
                   xlabel="step (count)", ylabel="train loss (nats)")  # fmt: skip
        figs.legend(fig)
        parts.append(figs.save(fig, "other_runs_loss"))
    return "\n\n".join(parts)


def verdict_rows(verdicts) -> pd.DataFrame:
    """The claims table as data (verdicts.csv), so another report can quote it."""
    cols = ["claim", "experiment", "measured", "rule", "verdict", "hardware", "stability",
            "budget", "preliminary"]  # fmt: skip
    return pd.DataFrame([{c: getattr(v, c) for c in cols} for v in verdicts], columns=cols)


def machines(here: pd.DataFrame, others: dict[str, pd.DataFrame]) -> str:
    """Claims decided on hardware (a ``hardware`` stamp) side by side: this report's verdict
    and each other report's (e.g. results/gpu), one column pair per machine."""
    frames = {"this report": here, **others}
    stamped = {
        name: df[df.hardware.fillna("").astype(str) != ""]
        for name, df in frames.items()
        if df is not None and not df.empty and "hardware" in df
    }
    keys = sorted({(r.claim, r.experiment) for df in stamped.values() for r in df.itertuples()})
    if not keys or len(stamped) < 2:
        return ""
    rows = []
    for claim, experiment in keys:
        row = {"claim": claim, "experiment": experiment}
        for name, df in stamped.items():
            hit = df[(df.claim == claim) & (df.experiment == experiment)]
            row[f"{name}: hardware"] = short(hit.hardware.iloc[0]) if len(hit) else "-"
            row[f"{name}: measured"] = deciding(hit.measured.iloc[0], 60) if len(hit) else "-"
            row[f"{name}: verdict"] = f"**{hit.verdict.iloc[0]}**" if len(hit) else "not run"
        rows.append(row)
    return (
        "Claims about speed on parallel hardware, as each machine measured them (a CPU "
        "report says `not measured on cpu` where one thread cannot decide):\n\n"
        + md_table(pd.DataFrame(rows))
    )
