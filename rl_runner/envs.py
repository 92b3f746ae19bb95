"""Environments: resolve a gymnasium id, build vector envs, step them and track episodes.

Vector envs run in gymnasium's next-step autoreset mode: the step that ends an episode returns the
episode's final observation (so truncated episodes can be bootstrapped from it), and the following
step of that sub-env only resets it. `EnvStepper` flags those reset steps as invalid transitions;
algorithms drop them.
"""

from __future__ import annotations

import difflib
import importlib
import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from omegaconf import DictConfig, OmegaConf

from runner_core.errors import ConfigError, EnvironmentFault


@dataclass(frozen=True)
class EnvInfo:
    """Facts about an environment, read from the env itself (never from YAML)."""

    id: str
    obs_shape: tuple[int, ...]
    obs_discrete: int | None  # number of states when observations are Discrete (one-hot encoded)
    action_kind: str  # "discrete" | "continuous" | the space's class name
    n_actions: int | None
    action_shape: tuple[int, ...]
    action_low: np.ndarray | None
    action_high: np.ndarray | None
    max_episode_steps: int | None

    @property
    def obs_dim(self) -> int:
        return self.obs_discrete if self.obs_discrete is not None else int(np.prod(self.obs_shape))


def resolve_id(env_id: str) -> gym.envs.registration.EnvSpec:
    """The registered spec of `id` or `module:id` (the module is imported to register it)."""
    if ":" in env_id:
        module, _, env_id = env_id.partition(":")
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(
                f"Config key 'env.id' names the module {module!r}, which cannot be imported "
                f"({exc}). Use env.id=<module>:<EnvId> with a module on PYTHONPATH that registers "
                "the environment."
            ) from None
    try:
        return gym.spec(env_id)
    except gym.error.Error as exc:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"Config key 'env.id' is {env_id!r}, which is not a registered gymnasium environment "
            f"({str(exc).strip()}).{hint} Pick an env option (env=cartpole, acrobot, ...) or any "
            "registered id with env=gym env.id=<Id>."
        ) from None


# gymnasium's env families that need an optional dependency -> the extra of ours that brings it
EXTRAS = {"gymnasium.envs.box2d": "box2d", "gymnasium.envs.mujoco": "mujoco"}


def _make(env_id: str, make: Any) -> Any:
    """`make()` (gym.make or gym.make_vec of `env_id`), with a missing optional dependency
    turned into a ConfigError that names what to install."""
    try:
        return make()
    except (gym.error.DependencyNotInstalled, ImportError) as exc:
        entry = str(gym.spec(env_id).entry_point)
        extra = next((x for prefix, x in EXTRAS.items() if entry.startswith(prefix)), None)
        install = (
            f'Install it with: .venv/bin/pip install -e ".[{extra}]" (this project\'s {extra} '
            "extra), then run again."
            if extra
            else "Install the package it names, then run again."
        )
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"Environment {env_id!r} needs an optional dependency that is not installed "
            f"({reason}). {install}"
        ) from None


def env_info(env_cfg: DictConfig) -> EnvInfo:
    """The env's facts, read from one instance of it, after checking that it keeps its own
    contract on a reset and a step (observations in its declared space, finite rewards)."""
    spec = resolve_id(env_cfg.id)
    env = _make(spec.id, lambda: gym.make(spec.id, **_make_kwargs(env_cfg)))
    try:
        info = describe(
            env.observation_space, env.action_space, spec.id, env.spec.max_episode_steps
        )
        check_contract(env, spec.id)
        return info
    finally:
        env.close()


def check_contract(env: gym.Env, env_id: str) -> None:
    """One reset and one step (a sampled action): observations must fit the declared space and
    values be finite. A custom env that breaks this would otherwise fail deep inside the vector
    env or the learning maths."""
    obs, _ = env.reset(seed=0)
    _check_observation(env.observation_space, obs, env_id, "reset()")
    env.action_space.seed(0)
    obs, reward, *_ = env.step(env.action_space.sample())
    _check_observation(env.observation_space, obs, env_id, "step()")
    if not np.isfinite(reward):
        raise EnvironmentFault(
            f"Environment {env_id!r} returned the reward {reward} from step(): rewards must be "
            "finite numbers. The environment is at fault, not the learning settings."
        )


def _check_observation(space: spaces.Space, obs: Any, env_id: str, where: str) -> None:
    if isinstance(space, spaces.Box):
        shape = np.shape(obs)
        if shape != space.shape:
            raise EnvironmentFault(
                f"Environment {env_id!r} declares observations of shape {space.shape} (its "
                f"observation_space), but {where} returned one of shape {shape}. Make the two "
                "agree in the environment's code."
            )
        values = np.asarray(obs)
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            raise EnvironmentFault(
                f"Environment {env_id!r} returned a non-finite observation from {where} "
                f"({values.reshape(-1)[~np.isfinite(values.reshape(-1))][0]}): observations "
                "must be finite numbers. The environment is at fault, not the learning settings."
            )
    elif isinstance(space, spaces.Discrete) and not space.contains(np.int64(obs)):
        raise EnvironmentFault(
            f"Environment {env_id!r} declares {space} observations, but {where} returned "
            f"{obs!r}. Make the two agree in the environment's code."
        )


