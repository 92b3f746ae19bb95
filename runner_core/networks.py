"""Network builders shared by the RL and DL runners. Sizes come from the env or data at run time;
the `network` config group only says the shape of the hidden part."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from runner_core import numpy_nets
from runner_core.numpy_nets import NumpyMLP  # noqa: F401  (mirrors of these networks)

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


# activations whose derivative comes from their output y: dL/dx = f'(x) dL/dy, computed by the
# ATen kernels autograd itself uses for these layers
_BACKWARD_FROM_OUTPUT = {
    nn.Tanh: torch.ops.aten.tanh_backward,  # (1 - y^2) g
    nn.Sigmoid: torch.ops.aten.sigmoid_backward,  # y (1 - y) g
    nn.ReLU: lambda g, y: torch.ops.aten.threshold_backward(g, y, 0),  # g where y > 0
}

# the same activations in `runner_core.numpy_nets`
_ACTIVATION_NAMES = {nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.ReLU: "relu"}

# layers with fewer inputs than this get their weight gradient as (x^T g)^T (see MLP.backward):
# measured with torch 2.13's CPU BLAS, faster for 4-8 inputs at batch 64-256, slower from 16 up
THIN_INPUT = 16

# one Linear layer of the hand-differentiated path: weight, bias, activation class or None
_Layer = tuple[torch.Tensor, torch.Tensor, "type[nn.Module] | None"]


class MLP(nn.Sequential):
    """An `nn.Sequential` of Linear / activation / BatchNorm / Dropout layers whose forward calls
    the linear and activation functions directly instead of each sub-module's `__call__`.

    The layers, parameters, state dict and printout are those of the plain Sequential; only the
    per-layer module dispatch (hooks, a Python frame per layer) is skipped, which is a fifth of a
    small RL network's forward on the CPU. Layers with state or modes (BatchNorm, Dropout,
    LeakyReLU's slope) are still called as modules.

    Training without autograd: `forward_train` + `backward` take an algorithm's gradient of its
    loss with respect to the network's output and backpropagate it by hand (two matrix products
    per layer), for MLPs of Linear layers and tanh / ReLU / sigmoid. Recording and replaying the
    autograd graph is most of the cost of a small network's update on the CPU (see the README's
    Benchmarks section); other layer kinds fall back to autograd behind the same two calls."""

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

    def linear_layers(self) -> list[_Layer] | None:
        """(weight, bias, activation) per Linear layer when the network is only Linear layers,
        each but the last followed by tanh, ReLU or sigmoid; None otherwise. Worked out once: the
        layers of a built network do not change."""
        if "_linear_layers" in self.__dict__:
            return self.__dict__["_linear_layers"]
        layers: list[_Layer] | None = []
        modules = list(self)
        for i in range(0, len(modules), 2):
            linear = modules[i]
            act = type(modules[i + 1]) if i + 1 < len(modules) else None
            plain = type(linear) is nn.Linear and linear.bias is not None
            if not plain or (act is not None and act not in _BACKWARD_FROM_OUTPUT):
                layers = None
                break
            layers.append((linear.weight, linear.bias, act))
        if layers is not None and layers[-1][2] is not None:
            layers = None  # the output layer is linear
        self.__dict__["_linear_layers"] = layers
        return layers

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """The output, and what `backward` needs: every layer's activations (no autograd graph)
        for plain MLPs, the autograd graph otherwise."""
        layers = self.linear_layers()
        if layers is None:
            out = self(x)
            return out, out
        if torch.is_grad_enabled():  # the hand-written path needs no graph (hot: no context
            with torch.no_grad():  # manager when the caller already turned autograd off)
                return self.forward_train(x)
        acts = [x]
        for weight, bias, act in layers:
            y = F.linear(acts[-1], weight, bias)
            if act is nn.Tanh and y.is_cpu:
                numpy_nets.FORWARD["tanh"](y.numpy())  # in place; see the comment of FORWARD
            elif act is not None:
                y = _ACTIVATION_FUNCTIONS[act](y)
            acts.append(y)
        return acts[-1], acts

    def backward(self, cache: Any, grad_out: torch.Tensor) -> None:
        """Set the parameters' `.grad` to dL/dparameters (replacing what they held), given
        dL/doutput and the `cache` of `forward_train`: the chain rule layer by layer, last to
        first, dL/dW = g^T x, dL/db = sum over the batch of g, dL/dx = g W, with
        g = f'(pre-activation) dL/dy."""
        if isinstance(cache, torch.Tensor):  # autograd graph
            for p in self.parameters():
                if p.grad is not None:
                    p.grad.zero_()
            cache.backward(grad_out)
            return
        if torch.is_grad_enabled():
            with torch.no_grad():
                return self.backward(cache, grad_out)
        layers = self.linear_layers()
        assert layers is not None
        g = grad_out
        for i in reversed(range(len(layers))):
            weight, bias, act = layers[i]
            if act is not None:
                g = _BACKWARD_FROM_OUTPUT[act](g, cache[i + 1])
            if weight.requires_grad:
                if weight.shape[1] < THIN_INPUT:
                    # dL/dW = (x^T g)^T: CPU BLAS runs g^T x slowly when x has few columns (an
                    # observation layer, 4 or 8 inputs): 22 us against 7 us at batch 256, 4x64
                    _grad_of(weight).copy_(torch.mm(cache[i].t(), g).t())
                else:
                    torch.mm(g.t(), cache[i], out=_grad_of(weight))
            if bias.requires_grad:
                torch.sum(g, 0, out=_grad_of(bias))
            if i > 0:
                g = g @ weight


def linear_layers(net: nn.Module) -> list[_Layer] | None:
    """`MLP.linear_layers` of any module: None unless it is an MLP with a hand-written backward."""
    return net.linear_layers() if isinstance(net, MLP) else None


def numpy_layers(net: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor, str | None]] | None:
    """(weight, bias, activation name) per Linear layer, for `NumpyMLP.of`: None unless `net`
    is a plain float32 MLP on the CPU (see `MLP.linear_layers`)."""
    layers = linear_layers(net)
    if layers is None or any(w.device.type != "cpu" or w.dtype != torch.float32
                             for w, _, _ in layers):  # fmt: skip
        return None
    return [(w, b, _ACTIVATION_NAMES[act] if act else None) for w, b, act in layers]


def _grad_of(param: torch.Tensor) -> torch.Tensor:
    if param.grad is None:
        param.grad = torch.zeros_like(param)
    return param.grad


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
