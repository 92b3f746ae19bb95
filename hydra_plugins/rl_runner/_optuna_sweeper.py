"""Hydra's Optuna sweeper (the `hydra-optuna-sweeper` plugin: the optuna extra), with the runner's
failed jobs told to Optuna as failed trials. Imported only when a config names the sweeper
(`optuna_sweeper.OptunaSweeper`), so that Hydra's start-up never needs optuna.

A job of a sweep that fails records why in its directory (failed.json) and returns NaN, so that
the other jobs go on (`runner_core.entrypoint._task`). The plugin hands that NaN to
`study.tell` as a completed trial's value, which Optuna refuses; the plugin then tells the trial
as failed with the same NaN as its value, which Optuna refuses too, and that second error stops
the whole study. Here such a job comes back to the plugin as a failed job (with the error of its
failed.json), which the plugin tells as a failed trial: the study goes on, the sampler learns
nothing from it, and the sweep still exits 1 naming it (`report_failed_jobs`). The shipped
search spaces (conf/hparams_search/) set `max_failure_rate: 1.0` so that failed trials never
stop the study; where a lower rate is exceeded, or no trial succeeds (Optuna then has no best
trial), the study ends without optimization_results.yaml and the failed jobs are reported the
same way instead of as a traceback.

The direction must fit the objective that `train` returns: the jobs' summary.json says which
way theirs improves (`objective_mode`), and a study told to go the other way is stopped at its
first completed trial.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import HydraException
from hydra.types import HydraContext, TaskFunction
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class TrialFailed(RuntimeError):
    """A job of the study that failed (its failed.json) or whose objective is not a number."""


class StudySweeper(OptunaSweeperImpl):
    """The plugin's sweeper, whose launcher returns the runner's failed jobs as failed
    `JobReturn`s (see `hydra_plugins.rl_runner.optuna_sweeper.OptunaSweeper`)."""

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        directions = self._get_directions()
        direction = str(directions[0]) if len(directions) == 1 else None
        self.failures = FailedJobsAsFailures(self.launcher, direction)
        self.launcher = self.failures  # type: ignore[assignment]

    def sweep(self, arguments: list[str]) -> None:
        try:
            return super().sweep(arguments)
        except TrialFailed:  # the plugin re-raises a job's error past max_failure_rate
            log.error(
                "The study stopped: more trials failed than hydra.sweeper.max_failure_rate "
                f"({self.max_failure_rate}) allows."
            )
        except ValueError:
            if self.failures.completed:
                raise
            log.error("No trial of the study succeeded, so it has no best trial.")
        return None


class DirectionMismatch(HydraException):
    """hydra.sweeper.direction goes against the way the jobs' objective improves."""


MODES = {"maximize": "max", "minimize": "min"}


class FailedJobsAsFailures:
    """Wraps a launcher: a job that returned NaN comes back as failed, with its error; a
    completed job's objective_mode is checked against the study's direction."""

    def __init__(self, launcher: Any, direction: str | None) -> None:
        self.launcher = launcher
        self.direction = direction  # maximize or minimize; None for a multi-objective study
        self.completed = 0  # jobs with a usable objective, over the whole study

    def __getattr__(self, name: str) -> Any:
        return getattr(self.launcher, name)

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        returns = self.launcher.launch(job_overrides, initial_job_idx=initial_job_idx)
        for ret in returns:
            if ret.status != JobStatus.COMPLETED:
                continue
            value = ret.return_value
            if isinstance(value, int | float) and not math.isnan(value):
                self.completed += 1
                self.check_direction(ret)
                continue
            ret.status = JobStatus.FAILED
            ret.return_value = TrialFailed(job_error(ret, value))
        return returns

    def check_direction(self, ret: JobReturn) -> None:
        from runner_core.train import SUMMARY_FILE

        summary = read_json(job_dir(ret), SUMMARY_FILE)
        mode = summary.get("objective_mode") if summary else None
        if self.direction is None or mode is None or MODES.get(self.direction) == mode:
            return
        raise DirectionMismatch(
            f"hydra.sweeper.direction is {self.direction}, but the jobs' objective "
            f"{summary.get('objective_name')} improves the other way (objective_mode {mode} in "
            f"{SUMMARY_FILE}); the study would look for the worst trial. Set "
            f"hydra.sweeper.direction={'maximize' if mode == 'max' else 'minimize'}."
        )


def job_dir(ret: JobReturn) -> Path | None:
    if ret.hydra_cfg is None:
        return None
    return Path(str(ret.hydra_cfg.hydra.runtime.output_dir))


def read_json(folder: Path | None, name: str) -> dict[str, Any] | None:
    if folder is None:
        return None
    try:
        record = json.loads((folder / name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def job_error(ret: JobReturn, value: Any) -> str:
    """What went wrong in a job, from the failed.json in its directory where there is one."""
    from runner_core.entrypoint import FAILED_FILE

    record = read_json(job_dir(ret), FAILED_FILE)
    if record and "error" in record:
        return f"{record.get('kind', 'Error')}: {record['error']}"
    return f"the job's objective is {value!r}, not a number"
