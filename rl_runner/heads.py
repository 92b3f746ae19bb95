"""Action distributions ("heads"), chosen by the action spec.

A policy network outputs a head's parameters; the head turns them into actions and their
log-probabilities. Each head has two sides:
- acting, in numpy (`sample`, `mode`): rollouts and evaluations run on the host with numpy
  arrays and draw their noise from the algorithm's own seeded numpy generator, so both
  backends draw the same actions from the same outputs;
- learning, in torch (`log_prob`, `entropy`, `rsample`), differentiable.

| head | parameters | actions |
|---|---|---|
| `Categorical` | logits (B, n) | int64 indices |
| `DiagGaussian` | mean (B, d), state-independent log-std (d,) | mean + std * noise (*) |
| `SquashedGaussian` | mean and log-std (B, 2d) | tanh(mean + std * noise), scaled to the bounds |
| `Deterministic` | (B, d) | tanh(out), scaled to the bounds |

(*) clipped to the bounds only when sent to the env.

This module imports torch only inside the learning side, so the numpy backend can act without it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from rl_runner.specs import SpaceSpec

if TYPE_CHECKING:
    import torch

LOG_2PI = math.log(2.0 * math.pi)


# Reductions over a short last axis (a few actions) of many rows (a minibatch). numpy's
# reduction along a short contiguous axis runs its inner loop once per row (about 9 us for 249
# rows of 2 here); a loop over the columns runs one whole-column operation per column (under
# 1 us each), which wins from about 20 rows per column on. Up to SHORT_AXIS columns the loop adds
# them left to right, the order numpy's reduction uses below 8 elements, so both give the same
# bits (tested); other shapes go to the reduction.
SHORT_AXIS = 7
ROWS_PER_COLUMN = 20


def _by_columns(x: np.ndarray) -> bool:
    k = x.shape[-1]
    return 1 < k <= SHORT_AXIS and x.size >= ROWS_PER_COLUMN * k * k


def _reduce_rows(ufunc: np.ufunc, x: np.ndarray) -> np.ndarray:
    """`ufunc` (np.maximum, np.add) reduced over the last axis, kept as an axis of length 1."""
    if not _by_columns(x):
        return ufunc.reduce(x, axis=-1, keepdims=True)
    out = x[..., :1].copy()
    for k in range(1, x.shape[-1]):
        ufunc(out, x[..., k : k + 1], out=out)
    return out


def row_max(x: np.ndarray) -> np.ndarray:
    """max over the last axis, kept as an axis of length 1."""
    return _reduce_rows(np.maximum, x)


def row_sum(x: np.ndarray) -> np.ndarray:
    """sum over the last axis, kept as an axis of length 1 (the bits of np.add.reduce)."""
    return _reduce_rows(np.add, x)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log softmax over the last axis, shifted by the max for stability (numpy)."""
    shifted = logits - row_max(logits)
    return shifted - np.log(row_sum(np.exp(shifted)))


