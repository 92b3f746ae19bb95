"""Convolutional network: a stack of Conv2d -> activation, flattened into an MLP head."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from runner_core.errors import ConfigError
from runner_core.networks.mlp import ACTIVATIONS, MLP
from runner_core.validation import Rule, in_range, int_list, one_of


class CNN(nn.Module):
    """Conv2d layers (`channels`, `kernels`, `strides`, `padding`) each followed by the
    activation, then an MLP head (`hidden`) to `out_features`. Takes channels-first images
    (C, H, W): the encoder turns uint8 (H, W, C) observations into those.

    conf/network/cnn.yaml is a small stack for 8x8 digits; conf/network/nature_cnn.yaml the
    Nature DQN layout (Mnih et al. 2015) for 84x84 frames."""

    rules = (
        int_list("channels"),
        int_list("kernels"),
        int_list("strides"),
        Rule(
            "padding",
            lambda v: isinstance(v, list) and all(isinstance(x, int) and x >= 0 for x in v),
            "a list of integers >= 0",
        ),
        int_list("hidden", allow_empty=True),
        one_of("activation", tuple(ACTIVATIONS)),
        in_range("dropout", 0.0, 1.0, hi_open=True),
    )

    def __init__(
        self,
        in_shape: Sequence[int],
        out_features: int,
        channels: Sequence[int] = (32, 64),
        kernels: Sequence[int] = (3, 3),
        strides: Sequence[int] = (1, 1),
        padding: Sequence[int] = (1, 1),
        hidden: Sequence[int] = (128,),
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if len(in_shape) != 3:
            raise ConfigError(
                f"network=cnn needs images (channels, height, width), but the input has shape "
                f"{tuple(in_shape)}. Use network=mlp for vector observations or features."
            )
        sizes = {len(channels), len(kernels), len(strides), len(padding)}
        if len(sizes) != 1:
            raise ConfigError(
                "Config keys 'network.channels', 'kernels', 'strides' and 'padding' must be "
                f"lists of the same length (got {list(channels)}, {list(kernels)}, "
                f"{list(strides)}, {list(padding)})."
            )
        layers: list[nn.Module] = []
        depth = int(in_shape[0])
        for c, k, s, p in zip(channels, kernels, strides, padding, strict=True):
            layers += [nn.Conv2d(depth, int(c), int(k), int(s), int(p)), ACTIVATIONS[activation]()]
            depth = int(c)
        self.features = nn.Sequential(*layers)
        try:
            with torch.no_grad():
                shape = self.features(torch.zeros(1, *in_shape)).shape[1:]
        except RuntimeError:  # a kernel larger than what reaches it
            shape = (0,)
        if 0 in shape:
            raise ConfigError(
                f"network=cnn's convolutions shrink the {tuple(in_shape)} input to nothing; use "
                "smaller kernels or strides, or padding."
            )
        self.head = MLP(tuple(shape), out_features, hidden, activation, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
