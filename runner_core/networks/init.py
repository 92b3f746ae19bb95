"""Initialisation of torch modules with weights drawn from a numpy generator (`runner_core.draws`:
the numpy backend draws the same numbers for its own arrays)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from runner_core.draws import orthogonal, uniform_fan_in


def weight_layers(module: nn.Module) -> Iterator[nn.Linear | nn.Conv2d]:
    """The Linear and Conv2d layers of `module`, in order."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear | nn.Conv2d):
            yield layer


@torch.no_grad()
def init_orthogonal(
    module: nn.Module, rng: np.random.Generator, hidden_gain: float, out_gain: float
) -> None:
    """Orthogonal weights (gain `hidden_gain`, `out_gain` for the last layer) and zero biases:
    the PPO / A2C convention (Engstrom et al. 2020, "Implementation Matters")."""
    layers = list(weight_layers(module))
    for i, layer in enumerate(layers):
        gain = out_gain if i == len(layers) - 1 else hidden_gain
        layer.weight.copy_(torch.from_numpy(orthogonal(rng, tuple(layer.weight.shape), gain)))
        if layer.bias is not None:
            layer.bias.zero_()


@torch.no_grad()
def init_default(module: nn.Module, rng: np.random.Generator) -> None:
    """torch's default initialisation of Linear and Conv2d layers, drawn from `rng`."""
    for layer in weight_layers(module):
        fan_in = math.prod(layer.weight.shape[1:])
        layer.weight.copy_(torch.from_numpy(uniform_fan_in(rng, tuple(layer.weight.shape), fan_in)))
        if layer.bias is not None:
            layer.bias.copy_(torch.from_numpy(uniform_fan_in(rng, tuple(layer.bias.shape), fan_in)))
