"""Rollout and replay storage, preallocated once, plus the return/advantage maths."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_value: torch.Tensor,
    terminated: torch.Tensor,
    dones: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation (Schulman et al. 2016) over a (T, N) rollout.

    delta_t = r_t + gamma * V(s_{t+1}) * (1 - terminated_t) - V(s_t)
    A_t     = delta_t + gamma * lam * (1 - done_t) * A_{t+1}
    V(s_{t+1}) is values[t+1] (next_value after the last step). With next-step autoreset the
    observation after a done step is the episode's final observation, so a truncated episode is
    bootstrapped from its true final state and a terminated one is not bootstrapped at all.
    Returns (advantages, returns = advantages + values).
    """
    steps = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    next_values = torch.cat([values[1:], next_value.unsqueeze(0)], dim=0)
    not_terminated = 1.0 - terminated.float()
    not_done = 1.0 - dones.float()
    deltas = rewards + gamma * next_values * not_terminated - values
    carry = torch.zeros_like(next_value)
    for t in reversed(range(steps)):
        carry = deltas[t] + gamma * lam * not_done[t] * carry
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
    """(T, N) tensors for one on-policy rollout."""

    def __init__(self, steps: int, num_envs: int, obs_dim: int, device: torch.device) -> None:
        shape = (steps, num_envs)
        self.obs = torch.zeros((*shape, obs_dim), device=device)
        self.actions = torch.zeros(shape, dtype=torch.long, device=device)
        self.logprobs = torch.zeros(shape, device=device)
        self.values = torch.zeros(shape, device=device)
        self.rewards = torch.zeros(shape, device=device)
        self.terminated = torch.zeros(shape, dtype=torch.bool, device=device)
        self.dones = torch.zeros(shape, dtype=torch.bool, device=device)
        self.valid = torch.zeros(shape, dtype=torch.bool, device=device)
        self.advantages = torch.zeros(shape, device=device)
        self.returns = torch.zeros(shape, device=device)


class ReplayBatch(NamedTuple):
    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor


class ReplayBuffer:
    """A ring buffer of transitions in numpy arrays; sampling draws uniform indices."""

    def __init__(
        self, capacity: int, obs_shape: tuple[int, ...], obs_dtype: Any, device: torch.device
    ) -> None:
        self.capacity = capacity
        self.device = device
        self.obs = np.zeros((capacity, *obs_shape), dtype=obs_dtype)
        self.next_obs = np.zeros((capacity, *obs_shape), dtype=obs_dtype)
        self.actions = np.zeros(capacity, dtype=np.int64)
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
        n = len(actions)
        idx = (self.pos + np.arange(n)) % self.capacity
        self.obs[idx] = obs
        self.next_obs[idx] = next_obs
        self.actions[idx] = actions
        self.rewards[idx] = rewards
        self.terminated[idx] = terminated
        self.pos = int((self.pos + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator) -> ReplayBatch:
        idx = rng.integers(0, self.size, size=batch_size)

        def t(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(a[idx]).to(self.device)

        return ReplayBatch(
            t(self.obs), t(self.actions), t(self.rewards), t(self.next_obs), t(self.terminated)
        )

    def state_dict(self) -> dict[str, Any]:
        n = self.size
        return {
            "pos": self.pos,
            "size": n,
            **{
                k: torch.from_numpy(getattr(self, k)[:n].copy())
                for k in ("obs", "next_obs", "actions", "rewards", "terminated")
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        n = int(state["size"])
        for k in ("obs", "next_obs", "actions", "rewards", "terminated"):
            getattr(self, k)[:n] = state[k].numpy()
        self.pos, self.size = int(state["pos"]), n
