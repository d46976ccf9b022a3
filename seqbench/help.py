"""``--help`` of train, measure and perf: seqbench's own page, generated, never typed.

What a user picks, and where each line comes from:

- groups (model, data, train; what for measure; +experiment; hydra/launcher) and their
  options: the files in conf/, each described by the first sentence of its opening comment;
  the experiments an entry runs are the ones the studies' bench jobs run with it;
- keys, one line each: the comment beside the key in its YAML file (conf/config.yaml, the
  chosen model/data/train/what file, conf/perf.yaml), else the schema's help
  (seqbench/schema.py); what a key accepts comes from the schema or the class's constructor;
  the value shown is the one this command line composes to (experiment included);
- examples: the smoke-profile bench job of this entry.

The entry layer (seqbench.cli) composes the command line's first job and hands it in; this
module only writes the page (it imports nothing of the command line's). Study folders are
read as files (their experiment configs and profiles.yaml), never imported: --help costs
no pandas. Hydra's own page stays at --hydra-help.
"""

import re
import shlex
import textwrap
from pathlib import Path

from seqbench.config import CONF_DIR, group_options
from seqbench.schema import TOP, TRAIN, Spec

WIDTH, KEY_WIDTH = 100, 26
USAGE = {
    "train": "python -m seqbench.train [-m] [group=option ...] [key=value ...]",
    "measure": "python -m seqbench.measure what=<measurement> [-m] [group=option ...] [key=value]",
    "perf": "python -m seqbench.perf [+experiment=harness_overhead] [key=value ...]",
}
ABOUT = {
    "train": "Train one run (or, with -m, a sweep) through seqbench's one next-token harness.",
    "measure": "Trace or time the same models and tasks: what=<measurement> picks which.",
    "perf": "Time seqbench's training step against a bare PyTorch loop; FLOP/s and MFU.",
}
GROUPS = {"train": ("model", "data", "train"), "measure": ("model", "data", "train", "what"),
          "perf": ("data",)}  # fmt: skip
SENTENCE_END = re.compile(
    r"(?<!\bal)(?<!\be\.g)(?<!\bi\.e)(?<!\bcf)(?<!\bvs)(?<!\bFig)(?<!\bEq)(?<!\bSec)(?<!\.)\.(?!\.)(?=\s|$)"
)
KEY = re.compile(r"^(?P<indent> *)(?P<key>[\w.]+):(?P<value>[^#]*?)\s*(?:#\s*(?P<note>.*))?$")


def page(entry: str, composed, problem: str | None = None) -> str:
    """The page of ``entry`` for ``composed``, the first job of its command line with its
    hydra node (the defaults, with ``problem`` saying why, when the line does not compose)."""
    cfg, choices, config_name = _split(composed)
    lines = [f"usage: {USAGE[entry]}", "", ABOUT[entry], ""]
    if problem:
        note = f"note: this command line does not compose ({problem}); defaults shown"
        lines += textwrap.wrap(note, WIDTH, subsequent_indent="  ") + [""]
    lines += ["Groups (group=option; with -m a comma list sweeps them, e.g. model=rnn,lstm):"]
    for g in GROUPS[entry]:
        lines += _group(f"{g}=NAME", choices.get(g), _describe_files(CONF_DIR / g))
    jobs = _bench_jobs()
    lines += _group("+experiment=NAME", choices.get("experiment"), _experiments(entry, jobs))
    if entry != "perf":
        lines += _group("hydra/launcher=NAME", choices.get("hydra/launcher"), _launchers())
    lines += [""] + textwrap.wrap(
        "Keys (key=value; 'now': what this command line composes to; add group=option after "
        "--help, e.g. --help model=gru, for that file's keys):",
        WIDTH,
        subsequent_indent="  ",
    )
    top = TOP if entry != "perf" else {}
    primary = [CONF_DIR / f"{config_name}.yaml"] + (
        [CONF_DIR / "config.yaml"] * (entry == "measure")
    )
    lines += _keys(cfg, primary, "", top, skip=GROUPS["measure"])
    for g in GROUPS[entry]:
        name = choices.get(g)
        if name and cfg is not None and g in cfg:
            path = group_file(g, name)
            lines += ["", f"{g}={name} ({shown(path)}):"]
            specs = {"train": TRAIN, "what": {}}.get(g) or _class_specs(cfg[g], g)
            lines += _keys(cfg[g], [path], f"{g}.", specs)
    lines += ["", "Examples (the smoke bench's job):"] + _examples(entry, jobs)
    lines += ["Hydra's own help: --hydra-help. The composed config: --cfg job. A sweep checked "
              "and not launched: -m ... hydra.sweeper.dry_run=true"]  # fmt: skip
    return "\n".join(lines)


