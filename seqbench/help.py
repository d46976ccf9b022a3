"""``--help`` of train, measure and perf: seqbench's own page, generated, never typed.

The groups a user picks and their options come from the files in conf/; one line per key
from the schemas (seqbench/schema.py) for the top-level and train keys, and from the comment
beside each key in the chosen model/data/what file. Hydra's own page stays at --hydra-help.
"""

import re

from seqbench.config import CONF_DIR, group_options
from seqbench.schema import TOP, TRAIN

USAGE = {
    "train": "python -m seqbench.train [-m] [group=option ...] [key=value ...]",
    "measure": "python -m seqbench.measure what=<measurement> [-m] [key=value ...]",
    "perf": "python -m seqbench.perf [+experiment=harness_overhead] [key=value ...]",
}
ABOUT = {
    "train": "Train one run (or, with -m, a sweep) through seqbench's one next-token harness.",
    "measure": "Trace or time the same models: span, timing, decode, kernels, influence, ...",
    "perf": "Time seqbench's training step against a bare PyTorch loop; FLOP/s and MFU.",
}
KEY = re.compile(r"^(\w+):\s*([^#]*?)\s*(?:#\s*(.*))?$")  # key: value  # comment
LAUNCHERS = "local, slurm, slurm_local (presets in conf/hydra/launcher/); joblib, submitit_local"


def yaml_keys(path) -> list[tuple[str, str, str]]:
    """(key, value, comment) for each top-level scalar `key: value  # comment` of a YAML file."""
    out = []
    for line in path.read_text().splitlines():
        m = KEY.match(line)
        if m and m.group(2) and not m.group(1).startswith("_"):
            out.append((m.group(1), m.group(2), m.group(3) or ""))
    return out


def chosen(argv, group, default) -> str:
    for a in argv:
        key, _, value = a.lstrip("+").partition("=")
        if key == group and value and "," not in value:
            return value
    return default


def page(entry: str, argv) -> str:
    lines = [f"usage: {USAGE[entry]}", "", ABOUT[entry], ""]
    if entry == "perf":
        lines += _keys_of_file("conf/perf.yaml", CONF_DIR / "perf.yaml", "")
    else:
        lines += ["Groups (group=option; -m sweeps a comma list, e.g. model=rnn,lstm):"]
        groups = ["model", "data", "train"] + (["what"] if entry == "measure" else [])
        for g in groups:
            lines.append(f"  {g:<11} {', '.join(group_options(g))}")
        lines.append(
            f"  {'experiment':<11} (+experiment=NAME) {', '.join(group_options('experiment'))}"
        )
        lines.append(f"  {'launcher':<11} (hydra/launcher=NAME) {LAUNCHERS}")
        lines += ["", "Keys:"] + [_spec_line(k, s) for k, s in TOP.items()]
        lines += [_spec_line(f"train.{k}", s) for k, s in TRAIN.items()]
        for g, default in (("model", "lstm"), ("data", "lag_recall")) + (
            (("what", "span"),) if entry == "measure" else ()
        ):
            name = chosen(argv, g, default)
            path = CONF_DIR / g / f"{name}.yaml"
            if path.exists():
                lines += [""] + _keys_of_file(f"{g}={name}", path, f"{g}.")
    lines += [
        "",
        "Examples:",
        "  python -m seqbench.train model=gru data=lag_recall data.distance=64 train.steps=2000",
        "  python -m seqbench.train -m +experiment=recall hydra/launcher=local",
        "  python -m seqbench.train -m +experiment=recall hydra.sweeper.dry_run=true",
        "Hydra's own help: --hydra-help. The resolved config: --cfg job.",
    ]
    return "\n".join(lines)


def _spec_line(key, spec) -> str:
    return f"  {key:<24} {spec.help} ({spec.allowed()})"


def _keys_of_file(title, path, prefix) -> list[str]:
    rows = yaml_keys(path)
    if not rows:
        return []
    return [f"Keys of {title} ({path.name}):"] + [
        f"  {prefix + k:<24} {comment + ' ' if comment else ''}(default {v})"
        for k, v, comment in rows
    ]
