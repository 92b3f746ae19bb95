"""The RL trainer: builds envs and the algorithm (`prepare`), then drives the cadence around the
algorithm's own loop: env steps, episode statistics, losses, evaluation, checkpoints, progress
and stop requests. Algorithms call `env_step`, `after_update` and `tick`; nothing else."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from rl_runner.algos.base import Algorithm
from rl_runner.envs import (
    EnvInfo,
    EnvStepper,
    env_info,
    env_rng_states,
    evaluate,
    make_vec_env,
    set_env_rng_states,
)
from runner_core import checkpoint
from runner_core.run import Run
from runner_core.validation import RL_RULES, algo_class, check

EVAL_SEED_OFFSET = 1_000_003  # evaluation envs never share seeds with training envs


def prepare(cfg: DictConfig, device: torch.device) -> RLTrainer:
    check(cfg, RL_RULES)
    info = env_info(cfg.env)
    cls = algo_class(cfg)
    cls.check(cfg, info)
    envs = make_vec_env(cfg.env, cfg.env.num_envs)
    eval_envs = make_vec_env(cfg.env, min(cfg.eval.episodes, 32))
    algo = cls(cfg, info, device, cfg.seed)
    return RLTrainer(cfg, info, algo, envs, eval_envs)


class RLTrainer:
    unit = "steps"
    objective_name = "eval/mean_return"

    def __init__(
        self, cfg: DictConfig, info: EnvInfo, algo: Algorithm, envs: Any, eval_envs: Any
    ) -> None:
        self.cfg, self.info, self.algo = cfg, info, algo
        self.envs, self.eval_envs = envs, eval_envs
        self.total = int(cfg.algo.total_steps)
        self.num_envs = envs.num_envs
        self.best_eval = -np.inf
        self.last_eval: dict[str, float] = {}
        self.episodes = 0
        self.solved_at: int | None = None  # step of the evaluation that reached eval.stop_at_return
        self.solved_time: float | None = None  # and when it finished (Unix time)
        self._env_rng: list[dict[str, Any]] | None = None
        self.stepper: EnvStepper | None = None
        # wall time of the runner's own work during training (logging, console, periodic
        # evaluation and checkpoints): what `after_update` and `tick` spend
        self.overhead_s = 0.0

    # Session protocol ---------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {
            "env_id": self.info.id,
            "algo": self.cfg.algo.name,
            "episodes": self.episodes,
            "runner_overhead_s": round(self.overhead_s, 6),  # short runs: well under 1 ms
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "algo": self.algo.state_dict(),
            "best_eval": float(self.best_eval),
            "last_eval": dict(self.last_eval),  # a resumed finished run does not evaluate again
            "solved_at": self.solved_at,
            "solved_time": self.solved_time,
            "episodes": self.stepper.episodes if self.stepper else self.episodes,
            "env_rng": env_rng_states(self.envs),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.algo.load_state_dict(state["algo"])
        self.best_eval = float(state["best_eval"])
        self.last_eval = {k: float(v) for k, v in state.get("last_eval", {}).items()}
        self.episodes = int(state["episodes"])
        self.solved_at = state.get("solved_at")
        self.solved_time = state.get("solved_time")
        self._env_rng = state.get("env_rng")

    def fit(self, run: Run) -> dict[str, float]:
        self.run = run
        cfg = self.cfg
        # a resumed run restarts its episodes (fresh resets) and then restores the env RNGs
        self.stepper = EnvStepper(self.envs, cfg.seed + run.step, run.step)
        self.stepper.episodes = self.episodes
        if self._env_rng:
            set_env_rng_states(self.envs, self._env_rng)
        self._eval_due = run.every(cfg.eval.every_steps, run.step)
        self._ckpt_due = run.every(cfg.checkpoint.every_steps, run.step)
        self._start_step, self._start_time = run.step, time.time()
        self._log_every = cfg.logger.log_every_updates
        run.console.start(self.total, self.unit, run.step)
        try:
            self.algo.learn(self)
            final = self.last_eval if self.last_eval.get("step") == self.step else self.evaluate()
        finally:
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
        """The budget is spent, or an evaluation reached `eval.stop_at_return`."""
        return self.step >= self.total or self.solved_at is not None

    @property
    def step(self) -> int:
        return self.stepper.step_count

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
            metrics = {k if "/" in k else f"losses/{k}": v for k, v in stats.items()}
            metrics["charts/sps"] = (step - self._start_step) / max(
                time.time() - self._start_time, 1e-9
            )
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
        self.run.console.update(self.step, f"return {math.fsum(recent) / len(recent):.1f}")
        return stepper.drain_episodes()

    def _cadence(self) -> None:
        step = self.step
        self.run.log(step, self._drain_episodes())
        # at the end of the budget the final evaluation and checkpoints in `fit` take over
        if self._eval_due(step) and step < self.total:
            self.evaluate()
        if self._ckpt_due(step) and not self.done:
            self.run.step = step
            self.run.save(checkpoint.LATEST)
        self.run.poll(step)

    def evaluate(self) -> dict[str, float]:
        cfg = self.cfg
        seed = cfg.seed + EVAL_SEED_OFFSET
        policy = self.algo.evaluation_policy(cfg.eval.deterministic, np.random.default_rng(seed))
        returns = evaluate(policy, self.eval_envs, cfg.eval.episodes, seed)
        step = self.step
        result = {
            "eval/mean_return": float(returns.mean()),
            "eval/std_return": float(returns.std()),
        }
        self.run.log(step, result)
        self.last_eval = {**result, "step": step}
        target = cfg.eval.stop_at_return
        if target is not None and self.solved_at is None and result["eval/mean_return"] >= target:
            self.solved_at, self.solved_time = step, time.time()
        if result["eval/mean_return"] > self.best_eval:
            self.best_eval = result["eval/mean_return"]
            if cfg.checkpoint.save_best:
                self.run.step = step
                self.run.save(checkpoint.BEST, {"eval": result})
        self.run.console.update(step, f"eval {result['eval/mean_return']:.1f}")
        return result
