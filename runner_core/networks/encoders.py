"""Encoders: observations of each kind as the tensors a network body takes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class OneHot(nn.Module):
    """Discrete states (int64 indices) -> one-hot float vectors."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.one_hot(x.long().reshape(-1), self.n).float()


class ImageToFloat(nn.Module):
    """uint8 images (..., H, W, C) or (..., H, W) -> float (..., C, H, W) in [0, 1]."""

    def __init__(self, channels_last: bool) -> None:
        super().__init__()
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().div_(255.0)
        return x.movedim(-1, -3) if self.channels_last else x.unsqueeze(-3)


class ToFloat(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float()


def encoder_for(
    kind: str, shape: tuple[int, ...], n_states: int | None = None
) -> tuple[nn.Module, tuple[int, ...]]:
    """The encoder for observations of `kind` and `shape`, and the shape it outputs."""
    if kind == "discrete":
        assert n_states is not None
        return OneHot(n_states), (n_states,)
    if kind == "image":
        if len(shape) == 3:
            h, w, c = shape
            return ImageToFloat(channels_last=True), (c, h, w)
        return ImageToFloat(channels_last=False), (1, *shape)
    return ToFloat(), tuple(shape)


class Network(nn.Module):
    """An encoder, then a body: what every role is built as."""

    def __init__(self, encoder: nn.Module, body: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.encoder(x))
