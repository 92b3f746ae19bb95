"""Rollout and replay storage, preallocated once, plus the return/advantage maths."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from rl_runner.specs import SpaceSpec


def gae(
    rewards: np.ndarray,
    values: np.ndarray,
    next_value: np.ndarray,
    terminated: np.ndarray,
    dones: np.ndarray,
    gamma: float,
    lam: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Generalized advantage estimation (Schulman et al. 2016) over a (T, N) rollout.

    delta_t = r_t + gamma * V(s_{t+1}) * (1 - terminated_t) - V(s_t)
    A_t     = delta_t + gamma * lam * (1 - done_t) * A_{t+1}
    V(s_{t+1}) is values[t+1] (next_value after the last step). With next-step autoreset the
    observation after a done step is the episode's final observation, so a truncated episode is
    bootstrapped from its true final state and a terminated one is not bootstrapped at all.
    Returns (advantages, returns = advantages + values).
    """
    advantages = np.zeros_like(rewards)
    next_values = np.concatenate([values[1:], next_value[None]], axis=0)
    deltas = rewards + gamma * next_values * np.logical_not(terminated) - values
    decay = gamma * lam * np.logical_not(dones)
    carry = np.zeros_like(next_value)
    for t in reversed(range(len(rewards))):
        carry = deltas[t] + decay[t] * carry
        advantages[t] = carry
    return advantages, advantages + values


def discounted_returns(rewards: np.ndarray, dones: np.ndarray, gamma: float) -> np.ndarray:
    """G_t = r_t + gamma * (1 - done_t) * G_{t+1} along axis 0 (the reference for tests)."""
    out = np.zeros_like(rewards, dtype=np.float64)
    carry = np.zeros(rewards.shape[1:], dtype=np.float64)
    for t in reversed(range(len(rewards))):
        carry = rewards[t] + gamma * (1.0 - dones[t]) * carry
        out[t] = carry
    return out


class RolloutBuffer:
    """(T, N) numpy arrays for one on-policy rollout, shaped by the env's specs (observations
    as the env gives them, after normalization if any: float vectors, uint8 images, int64
    states; int64 or float actions), in host memory whatever the training device: the rollout
    loop fills them from numpy, and the update moves what it trains on to the device once."""

    def __init__(self, steps: int, num_envs: int, obs: SpaceSpec, act: SpaceSpec) -> None:
        shape = (steps, num_envs)
        self.obs = np.zeros((*shape, *obs.shape), dtype=obs.dtype)
        self.actions = np.zeros((*shape, *act.shape), dtype=act.dtype)
        self.logprobs = np.zeros(shape, dtype=np.float32)
        self.values = np.zeros(shape, dtype=np.float32)
        self.rewards = np.zeros(shape, dtype=np.float32)
        self.terminated = np.zeros(shape, dtype=bool)
        self.dones = np.zeros(shape, dtype=bool)
        self.valid = np.zeros(shape, dtype=bool)
        self.advantages = np.zeros(shape, dtype=np.float32)
        self.returns = np.zeros(shape, dtype=np.float32)

    def flat(self, name: str) -> np.ndarray:
        """An array with (time, env) flattened, keeping only real transitions (not the steps
        that only reset a sub-env)."""
        x = getattr(self, name)
        x = x.reshape(-1, *x.shape[2:])
        valid = self.valid.reshape(-1)
        return x if valid.all() else x[valid]


class ReplayBatch(NamedTuple):
    obs: Any  # numpy arrays from `ReplayBuffer.sample`; tensors after `to_tensors`
    actions: Any
    rewards: Any
    next_obs: Any
    terminated: Any

    def to_tensors(self, device: Any) -> ReplayBatch:
        import torch

        return ReplayBatch(*(torch.from_numpy(x).to(device) for x in self))


class ReplayBuffer:
    """A ring buffer of transitions in numpy arrays shaped by the specs (uint8 images stay
    uint8, continuous actions keep their shape); sampling draws uniform indices."""

    FIELDS = ("obs", "next_obs", "actions", "rewards", "terminated")

    def __init__(self, capacity: int, obs: SpaceSpec, act: SpaceSpec) -> None:
        self.capacity = capacity
        self.obs = np.zeros((capacity, *obs.shape), dtype=obs.dtype)
        self.next_obs = np.zeros((capacity, *obs.shape), dtype=obs.dtype)
        self.actions = np.zeros((capacity, *act.shape), dtype=act.dtype)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.terminated = np.zeros(capacity, dtype=np.float32)
        self.pos = 0
        self.size = 0

    def add(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
    ) -> None:
        """Add a batch of transitions (one per sub-env)."""
        n = len(rewards)
        idx = (self.pos + np.arange(n)) % self.capacity
        self.obs[idx] = obs
        self.next_obs[idx] = next_obs
        self.actions[idx] = actions
        self.rewards[idx] = rewards
        self.terminated[idx] = terminated
        self.pos = int((self.pos + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator) -> ReplayBatch:
        """Uniformly drawn stored transitions, as numpy arrays."""
        idx = rng.integers(0, self.size, size=batch_size)
        return ReplayBatch(
            self.obs[idx], self.actions[idx], self.rewards[idx], self.next_obs[idx],
            self.terminated[idx],
        )  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        n = self.size
        return {
            "pos": self.pos,
            "size": n,
            **{k: getattr(self, k)[:n].copy() for k in self.FIELDS},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        n = int(state["size"])
        if n > self.capacity:
            raise ValueError(f"the stored buffer holds {n} transitions, this one {self.capacity}")
        for k in self.FIELDS:
            getattr(self, k)[:n] = np.asarray(state[k])
        self.pos, self.size = int(state["pos"]), n
