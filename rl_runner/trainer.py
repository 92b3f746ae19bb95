"""The RL trainer: builds envs and the algorithm (`prepare`), then drives the cadence around the
algorithm's own loop (see `rl_runner.algos.base`): progress in the loop's unit (env steps,
sweeps, generations), episode statistics, losses, evaluation, checkpoints and stop requests.
Loops call `env_step`, `advance`, `after_update` and `tick`; nothing else."""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np
from omegaconf import DictConfig

from rl_runner import fast
from rl_runner.algos.base import Algorithm
from rl_runner.collectors import EnvStepper, evaluate
from rl_runner.envs import env_rng_states, env_spec, make_vec_env, set_env_rng_states
from rl_runner.specs import EnvSpec
from runner_core import checkpoint
from runner_core.device import NumpyCPU
from runner_core.errors import ConfigError
from runner_core.run import Run
from runner_core.validation import RL_RULES, algo_class, check

EVAL_SEED_OFFSET = 1_000_003  # evaluation envs never share seeds with training envs
STOP_WAIT_S = 10.0  # on SIGINT/SIGTERM, how long a background evaluation may still take


def prepare(cfg: DictConfig, start: Callable[[bool], Any]) -> RLTrainer:
    """Validate `cfg` against the env, pick the backend and get the device from `start` (numpy
    alone where the algorithm, or its numpy version in `rl_runner.fast`, needs no torch: see
    `resolve_device`), then build the envs, the algorithm and the trainer."""
    check(cfg, RL_RULES)
    spec = env_spec(cfg.env)
    cls = algo_class(cfg)
    cls.check(cfg, spec)
    numpy_cls = cls if cls.backend == "numpy" else None
    if numpy_cls is None and cfg.device.backend != "torch":
        numpy_cls = fast.variant(cls, cfg, spec)
    if cfg.device.backend == "numpy" and numpy_cls is None:
        raise ConfigError(
            f"Config key 'device.backend' is 'numpy', but algo={cfg.algo.name} has no numpy "
            f"version for this run ({fast.why_not(cls, cfg, spec)}). Use device.backend=auto "
            "or torch."
        )
    device = start(numpy_cls is not None)
    if isinstance(device, NumpyCPU) and numpy_cls is not None:
        cls = numpy_cls
    envs = make_vec_env(cfg.env, cfg.env.num_envs)
    eval_envs = make_vec_env(cfg.env, min(cfg.eval.episodes, 32))
    algo = cls(cfg, spec, device, cfg.seed)
    return RLTrainer(cfg, spec, algo, envs, eval_envs)


