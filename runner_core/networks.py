"""Network builders shared by the RL and DL runners. Sizes come from the env or data at run time;
the `network` config group only says the shape of the hidden part."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
    "swish": nn.SiLU,
}


# stateless activations as plain functions: the MLP's forward calls these directly
_ACTIVATION_FUNCTIONS = {
    nn.ReLU: torch.relu,
    nn.Tanh: torch.tanh,
    nn.Sigmoid: torch.sigmoid,
    nn.SiLU: F.silu,
}


class MLP(nn.Sequential):
    """An `nn.Sequential` of Linear / activation / BatchNorm / Dropout layers whose forward calls
    the linear and activation functions directly instead of each sub-module's `__call__`.

    The layers, parameters, state dict and printout are those of the plain Sequential; only the
    per-layer module dispatch (hooks, a Python frame per layer) is skipped, which is a fifth of a
    small RL network's forward on the CPU. Layers with state or modes (BatchNorm, Dropout,
    LeakyReLU's slope) are still called as modules."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self:
            kind = type(layer)
            if kind is nn.Linear:
                x = F.linear(x, layer.weight, layer.bias)
            elif kind in _ACTIVATION_FUNCTIONS:
                x = _ACTIVATION_FUNCTIONS[kind](x)
            else:
                x = layer(x)
        return x


def mlp(
    in_features: int,
    out_features: int,
    hidden: Sequence[int],
    activation: str = "relu",
    dropout: float = 0.0,
    batchnorm: bool = False,
    out_gain: float | None = None,
    hidden_gain: float | None = None,
) -> MLP:
    """Linear -> [BatchNorm] -> activation -> [Dropout] per hidden size, then a linear head.

    With `hidden_gain`/`out_gain` the linear layers get orthogonal weights with that gain and zero
    biases (the PPO convention); otherwise torch's default initialisation is kept.
    """
    layers: list[nn.Module] = []
    width = in_features
    for size in hidden:
        linear = nn.Linear(width, size)
        if hidden_gain is not None:
            _orthogonal(linear, hidden_gain)
        layers.append(linear)
        if batchnorm:
            layers.append(nn.BatchNorm1d(size))
        layers.append(ACTIVATIONS[activation]())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = size
    head = nn.Linear(width, out_features)
    if out_gain is not None:
        _orthogonal(head, out_gain)
    layers.append(head)
    return MLP(*layers)


def _orthogonal(layer: nn.Linear, gain: float) -> None:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)


def build_network(cfg, in_features: int, out_features: int, **init) -> nn.Module:
    """The network described by a `network` config node."""
    if cfg.type == "mlp":
        return mlp(
            in_features,
            out_features,
            list(cfg.hidden),
            cfg.activation,
            float(cfg.dropout),
            bool(cfg.batchnorm),
            **init,
        )
    raise ValueError(f"unknown network type {cfg.type!r}")  # validated before


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def adam(params, lr: float, device: torch.device, **kwargs) -> torch.optim.Adam:
    """`torch.optim.Adam`, with the fused single-kernel update where torch has one (CPU, CUDA).
    The DL runner uses it (it works with torch's LR schedulers); RL algorithms use
    `runner_core.optim.FlatAdam`, which also removes the per-tensor Python overhead."""
    fused = device.type in ("cpu", "cuda")
    return torch.optim.Adam(params, lr=lr, fused=fused or None, **kwargs)
