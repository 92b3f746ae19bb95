"""Multi-layer perceptron."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from runner_core.validation import boolean, in_range, int_list, one_of

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
    "swish": nn.SiLU,
}


class MLP(nn.Sequential):
    """Linear -> [BatchNorm] -> activation -> [Dropout] per hidden size, then a linear output
    layer. The input is flattened (all but the batch dimension), so images work too."""

    # its settings' rules (keys relative to the network node, see `runner_core.networks.build`)
    rules = (
        int_list("hidden", allow_empty=True),
        one_of("activation", tuple(ACTIVATIONS)),
        in_range("dropout", 0.0, 1.0, hi_open=True),
        boolean("batchnorm"),
    )

    def __init__(
        self,
        in_shape: Sequence[int],
        out_features: int,
        hidden: Sequence[int] = (64, 64),
        activation: str = "tanh",
        dropout: float = 0.0,
        batchnorm: bool = False,
    ) -> None:
        layers: list[nn.Module] = [nn.Flatten()] if len(in_shape) != 1 else []
        width = math.prod(in_shape)
        for size in hidden:
            layers.append(nn.Linear(width, int(size)))
            if batchnorm:
                layers.append(nn.BatchNorm1d(int(size)))
            layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(float(dropout)))
            width = int(size)
        layers.append(nn.Linear(width, out_features))
        super().__init__(*layers)
        self.plain = not batchnorm and not dropout and len(in_shape) == 1
        self.activation = activation
        self.hidden = [int(h) for h in hidden]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)
