"""Network builders shared by the RL and DL runners. Sizes come from the env or data at run time;
the `network` config group only says the shape of the hidden part."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
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


# activations whose derivative comes from their output y: dL/dx = f'(x) dL/dy, computed by the
# ATen kernels autograd itself uses for these layers
_BACKWARD_FROM_OUTPUT = {
    nn.Tanh: torch.ops.aten.tanh_backward,  # (1 - y^2) g
    nn.Sigmoid: torch.ops.aten.sigmoid_backward,  # y (1 - y) g
    nn.ReLU: lambda g, y: torch.ops.aten.threshold_backward(g, y, 0),  # g where y > 0
}

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
                _NUMPY_ACTIVATIONS[nn.Tanh](y.numpy())  # in place; see the table's comment
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


def _np_sigmoid(y: np.ndarray) -> None:
    np.negative(y, out=y)
    np.exp(y, out=y)
    y += 1.0
    np.reciprocal(y, out=y)


# numpy versions of the activations, computed in place. numpy's tanh is also what the hand-written
# training path uses on the CPU: torch's float32 tanh goes through MKL's vector maths, which runs
# a slow generic code path on non-Intel CPUs (a 256x64 batch: 42 us against numpy's 7 us on an
# AMD EPYC; about equal on an Intel Xeon)
_NUMPY_ACTIVATIONS = {
    nn.Tanh: lambda y: np.tanh(y, out=y),
    nn.ReLU: lambda y: np.maximum(y, 0.0, out=y),
    nn.Sigmoid: _np_sigmoid,
}


def _np_tanh_backward(g: np.ndarray, y: np.ndarray) -> np.ndarray:
    np.multiply(y, y, out=y)
    np.subtract(1.0, y, out=y)
    return np.multiply(y, g, out=y)  # (1 - y^2) g, in y's memory


def _np_sigmoid_backward(g: np.ndarray, y: np.ndarray) -> np.ndarray:
    d = np.subtract(1.0, y)
    d *= y
    return np.multiply(d, g, out=d)  # y (1 - y) g


# the derivatives of `_BACKWARD_FROM_OUTPUT` in numpy: dL/dx from dL/dy and the output y (which
# the backward pass no longer needs, so tanh's works in its memory)
_NUMPY_BACKWARD_FROM_OUTPUT: dict[Any, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    nn.Tanh: _np_tanh_backward,
    nn.Sigmoid: _np_sigmoid_backward,
    nn.ReLU: lambda g, y: np.multiply(g, y > 0),
}


_ONES: dict[int, np.ndarray] = {}


def _ones(n: int) -> np.ndarray:
    """A float32 vector of n ones, made once per batch size."""
    if n not in _ONES:
        _ONES[n] = np.ones(n, dtype=np.float32)
    return _ONES[n]


class NumpyMLP:
    """Inference with an MLP's weights in numpy, for the small batches of an RL rollout on the
    CPU: a numpy call costs about 1 us against torch's 3 to 5 us, and at 8 observations per step
    that overhead is most of the cost.

    `of(net)` reads the torch parameters' memory in place (always the current weights, as long
    as the parameters stay in that memory: make a new mirror after moving them or after building
    an optimizer that re-points them); `side_by_side(nets)` copies several networks that share
    their input into one, whose output is theirs concatenated (half the calls for an actor and a
    critic; make a new one after each update).

    `of(net, train=True)` also trains: `forward_train` + `backward` are `MLP`'s hand-written
    path in numpy, writing the gradients into the parameters' `.grad` memory, where an
    optimizer such as `FlatAdam` takes them. A gradient step of a 64x64 actor and critic is
    ~50 small operations, so numpy's lower per-call cost pays there too."""

    def __init__(
        self,
        layers: list[tuple[np.ndarray, np.ndarray, Callable | None]],
        grads: list[tuple[np.ndarray, np.ndarray, Callable | None]] | None = None,
    ) -> None:
        self.layers = layers  # (W^T, b, in-place activation or None) per Linear layer
        # for training, per Linear layer: dL/dW and dL/db (the parameters' `.grad` memory) and
        # the activation's derivative (see `_NUMPY_BACKWARD_FROM_OUTPUT`) or None
        self.grads = grads

    @staticmethod
    def _plain_layers(net: nn.Module) -> list[_Layer] | None:
        layers = linear_layers(net)
        if layers is None or any(w.device.type != "cpu" or w.dtype != torch.float32
                                 for w, _, _ in layers):  # fmt: skip
            return None
        return layers

    @classmethod
    def of(cls, net: nn.Module, train: bool = False) -> NumpyMLP | None:
        """A mirror of `net`, or None unless it is a plain float32 MLP on the CPU. With `train`
        it also reads and writes the parameters' gradients in place (`forward_train` and
        `backward`): make it after the optimizer has re-pointed the gradients, if it does."""
        layers = cls._plain_layers(net)
        if layers is None or (train and not all(p.requires_grad for p in net.parameters())):
            return None
        grads = None
        if train:
            grads = [
                (_grad_of(w).numpy(), _grad_of(b).numpy(), _NUMPY_BACKWARD_FROM_OUTPUT.get(act))
                for w, b, act in layers
            ]
        return cls([
            (w.detach().numpy().T, b.detach().numpy(), _NUMPY_ACTIVATIONS.get(act))
            for w, b, act in layers
        ], grads)  # fmt: skip

    @classmethod
    def side_by_side(cls, nets: Sequence[nn.Module]) -> NumpyMLP | None:
        """One network computing all of `nets` on the same input (block-diagonal weights after
        the first layer), or None unless they are plain float32 CPU MLPs of the same depth and
        activations."""
        stacks = [cls._plain_layers(net) for net in nets]
        if any(s is None for s in stacks) or len({len(s) for s in stacks if s}) != 1:
            return None
        fused = []
        with torch.no_grad():
            for depth, layers in enumerate(zip(*stacks, strict=True)):
                acts = {act for _, _, act in layers}
                if len(acts) != 1:
                    return None
                weights = [w for w, _, _ in layers]
                weight = torch.cat(weights) if depth == 0 else torch.block_diag(*weights)
                bias = torch.cat([b for _, b, _ in layers])
                fused.append((weight.T.numpy(), bias.numpy(), _NUMPY_ACTIVATIONS.get(acts.pop())))
        return cls(fused)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        for weight_t, bias, act in self.layers:
            x = x @ weight_t
            x += bias
            if act is not None:
                act(x)
        return x

    # training on the CPU without torch calls: the maths of `MLP.forward_train` / `MLP.backward`
    # (tested against them), at numpy's ~1 us per call instead of torch's 3-5 us -------------
    def forward_train(self, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """The output, and every layer's activations for `backward`."""
        acts = [x]
        for weight_t, bias, act in self.layers:
            y = acts[-1] @ weight_t
            y += bias
            if act is not None:
                act(y)
            acts.append(y)
        return acts[-1], acts

    def backward(self, acts: list[np.ndarray], grad_out: np.ndarray) -> None:
        """Write dL/dparameters into the gradients (replacing what they held), given dL/doutput
        and the activations of `forward_train`, which it overwrites."""
        assert self.grads is not None, "a mirror made with train=True"
        g = grad_out
        ones = _ones(len(g))
        for i in reversed(range(len(self.layers))):
            weight_t = self.layers[i][0]
            grad_w, grad_b, derivative = self.grads[i]
            if derivative is not None:
                g = derivative(g, acts[i + 1])
            # (numpy's OpenBLAS has no slow case for few inputs, unlike torch's: see THIN_INPUT)
            np.matmul(g.T, acts[i], out=grad_w)
            np.matmul(ones, g, out=grad_b)  # the batch sum as a product: ~1 us, sum(0) ~7 us
            if i > 0:
                g = g @ weight_t.T


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
