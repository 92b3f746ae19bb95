"""A Hydra callback for the launchers that run a sweep's jobs in other processes (the joblib
and ray extras; see the README's "Sweeps: launchers and Optuna")."""

from __future__ import annotations

import sys
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class ReleaseWorkers(Callback):
    """Ends what a launcher started for the sweep once the sweep is over.

    Both launchers below count on the interpreter's exit to clean up, which the entrypoint skips
    (`runner_core.entrypoint.exit_now` ends the process at once). joblib keeps its worker
    processes for a next parallel call and ends them after 300 s idle: they outlived the sweep
    by five minutes, holding its stdout and stderr open (a `| tee`, or a test capturing the
    output, waited for them). A Ray that `hydra/launcher=ray` started on this machine left two
    of its agents running for good; connected to a cluster, Ray only disconnects."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        release_joblib_workers()
        release_ray()


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


def release_ray() -> None:
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
