"""Small MLPs and their Adam optimizer in numpy, for RL on the CPU. torch is imported only to
mirror torch modules (`NumpyMLP.of`), never for networks born in numpy.

Two uses:
- mirrors of torch MLPs (`NumpyMLP.of`, `NumpyMLP.side_by_side`) for rollouts, evaluation and
  gradient steps on the torch parameters' own memory;
- networks born in numpy (`NumpyMLP.build` over a `FlatParameters` vector, trained with
  `NumpyAdam`), for runs that never import torch (see `runner_core.device.NUMPY_CPU`). Their
  layout is torch's: parameters in `nn.Sequential` order, so state dicts and checkpoints are the
  same files either way.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def _sigmoid(y: np.ndarray) -> None:
    np.negative(y, out=y)
    np.exp(y, out=y)
    y += 1.0
    np.reciprocal(y, out=y)


# the activations, computed in place. numpy's tanh is also what the hand-written torch training
# path uses on the CPU: torch's float32 tanh goes through MKL's vector maths, which runs a slow
# generic code path on non-Intel CPUs (a 256x64 batch: 42 us against numpy's 7 us on an AMD EPYC;
# about equal on an Intel Xeon)
FORWARD: dict[str, Callable[[np.ndarray], Any]] = {
    "tanh": lambda y: np.tanh(y, out=y),
    "relu": lambda y: np.maximum(y, 0.0, out=y),
    "sigmoid": _sigmoid,
}


def _tanh_backward(g: np.ndarray, y: np.ndarray) -> np.ndarray:
    np.multiply(y, y, out=y)
    np.subtract(1.0, y, out=y)
    return np.multiply(y, g, out=y)  # (1 - y^2) g, in y's memory


def _sigmoid_backward(g: np.ndarray, y: np.ndarray) -> np.ndarray:
    d = np.subtract(1.0, y)
    d *= y
    return np.multiply(d, g, out=d)  # y (1 - y) g


# dL/dx from dL/dy and the activation's output y (which the backward pass no longer needs, so
# tanh's works in its memory)
BACKWARD: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "tanh": _tanh_backward,
    "sigmoid": _sigmoid_backward,
    "relu": lambda g, y: np.multiply(g, y > 0),
}

_ONES: dict[int, np.ndarray] = {}


def _ones(n: int) -> np.ndarray:
    """A float32 vector of n ones, made once per batch size."""
    if n not in _ONES:
        _ONES[n] = np.ones(n, dtype=np.float32)
    return _ONES[n]


# one Linear layer: weight (out, in), bias (out,), activation name or None (the output layer)
Layer = tuple[np.ndarray, np.ndarray, "str | None"]


class NumpyMLP:
    """An MLP of Linear layers, each but the last followed by tanh, ReLU or sigmoid, computed in
    numpy: at the 8-256 rows of an RL rollout or minibatch a numpy call costs ~1 us against
    torch's 3-5 us, and that overhead is most of the cost.

    `forward_train` + `backward` are the hand-written backward pass (the maths of
    `runner_core.networks.MLP.backward`, tested against it and through it against autograd): the
    gradients go into given arrays, where an optimizer takes them (`FlatAdam`'s `.grad` views for
    a torch network, `NumpyAdam`'s for a numpy one). A gradient step of a 64x64 actor and critic
    is ~50 small operations."""

    def __init__(self, layers: Sequence[Layer], grads: Sequence[tuple[np.ndarray, np.ndarray]]
                 | None = None) -> None:  # fmt: skip
        self.kinds = [act for _, _, act in layers]
        # (W^T, b, in-place activation or None) per layer: views of the weights, never copies
        self.layers = [(w.T, b, FORWARD[act] if act else None) for w, b, act in layers]
        # for training, per layer: dL/dW and dL/db (written in place) and the activation's
        # derivative (see `BACKWARD`) or None
        self.grads = None if grads is None else [
            (gw, gb, BACKWARD[act] if act else None)
            for (gw, gb), act in zip(grads, self.kinds, strict=True)
        ]  # fmt: skip

    # networks born in numpy --------------------------------------------------------------------
    @staticmethod
    def shapes(in_features: int, out_features: int, hidden: Sequence[int]) -> list[tuple[int, ...]]:
        """The parameter shapes in torch's order: (out, in) weight then (out,) bias per layer."""
        widths = [in_features, *hidden, out_features]
        return [s for i, o in itertools.pairwise(widths) for s in ((o, i), (o,))]

    @classmethod
    def build(
        cls,
        params: Sequence[np.ndarray],
        grads: Sequence[np.ndarray],
        activation: str,
    ) -> NumpyMLP:
        """The network over given parameter and gradient arrays (in `shapes` order)."""
        n = len(params) // 2
        layers = [(params[2 * i], params[2 * i + 1], activation if i < n - 1 else None)
                  for i in range(n)]  # fmt: skip
        return cls(layers, [(grads[2 * i], grads[2 * i + 1]) for i in range(n)])

    # mirrors of torch networks -----------------------------------------------------------------
    @classmethod
    def of(cls, net: Any, train: bool = False) -> NumpyMLP | None:
        """A mirror of the torch module `net` reading its parameters' memory in place (always the
        current weights, as long as the parameters stay in that memory: make a new mirror after
        moving them or after building an optimizer that re-points them), or None unless it is a
        plain float32 MLP on the CPU. With `train` it also writes the parameters' `.grad` in
        place (`forward_train` and `backward`): make it after the optimizer has re-pointed the
        gradients, if it does."""
        from runner_core.networks import numpy_layers

        layers = numpy_layers(net)
        if layers is None or (train and not all(p.requires_grad for p in net.parameters())):
            return None
        arrays = [(w.detach().numpy(), b.detach().numpy(), act) for w, b, act in layers]
        if not train:
            return cls(arrays)
        return cls(arrays, [(_grad_of(w).numpy(), _grad_of(b).numpy()) for w, b, _ in layers])

    @classmethod
    def side_by_side(cls, nets: Sequence[Any]) -> NumpyMLP | None:
        """`stack` of mirrors of torch modules, or None unless all are plain float32 CPU MLPs."""
        mirrors = [cls.of(net) for net in nets]
        return None if any(m is None for m in mirrors) else cls.stack(mirrors)

    @classmethod
    def stack(cls, nets: Sequence[NumpyMLP]) -> NumpyMLP | None:
        """One network computing all of `nets` on the same input, its output theirs concatenated
        (block-diagonal weights after the first layer): half the calls for an actor and a
        critic. None unless they have the same depth and activations. It holds copies: make a
        new one after each update."""
        if len({len(net.layers) for net in nets}) != 1:
            return None
        fused: list[Layer] = []
        for depth, layers in enumerate(zip(*(net.layers for net in nets), strict=True)):
            kinds = {net.kinds[depth] for net in nets}
            if len(kinds) != 1:
                return None
            weights = [w.T for w, _, _ in layers]  # (out, in) each
            if depth == 0:
                weight = np.concatenate(weights)
            else:
                weight = np.zeros((sum(w.shape[0] for w in weights),
                                   sum(w.shape[1] for w in weights)), np.float32)  # fmt: skip
                row = col = 0
                for w in weights:
                    weight[row : row + w.shape[0], col : col + w.shape[1]] = w
                    row, col = row + w.shape[0], col + w.shape[1]
            bias = np.concatenate([b for _, b, _ in layers])
            fused.append((weight, bias, kinds.pop()))
        return cls(fused)

    # computing ---------------------------------------------------------------------------------
    def __call__(self, x: np.ndarray) -> np.ndarray:
        for weight_t, bias, act in self.layers:
            x = x @ weight_t
            x += bias
            if act is not None:
                act(x)
        return x

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
        and the activations of `forward_train`, which it overwrites: layer by layer, last to
        first, dL/dW = g^T x, dL/db = sum over the batch of g, dL/dx = g W, with
        g = f'(pre-activation) dL/dy."""
        assert self.grads is not None, "a network made for training"
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


def _grad_of(param: Any) -> Any:
    if param.grad is None:
        import torch

        param.grad = torch.zeros_like(param)
    return param.grad


def orthogonal(rng: np.random.Generator, shape: tuple[int, int], gain: float) -> np.ndarray:
    """A (rows, cols) matrix with orthonormal rows or columns (whichever are fewer) times `gain`
    (Saxe et al. 2014), drawn as `torch.nn.init.orthogonal_` draws it: Q of the QR decomposition
    of a standard normal matrix, its columns' signs fixed by R's diagonal so Q is uniform."""
    rows, cols = shape
    a = rng.standard_normal((rows, cols) if rows >= cols else (cols, rows))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    return (gain * (q if rows >= cols else q.T)).astype(np.float32)


class FlatParameters:
    """Parameters of one or more networks in one contiguous float32 vector, with their gradients
    in another; `views` are the per-tensor arrays (in order), sharing that memory."""

    def __init__(self, shapes: Sequence[tuple[int, ...]]) -> None:
        sizes = [math.prod(s) for s in shapes]
        self.flat = np.zeros(sum(sizes), dtype=np.float32)
        self.grad = np.zeros_like(self.flat)
        starts = np.cumsum([0, *sizes])[:-1]
        self.views = [self._view(self.flat, a, s) for a, s in zip(starts, shapes, strict=True)]
        self.grad_views = [self._view(self.grad, a, s) for a, s in zip(starts, shapes, strict=True)]

    @staticmethod
    def _view(vector: np.ndarray, start: int, shape: tuple[int, ...]) -> np.ndarray:
        return vector[start : start + math.prod(shape)].reshape(shape)


class NumpyAdam:
    """Adam (Kingma & Ba 2015) with optional global-norm gradient clipping, on a flat numpy
    parameter vector: `FlatAdam`'s maths (torch.optim.Adam's, clipping as clip_grad_norm_), and its
    state dict, for networks that live in numpy.

    m_t = b1 m_{t-1} + (1 - b1) g_t,  v_t = b2 v_{t-1} + (1 - b2) g_t^2
    theta_t = theta_{t-1} - lr * (m_t / (1 - b1^t)) / (sqrt(v_t / (1 - b2^t)) + eps)

    Every `FLUSH_EVERY` steps, moments below `TINY` are set to 0. A parameter whose gradient
    stays 0 (a dead ReLU unit, a saturated tanh) has moments that decay geometrically into the
    denormal range, where x86 arithmetic is ~30x slower; torch avoids that by flushing denormals
    in the CPU (`torch.set_flush_denormal`), which numpy cannot ask for. A moment below 1e-30
    moves its weight by under lr * 1e-30 / eps, nothing in float32, and between two flushes a
    moment above 1e-30 decays by at most 0.9^100 (b1 = 0.9), staying clear of denormals (below
    1.2e-38).
    """

    TINY = 1e-30
    FLUSH_EVERY = 100

    def __init__(
        self,
        params: FlatParameters,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.flat, self.grad = params.flat, params.grad
        self.exp_avg = np.zeros_like(self.flat)
        self.exp_avg_sq = np.zeros_like(self.flat)
        self._tmp = np.zeros_like(self.flat)
        self._tiny = np.zeros(self.flat.shape, dtype=bool)
        self.lr = float(lr)
        self.beta1, self.beta2 = (float(b) for b in betas)
        self.eps = float(eps)
        self.steps = 0

    def step(self, max_grad_norm: float | None = None) -> float | None:
        """One Adam step on the gradients, clipped first (and left clipped) to the global L2 norm
        `max_grad_norm` if given; returns the norm before clipping, if clipped."""
        g, tmp, m, v = self.grad, self._tmp, self.exp_avg, self.exp_avg_sq
        norm = None
        if max_grad_norm is not None:
            norm = math.sqrt(float(np.dot(g, g)))
            if norm + 1e-6 > max_grad_norm:
                g *= np.float32(max_grad_norm / (norm + 1e-6))
        self.steps += 1
        b1, b2 = self.beta1, self.beta2
        m *= np.float32(b1)
        np.multiply(g, np.float32(1.0 - b1), out=tmp)
        m += tmp
        v *= np.float32(b2)
        np.multiply(g, g, out=tmp)
        tmp *= np.float32(1.0 - b2)
        v += tmp
        bias1 = 1.0 - b1**self.steps
        bias2_sqrt = math.sqrt(1.0 - b2**self.steps)
        np.sqrt(v, out=tmp)  # denominator: sqrt(v) / sqrt(1 - b2^t) + eps
        tmp *= np.float32(1.0 / bias2_sqrt)
        tmp += np.float32(self.eps)
        np.divide(m, tmp, out=tmp)
        tmp *= np.float32(-self.lr / bias1)
        self.flat += tmp
        if self.steps % self.FLUSH_EVERY == 0:
            self.flush_tiny()
        return norm

    def flush_tiny(self) -> None:
        """Set moments below `TINY` in magnitude to 0 (see the class docstring)."""
        for moment in (self.exp_avg, self.exp_avg_sq):
            np.abs(moment, out=self._tmp)
            np.less(self._tmp, self.TINY, out=self._tiny)
            moment[self._tiny] = 0.0

    def state_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "lr": self.lr,
            "exp_avg": self.exp_avg.copy(),
            "exp_avg_sq": self.exp_avg_sq.copy(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        exp_avg = np.asarray(state["exp_avg"], dtype=np.float32)
        if exp_avg.shape != self.exp_avg.shape:
            raise ValueError(
                f"optimizer state holds {exp_avg.size} parameters, the model has "
                f"{self.exp_avg.size}"
            )
        self.steps = int(state["steps"])
        self.lr = float(state["lr"])
        self.exp_avg[:] = exp_avg
        self.exp_avg_sq[:] = np.asarray(state["exp_avg_sq"], dtype=np.float32)
