"""Policy and value networks built from the `network` config group."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from runner_core.networks import build_network


class CategoricalActorCritic(nn.Module):
    """Separate actor (logits) and critic (state value) networks, orthogonally initialised
    (gain sqrt(2) hidden, 0.01 policy head, 1 value head)."""

    def __init__(self, obs_dim: int, n_actions: int, net: DictConfig) -> None:
        super().__init__()
        self.actor = build_network(net, obs_dim, n_actions, hidden_gain=math.sqrt(2), out_gain=0.01)
        self.critic = build_network(net, obs_dim, 1, hidden_gain=math.sqrt(2), out_gain=1.0)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs).squeeze(-1)

    def act(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample a ~ pi(.|s); returns (action, log pi(a|s), V(s))."""
        log_probs = F.log_softmax(self.actor(obs), dim=-1)
        action = torch.multinomial(log_probs.exp(), 1)
        return action.squeeze(-1), log_probs.gather(-1, action).squeeze(-1), self.value(obs)

    def evaluate(
        self, obs: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log pi(a|s), entropy of pi(.|s), V(s)) for given actions, with gradients."""
        log_probs = F.log_softmax(self.actor(obs), dim=-1)
        entropy = -(log_probs.exp() * log_probs).sum(-1)
        return log_probs.gather(-1, actions.unsqueeze(-1)).squeeze(-1), entropy, self.value(obs)

    def greedy(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(obs).argmax(-1)
