"""Initial weights drawn from a numpy generator, without torch.

RL algorithms draw their networks' initial weights from their own seeded numpy generator, layer
by layer (weight, then bias) in the network's order: the torch networks through
`runner_core.networks.init`, the numpy backend (`rl_runner.fast`) directly. Both draw the same
numbers in the same order, so the same seed starts both from the same weights."""

from __future__ import annotations

import math

import numpy as np


def orthogonal(rng: np.random.Generator, shape: tuple[int, ...], gain: float) -> np.ndarray:
    """A matrix with orthonormal rows or columns (whichever are fewer) times `gain` (Saxe et al.
    2014), drawn as `torch.nn.init.orthogonal_` draws it: Q of the QR decomposition of a standard
    normal matrix, its columns' signs fixed by R's diagonal so Q is uniform. Tensors of more
    than two dimensions (convolutions) are treated as (out, fan_in) matrices."""
    rows, cols = shape[0], math.prod(shape[1:])
    a = rng.standard_normal((rows, cols) if rows >= cols else (cols, rows))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    return (gain * (q if rows >= cols else q.T)).reshape(shape).astype(np.float32)


def uniform_fan_in(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): torch's default for Linear and Conv2d layers."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return rng.uniform(-bound, bound, size=shape).astype(np.float32)
