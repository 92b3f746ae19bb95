"""Env stepping: the stepper that counts env steps and finished episodes, the collectors that
algorithms use (a rollout into a buffer, one transition, whole episodes of a population), and
the evaluation that plays episodes of a policy.

Vector envs run in gymnasium's next-step autoreset mode: the step that ends an episode returns
the episode's final observation, and the following step of that sub-env only resets it.
`EnvStepper` flags those reset steps as invalid transitions; algorithms drop them.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import gymnasium as gym
import numpy as np

from runner_core.errors import EnvironmentFault

if TYPE_CHECKING:
    from rl_runner.buffers import RolloutBuffer
    from rl_runner.normalize import RewardScaler
    from rl_runner.trainer import RLTrainer


def _vector_call(envs: gym.vector.VectorEnv, call: Any, what: str) -> Any:
    """`call()`, a vector env's reset or step, with the error it raises when a sub-env's
    observation does not fit the declared space turned into one that says so."""
    try:
        return call()
    except ValueError as exc:
        if "shape" not in str(exc) and "broadcast" not in str(exc):
            raise
        env_id = envs.spec.id if envs.spec is not None else type(envs.unwrapped).__name__
        raise EnvironmentFault(
            f"Environment {env_id!r} returned an observation from {what} that does not fit "
            f"its declared observation space {envs.single_observation_space} ({exc}). Make "
            "the two agree in the environment's code."
        ) from None


def check_finite_step(
    envs: gym.vector.VectorEnv, obs: np.ndarray, reward: np.ndarray, step: int | None
) -> None:
    """Raise EnvironmentFault if a sub-env returned a NaN or infinite observation or reward.
    The test is one float64 sum (finite float32 values cannot overflow it), a small share of an
    env step; the diagnosis runs only when it fails."""
    total = np.add.reduce(reward, axis=None, dtype=np.float64)
    if obs.dtype.kind == "f":
        total += np.add.reduce(obs, axis=None, dtype=np.float64)
    if math.isfinite(total):
        return
    env_id = envs.spec.id if envs.spec is not None else type(envs.unwrapped).__name__
    for name, values in (("observation", obs), ("reward", reward)):
        flat = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
        bad = ~np.isfinite(flat)
        if bad.any():
            sub = int(np.flatnonzero(bad.any(axis=1))[0])
            value = flat[sub][bad[sub]][0]
            raise EnvironmentFault(
                f"Environment {env_id!r} returned a non-finite {name} ({value}) "
                f"{'during an evaluation' if step is None else f'at env step {step:,}'} "
                f"(sub-env {sub}). The environment is at fault, not the learning "
                "settings: observations and rewards must be finite numbers."
            )


class EnvStepper:
    """Steps a vector env, counts env steps and records finished episodes."""

    def __init__(self, envs: gym.vector.VectorEnv, seed: int, step: int = 0) -> None:
        self.envs = envs
        self.num_envs = envs.num_envs
        self.obs, _ = _vector_call(envs, lambda: envs.reset(seed=seed), "reset()")
        self.step_count = step
        self.reset_next = np.zeros(self.num_envs, dtype=bool)  # the next step only resets
        self.ep_return = np.zeros(self.num_envs, dtype=np.float64)
        self.ep_length = np.zeros(self.num_envs, dtype=np.int64)
        self.finished_returns: list[float] = []  # since last drained
        self.finished_lengths: list[int] = []
        self.recent: deque[float] = deque(maxlen=20)
        self.episodes = 0

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, ...]:
        """Returns (next_obs, reward, terminated, truncated, valid); `valid` is False for the
        reset steps that follow an episode's end."""
        valid = ~self.reset_next
        envs = self.envs
        next_obs, reward, terminated, truncated, _ = _vector_call(
            envs, lambda: envs.step(actions), "step()"
        )
        self.step_count += self.num_envs
        check_finite_step(envs, next_obs, reward, self.step_count)
        done = terminated | truncated
        self.ep_return += reward
        self.ep_length += valid
        if done.any():
            for i in np.flatnonzero(done):
                self.finished_returns.append(float(self.ep_return[i]))
                self.finished_lengths.append(int(self.ep_length[i]))
                self.recent.append(float(self.ep_return[i]))
            self.episodes += int(done.sum())
            self.ep_return[done] = 0.0
            self.ep_length[done] = 0
        self.reset_next = done
        self.obs = next_obs
        return next_obs, reward, terminated, truncated, valid

    def drain_episodes(self) -> dict[str, float]:
        """Mean return and length of the episodes finished since the last call."""
        if not self.finished_returns:
            return {}
        n = len(self.finished_returns)  # a few per update: Python sums, not numpy's calls
        stats = {
            "charts/episodic_return": math.fsum(self.finished_returns) / n,
            "charts/episodic_length": math.fsum(self.finished_lengths) / n,
        }
        self.finished_returns.clear()
        self.finished_lengths.clear()
        return stats


class Transition(NamedTuple):
    """One vector-env step: a transition per sub-env (`valid` False for reset-only steps)."""

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    valid: np.ndarray


