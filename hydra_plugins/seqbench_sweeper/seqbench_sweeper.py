"""``hydra/sweeper=seqbench`` (the default of every seqbench config): Hydra's basic sweeper,
which first composes and validates every job of the sweep, so that a bad value in the 40th
job stops the sweep in a second, with one line and exit code 2, instead of after 39 jobs.

The expansion is Hydra's own (``BasicSweeper.split_arguments`` over the command line and the
experiment's ``hydra.sweeper.params``), and each job is composed by Hydra's config loader,
exactly as the launcher will compose it; seqbench only adds its checks
(``seqbench.cli.validate_job``). Hydra requires sweeper plugins to live in the
``hydra_plugins`` namespace package, hence this folder.
"""

import sys
from dataclasses import dataclass

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper, BasicSweeperConf
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser


@dataclass
class SeqbenchSweeperConf(BasicSweeperConf):
    _target_: str = "hydra_plugins.seqbench_sweeper.seqbench_sweeper.SeqbenchSweeper"
    dry_run: bool = False  # true: validate every job, print how many, launch nothing


ConfigStore.instance().store(
    group="hydra/sweeper", name="seqbench", node=SeqbenchSweeperConf, provider="seqbench"
)


class SeqbenchSweeper(BasicSweeper):
    def __init__(self, max_batch_size=None, params=None, dry_run=False):
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.dry_run = dry_run

    def sweep(self, arguments):
        from seqbench import guard
        from seqbench.cli import explain, validate_job
        from seqbench.errors import ConfigError

        config_name = self.config.hydra.job.config_name
        try:
            jobs = self.expand(arguments)
            for i, job in enumerate(jobs):
                try:
                    cfg = self.hydra_context.config_loader.load_sweep_config(self.config, job)
                except Exception as e:
                    raise ConfigError(explain(config_name, job, e)) from None
                try:
                    with guard.hydra_config(cfg):  # the job's own folders and targets
                        guard.check_targets(cfg)
                        guard.check_hydra(cfg, multirun=True, job_num=i)
                        validate_job(cfg)
                except ConfigError as e:
                    raise ConfigError(
                        f"{e} (job {i + 1} of {len(jobs)}: {' '.join(job)})"
                    ) from None
        except ConfigError as e:
            print(f"seqbench: error: {e}", file=sys.stderr)
            sys.exit(2)
        if self.dry_run:
            print(f"seqbench: dry run: {len(jobs)} jobs validated, none launched", flush=True)
            return []
        return super().sweep(arguments)

    def expand(self, arguments) -> list:
        """Every job of the sweep (the experiment's params, then the command line), counted
        before it is built: Hydra's expansion builds the whole product at once."""
        from seqbench.cli import check_sweep_size, sweep_size
        from seqbench.errors import ConfigError

        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        lines = [*self._parse_config(), *arguments]
        try:
            overrides = parser.parse_overrides(lines)
        except Exception as e:  # a malformed hydra.sweeper.params value
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ConfigError(f"the sweep is not allowed: {reason}") from None
        sweeps = " ".join(o.input_line for o in overrides if o.is_sweep_override())
        check_sweep_size(sweep_size(overrides), f"the sweep {sweeps}")
        return [job for batch in self.split_arguments(overrides, None) for job in batch]

    def validate_batch_is_legal(self, batch) -> None:
        """Done for the whole sweep in ``sweep`` (with seqbench's checks), before launching."""