def _split(composed):
    """(config without its hydra node, group choices, primary config name)."""
    from omegaconf import OmegaConf, open_dict

    choices = OmegaConf.to_container(composed.hydra.runtime.choices)
    config_name = composed.hydra.job.config_name
    cfg = composed.copy()
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, {k: v for k, v in choices.items() if v is not None}, config_name


def _group(title, now, options: dict) -> list[str]:
    head = f"  {title}" + (f"   (now: {now})" if now else "")
    return [head] + [_row(f"    {name}", text, KEY_WIDTH + 2) for name, text in options.items()]


def _row(left, text, width=KEY_WIDTH) -> str:
    pad = max(width, len(left) + 1)
    body = textwrap.wrap(text, WIDTH - pad) or [""]
    return "\n".join([f"{left:<{pad}}{body[0]}", *(" " * pad + b for b in body[1:])]).rstrip()


def first_sentence(path) -> str:
    """The opening comment of a YAML file up to its first full stop (not an abbreviation's
    such as 'et al.', not an ellipsis) or a title's double space ('SLURM clusters:  ...')."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        if not line.startswith("# @package"):
            lines.append(line.lstrip("#").strip())
    text = " ".join(lines).split("  ")[0].rstrip(":")
    end = SENTENCE_END.search(text)
    return text[: end.start() + 1] if end else text


def _describe_files(folder) -> dict:
    if folder.name == "experiment":
        from seqbench.studies import experiment_files

        return {name: first_sentence(path) for name, path in experiment_files().items()}
    return {
        name: first_sentence(group_file(folder.name, name)) for name in group_options(folder.name)
    }


def group_file(group: str, name: str) -> Path:
    """The YAML of one option: a user's model (SEQBENCH_PATH) where it lives, else conf/."""
    if group == "model":
        from seqbench.searchpath import model_files

        return model_files().get(name, CONF_DIR / group / f"{name}.yaml")
    return CONF_DIR / group / f"{name}.yaml"


def shown(path: Path) -> str:
    """conf/model/lstm.yaml for a shipped file, the full path for a user's."""
    try:
        return str(path.relative_to(CONF_DIR.parent))
    except ValueError:
        return str(path)


def _bench_jobs() -> dict[str, list]:
    """profile -> its bench jobs in the bench's order (by rank, then study), each study's
    profiles.yaml read once."""
    from seqbench import studies

    out: dict[str, list] = {}
    for study in studies.names():
        for profile, jobs in studies.study_jobs(study).items():
            out.setdefault(profile, []).extend(jobs)
    return {p: sorted(jobs, key=lambda j: j.rank) for p, jobs in out.items()}


def _experiments(entry, jobs) -> dict:
    """The experiments this entry's bench jobs run (all of them where no job names one)."""
    used: dict[str, set] = {}
    for job in (j for profile in jobs.values() for j in profile):
        for a in job.args:
            if str(a).startswith("+experiment="):
                used.setdefault(str(a).split("=", 1)[1], set()).add(job.module)
    files, me = _describe_files(CONF_DIR / "experiment"), f"seqbench.{entry}"
    return {name: text for name, text in files.items() if me in used.get(name, {me})}


