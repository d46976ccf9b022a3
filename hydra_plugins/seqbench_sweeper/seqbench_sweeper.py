"""``hydra/sweeper=seqbench`` (the default of every seqbench config): Hydra's basic sweeper,
which first composes and validates every job of the sweep, so that a bad value in the 40th
job stops the sweep in a second, with one line and exit code 2, instead of after 39 jobs.

The expansion is Hydra's own (``BasicSweeper.split_arguments`` over the command line and the
experiment's ``hydra.sweeper.params``), and each job is composed by Hydra's config loader,
exactly as the launcher will compose it; seqbench only adds its checks
(``seqbench.cli.validate_sweep``), and writes model sets (``model=@lecture``) out first.
It imports only the entry layer (seqbench.cli), and Hydra's plugin scan registers it. Hydra
requires sweeper plugins to live in the ``hydra_plugins`` namespace package, hence here.
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
        from seqbench import cli
        from seqbench.errors import ConfigError, fail

        loader = self.hydra_context.config_loader
        try:
            parser = OverridesParser.create(config_loader=loader)  # glob() over its groups
            jobs = cli.sweep_jobs(cli.sweep_lines(self.params, arguments), parser)
            cli.validate_sweep(
                self.config.hydra.job.config_name,
                jobs,
                lambda job: loader.load_sweep_config(self.config, job),
            )
        except ConfigError as e:
            sys.exit(fail(str(e)))
        if self.dry_run:
            print(f"seqbench: dry run: {len(jobs)} jobs validated, none launched", flush=True)
            return []
        return super().sweep(arguments)

    def _parse_config(self) -> list[str]:
        """The experiment's params as the jobs were validated: model sets written out."""
        from seqbench import cli

        return cli.sweep_lines(self.params, [])

    def validate_batch_is_legal(self, batch) -> None:
        """Done for the whole sweep in ``sweep`` (with seqbench's checks), before launching."""
