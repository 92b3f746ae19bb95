"""`hydra.sweeper._target_` of conf/hparams_search/*.yaml: Hydra's Optuna sweeper with the
runner's failed jobs told to Optuna as failed trials (`_optuna_sweeper`). Hydra imports this
module at every start-up to find its plugins, so it imports neither optuna nor the plugin."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class OptunaSweeper(Sweeper):
    """Takes the settings of Hydra's `hydra/sweeper=optuna` (sampler, direction, n_trials, ...)."""

    def __init__(self, **settings: Any) -> None:
        from hydra_plugins.rl_runner._optuna_sweeper import StudySweeper

        self.sweeper = StudySweeper(**settings)

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        return self.sweeper.sweep(arguments)
