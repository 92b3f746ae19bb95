"""A run: its directory, metrics logger, console, checkpoints and signal handling.

Family trainers receive a `Run` and never touch files, TensorBoard or signals themselves.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from omegaconf import DictConfig, OmegaConf

from runner_core import checkpoint
from runner_core.console import Console
from runner_core.errors import CheckpointError, Interrupted, NonFiniteError
from runner_core.metrics import MetricLogger
from runner_core.seeding import rng_state, set_rng_state


class Session(Protocol):
    """What a family trainer builds before the run opens (so bad input fails before any file is
    written) and then fits inside it."""

    total: int  # budget in `unit`s (env steps, optimizer steps)
    unit: str
    objective_name: str
    device: Any  # what it runs on (a torch device, or `NUMPY_CPU`)

    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...
    def describe(self) -> dict[str, Any]: ...
    def fit(self, run: Run) -> dict[str, float]: ...


class Run:
    def __init__(
        self,
        cfg: DictConfig,
        run_dir: Path,
        session: Session,
        resume: dict[str, Any] | None = None,
    ) -> None:
        self.cfg = cfg
        self.dir = run_dir
        self.session = session
        self.ckpt_dir = run_dir / checkpoint.CHECKPOINT_DIR
        run_dir.mkdir(parents=True, exist_ok=True)
        self.console = Console(cfg.logger.console, run_dir, cfg.logger.print_every_s)
        self.step = 0
        self.elapsed_before = 0.0  # wall time of earlier segments of a resumed run
        if resume is not None:
            try:
                session.load_state_dict(resume["session"])
            except (KeyError, ValueError, RuntimeError, TypeError) as exc:
                raise CheckpointError(
                    f"The checkpoint does not fit this run's model and optimizer ({exc}). It was "
                    "written by another version of the runner or for another configuration; "
                    "start a new run instead of resuming this one."
                ) from None
            set_rng_state(resume["rng"])
            self.step = int(resume["step"])
            self.elapsed_before = float(resume.get("elapsed", 0.0))
        self.logger = MetricLogger(
            run_dir,
            tensorboard=cfg.logger.tensorboard,
            jsonl=cfg.logger.jsonl,
            resume_step=self.step + 1 if resume is not None else None,
            resume_offset=int(resume["metrics_offset"]) if resume is not None else None,
        )
        self.started = time.time()
        self._stop_signal: int | None = None
        self._old_handlers: dict[int, Any] = {}

    # time and signals --------------------------------------------------------------------------
    @property
    def elapsed(self) -> float:
        return self.elapsed_before + time.time() - self.started

    def install_signal_handlers(self) -> None:
        """SIGINT/SIGTERM ask the loop to stop at the next safe point; a second SIGINT aborts."""

        def handler(signum: int, _frame: Any) -> None:
            if self._stop_signal is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self._stop_signal = signum

        for sig in (signal.SIGINT, signal.SIGTERM):
            # not the main thread (e.g. some sweepers): no handler
            with contextlib.suppress(ValueError):
                self._old_handlers[sig] = signal.signal(sig, handler)

    def restore_signal_handlers(self) -> None:
        for sig, old in self._old_handlers.items():
            signal.signal(sig, old)
        self._old_handlers.clear()

    def poll(self, step: int) -> None:
        """Call at safe points (between updates): on a stop request checkpoint and raise."""
        if self._stop_signal is None:
            return
        self.step = step
        path = self.save(checkpoint.LATEST)
        self.logger.flush()
        name = signal.Signals(self._stop_signal).name
        raise Interrupted(
            f"{name} received at step {step:,}: checkpoint written to {path}. "
            f"Continue this run in place with: python -m rl_runner resume={self.dir}",
            self._stop_signal,
        )

    # metrics -----------------------------------------------------------------------------------
    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.logger.log(step, metrics)

    def check_finite(self, step: int, metrics: dict[str, float]) -> None:
        """A NaN/inf loss stops the run before anything is checkpointed."""
        for key, value in metrics.items():
            if not math.isfinite(value):
                latest = self.ckpt_dir / checkpoint.LATEST
                kept = (
                    f"The last good checkpoint, {latest}, is intact."
                    if latest.exists()
                    else "No checkpoint had been written yet."
                )
                raise NonFiniteError(
                    f"'{key}' became {value} at step {step:,}; the run stopped. {kept} "
                    "Try a lower learning rate (algo.lr) or gradient clipping (algo.max_grad_norm)."
                )

    # checkpoints -------------------------------------------------------------------------------
    def save(self, name: str, extra: dict[str, Any] | None = None) -> Path:
        path = self.ckpt_dir / name
        state = {
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            "session": self.session.state_dict(),
            "rng": rng_state(),
            "step": self.step,
            "elapsed": self.elapsed,
            "metrics_offset": self.logger.offset(),
            **(extra or {}),
        }
        checkpoint.save_atomic(state, path)
        return path

    def every(self, interval: int, start: int) -> Callable[[int], bool]:
        """A cheap predicate: true each time `step` crosses the next multiple of `interval`."""
        next_at = [(start // interval + 1) * interval if interval > 0 else math.inf]

        def due(step: int) -> bool:
            if step >= next_at[0]:
                next_at[0] = (step // interval + 1) * interval
                return True
            return False

        return due

    def close(self) -> None:
        self.restore_signal_handlers()
        self.console.close()
        self.logger.close()
