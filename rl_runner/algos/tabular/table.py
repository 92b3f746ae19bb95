"""A value table (V[state] or Q[state, action]) in numpy, and greedy action choice over it."""

from __future__ import annotations

from typing import Any

import numpy as np


class Table:
    """A float64 array with state_dict()/load_state_dict(), so checkpoints, resume and
    init_from carry it like a network."""

    def __init__(self, shape: tuple[int, ...], initial: float = 0.0) -> None:
        self.values = np.full(shape, initial, dtype=np.float64)

    def state_dict(self) -> dict[str, Any]:
        return {"values": self.values.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # a checkpoint read back by torch holds a tensor: np.asarray takes either
        values = np.asarray(state["values"], dtype=np.float64)
        if values.shape != self.values.shape:
            raise ValueError(
                f"the saved table has shape {values.shape}, this env needs {self.values.shape}"
            )
        self.values[...] = values


def greedy(q: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """argmax over the last axis of `q` (rows of action values). Ties are broken uniformly at
    random with draws from `rng` (one per entry), or go to the lowest action without one."""
    if rng is None:
        return q.argmax(-1)
    best = q == q.max(-1, keepdims=True)
    return np.where(best, rng.random(q.shape), -1.0).argmax(-1)
