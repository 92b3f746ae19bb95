"""Small MLPs and their Adam optimizer in numpy, for the numpy backend (runs that never import
torch, see `runner_core.device.NUMPY_CPU`).

Networks are born in numpy (`NumpyNetworks`: MLPs over one `FlatParameters` vector, trained with
`NumpyAdam`), their initial weights drawn from the algorithm's generator as the torch reference
draws them (`runner_core.draws`), and their layout and state-dict keys are the reference's
(`Network(encoder, MLP)` in `nn.Sequential` order), so checkpoints are the same files either way.
Why numpy at all: at the few hundred rows of an RL rollout or minibatch, the cost of a small
network is mostly per-call overhead, and numpy's is a fraction of torch's.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from runner_core.draws import orthogonal, uniform_fan_in


def _sigmoid(y: np.ndarray) -> None:
    np.negative(y, out=y)
    np.exp(y, out=y)
    y += 1.0
    np.reciprocal(y, out=y)


# the activations, computed in place
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
    numpy. `forward_train` + `backward` are its backward pass written out (tested against
    autograd): the gradients go into given arrays, where `NumpyAdam` takes them."""

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
            np.matmul(g.T, acts[i], out=grad_w)
            np.matmul(ones, g, out=grad_b)  # the batch sum as a product (one call, not sum's two)
            if i > 0:
                # np.dot: for a one-output layer (a critic's V) this is an outer product, which
                # matmul computes without BLAS, several times slower (the same bits either way)
                g = np.dot(g, weight_t.T) if g.shape[1] == 1 else g @ weight_t.T


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
    parameter vector: torch.optim.Adam's maths, clipping as clip_grad_norm_ does (tested step for
    step against both).

    m_t = b1 m_{t-1} + (1 - b1) g_t,  v_t = b2 v_{t-1} + (1 - b2) g_t^2
    theta_t = theta_{t-1} - lr * (m_t / (1 - b1^t)) / (sqrt(v_t / (1 - b2^t)) + eps)

    Every `FLUSH_EVERY` steps, moments below `TINY` are set to 0. A parameter whose gradient
    stays 0 (a dead ReLU unit, a saturated tanh) has moments that decay geometrically into the
    denormal range, where x86 arithmetic is many times slower; torch avoids that by flushing
    denormals in the CPU (`torch.set_flush_denormal`), which numpy cannot ask for. A moment
    below 1e-30 moves its weight by under lr * 1e-30 / eps, nothing in float32, and between two
    flushes a moment above 1e-30 decays by at most 0.9^100 (b1 = 0.9), staying clear of
    denormals (below 1.2e-38).
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


class NumpyNetworks:
    """Named MLPs ("actor", "critic", "q", ...) with their parameters in one `FlatParameters`
    vector, laid out and named as the torch reference's `Network(encoder, MLP)` modules are
    ("actor.body.0.weight", ...: Linear layers at 0, 2, 4, ... with activations between), and
    initialised with the same draws from the same generator, in the same order:
    `init="orthogonal"` (hidden gain, output gain) as `init_orthogonal`, `init="default"` as
    `init_default`."""

    def __init__(
        self,
        parts: dict[str, tuple[int, int, Sequence[int], str]],
        rng: np.random.Generator,
        init: str,
        gains: dict[str, tuple[float, float]] | None = None,
        prefix: dict[str, str] | None = None,
    ) -> None:
        """parts: name -> (in_features, out_features, hidden sizes, activation); `prefix`:
        name -> the state-dict key prefix of its body (default "<name>.body.")."""
        shapes = {name: NumpyMLP.shapes(i, o, h) for name, (i, o, h, _) in parts.items()}
        self.params = FlatParameters([s for part in shapes.values() for s in part])
        self.names: list[str] = []
        self.nets: dict[str, NumpyMLP] = {}
        start = 0
        for name, (_, _, _, activation) in parts.items():
            end = start + len(shapes[name])
            views = self.params.views[start:end]
            for j, view in enumerate(views):
                layer = j // 2
                if init == "orthogonal":
                    hidden_gain, out_gain = (gains or {})[name]
                    last = layer == len(views) // 2 - 1
                    if j % 2 == 0:
                        view[:] = orthogonal(rng, view.shape, out_gain if last else hidden_gain)
                else:  # torch's default: U(+-1/sqrt(fan_in)) for the weight, then the bias
                    fan_in = views[2 * layer].shape[1]
                    view[:] = uniform_fan_in(rng, view.shape, fan_in)
            key = (prefix or {}).get(name, f"{name}.body.")
            self.names += [f"{key}{2 * (j // 2)}.{'bias' if j % 2 else 'weight'}"
                           for j in range(len(views))]  # fmt: skip
            self.nets[name] = NumpyMLP.build(views, self.params.grad_views[start:end], activation)
            start = end

    def __getitem__(self, name: str) -> NumpyMLP:
        return self.nets[name]

    def state_dict(self) -> dict[str, np.ndarray]:
        views = self.params.views
        return {name: view.copy() for name, view in zip(self.names, views, strict=True)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Weights from a state dict of these networks or of the torch reference's (tensors or
        arrays)."""
        extra = sorted(set(state) - set(self.names))
        if extra:
            raise KeyError(f"unexpected keys in the network state: {extra}")
        for name, view in zip(self.names, self.params.views, strict=True):
            value = np.asarray(state[name], dtype=np.float32)  # KeyError when missing
            if value.shape != view.shape:
                raise ValueError(f"{name} has shape {value.shape}, the network {view.shape}")
            view[:] = value

    def copy_from(self, other: NumpyNetworks, tau: float = 1.0) -> None:
        """theta <- tau theta_other + (1 - tau) theta (a target network's update)."""
        if tau >= 1.0:
            self.params.flat[:] = other.params.flat
        else:
            self.params.flat += np.float32(tau) * (other.params.flat - self.params.flat)


def encoder(obs_kind: str, n_states: int | None) -> Callable[[np.ndarray], np.ndarray]:
    """Observations as the networks' float32 input: one-hot rows for discrete states (the
    reference's `OneHot` encoder), vectors as they are."""
    if obs_kind == "discrete":
        eye = np.eye(n_states, dtype=np.float32)
        return lambda obs: eye[np.asarray(obs, dtype=np.int64).reshape(-1)]
    return lambda obs: np.asarray(obs, dtype=np.float32)
