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

from runner_core import checkpoint, distributed
from runner_core.console import Console
from runner_core.errors import CheckpointError, Interrupted, NonFiniteError
from runner_core.metrics import METRICS_FILE, MetricLogger, reconcile
from runner_core.rundir import RunDir
from runner_core.seeding import rng_state, seed_everything, set_rng_state


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
    def warnings(self) -> list[str]: ...
    def fit(self, run: Run) -> dict[str, float]: ...


def resume_command(cfg: DictConfig, run_dir: Path) -> str:
    module = "dl_runner" if cfg.algo.family == "dl" else "rl_runner"
    return f"{distributed.launcher()} -m {module} resume={run_dir}"


class Run:
    """An open run in a directory this process owns (`RunDir`). With `resume` (a loaded
    checkpoint) the session continues from it, and metrics.jsonl and TensorBoard are cut back to
    what the checkpoint holds."""

    def __init__(
        self,
        cfg: DictConfig,
        run_dir: RunDir,
        session: Session,
        resume: dict[str, Any] | None = None,
    ) -> None:
        self.cfg = cfg
        # the config as plain containers, stored in every checkpoint (it does not change)
        self.config = OmegaConf.to_container(cfg, resolve=True)
        self.owner = run_dir
        self.dir = run_dir.path
        self.session = session
        self.ckpt_dir = self.dir / checkpoint.CHECKPOINT_DIR
        self.step = 0
        self.elapsed_before = 0.0  # wall time of earlier segments of a resumed run
        self.saved: dict[str, int] = {}  # checkpoint name -> step of its last write by this run
        note = None
        if resume is not None:
            self._restore(resume)
            # before anything is written: metrics.jsonl must match the checkpoint
            note = reconcile(self.dir / METRICS_FILE, _metrics_mark(resume), self.step)
        self.console = Console(cfg.logger.console, self.dir, cfg.logger.print_every_s)
        if note:
            self.console.info(note)
        self.logger = MetricLogger(
            self.dir,
            tensorboard=cfg.logger.tensorboard,
            jsonl=cfg.logger.jsonl,
            resume_step=self.step + 1 if resume is not None else None,
        )
        self.logger.wall_time_before = self.elapsed_before
        self.started = time.time()
        self._stop_signal: int | None = None  # the stop the loop acts on
        self._received: int | None = None  # a signal this process received
        # data-parallel: a signal stops the run only once every process knows of it (at the same
        # step, see `distributed.DataParallel.agree`)
        self._stop_by_agreement = distributed.active()
        self._old_handlers: dict[int, Any] = {}
        # latest.pt every `every_steps` units of progress or `every_minutes` of wall time
        self._ckpt_steps = self.every(int(cfg.checkpoint.every_steps), self.step)
        self._ckpt_seconds = float(cfg.checkpoint.every_minutes) * 60.0
        self._last_save = time.monotonic()

    def _restore(self, resume: dict[str, Any]) -> None:
        """The session, counters and RNG states of a checkpoint."""
        self.step = int(resume["step"])
        self.elapsed_before = float(resume.get("elapsed", 0.0))
        try:
            self.session.load_state_dict(resume["session"])
        except (KeyError, ValueError, RuntimeError, TypeError) as exc:
            raise CheckpointError(
                f"The checkpoint does not fit this run's model and optimizer ({exc}). It was "
                "written by another version of the runner or for another configuration; "
                "start a new run instead of resuming this one."
            ) from None
        rng = distributed.own_rng(resume)
        if rng is not None:
            set_rng_state(rng)
        else:  # a rank > 0 of a run written by another number of processes
            seed_everything(distributed.seed(int(self.cfg.seed)) + self.step)

    # time and signals --------------------------------------------------------------------------
    @property
    def elapsed(self) -> float:
        return self.elapsed_before + time.time() - self.started

    def install_signal_handlers(self) -> None:
        """SIGINT/SIGTERM ask the loop to stop at the next safe point; a second SIGINT aborts."""

        def handler(signum: int, _frame: Any) -> None:
            if self._received is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self._received = signum
            if not self._stop_by_agreement:
                self._stop_signal = signum

        for sig in (signal.SIGINT, signal.SIGTERM):
            # not the main thread (e.g. some sweepers): no handler
            with contextlib.suppress(ValueError):
                self._old_handlers[sig] = signal.signal(sig, handler)

    def restore_signal_handlers(self) -> None:
        for sig, old in self._old_handlers.items():
            signal.signal(sig, old)
        self._old_handlers.clear()

    @property
    def stop_requested(self) -> bool:
        return self._stop_signal is not None

    @property
    def received_signal(self) -> int | None:
        return self._received

    def request_stop(self, signum: int) -> None:
        """Stop at the next safe point as if `signum` had arrived (in a data-parallel run, once
        the processes agree that one of them received it)."""
        self._stop_signal = signum

    def poll(self, step: int) -> None:
        """Call at safe points (between updates): on a stop request checkpoint and raise."""
        if self._stop_signal is None:
            return
        self.step = step
        path = self.save(checkpoint.LATEST)
        name = signal.Signals(self._stop_signal).name
        message = (
            f"{name} received at step {step:,}: checkpoint written to {path}. "
            f"Continue this run in place with: {resume_command(self.cfg, self.dir)}"
        )
        self.console.record(f"Stopped: {message}")
        raise Interrupted(message, self._stop_signal)

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
    def checkpoint_due(self, step: int) -> bool:
        """Whether latest.pt is due: `checkpoint.every_steps` crossed, or `every_minutes` of wall
        time since the last one (0 turns either off)."""
        if self._ckpt_steps(step):
            return True
        return 0 < self._ckpt_seconds <= time.monotonic() - self._last_save

    def snapshot(
        self, extra: dict[str, Any] | None = None, mark: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """What a checkpoint of the session at `self.step` holds. `mark` is the metrics.jsonl
        mark to store (`MetricLogger.mark`), taken now if not given (a forked evaluation passes
        the one taken when it was forked). Its "session" holds the live tensors: deep-copy that
        part to keep the snapshot for later. In a data-parallel run every process calls it at the
        same point: "rng_ranks" holds each process's RNG states."""
        rng = rng_state()
        ranks = distributed.gather(rng)
        return {
            "config": self.config,
            "session": self.session.state_dict(),
            "rng": rng,
            **({"rng_ranks": ranks} if ranks is not None else {}),
            "step": self.step,
            "elapsed": self.elapsed,
            "metrics": mark if mark is not None else self.logger.mark(),
            **(extra or {}),
        }

    def write(self, name: str, state: dict[str, Any]) -> Path:
        """Write a snapshot as checkpoints/<name> (atomically; latest.pt keeps its previous
        version as previous.pt)."""
        path = self.ckpt_dir / name
        checkpoint.save_atomic(state, path, keep_previous=name == checkpoint.LATEST)
        self.saved[name] = int(state["step"])
        if name == checkpoint.LATEST:
            self._last_save = time.monotonic()
        return path

    def save(
        self, name: str, extra: dict[str, Any] | None = None, mark: dict[str, Any] | None = None
    ) -> Path:
        """Write checkpoints/<name> with the session's state at `self.step`."""
        return self.write(name, self.snapshot(extra, mark))

    def every(self, interval: int, start: int) -> Callable[[int], bool]:
        """A cheap predicate: true each time `step` crosses the next multiple of `interval`."""
        next_at = [(start // interval + 1) * interval if interval > 0 else math.inf]

        def due(step: int) -> bool:
            if step >= next_at[0]:
                next_at[0] = (step // interval + 1) * interval
                return True
            return False

        return due

    def close(self, failed: bool = False) -> None:
        """Close the logs and release the directory. After a failure (`failed`) errors while
        closing are dropped, so the first error is the one reported."""
        self.restore_signal_handlers()
        try:
            self.console.close()
            try:
                self.logger.close()
            except OSError:
                if not failed:
                    raise
        finally:
            self.owner.release()


class _Silent:
    """A console or logger that drops everything."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return _nothing


def _nothing(*args: Any, **kwargs: Any) -> None:
    return None


class FollowerRun(Run):
    """A rank > 0 of a data-parallel run: it trains in step with rank 0, which owns the
    directory (`run_dir`, read here only to resume), and writes and prints nothing. It takes
    part in rank 0's checkpoints (their RNG states) and stops when rank 0 does."""

    def __init__(
        self,
        cfg: DictConfig,
        run_dir: Path,
        session: Session,
        resume: dict[str, Any] | None = None,
    ) -> None:
        self.cfg = cfg
        self.config = None
        self.dir = run_dir
        self.session = session
        self.ckpt_dir = self.dir / checkpoint.CHECKPOINT_DIR
        self.step = 0
        self.elapsed_before = 0.0
        self.saved = {}
        if resume is not None:
            self._restore(resume)
        self.console = _Silent()  # type: ignore[assignment]
        self.logger = _Silent()  # type: ignore[assignment]
        self.started = time.time()
        self._stop_signal = None
        self._received = None
        self._stop_by_agreement = True
        self._old_handlers = {}
        self._ckpt_steps = self.every(int(cfg.checkpoint.every_steps), self.step)
        self._ckpt_seconds = float(cfg.checkpoint.every_minutes) * 60.0
        self._last_save = time.monotonic()

    def snapshot(
        self, extra: dict[str, Any] | None = None, mark: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        distributed.gather(rng_state())
        return {"session": {}, "step": self.step}

    def write(self, name: str, state: dict[str, Any]) -> Path:
        if name == checkpoint.LATEST:
            self._last_save = time.monotonic()
        return self.ckpt_dir / name

    def close(self, failed: bool = False) -> None:
        self.restore_signal_handlers()


def _metrics_mark(state: dict[str, Any]) -> dict[str, Any] | None:
    """The metrics.jsonl mark of a checkpoint (older checkpoints stored only an offset)."""
    if "metrics" in state:
        return dict(state["metrics"])
    if "metrics_offset" in state:
        return {"offset": int(state["metrics_offset"]), "tail": ""}
    return None
