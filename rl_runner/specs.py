"""Observation and action specs: the facts about an environment's spaces, read from the env once
(never from YAML). They drive everything shaped by the data: buffers (dtype and shape),
encoders (flatten, one-hot, image) and distribution heads (categorical, Gaussian, ...).

Kinds:
- observations: "vector" (a float Box of any shape but images), "image" (a uint8 Box of shape
  (H, W, C) or (H, W)), "discrete" (a Discrete state index);
- actions: "discrete" (Discrete(n)), "continuous" (a float Box with finite bounds).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gymnasium import spaces

from runner_core.errors import ConfigError


@dataclass(frozen=True)
class SpaceSpec:
    kind: str  # see the module docstring
    shape: tuple[int, ...]  # of one observation or action (() for discrete)
    dtype: np.dtype
    n: int | None = None  # number of states or actions (discrete)
    low: np.ndarray | None = None  # bounds (continuous actions)
    high: np.ndarray | None = None

    @property
    def flat_dim(self) -> int:
        """Features of one item once encoded as a vector (one-hot for discrete)."""
        return self.n if self.kind == "discrete" else int(np.prod(self.shape))


@dataclass(frozen=True)
class EnvSpec:
    """What the runner knows about an environment."""

    id: str
    obs: SpaceSpec
    act: SpaceSpec
    max_episode_steps: int | None
    has_model: bool = False  # exposes its transition model (`env.unwrapped.P`), for planning

    @property
    def obs_kind(self) -> str:
        return self.obs.kind

    @property
    def action_kind(self) -> str:
        return self.act.kind


def observation_spec(space: spaces.Space, env_id: str) -> SpaceSpec:
    if isinstance(space, spaces.Discrete):
        return SpaceSpec("discrete", (), np.dtype(np.int64), n=int(space.n))
    if isinstance(space, spaces.Box):
        shape = tuple(int(s) for s in space.shape)
        if space.dtype == np.uint8 and len(shape) in (2, 3):
            return SpaceSpec("image", shape, np.dtype(np.uint8))
        return SpaceSpec("vector", shape, np.dtype(np.float32))
    raise ConfigError(
        f"Environment {env_id!r} has a {type(space).__name__} observation space; the runner "
        "supports Box (vectors or uint8 images) and Discrete observations."
    )


def action_spec(space: spaces.Space, env_id: str) -> SpaceSpec:
    if isinstance(space, spaces.Discrete):
        return SpaceSpec("discrete", (), np.dtype(np.int64), n=int(space.n))
    if isinstance(space, spaces.Box) and np.all(np.isfinite(space.low) & np.isfinite(space.high)):
        return SpaceSpec(
            "continuous", tuple(int(s) for s in space.shape), np.dtype(np.float32),
            low=space.low.astype(np.float32), high=space.high.astype(np.float32),
        )  # fmt: skip
    kind = "unbounded Box" if isinstance(space, spaces.Box) else type(space).__name__
    return SpaceSpec(kind, (), np.dtype(np.float32))


def env_spec(
    obs_space: spaces.Space,
    act_space: spaces.Space,
    env_id: str,
    limit: int | None,
    has_model: bool = False,
) -> EnvSpec:
    return EnvSpec(
        env_id, observation_spec(obs_space, env_id), action_spec(act_space, env_id), limit,
        has_model,
    )  # fmt: skip