class RolloutCollector:
    """Fills a `RolloutBuffer` with (num_steps x num_envs) steps of a policy, through the
    trainer's stepper: observations as the algorithm encodes them (`observe`, updating its
    normalizer), rewards scaled if asked."""

    def __init__(
        self,
        t: RLTrainer,
        buf: RolloutBuffer,
        observe: Callable[..., np.ndarray],
        reward_scaler: RewardScaler | None = None,
    ) -> None:
        self.t, self.buf, self.observe, self.reward_scaler = t, buf, observe, reward_scaler

    def collect(
        self,
        policy: Callable[[np.ndarray], tuple[np.ndarray, ...]],
        values: Callable[[np.ndarray], np.ndarray],
    ) -> np.ndarray:
        """Play one rollout; returns V(s) of the observations after its last step."""
        t, buf, observe, scaler = self.t, self.buf, self.observe, self.reward_scaler
        obs = observe(t.obs, update=True)
        for i in range(buf.obs.shape[0]):
            actions, env_actions, buf.logprobs[i], buf.values[i] = policy(obs)
            buf.obs[i], buf.actions[i] = obs, actions
            next_obs, reward, terminated, truncated, valid = t.env_step(env_actions)
            np.logical_or(terminated, truncated, out=buf.dones[i])
            buf.rewards[i] = reward if scaler is None else scaler(reward, buf.dones[i])
            buf.terminated[i], buf.valid[i] = terminated, valid
            obs = observe(next_obs, update=True)
        return values(obs)


def play_episodes(
    envs: gym.vector.VectorEnv, policy: Callable[[np.ndarray], np.ndarray], seed: int
) -> tuple[np.ndarray, int]:
    """One episode per sub-env (sub-env i acting with whatever `policy` gives it: a population's
    candidate i), all at once. Returns the episodes' returns and the env steps played."""
    n = envs.num_envs
    obs, _ = envs.reset(seed=seed)
    returns = np.zeros(n)
    running = np.ones(n, dtype=bool)
    steps = 0
    while running.any():
        obs, reward, terminated, truncated, _ = envs.step(policy(obs))
        check_finite_step(envs, obs, reward, None)
        returns += reward * running
        steps += int(running.sum())
        running &= ~(terminated | truncated)
    return returns, steps


EVAL_EPISODE_LIMIT = 10_000  # steps; caps evaluation episodes of envs that register no limit


def evaluate(
    policy: Any,
    envs: gym.vector.VectorEnv,
    episodes: int,
    seed: int,
    max_episode_steps: int = EVAL_EPISODE_LIMIT,
    lengths: list[int] | None = None,
) -> np.ndarray:
    """Returns of `episodes` episodes of `policy(obs) -> actions`, spread evenly over the
    sub-envs (each sub-env plays a fixed number, so short episodes are not over-counted); their
    lengths are appended to `lengths` if given.

    An episode still running after `max_episode_steps` steps is cut there and counted with the
    return it has, so a policy that never ends an episode (possible on envs without a time
    limit) cannot make evaluation run forever."""
    n = envs.num_envs
    targets = np.array([(episodes + i) // n for i in range(n)])
    counts = np.zeros(n, dtype=np.int64)
    remaining = int(targets.sum())
    ep_return = np.zeros(n)
    ep_len = np.zeros(n, dtype=np.int64)
    returns: list[float] = []
    obs, _ = envs.reset(seed=seed)
    live = np.ones(n, dtype=bool)  # False for the reset step that follows an episode's end
    # the bookkeeping below runs a few whole-array operations per step (an env step of a small
    # env costs little more) and leaves per-episode work to the steps where an episode ends
    while remaining > 0:
        obs, reward, terminated, truncated, _ = envs.step(policy(obs))
        check_finite_step(envs, obs, reward, None)
        np.add(ep_return, reward, out=ep_return, where=live)
        np.add(ep_len, live, out=ep_len)
        done = ended = terminated | truncated
        cut = None  # episodes cut at the limit, once any gets that long
        if ep_len.max() >= max_episode_steps:
            cut = ~done & (ep_len >= max_episode_steps)
            ended = done | cut
        if ended.any():
            for i in np.flatnonzero(ended):
                if counts[i] < targets[i]:
                    returns.append(float(ep_return[i]))
                    if lengths is not None:
                        lengths.append(int(ep_len[i]))
                    counts[i] += 1
                    remaining -= 1
            ep_return[ended] = 0.0
            ep_len[ended] = 0
        np.logical_not(done, out=live)
        if cut is not None and cut.any():
            if isinstance(envs, gym.vector.SyncVectorEnv | gym.vector.AsyncVectorEnv):
                obs, _ = envs.reset(options={"reset_mask": cut})
            else:  # native vector envs reset all sub-envs: their unfinished episodes are dropped
                obs, _ = envs.reset()
                ep_return[:], ep_len[:], live[:] = 0.0, 0, True
    return np.asarray(returns)