class Categorical:
    """pi(a|s) = softmax(logits)_a over `n` actions."""

    def __init__(self, spec: SpaceSpec) -> None:
        assert spec.n is not None
        self.n = spec.n
        self.out_features = spec.n

    # acting (numpy)
    def sample(self, logits: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """a ~ pi(.|s) by the Gumbel-max trick (argmax of log pi + Gumbel noise), and
        log pi(a|s)."""
        log_probs = log_softmax(logits)
        actions = (log_probs + rng.gumbel(size=log_probs.shape)).argmax(1)
        return actions, log_probs[np.arange(len(actions)), actions]

    def mode(self, logits: np.ndarray) -> np.ndarray:
        return logits.argmax(1)

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        return actions

    # learning (torch)
    def log_prob_entropy(
        self, logits: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        log_probs = torch.log_softmax(logits, dim=-1)
        entropy = -(log_probs.exp() * log_probs).sum(-1)
        return log_probs.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1), entropy


class DiagGaussian:
    """pi(a|s) = N(mean(s), diag(exp(log_std))^2), the log-std a parameter of its own (not a
    function of s): PPO and A2C on continuous actions. Actions are sampled unbounded; the env
    gets them clipped to its bounds (`to_env`), and the log-probabilities are of the unclipped
    ones."""

    def __init__(self, spec: SpaceSpec) -> None:
        self.dim = int(np.prod(spec.shape))
        self.shape = spec.shape
        self.out_features = self.dim
        self.low, self.high = spec.low, spec.high

    def sample(
        self, mean: np.ndarray, log_std: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        noise = rng.standard_normal(mean.shape).astype(np.float32)
        actions = mean + np.exp(log_std) * noise
        log_prob = -0.5 * np.square(noise).sum(1) - log_std.sum() - 0.5 * LOG_2PI * self.dim
        return actions.reshape(len(mean), *self.shape), log_prob.astype(np.float32)

    def mode(self, mean: np.ndarray) -> np.ndarray:
        return mean.reshape(len(mean), *self.shape)

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        return np.clip(actions, self.low, self.high)

    def log_prob_entropy(
        self, mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        actions = actions.reshape(mean.shape)
        z = (actions - mean) * (-log_std).exp()
        log_prob = -0.5 * z.square().sum(-1) - log_std.sum() - 0.5 * LOG_2PI * self.dim
        entropy = (0.5 + 0.5 * LOG_2PI + log_std).sum().expand(mean.shape[0])
        return log_prob, entropy


class _Bounded:
    """Actions in [low, high] as tanh(u) * scale + center."""

    def __init__(self, spec: SpaceSpec) -> None:
        assert spec.low is not None and spec.high is not None
        self.dim = int(np.prod(spec.shape))
        self.shape = spec.shape
        self.scale = ((spec.high - spec.low) / 2.0).reshape(-1).astype(np.float32)
        self.center = ((spec.high + spec.low) / 2.0).reshape(-1).astype(np.float32)

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        return actions

    def _tensors(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        return (
            torch.as_tensor(self.scale, device=like.device),
            torch.as_tensor(self.center, device=like.device),
        )


class SquashedGaussian(_Bounded):
    """a = tanh(u) * scale + center, u ~ N(mean(s), std(s)^2), with the log-std an output of
    the network, squashed into [LOG_STD_MIN, LOG_STD_MAX] (SAC: Haarnoja et al. 2018, whose
    appendix C gives log pi(a|s) = log N(u) - sum log(scale (1 - tanh(u)^2)))."""

    LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0

    def __init__(self, spec: SpaceSpec) -> None:
        super().__init__(spec)
        self.out_features = 2 * self.dim

    def _split_np(self, out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean, raw = out[:, : self.dim], out[:, self.dim :]
        lo, hi = self.LOG_STD_MIN, self.LOG_STD_MAX
        return mean, lo + 0.5 * (hi - lo) * (np.tanh(raw) + 1.0)

    def sample(self, out: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, None]:
        mean, log_std = self._split_np(out)
        u = mean + np.exp(log_std) * rng.standard_normal(mean.shape).astype(np.float32)
        actions = np.tanh(u) * self.scale + self.center
        return actions.reshape(len(out), *self.shape).astype(np.float32), None

    def mode(self, out: np.ndarray) -> np.ndarray:
        mean, _ = self._split_np(out)
        actions = np.tanh(mean) * self.scale + self.center
        return actions.reshape(len(out), *self.shape).astype(np.float32)

    def rsample(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterized sample (differentiable in the network's outputs) and its
        log-probability, in the env's action shape."""
        import torch

        mean, raw = out[:, : self.dim], out[:, self.dim :]
        lo, hi = self.LOG_STD_MIN, self.LOG_STD_MAX
        log_std = lo + 0.5 * (hi - lo) * (torch.tanh(raw) + 1.0)
        noise = torch.randn_like(mean)
        u = mean + log_std.exp() * noise
        squashed = torch.tanh(u)
        scale, center = self._tensors(out)
        log_prob = (-0.5 * noise.square() - log_std - 0.5 * LOG_2PI).sum(-1)
        log_prob = log_prob - torch.log(scale * (1.0 - squashed.square()) + 1e-6).sum(-1)
        actions = squashed * scale + center
        return actions.reshape(len(out), *self.shape), log_prob


class Deterministic(_Bounded):
    """a = tanh(out) * scale + center (DDPG, TD3: exploration noise is the algorithm's)."""

    def __init__(self, spec: SpaceSpec) -> None:
        super().__init__(spec)
        self.out_features = self.dim

    def mode(self, out: np.ndarray) -> np.ndarray:
        return (np.tanh(out) * self.scale + self.center).reshape(len(out), *self.shape)

    def actions(self, out: torch.Tensor) -> torch.Tensor:
        import torch

        scale, center = self._tensors(out)
        return (torch.tanh(out) * scale + center).reshape(len(out), *self.shape)


def for_actions(spec: SpaceSpec, continuous: type = DiagGaussian) -> Any:
    """The head for an action spec: `Categorical` for discrete actions, else `continuous`."""
    return Categorical(spec) if spec.kind == "discrete" else continuous(spec)
