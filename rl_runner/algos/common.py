"""Pieces several RL algorithms share: schedules, target networks (hard copies and Polyak
averaging), gradient steps."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def linear(start: float, end: float, fraction: float) -> float:
    """From `start` at fraction 0 to `end` at fraction 1 (and `end` after), for schedules of
    learning rates, clip ranges and exploration rates; `fraction` is clamped to [0, 1]."""
    fraction = min(max(fraction, 0.0), 1.0)
    return start + fraction * (end - start)


def polyak_update(target: Any, source: Any, tau: float) -> None:
    """theta_target <- tau theta + (1 - tau) theta_target for every parameter (and buffer) of two
    torch modules of the same layout; tau = 1 is a hard copy (Lillicrap et al. 2016)."""
    import torch

    with torch.no_grad():
        pairs = zip(target.state_dict().values(), source.state_dict().values(), strict=True)
        for t, s in pairs:
            if not t.is_floating_point() or tau >= 1.0:
                t.copy_(s)
            else:
                t.lerp_(s, tau)


def frozen_copy(module: Any) -> Any:
    """A target network: a deep copy of `module` that takes no gradients."""
    import copy

    target = copy.deepcopy(module)
    target.requires_grad_(False)
    return target


def gradient_step(
    optimizer: Any, loss: Any, parameters: Iterable[Any], max_grad_norm: float | None
) -> float:
    """zero_grad, backward, clip the global gradient norm (if asked), step. Returns the norm
    before clipping (0.0 when not clipped)."""
    import torch

    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = 0.0
    if max_grad_norm is not None:
        norm = float(torch.nn.utils.clip_grad_norm_(list(parameters), max_grad_norm))
    optimizer.step()
    return norm


def set_lr(optimizer: Any, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
