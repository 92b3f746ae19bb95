"""Hydra callbacks for the launchers that run a sweep's jobs in other processes (the joblib,
slurm and ray extras; see the README's "Sweeps: launchers and Optuna")."""

from __future__ import annotations

import sys
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class ReleaseJoblibWorkers(Callback):
    """Ends the joblib launcher's worker processes once the sweep is over.

    joblib keeps its loky workers for the next parallel call and ends them only at the
    interpreter's exit or after 300 s idle; the entrypoint ends the process without that teardown
    (`runner_core.entrypoint.exit_now`), so without this the workers outlived the sweep by five
    minutes, holding its stdout and stderr open (a `| tee` or a captured subprocess waited for
    them)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        release_joblib_workers()


def release_joblib_workers() -> None:
    module = sys.modules.get("joblib.externals.loky.reusable_executor")
    executor = getattr(module, "_executor", None)
    if executor is None:
        return
    # joblib's executor: its workers, then its temporary folder (the resource tracker otherwise
    # warns about it at exit)
    terminate = getattr(executor, "terminate", None)
    if terminate is not None:
        terminate(kill_workers=False)
    else:
        executor.shutdown(wait=True)
