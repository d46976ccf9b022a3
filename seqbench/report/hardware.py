"""Where a number was measured, as the report says it: one home for every hardware stamp.

A time means nothing without the machine and its load, and a verdict about speed holds only
for the hardware that measured it. Every part of the report that names hardware reads it
from the rows (their device, cpu/gpu/device_name, threads, torch/cuda, dtype and load
columns) through this module:

- ``stamp(rows)``: a verdict's ``hardware`` field ('NVIDIA H200 (cuda), torch 2.13.0, CUDA
  12.8, bf16-autocast, 1 thread(s)'), which verdicts.csv carries to other reports;
- ``short(stamp)``: that stamp in a few words for the claims table;
- ``hardware_note(rows)``: the line under a timing figure's title (machine, threads, load);
- ``machines_seen(tables)``: the README's opening 'run on ...';
- ``listing(tables)``: the README's and runs page's 'Hardware and versions' section.
"""

import platform
import re
import time

import pandas as pd


def stamp(rows) -> str:
    """The machines behind timed rows, from the rows: 'NVIDIA H200 (cuda), torch 2.13.0,
    CUDA 12.8, bf16-autocast, 1 thread(s)' (older rows without a field leave it out)."""
    fields = ("device_name", "device", "torch", "cuda", "dtype", "threads")
    seen = set()
    for r in rows[[f for f in fields if f in rows]].drop_duplicates().to_dict("records"):
        v = {k: x for k, x in r.items() if pd.notna(x) and str(x) != ""}
        name = v.get("device_name", v.get("device", "?"))
        if "device_name" in v and str(v.get("device")) != str(name):
            name = f"{name} ({v['device']})"
        parts = [str(name)] + ([f"torch {v['torch']}"] if "torch" in v else [])
        parts += [str(v[k]) for k in ("cuda", "dtype") if k in v]
        parts += [f"{int(v['threads'])} thread(s)"] if "threads" in v else []
        seen.add(", ".join(parts))
    return "; ".join(sorted(seen))


def short(stamp: str) -> str:
    """'cpu, torch 2.13.0+cpu, fp32, 1 thread(s)' -> 'cpu, fp32, 1 thread': the versions are on
    the page; a stamp repeated for two measurements is said once."""
    said = []
    for part in re.split(r"[;,]\s*", str(stamp or "")):
        part = re.sub(r"^(training|decoding)\s+", "", part.strip()).replace("thread(s)", "thread")
        if part and not part.startswith("torch") and part not in said:
            said.append(part)
    return ", ".join(said)


def hardware_note(rows, machines=None) -> str:
    """'measured on cpu (AMD EPYC), 1 thread; load average not recorded': where a timing
    figure's ``rows`` were measured, from their device/threads columns (the CPU's name from
    ``machines``, the runs table, where the rows do not carry it) and any load column."""
    places = []
    for dev, g in rows.groupby(rows.get("device", pd.Series("?", rows.index)).astype(str)):
        name = _first(g, "gpu", "device_name") if dev.startswith("cuda") else _first(g, "cpu")
        if name is None and machines is not None and "cpu" in machines and "device" in machines:
            name = _first(machines[machines.device.astype(str) == dev], "gpu" if
                          dev.startswith("cuda") else "cpu")  # fmt: skip
        threads = sorted({int(t) for t in g.get("threads", pd.Series()).dropna()})
        where = dev + (f" ({name})" if name and name != dev else "")
        if threads:
            where += f", {'/'.join(map(str, threads))} thread{'s' * (threads[-1] > 1)}"
        places.append(where)
    loads = [c for c in rows if c.startswith("load")]
    values = pd.to_numeric(rows[loads].stack(), errors="coerce").dropna() if loads else []
    lo, hi = (f"{v:.2g}" for v in (values.min(), values.max())) if len(values) else ("", "")
    load = f"load average {lo if lo == hi else f'{lo}-{hi}'}" if lo else "load average not recorded"
    return f"measured on {'; '.join(places) or 'unrecorded hardware'}; {load}"


def _first(df, *cols):
    for c in cols:
        if c in df:
            vals = [str(v) for v in df[c].dropna().unique() if str(v) not in ("", "None")]
            if vals:
                return ", ".join(sorted(vals))
    return None


def machines_seen(tables) -> list[str]:
    """Each distinct set-up the runs and measurements name: 'cpu (AMD EPYC), 1 thread, torch
    2.13.0+cpu'; a table that does not name the processor counts as the one that does."""
    named: dict[tuple, str] = {}
    for df in tables.values():
        if df is None or df.empty or "device" not in df:
            continue
        cols = [c for c in ("device", "cpu", "gpu", "device_name", "threads", "torch") if c in df]
        for r in df[cols].drop_duplicates().itertuples(index=False):
            r = {c: str(v) for c, v in zip(cols, r) if str(v) not in ("None", "nan", "")}
            threads = r.get("threads", "").removesuffix(".0")
            rest = (f", {threads} thread{'s' * (threads != '1')}" if threads else "") + (
                f", torch {r['torch']}" if "torch" in r else ""
            )
            key = (r.get("device", "?"), rest)
            name = r.get("gpu") or r.get("device_name") or r.get("cpu") or ""
            if not named.get(key):  # unseen, or seen without the machine's name
                named[key] = "" if name == key[0] else name
    said = {(d, rest): f"{d}{f' ({n})' if n else ''}{rest}" for (d, rest), n in named.items()}
    # a table that records fewer facts (no torch version) is one of the set-ups that do
    fuller = {k for k in said for o in said if o != k and o[0] == k[0] and o[1].startswith(k[1])}
    return [text for k, text in said.items() if k not in fuller]


def listing(tables) -> str:
    """The set-ups every training run names, and when and where this report was written."""
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