class RLTrainer:
    objective_name = "eval/mean_return"

    def __init__(
        self, cfg: DictConfig, spec: EnvSpec, algo: Algorithm, envs: Any, eval_envs: Any
    ) -> None:
        self.cfg, self.spec, self.algo = cfg, spec, algo
        self.envs, self.eval_envs = envs, eval_envs
        self.unit = algo.unit  # what progress counts: env steps, sweeps, generations
        self.total = type(algo).budget(cfg)
        self.num_envs = envs.num_envs
        self.units = 0  # progress of loops that do not count env steps
        self.env_steps = 0  # env steps those loops played (population episodes)
        self.finished_early = False  # a planning loop that converged
        self._population_envs: Any = None
        self.best_eval = -np.inf
        self.last_eval: dict[str, float] = {}
        self.episodes = 0
        self.solved_at: int | None = None  # step of the evaluation that reached eval.stop_at_return
        self.solved_time: float | None = None  # and when it finished (Unix time)
        self._env_rng: list[dict[str, Any]] | None = None
        self.stepper: EnvStepper | None = None
        self._pending: tuple[int, int, int] | None = None  # background evaluation: pid, fd, step
        self._last_eval_logged = True  # False in a best.pt written by a background evaluation
        # wall time of the runner's own work during training (logging, console, periodic
        # evaluation and checkpoints): what `after_update` and `tick` spend
        self.overhead_s = 0.0

    # Session protocol ---------------------------------------------------------------------------
    @property
    def device(self) -> Any:
        return self.algo.device

    def warnings(self) -> list[str]:
        return type(self.algo).warnings(self.cfg)

    def describe(self) -> dict[str, Any]:
        return {
            "objective_mode": "max",
            "env_id": self.spec.id,
            "algo": self.cfg.algo.name,
            "episodes": self.episodes,
            "runner_overhead_s": round(self.overhead_s, 6),  # microseconds count in short runs
            **({"converged": True} if self.finished_early else {}),
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "algo": self.algo.state_dict(),
            "best_eval": float(self.best_eval),
            "last_eval": dict(self.last_eval),  # a resumed finished run does not evaluate again
            "last_eval_logged": self._last_eval_logged,
            "solved_at": self.solved_at,
            "solved_time": self.solved_time,
            "episodes": self.stepper.episodes if self.stepper else self.episodes,
            "env_rng": env_rng_states(self.envs),
            "units": self.units,
            "env_steps": self.env_steps,
            "finished_early": self.finished_early,
        }

    def load_learned(self, state: dict[str, Any]) -> None:
        """`init_from`: the networks, normalizer statistics and stored replay buffer of another
        run's checkpoint; everything else starts fresh."""
        self.algo.load_learned(state["algo"])

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.algo.load_state_dict(state["algo"])
        self.best_eval = float(state["best_eval"])
        self.last_eval = {k: float(v) for k, v in state.get("last_eval", {}).items()}
        self._last_eval_logged = bool(state.get("last_eval_logged", True))
        self.episodes = int(state["episodes"])
        self.solved_at = state.get("solved_at")
        self.solved_time = state.get("solved_time")
        self._env_rng = state.get("env_rng")
        self.units = int(state.get("units", 0))
        self.env_steps = int(state.get("env_steps", 0))
        self.finished_early = bool(state.get("finished_early", False))

    def fit(self, run: Run) -> dict[str, float]:
        self.run = run
        cfg = self.cfg
        # a resumed run restarts its episodes (fresh resets) and then restores the env RNGs
        env_steps = run.step if self.unit == "steps" else self.env_steps
        self.stepper = EnvStepper(self.envs, cfg.seed + run.step, env_steps)
        self.stepper.episodes = self.episodes
        if self._env_rng:
            set_env_rng_states(self.envs, self._env_rng)
        self._eval_due = run.every(cfg.eval.every_steps, run.step)
        self._start_step, self._start_time = run.step, time.time()
        self._log_every = cfg.logger.log_every_updates
        run.console.start(self.total, self.unit, run.step)
        if not self._last_eval_logged:  # resumed from a best.pt written in the background
            step = int(self.last_eval["step"])
            run.log(step, {k: v for k, v in self.last_eval.items() if k != "step"})
            self._last_eval_logged = True
        self._background = self._background_possible()
        self._eval_lag = max(cfg.eval.every_steps // 4, 1)
        try:
            self.algo.learn(self)
            self._collect_evaluation()
            final = self.last_eval if self.last_eval.get("step") == self.step else self.evaluate()
        finally:
            self._finish_evaluation()
            run.console.stop()
        run.step = self.step
        if cfg.checkpoint.save_final:
            run.save(checkpoint.FINAL)
        run.save(checkpoint.LATEST)
        self.episodes = self.stepper.episodes
        return {
            "eval/mean_return": final["eval/mean_return"],
            "eval/std_return": final["eval/std_return"],
            "eval/best_mean_return": float(self.best_eval),
            **(
                {"solved_at_step": self.solved_at, "solved_at_time": self.solved_time}
                if self.solved_at is not None
                else {}
            ),
        }

    # what algorithms call ---------------------------------------------------------------------
    @property
    def done(self) -> bool:
        """The budget is spent, an evaluation reached `eval.stop_at_return`, or the loop
        converged (`finish_early`)."""
        return self.step >= self.total or self.solved_at is not None or self.finished_early

    @property
    def step(self) -> int:
        """Progress in the loop's unit: env steps, sweeps or generations."""
        return self.stepper.step_count if self.unit == "steps" else self.units

    @property
    def progress(self) -> int:
        """`step`, also before and after `fit`."""
        return self.step if self.stepper is not None else 0

    @property
    def fraction_done(self) -> float:
        """Progress as a fraction of the budget, in [0, 1] (for schedules: a rollout may end
        past the budget)."""
        return min(self.step / self.total, 1.0)

    def advance(self, n: int = 1, env_steps: int = 0) -> None:
        """Loops that do not count env steps: `n` more units done (sweeps, generations), and
        the env steps they played."""
        self.units += n
        self.env_steps += env_steps

    def finish_early(self) -> None:
        """The loop has converged: the run ends after this update's cadence."""
        self.finished_early = True

    def population_envs(self, n: int) -> Any:
        """A vector env of `n` sub-envs for a population's episodes (made once)."""
        if self._population_envs is None or self._population_envs.num_envs != n:
            if self._population_envs is not None:
                self._population_envs.close()
            self._population_envs = make_vec_env(self.cfg.env, n)
        return self._population_envs

    @property
    def obs(self) -> np.ndarray:
        return self.stepper.obs

    def env_step(self, actions: np.ndarray) -> tuple[np.ndarray, ...]:
        return self.stepper.step(actions)

    def after_update(self, stats: dict[str, float]) -> None:
        """After each update: check the losses, log them, then the usual cadence."""
        start = time.perf_counter()
        step = self.step
        self.run.check_finite(step, stats)
        if self.algo.num_updates % self._log_every == 0:
            if stats:  # the algorithm's main loss first (policy_loss, td_loss, ...)
                key, value = next(iter(stats.items()))
                self.run.console.update(step, **{key.rpartition("/")[2]: value})
            metrics = {k if "/" in k else f"losses/{k}": v for k, v in stats.items()}
            metrics["charts/sps"] = (step - self._start_step) / max(
                time.time() - self._start_time, 1e-9
            )
            if self.unit != "steps" and self.env_steps:
                metrics["charts/env_steps"] = self.env_steps
            self.run.log(step, {**metrics, **self._drain_episodes()})  # one event for both
        self._cadence()
        self.overhead_s += time.perf_counter() - start

    def tick(self) -> None:
        """Cheap per-step cadence: episodes, progress, evaluation, checkpoints, stop requests."""
        start = time.perf_counter()
        self._cadence()
        self.overhead_s += time.perf_counter() - start

    def _drain_episodes(self) -> dict[str, float]:
        """Stats of the episodes finished since the last call ({} if none); shows the recent
        mean return on the console."""
        stepper = self.stepper
        if not stepper.finished_returns:
            return {}
        recent = stepper.recent
        self.run.console.update(self.step, **{"return": math.fsum(recent) / len(recent)})
        return stepper.drain_episodes()

    def _cadence(self) -> None:
        step = self.step
        self.run.log(step, self._drain_episodes())
        pending = self._pending
        if pending is not None and step >= pending[2] + self._eval_lag:
            self._collect_evaluation()
        # at the end of the budget the final evaluation and checkpoints in `fit` take over
        if self._eval_due(step) and step < self.total:
            if self._background:
                self._start_evaluation()
            else:
                self.evaluate()
        if self.run.checkpoint_due(step) and not self.done:
            self._collect_evaluation()  # a checkpoint holds every evaluation before it
            self.run.step = step
            self.run.save(checkpoint.LATEST)
        if self.run.stop_requested:
            self._collect_evaluation(stopping=True)
            self.run.poll(step)

    def evaluate(self) -> dict[str, float]:
        """Evaluate the policy as it is now, in this process (and record a video of one more
        episode if `eval.video`)."""
        step = self.step
        result = self._record_evaluation(step, self._play_evaluation(), time.time())
        if self.cfg.eval.video:
            self._record_video(step)
        return result

    def _record_video(self, step: int) -> None:
        """One evaluation episode as videos/eval-step<step>.mp4 and a TensorBoard animation."""
        from rl_runner import video

        cfg = self.cfg
        seed = cfg.seed + EVAL_SEED_OFFSET
        env = video.rendered_env(cfg.env)
        try:
            policy = self.algo.evaluation_policy(
                cfg.eval.deterministic, np.random.default_rng(seed)
            )
            frames, steps = video.play(env, policy, seed)
            fps = float(env.metadata.get("render_fps") or 30)
        finally:
            env.close()
        if frames:
            video.write_mp4(self.run.dir / "videos" / f"eval-step{step}.mp4", frames, fps)
            clip, clip_fps = video.thumbnail(frames, fps)
            self.run.logger.video("eval/video", clip, step, clip_fps)
            self.run.log(step, {"eval/video_length": steps})  # its frames, one per step

    def _play_evaluation(self) -> dict[str, float]:
        cfg = self.cfg
        seed = cfg.seed + EVAL_SEED_OFFSET
        policy = self.algo.evaluation_policy(cfg.eval.deterministic, np.random.default_rng(seed))
        returns = evaluate(policy, self.eval_envs, cfg.eval.episodes, seed)
        return {"eval/mean_return": float(returns.mean()), "eval/std_return": float(returns.std())}

    def _record_evaluation(
        self, step: int, result: dict[str, float], finished: float, save_best: bool = True
    ) -> dict[str, float]:
        """Log an evaluation of the policy as it was at `step`, finished at `finished` (Unix
        time), and write best.pt if it is the best yet (unless a background evaluation did)."""
        self.run.logger.release(first=(step, result))
        self.last_eval = {**result, "step": step}
        target = self.cfg.eval.stop_at_return
        if target is not None and self.solved_at is None and result["eval/mean_return"] >= target:
            self.solved_at, self.solved_time = step, finished
        if result["eval/mean_return"] > self.best_eval:
            self.best_eval = result["eval/mean_return"]
            if save_best and self.cfg.checkpoint.save_best:
                self._save_best(step, result)
        self.run.console.update(self.step, eval=result["eval/mean_return"])
        return result

    def _save_best(self, step: int, result: dict[str, float]) -> None:
        self.run.step = step
        self.run.save(checkpoint.BEST, {"eval": result})

    # periodic evaluations in the background ---------------------------------------------------
    # Training uses one core. At an evaluation step a forked child evaluates the policy as it
    # was then (its memory is a copy-on-write snapshot: weights, eval envs, best score) on
    # another core, writes best.pt itself if the score is the best yet, and sends the result
    # back through a pipe. The parent records it a fixed number of env steps later (every_steps
    # / 4, waiting if need be), and before the next evaluation or checkpoint and at the end: the
    # results, best.pt and the order of the logs are the same whatever the timing.
    def _background_possible(self) -> bool:
        """Linux (fork is cheap there), an algorithm on the numpy backend (the child must not
        touch torch, whose threads do not survive a fork), no `stop_at_return` (such a run ends
        at the solving evaluation) and no video (recorded in this process)."""
        cfg = self.cfg
        return (
            bool(cfg.eval.background)
            and sys.platform == "linux"
            and cfg.eval.stop_at_return is None
            and self.algo.backend == "numpy"
            and not cfg.eval.video
        )

    def _start_evaluation(self) -> None:
        self._collect_evaluation()
        step = self.step
        # the child inherits empty write buffers and writes no logs; a best.pt it writes holds
        # the metrics mark of this moment, not of when it finishes
        mark = self.run.logger.mark()
        read_fd, write_fd = os.pipe()
        try:
            pid = os.fork()
        except OSError:  # no process to spare: evaluate here
            os.close(read_fd)
            os.close(write_fd)
            self.evaluate()
            return
        if pid == 0:
            self._child_evaluation(step, mark, read_fd, write_fd)  # does not return
        os.close(write_fd)
        self._pending = (pid, read_fd, step)
        self.run.logger.hold()  # metrics.jsonl in step order: the result's row goes first

    def _child_evaluation(
        self, step: int, mark: dict[str, Any], read_fd: int, write_fd: int
    ) -> None:
        os.close(read_fd)
        # SIGINT and SIGTERM are the parent's to handle, also when sent to the whole process
        # group (Ctrl-C, `timeout`, a cluster scheduler): the parent waits for this evaluation,
        # or ends it, before it writes its checkpoint
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            result = self._play_evaluation()
            message = ("ok", result, time.time())
            if result["eval/mean_return"] > self.best_eval and self.cfg.checkpoint.save_best:
                # best.pt as a foreground evaluation writes it, but before the parent has logged
                # the result: a run resumed from it logs the result first (see `fit`)
                self.last_eval = {**result, "step": step}
                self.best_eval = result["eval/mean_return"]
                self._last_eval_logged = False
                self.run.step = step
                self.run.save(checkpoint.BEST, {"eval": result}, mark=mark)
        except OSError as exc:  # e.g. a full disk while writing best.pt: the parent reports it
            message = ("oserror", (exc.errno, exc.strerror, exc.filename), None)
        except BaseException as exc:  # reported by the parent
            message = ("error", traceback.format_exc() or f"{type(exc).__name__}: {exc}", None)
        with contextlib.suppress(OSError), os.fdopen(write_fd, "wb") as pipe:
            pipe.write(pickle.dumps(message))
        os._exit(0)

    def _collect_evaluation(self, stopping: bool = False) -> None:
        """Wait for the background evaluation, if one is running, and record it.

        A child that ended without a result (killed, e.g. by the out-of-memory killer) costs
        that one evaluation, with a warning. When the run is stopping, nothing the child does
        stops the parent from writing its checkpoint: the wait is bounded (`STOP_WAIT_S`, then
        the child is ended) and a failed evaluation is only reported."""
        if self._pending is None:
            return
        pid, read_fd, step = self._pending
        self._pending = None
        try:
            if stopping and not select.select([read_fd], [], [], STOP_WAIT_S)[0]:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            with os.fdopen(read_fd, "rb") as pipe:
                data = pipe.read()
        finally:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        try:
            status, payload, finished = pickle.loads(data)
        except Exception:  # nothing or a part: the child ended before it could report
            status, payload, finished = "lost", None, None
        if status == "ok":
            self._record_evaluation(step, payload, finished, save_best=False)
            return
        self.run.logger.release()
        if status == "oserror" and not stopping:
            code, reason, filename = payload
            raise OSError(code, reason, filename)
        if status == "error" and not stopping:
            raise RuntimeError(f"The evaluation at step {step:,} failed:\n{payload}")
        why = "its process ended without a result" if status == "lost" else "it failed"
        self.run.console.info(
            f"Warning: the background evaluation at step {step:,} is lost ({why}); the next "
            "evaluation is unaffected."
        )

    def _finish_evaluation(self) -> None:
        """On the way out of `fit`, normal or not: a background evaluation still running is
        recorded if it succeeds (so the checkpoint written next holds it), and never outlives
        the run."""
        if self._pending is not None:
            pid = self._pending[0]
            try:
                self._collect_evaluation(stopping=True)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                raise
