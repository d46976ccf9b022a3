"""How long each bench job took (from <runs>/bench_jobs.csv, written by seqbench.bench)."""

from seqbench.report.plot import md_table

ORDER = 95
TITLE = "Bench jobs and their wall time"


def render(tables, out) -> str:
    jobs = tables.get("bench_jobs")
    if jobs is None or jobs.empty:
        return ""
    total = jobs.seconds.sum()
    return (
        f"The last `make bench` ran {len(jobs)} jobs in {total:.0f} s ({total / 60:.1f} min) "
        "of wall-clock time on the hardware above.\n\n" + md_table(jobs)
    )