def _launchers() -> dict:
    """Every option of hydra/launcher: seqbench's presets (conf/hydra/launcher) and the
    launcher plugins installed."""
    from hydra import initialize_config_module
    from hydra.core.config_store import ConfigStore
    from hydra.core.global_hydra import GlobalHydra

    with initialize_config_module("seqbench.conf", version_base=None):
        names = GlobalHydra.instance().config_loader().get_group_options("hydra/launcher")
    presets = CONF_DIR / "hydra" / "launcher"
    out = {}
    for name in names:
        if (presets / f"{name}.yaml").exists():
            out[name] = first_sentence(presets / f"{name}.yaml")
        else:
            node = ConfigStore.instance().repo["hydra"]["launcher"].get(f"{name}.yaml")
            target = str(getattr(getattr(node, "node", None), "_target_", None) or "?")
            plugin = target.split(".")[1] if target.startswith("hydra_plugins.") else "hydra"
            out[name] = f"{plugin.replace('_', '-')}: {target.rsplit('.', 1)[-1]}"
    return out


def yaml_notes(path) -> dict[str, tuple[str, str]]:
    """dotted key -> (value as written, comment) for every `key: value  # comment` line of a
    YAML file, nested mappings included (``overhead.tiny.steps``); lists and defaults skipped."""
    out, stack = {}, []  # stack: (indent, key) of the mappings above this line
    for line in path.read_text().splitlines():
        m = KEY.match(line)
        if not m or line.lstrip().startswith("-"):
            continue
        indent = len(m["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key = ".".join([k for _, k in stack] + [m["key"]])
        out[key] = (m["value"].strip(), (m["note"] or "").strip())
        if not m["value"].strip():
            stack.append((indent, m["key"]))
    return out


def _keys(node, paths, prefix, specs: dict, skip=()) -> list[str]:
    """One line per leaf key of ``node`` (the nodes in ``skip`` left out): its comment in the
    first of ``paths`` that has one (else the schema's help), what it accepts, and its
    composed value."""
    from omegaconf import OmegaConf

    notes = {}
    for path in reversed(paths):  # the first file wins
        notes |= {k: v for k, v in yaml_notes(path).items() if v[1]} if path.exists() else {}
    rows, shown = [], set()
    try:  # the value the run gets (max_len: ${data.seq_len} -> 64)
        tree = OmegaConf.to_container(node, resolve=True)
    except Exception:  # an interpolation into a node this page does not compose
        tree = OmegaConf.to_container(node, resolve=False)
    for key, value in _leaves(tree).items():
        if key.startswith("_") or key.split(".")[0] in skip:
            continue
        parts = key.split(".")
        for node_key in (".".join(parts[:i]) for i in range(1, len(parts))):
            if node_key in notes and node_key not in shown:  # a nested node's own comment
                shown.add(node_key)
                rows.append(_row(f"  {prefix}{node_key}.*", notes[node_key][1]))
        spec = specs.get(key)
        note = notes.get(key, ("", ""))[1] or (spec.help if isinstance(spec, Spec) else "")
        allowed = _allowed(spec)
        tail = f"[{allowed + '; ' if allowed else ''}now {_show(value)}]"
        rows.append(_row(f"  {prefix}{key}", f"{note} {tail}".strip()))
    return rows


def _leaves(tree, prefix="") -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict) and v:
            out |= _leaves(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def _allowed(spec) -> str:
    if not isinstance(spec, Spec) or (spec.kind is object and not spec.choices):
        return ""
    return spec.allowed()


def _show(v) -> str:
    """A value as YAML writes it: null, true, [a, b], {k: v}."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, list | tuple):
        return "[" + ", ".join(map(_show, v)) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_show(x)}" for k, x in v.items()) + "}"
    return str(v)


def _class_specs(node, group) -> dict:
    """What the group's class accepts, from its constructor (as validation reads it); a
    class outside seqbench's packages is never imported (importing runs its module)."""
    from hydra.utils import get_class

    from seqbench.config import _signature_schema
    from seqbench.guard import allowed_target

    if not allowed_target(group, node.get("_target_")):
        return {}
    try:
        return _signature_schema(get_class(node._target_), group)
    except Exception:  # an unknown class: validation says so; help shows the keys
        return {}


def _examples(entry, jobs) -> list[str]:
    mine = [j for j in jobs.get("smoke", []) if j.module == f"seqbench.{entry}"][:2]
    return [f"  python -m {shlex.join(j.command())}" for j in mine]
