"""The categorical actor-critic in numpy, for runs that never import torch (`NUMPY_CPU`), and the
sampling both actor-critics share. Nothing here imports torch."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from runner_core.numpy_nets import FlatParameters, NumpyMLP, orthogonal

Forward = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log softmax over the last axis, shifted by the max for stability."""
    shifted = logits - np.maximum.reduce(logits, axis=-1, keepdims=True)
    # ufunc reductions: the array methods add a Python-level wrapper of ~1.5 us per call
    return shifted - np.log(np.add.reduce(np.exp(shifted), axis=-1, keepdims=True))


def logits_and_values(fused: NumpyMLP) -> Forward:
    """(logits, V(s)) from an actor and a critic computed side by side as one network
    (`NumpyMLP.stack`), whose last output is the critic's."""

    def forward(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = fused(obs)
        return out[:, :-1], out[:, -1]

    return forward


def categorical_sampler(
    rng: np.random.Generator, forward: Forward
) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """A function from encoded observations to (a ~ pi(.|s), log pi(a|s), V(s)) as numpy arrays,
    `forward` giving (logits, V(s)), drawing with `rng` by the Gumbel-max trick (argmax of
    log pi + Gumbel noise)."""

    def sample(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        logits, values = forward(obs)
        log_probs = log_softmax(logits)
        actions = (log_probs + rng.gumbel(size=log_probs.shape)).argmax(1)
        return actions, log_probs[np.arange(len(actions)), actions], values

    return sample


class NumpyActorCritic:
    """`rl_runner.policies.CategoricalActorCritic` with its networks in numpy: separate actor
    (logits) and critic (state value) MLPs, orthogonally initialised (gain sqrt(2) hidden, 0.01
    policy head, 1 value head, zero biases), drawn from `rng`.

    The parameters lie in one `FlatParameters` vector in torch's order, and `state_dict` has the
    torch module's keys and shapes ("actor.0.weight", ...): checkpoints of either are the same.
    Only plain MLPs (network.type mlp, tanh / ReLU / sigmoid, no batchnorm or dropout)."""

    autograd_needed = False

    def __init__(self, obs_dim: int, n_actions: int, net: Any, rng: np.random.Generator) -> None:
        hidden = [int(h) for h in net.hidden]
        shapes = {
            "actor": NumpyMLP.shapes(obs_dim, n_actions, hidden),
            "critic": NumpyMLP.shapes(obs_dim, 1, hidden),
        }
        self.params = FlatParameters([s for part in shapes.values() for s in part])
        self.names: list[str] = []
        nets = {}
        start = 0
        for part, out_gain in (("actor", 0.01), ("critic", 1.0)):
            end = start + len(shapes[part])
            views = self.params.views[start:end]
            weights = views[0::2]
            for i, weight in enumerate(weights):
                gain = out_gain if i == len(weights) - 1 else math.sqrt(2)
                weight[:] = orthogonal(rng, weight.shape, gain)
            # nn.Sequential indices: Linear layers at 0, 2, 4, ... with activations between
            self.names += [f"{part}.{2 * (j // 2)}.{'bias' if j % 2 else 'weight'}"
                           for j in range(len(views))]  # fmt: skip
            nets[part] = NumpyMLP.build(views, self.params.grad_views[start:end], net.activation)
            start = end
        self.actor, self.critic = nets["actor"], nets["critic"]

    # rollouts and evaluation -------------------------------------------------------------------
    def forward_numpy(self) -> Forward:
        """A function from encoded observations to (logits, V(s)), both networks side by side as
        one (half the numpy calls), with the weights as they are now: make a new one after each
        update."""
        fused = NumpyMLP.stack([self.actor, self.critic])
        assert fused is not None  # same depth and activations by construction
        return logits_and_values(fused)

    def sampler(
        self, rng: np.random.Generator, forward: Forward | None = None
    ) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]:
        return categorical_sampler(rng, forward or self.forward_numpy())

    def greedy(self, obs: np.ndarray) -> np.ndarray:
        return self.greedy_policy()(obs)

    def greedy_policy(self) -> Callable[[np.ndarray], np.ndarray]:
        actor = self.actor
        return lambda obs: actor(obs).argmax(1)

    def numpy_inference(self) -> bool:
        return True

    def numpy_training(self) -> tuple[NumpyMLP, NumpyMLP]:
        return self.actor, self.critic

    # state -------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        return {name: view.copy() for name, view in zip(self.names, self.params.views, strict=True)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Weights from a state dict of this network or of the torch one (tensors or arrays)."""
        extra = sorted(set(state) - set(self.names))
        if extra:
            raise KeyError(f"unexpected keys in the policy state: {extra}")
        for name, view in zip(self.names, self.params.views, strict=True):
            value = np.asarray(state[name], dtype=np.float32)  # KeyError when missing
            if value.shape != view.shape:
                raise ValueError(f"{name} has shape {value.shape}, the network {view.shape}")
            view[:] = value
