"""Environments: resolve a gymnasium id, read its spec, check its contract, build vector envs.

Vector envs run in gymnasium's next-step autoreset mode: the step that ends an episode returns the
episode's final observation (so truncated episodes can be bootstrapped from it), and the following
step of that sub-env only resets it (see `rl_runner.collectors`).
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from omegaconf import DictConfig, OmegaConf

from rl_runner import specs
from rl_runner.specs import EnvSpec
from runner_core.errors import ConfigError, EnvironmentFault


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


def env_spec(env_cfg: DictConfig) -> EnvSpec:
    """The env's facts, read from one instance of it, after checking that it keeps its own
    contract on a reset and a step (observations in its declared space, finite rewards)."""
    spec = resolve_id(env_cfg.id)
    env = _make(spec.id, lambda: gym.make(spec.id, **make_kwargs(env_cfg)))
    try:
        facts = specs.env_spec(
            env.observation_space, env.action_space, spec.id, env.spec.max_episode_steps,
            has_model=hasattr(env.unwrapped, "P"),
        )  # fmt: skip
        check_contract(env, spec.id)
        return facts
    finally:
        env.close()


def transition_model(env_cfg: DictConfig) -> dict[int, dict[int, list[tuple]]]:
    """The env's known transition model, `env.unwrapped.P` as gymnasium's toy-text envs expose
    it: P[state][action] = [(probability, next_state, reward, terminated), ...]."""
    spec = resolve_id(env_cfg.id)
    env = _make(spec.id, lambda: gym.make(spec.id, **make_kwargs(env_cfg)))
    try:
        model = getattr(env.unwrapped, "P", None)
        if model is None:
            raise ConfigError(f"Environment {spec.id!r} exposes no transition model (env.P).")
        return model
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


def make_kwargs(env_cfg: DictConfig) -> dict[str, Any]:
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
    kwargs = make_kwargs(env_cfg)
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
