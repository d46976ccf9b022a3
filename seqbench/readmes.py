"""A study's README quotes its bench commands and its rule sentences; both are written here
from the data the bench and the report use, never typed, between markers:

    <!-- generated: commands -->   every profile's jobs, from the study's profiles.yaml
    <!-- generated: rules -->      the sentence of every Rule in the study module (RULE, *_RULE)
    ...
    <!-- end generated -->

``python -m seqbench.bench --write-readmes`` (``make readmes``) rewrites the blocks; a README
without one gets it appended at its end. tests/test_layout.py fails when a README differs
from what this would write, so a changed profile or threshold cannot leave its README behind.
(Entry layer, beside the bench: it reads the study modules and the report's Rule.)
"""

import re
import textwrap
from pathlib import Path

from seqbench import studies
from seqbench.report.verdict import Rule

COMMAND = "make readmes"  # what a stale README's test failure says to run
END = "<!-- end generated -->"
WIDTH = 96  # a command's lines wrap here, as the READMEs' prose does
PLAIN = re.compile(r"[A-Za-z0-9_+\-./=:@%,]+")  # needs no quotes in a POSIX shell
DOUBLE = re.compile(r'[^"$`\\!]+')  # safe between double quotes


def _start(block: str) -> str:
    return f"<!-- generated: {block} -->"


def _quote(arg: str) -> str:
    """A shell word as a reader would type it: bare, else in double quotes, else shlex's."""
    import shlex

    if PLAIN.fullmatch(arg):
        return arg
    return f'"{arg}"' if DOUBLE.fullmatch(arg) else shlex.quote(arg)


def command_lines(job) -> list[str]:
    """``python -m <module> <args>``, wrapped at WIDTH with backslashes."""
    words = ["python", "-m", *map(_quote, job.command())]
    lines, line = [], ""
    for word in words:
        if line and len(line) + 1 + len(word) + 2 > WIDTH:
            lines.append(line + " \\")
            line = "    " + word
        else:
            line = f"{line} {word}" if line else word
    return [*lines, line]


def _job_note(job) -> str:
    """'# recall (capped at 35 s, rank 5)': what the bench does with it beyond the command."""
    extra = [f"capped at {job.cap_s:g} s"] if job.cap_s is not None else []
    extra += [f"rank {job.rank}"] if job.rank != 9 else []
    return f"# {job.name}" + (f" ({', '.join(extra)})" if extra else "")


def commands_block(study: str) -> str:
    """Every profile's commands of the study, as `make bench PROFILE=<p>` runs them."""
    intro = (
        "**Commands** (from `profiles.yaml`: what `make bench PROFILE=<profile>` runs for this "
        "study, in this order, each command with `out_dir=<runs>` added; a cap stops a job with "
        "SIGTERM and it keeps what it finished; lower ranks run first across studies)."
    )
    out = [textwrap.fill(intro, WIDTH)]
    profiles = study_profiles(study)
    for profile, jobs in profiles.items():
        if profile == "full" and "cpu" in profiles:  # full extends cpu: only what it adds
            jobs = jobs[len(profiles["cpu"]) :]
            if not jobs:
                out.append("\nProfile `full`: the `cpu` jobs; nothing more of this study.")
                continue
            out += ["\nProfile `full`: the `cpu` jobs, then:", "```"]
        elif not jobs:
            out.append(f"\nProfile `{profile}`: nothing of this study runs.")
            continue
        else:
            out += [f"\nProfile `{profile}`:", "```"]
        for job in jobs:
            out += [_job_note(job), *command_lines(job)]
        out.append("```")
    return "\n".join(out)


def study_profiles(study: str) -> dict:
    """profile -> jobs, in the bench's profile order (smoke, cpu, full, gpu)."""
    jobs = studies.study_jobs(study)
    return {p: jobs[p] for p in studies.PROFILE_NAMES if p in jobs}


def rules(module) -> dict[str, Rule]:
    """The module's rules by name (RULE, then the *_RULE ones, as the module defines them)."""
    found = {k: v for k, v in vars(module).items() if isinstance(v, Rule)}
    return {k: v for k, v in found.items() if k == "RULE" or k.endswith("_RULE")}


def rules_block(module) -> str | None:
    """The rule sentences, as the claims table quotes them; None for a study with no rule."""
    found = rules(module)
    if not found:
        return None
    head = "**Rule** (`{}` in the study module, which the claims table quotes):"
    if len(found) == 1:
        ((name, rule),) = found.items()
        return textwrap.fill(f"{head.format(name)} {rule.text}", WIDTH)
    items = [
        textwrap.fill(f"- `{n}`: {r.text}", WIDTH, subsequent_indent="  ") for n, r in found.items()
    ]
    return "\n".join(["**Rules** (in the study module, which the claims table quotes):", *items])


def _replace(text: str, block: str, body: str | None) -> str:
    """text with the block's content set to body (appended when the block is missing; dropped
    when body is None)."""
    start = _start(block)
    fresh = "" if body is None else f"{start}\n{body}\n{END}"
    pattern = re.compile(re.escape(start) + r"\n.*?" + re.escape(END), re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: fresh, text, count=1)
    return text if body is None else text.rstrip("\n") + f"\n\n{fresh}\n"


def readme_path(study: str) -> Path:
    return (studies.folder(study) / "README.md").resolve()  # experiments/, not the link


def render(study: str) -> str:
    """The study's README as --write-readmes would leave it."""
    text = readme_path(study).read_text()
    text = _replace(text, "commands", commands_block(study))
    return _replace(text, "rules", rules_block(studies.load(study)))


def stale() -> list[Path]:
    """The READMEs whose generated blocks differ from their data."""
    return [readme_path(s) for s in studies.names() if render(s) != readme_path(s).read_text()]


def write_all() -> list[Path]:
    """Rewrite every stale README's blocks; the paths written."""
    from seqbench import store

    written = stale()
    for path in written:
        store.atomic_write_text(path, render(path.parent.name))
    return written