def describe(
    obs_space: spaces.Space, act_space: spaces.Space, env_id: str, limit: int | None
) -> EnvInfo:
    if isinstance(obs_space, spaces.Discrete):
        obs_shape, obs_discrete = (), int(obs_space.n)
    elif isinstance(obs_space, spaces.Box):
        obs_shape, obs_discrete = tuple(obs_space.shape), None
    else:
        raise ConfigError(
            f"Environment {env_id!r} has a {type(obs_space).__name__} observation space; the "
            "runner supports Box and Discrete observations."
        )
    if isinstance(act_space, spaces.Discrete):
        return EnvInfo(
            env_id, obs_shape, obs_discrete, "discrete", int(act_space.n), (), None, None, limit
        )
    if isinstance(act_space, spaces.Box):
        return EnvInfo(
            env_id, obs_shape, obs_discrete, "continuous", None, tuple(act_space.shape),
            act_space.low.copy(), act_space.high.copy(), limit,
        )  # fmt: skip
    return EnvInfo(
        env_id, obs_shape, obs_discrete, type(act_space).__name__, None, (), None, None, limit
    )


def _make_kwargs(env_cfg: DictConfig) -> dict[str, Any]:
    kwargs = OmegaConf.to_container(env_cfg.kwargs, resolve=True) or {}
    assert isinstance(kwargs, dict)
    if env_cfg.max_episode_steps is not None:
        kwargs["max_episode_steps"] = int(env_cfg.max_episode_steps)
    return kwargs


def make_vec_env(env_cfg: DictConfig, num_envs: int) -> gym.vector.VectorEnv:
    """A vector env; `auto` takes the env's native vector entry point when it has one."""
    spec = resolve_id(env_cfg.id)
    mode = env_cfg.vectorization
    if mode == "auto":
        mode = "vector_entry_point" if spec.vector_entry_point is not None else "sync"
    if mode == "vector_entry_point" and spec.vector_entry_point is None:
        raise ConfigError(
            f"Config key 'env.vectorization' is 'vector_entry_point', but {spec.id!r} has no "
            "native vector implementation; use auto, sync or async."
        )
    kwargs = _make_kwargs(env_cfg)
    try:
        envs = _make(
            spec.id,
            lambda: gym.make_vec(spec.id, num_envs=num_envs, vectorization_mode=mode, **kwargs),
        )
    except TypeError as exc:
        raise ConfigError(
            f"Environment {spec.id!r} rejected its arguments (env.kwargs / env.max_episode_steps): "
            f"{exc}."
        ) from None
    autoreset = envs.metadata.get("autoreset_mode")
    if autoreset is not None and autoreset != gym.vector.AutoresetMode.NEXT_STEP:
        raise ConfigError(
            f"Environment {spec.id!r} uses {autoreset}; the runner needs next-step autoreset."
        )
    return envs


def env_rng_states(envs: gym.vector.VectorEnv) -> list[dict[str, Any]]:
    """Bit-generator states of the env RNGs where reachable (native and sync vector envs)."""
    subs = getattr(envs, "envs", None)
    owners = [e.unwrapped for e in subs] if subs is not None else [envs.unwrapped]
    states = []
    for owner in owners:
        rng = getattr(owner, "_np_random", None)
        states.append(rng.bit_generator.state if rng is not None else {})
    return states


def set_env_rng_states(envs: gym.vector.VectorEnv, states: list[dict[str, Any]]) -> None:
    subs = getattr(envs, "envs", None)
    owners = [e.unwrapped for e in subs] if subs is not None else [envs.unwrapped]
    if len(owners) != len(states):
        return
    for owner, state in zip(owners, states, strict=True):
        rng = getattr(owner, "_np_random", None)
        if rng is not None and state:
            rng.bit_generator.state = state


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
    The test is one float64 sum (finite float32 values cannot overflow it), ~1 us a step; the
    diagnosis runs only when it fails."""
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


EVAL_EPISODE_LIMIT = 10_000  # steps; caps evaluation episodes of envs that register no limit


def evaluate(
    policy: Any,
    envs: gym.vector.VectorEnv,
    episodes: int,
    seed: int,
    max_episode_steps: int = EVAL_EPISODE_LIMIT,
) -> np.ndarray:
    """Returns of `episodes` episodes of `policy(obs) -> actions`, spread evenly over the
    sub-envs (each sub-env plays a fixed number, so short episodes are not over-counted).

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
    # one step of 20 CartPoles costs ~90 us, so the bookkeeping below runs a few whole-array
    # operations per step and leaves per-episode work to the steps where an episode ends
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
