"""Report parts that belong to no study: hardware, runs that did not complete, files that
could not be read, bench job times, and runs of studies without a module of their own."""

import platform
import time

import pandas as pd

from seqbench.report.plot import md_table


def hardware(tables) -> str:
    runs = tables["runs"]
    seen = set()
    if not runs.empty:
        cols = [c for c in ("device", "cpu", "gpu", "threads", "torch", "cuda") if c in runs]
        for _, r in runs[cols].drop_duplicates().iterrows():
            seen.add(", ".join(f"{c}={r[c]}" for c in cols if str(r[c]) not in ("None", "nan")))
    lines = [f"- runs: {s}" for s in sorted(seen)] or ["- runs: none"]
    lines.append(
        f"- report written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on "
        f"{platform.node() or 'unknown host'} (python {platform.python_version()})"
    )
    return "\n".join(lines)


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


def bench_jobs(tables) -> str:
    jobs = tables.get("bench_jobs")
    if jobs is None or jobs.empty:
        return ""
    total = pd.to_numeric(jobs.seconds, errors="coerce").sum()
    status = jobs.get("status", pd.Series(dtype=object)).fillna("").astype(str)
    stopped = jobs.job[status.str.startswith(("capped", "not run"))]
    return (
        f"The last `make bench` ran {len(jobs)} jobs in {total:.0f} s ({total / 60:.1f} min) "
        "of wall-clock time on the hardware above"
        + (
            f"; stopped by their cap or the profile's budget: {', '.join(stopped)} (what they "
            "finished is reported, the rest is not measured)"
            if len(stopped)
            else ""
        )
        + ".\n\n"
        + md_table(jobs)
    )


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
    for (study, model, task), g in cal.groupby(["study", "model", "task"]):
        g = g.sort_values("lr")
        ok = g[g.status == "complete"]
        if "steps_to_criterion" in ok and ok.steps_to_criterion.notna().any():
            best = ok.sort_values(["steps_to_criterion", "val_loss", "lr"]).iloc[0]
        elif not ok.empty:
            best = ok.sort_values(["val_loss", "lr"]).iloc[0]
        else:
            best = None
        rows.append(
            {
                "study": study.removesuffix(".lr"),
                "model": model,
                "task": task,
                "lr: held-out loss (steps to criterion)": ", ".join(
                    f"{r.lr:g}: {r.val_loss:.3g} ({_steps(r)})" for r in g.itertuples()
                ),
                "chosen": f"{best.lr:g}" if best is not None else "none completed",
            }
        )
    return (
        "Learning rates chosen by data (`train.lr_grid`): one short run per rate on each "
        "study's control setting (`train.lr_control`), per model and task, seed 0; the rate "
        "that reaches the criterion first (else the lowest held-out loss) is used for every "
        "cell of that study.\n\n" + md_table(pd.DataFrame(rows))
    )


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
        names = sorted(other.study.unique())
        fig, axes = figs.figure(ncols=len(names), width=4.5)
        for ax, study in zip(axes, names):
            mine = curves[curves.run.isin(other[other.study == study].run)]
            for model, g in mine.groupby("model"):  # the mean over a model's runs (seeds, ...)
                mean = g.groupby("step").train_loss.mean()
                n = g.run.nunique()
                figs.line(ax, mean.index, mean.values, model=model,
                          label=f"{model} ({n} run{'s' * (n > 1)})")  # fmt: skip
            ax.set(title=f"study {study}", xlabel="training step", ylabel="train loss (nats)")
        figs.legend(fig)
        parts.append(figs.save(fig, "other_runs_loss"))
    return "\n\n".join(parts)


def verdict_rows(verdicts) -> pd.DataFrame:
    """The claims table as data (verdicts.csv), so another report can quote it."""
    cols = ["claim", "experiment", "measured", "rule", "verdict", "hardware", "stability"]
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
            row[f"{name}: hardware"] = hit.hardware.iloc[0] if len(hit) else "-"
            row[f"{name}: measured"] = hit.measured.iloc[0] if len(hit) else "-"
            row[f"{name}: verdict"] = f"**{hit.verdict.iloc[0]}**" if len(hit) else "not run"
        rows.append(row)
    return (
        "Claims about speed on parallel hardware, as each machine measured them (a CPU "
        "report says `not measured on cpu` where one thread cannot decide):\n\n"
        + md_table(pd.DataFrame(rows))
    )
