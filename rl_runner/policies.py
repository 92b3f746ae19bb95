"""Policy and value networks built from the `network` config group."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from rl_runner.numpy_policy import categorical_sampler, logits_and_values
from runner_core.networks import NumpyMLP, build_network, linear_layers


class CategoricalActorCritic(nn.Module):
    """Separate actor (logits) and critic (state value) networks, orthogonally initialised
    (gain sqrt(2) hidden, 0.01 policy head, 1 value head).

    Rollouts and evaluation get numpy arrays (what the envs and the rollout buffer take) from
    `sampler` and `greedy`; updates call `forward_train` and `backward`."""

    def __init__(self, obs_dim: int, n_actions: int, net: DictConfig) -> None:
        super().__init__()
        self.actor = build_network(net, obs_dim, n_actions, hidden_gain=math.sqrt(2), out_gain=0.01)
        self.critic = build_network(net, obs_dim, 1, hidden_gain=math.sqrt(2), out_gain=1.0)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs).squeeze(-1)

    def evaluate(
        self, obs: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log pi(a|s), entropy of pi(.|s), V(s)) for given actions, with gradients."""
        log_probs = F.log_softmax(self.actor(obs), dim=-1)
        entropy = -(log_probs.exp() * log_probs).sum(-1)
        return log_probs.gather(-1, actions.unsqueeze(-1)).squeeze(-1), entropy, self.value(obs)

    # rollouts and evaluation: numpy in and out ---------------------------------------------
    def forward_numpy(self) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """A function from encoded observations (float32 numpy) to (logits, V(s)) as numpy
        arrays, with the weights as they are now: on the CPU both networks side by side as one
        numpy network (see `NumpyMLP`), elsewhere the torch networks. Make a new one after each
        update."""
        fused = NumpyMLP.side_by_side([self.actor, self.critic])
        if fused is not None:
            return logits_and_values(fused)
        device = self.critic[0].weight.device

        def torch_forward(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            x = torch.as_tensor(obs, device=device)
            with torch.inference_mode():
                return self.actor(x).cpu().numpy(), self.value(x).cpu().numpy()

        return torch_forward

    def sampler(
        self,
        rng: np.random.Generator,
        forward: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """A function from encoded observations to (a ~ pi(.|s), log pi(a|s), V(s)) as numpy
        arrays, drawing with `rng` by the Gumbel-max trick (argmax of log pi + Gumbel noise).
        Make one per rollout: it holds `forward` (by default a new `forward_numpy()`)."""
        return categorical_sampler(rng, forward or self.forward_numpy())

    def greedy(self, obs: np.ndarray) -> np.ndarray:
        """argmax_a pi(a|s) for encoded observations (float32 numpy), with the current weights."""
        return self.greedy_policy()(obs)

    def greedy_policy(self) -> Callable[[np.ndarray], np.ndarray]:
        """`greedy` as a function prepared once (the numpy mirror of the actor) for many calls:
        valid until the parameters are moved or re-pointed (see `NumpyMLP.of`)."""
        actor = NumpyMLP.of(self.actor)
        if actor is not None:
            return lambda obs: actor(obs).argmax(1)
        device = self.actor[0].weight.device

        def torch_greedy(obs: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return self.actor(torch.as_tensor(obs, device=device)).argmax(-1).cpu().numpy()

        return torch_greedy

    # updates ---------------------------------------------------------------------------------
    @property
    def autograd_needed(self) -> bool:
        """Whether `backward` goes through autograd (a network without a hand-written backward,
        see `MLP.forward_train`): then `forward_train` must run with gradients enabled."""
        return any(linear_layers(net) is None for net in (self.actor, self.critic))

    def numpy_inference(self) -> bool:
        """Whether `sampler` and `greedy_policy` run in numpy (plain float32 MLPs on the CPU)."""
        return NumpyMLP.side_by_side([self.actor, self.critic]) is not None

    def numpy_training(self) -> tuple[NumpyMLP, NumpyMLP] | None:
        """The actor and critic as numpy networks that compute outputs and write gradients in
        the parameters' own memory (`NumpyMLP.of(..., train=True)`), or None where that path does
        not apply (not the CPU, not plain float32 MLPs). Make them after the optimizer is built."""
        actor, critic = (NumpyMLP.of(net, train=True) for net in (self.actor, self.critic))
        return None if actor is None or critic is None else (actor, critic)

    def forward_train(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """(logits, V(s), cache) for a hand-computed backward: see `MLP.forward_train`."""
        logits, actor_cache = self.actor.forward_train(obs)
        values, critic_cache = self.critic.forward_train(obs)
        return logits, values.squeeze(-1), (actor_cache, critic_cache)

    def backward(self, cache: Any, grad_logits: torch.Tensor, grad_values: torch.Tensor) -> None:
        """Set the parameters' gradients from dL/dlogits and dL/dV(s)."""
        actor_cache, critic_cache = cache
        self.actor.backward(actor_cache, grad_logits)
        self.critic.backward(critic_cache, grad_values.unsqueeze(-1))
