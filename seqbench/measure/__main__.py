"""``python -m seqbench.measure what=<name> model=<name> data=<name> ...`` (Hydra; ``-m`` sweeps).

    python -m seqbench.measure what=span model=lstm what.lengths=[16,64,256]
    python -m seqbench.measure -m +experiment=measure_span hydra/launcher=joblib

Every job of a command line is validated before the first one starts (``preflight`` for the
model/data/train keys, then the ``what`` node of each job), then each runs through
``run.run_measurement``: a durable run directory, skipped when already complete.
"""

import sys

import hydra
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from seqbench.config import CONF_DIR, ConfigError, _combinations, _experiment_sweeps, preflight
from seqbench.measure.run import check, run_measurement


def preflight_what(argv: list[str]) -> None:
    """The ``what`` checks of every job a command line launches; exit 2 on the first bad one."""
    if any(
        a.startswith(
            ("-h", "--help", "-c", "--cfg", "--info", "--hydra-help", "-sc", "--shell-completion")
        )
        for a in argv
    ):
        return
    multirun = any(a in ("-m", "--multirun") for a in argv)
    overrides = [
        a for a in argv if not a.startswith("-") and not a.startswith(("hydra.", "hydra/"))
    ]
    try:
        with initialize_config_dir(str(CONF_DIR), version_base=None):
            for combo in _combinations(overrides) if multirun else [overrides]:
                cfg = compose("measure", overrides=combo, return_hydra_config=True)
                jobs = _experiment_sweeps(cfg, combo) if multirun else [combo]
                for job in jobs:
                    check(compose("measure", overrides=job))
    except ConfigError as e:
        print(f"seqbench: error: {e}", file=sys.stderr)
        sys.exit(2)


@hydra.main(config_path="../../conf", config_name="measure", version_base=None)
def _hydra_main(cfg: DictConfig) -> dict:
    summary = run_measurement(cfg)
    line = {k: summary.get(k) for k in ("status", "skipped", "rows", "error", "run_dir")}
    print(f"seqbench: {line}", flush=True)
    return summary


def check_what_choice(argv: list[str]) -> None:
    """``what=<name>`` must name a conf/what file (checked before Hydra's own message)."""
    options = sorted(p.stem for p in (CONF_DIR / "what").glob("*.yaml"))
    for a in argv:
        key, _, value = a.lstrip("+").partition("=")
        for v in value.split(",") if key == "what" else []:
            if v not in options:
                print(
                    f"seqbench: error: what={v!r} is not allowed: choose one of "
                    f"{', '.join(options)}",
                    file=sys.stderr,
                )
                sys.exit(2)


def main():
    check_what_choice(sys.argv[1:])
    preflight(sys.argv[1:], config_name="measure")
    preflight_what(sys.argv[1:])
    _hydra_main()


if __name__ == "__main__":
    main()
