"""SAC for continuous actions."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from rl_runner import heads
from rl_runner.algos.base import OffPolicyAlgorithm, Policy
from rl_runner.algos.common import frozen_copy
from rl_runner.buffers import ReplayBatch, ReplayBuffer
from runner_core.lazy import lazy
from runner_core.networks import adam
from runner_core.validation import Rule, boolean, positive, positive_int, shared

if TYPE_CHECKING:
    import torch
else:
    torch = lazy("torch")  # importing this module imports no torch (as dqn.py and ppo.py)

# the losses and diagnostics `update` returns, in the order of its stats tensor
CRITIC_STATS = ("qf_loss", "q_values")
ACTOR_STATS = ("actor_loss", "alpha", "entropy", "alpha_loss")


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def soft_td_target(
    rewards: torch.Tensor,
    terminated: torch.Tensor,
    next_q: torch.Tensor,
    next_log_pi: torch.Tensor,
    alpha: torch.Tensor | float,
    gamma: float,
) -> torch.Tensor:
    """y = r + gamma * (1 - terminated) * (Q_targ(s', a') - alpha * log pi(a'|s')), where
    Q_targ(s', a') is the smaller of the twin target critics' values at a' ~ pi(.|s')."""
    return rewards + gamma * (1.0 - terminated) * (next_q - alpha * next_log_pi)


def tensor_pairs(target: Any, source: Any) -> tuple[tuple[list, list], tuple[list, list]]:
    """The state tensors of two modules of the same layout, which share storage with the
    modules' parameters and buffers: ((float targets, float sources), (other targets, others))."""
    floats: tuple[list, list] = ([], [])
    others: tuple[list, list] = ([], [])
    pairs = zip(target.state_dict().values(), source.state_dict().values(), strict=True)
    for t, s in pairs:
        kind = floats if t.is_floating_point() else others
        kind[0].append(t)
        kind[1].append(s)
    return floats, others


class TensorState:
    """A bare tensor as an entry of `stateful()` (SAC's log alpha, which is no module's
    parameter): its value in state dicts, loaded in place so its optimizer keeps it."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.tensor.detach().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.tensor.copy_(torch.as_tensor(state["value"], device=self.tensor.device))


class SAC(OffPolicyAlgorithm):
    """Soft Actor-Critic (Haarnoja et al. 2018, arXiv:1801.01290; twin critics and automatic
    entropy tuning as in arXiv:1812.05905).

    pi(a|s): a = tanh(u) * scale + center, u ~ N(mu(s), sigma(s)^2) (`heads.SquashedGaussian`)
    y      = r + gamma * (1 - terminated) * (min_i Q_targ_i(s', a') - alpha * log pi(a'|s')),
             a' ~ pi(.|s')
    L_Q    = 1/2 * sum_i mean (Q_i(s, a) - y)^2              (both critics, one backward)
    L_pi   = mean(alpha * log pi(a~|s) - min_i Q_i(s, a~)),  a~ = the reparameterized sample
    L_alpha = -mean(log alpha * (log pi(a~|s) + H_target)),  H_target = -|A| by default
    theta_targ_i <- tau * theta_i + (1 - tau) * theta_targ_i

    Each gradient step updates the critics, then (every `policy_frequency` critic updates: the
    TD3-style delay, Fujimoto et al. 2018; 1 = every step, as in the paper) the actor against
    the freshly updated critics and alpha, with the alpha of the step's start for the target and
    the actor loss; the targets follow every `target_update_interval` critic updates. With
    `autotune: false` alpha stays at `alpha`. The first `learning_starts` env steps act
    uniformly at random; later ones sample the policy with the algorithm's numpy generator.
    Evaluation acts with the squashed mean, tanh(mu(s)) * scale + center.

    The actor loss's backward reaches the actor's parameters only: gradients of L_pi with
    respect to the critics' weights would be thrown away, so they are not computed.
    """

    obs_kinds = ("vector",)
    action_kinds = ("continuous",)
    roles = ("actor", "q")
    rules = (
        *shared("total_steps", "lr", "buffer_size", "batch_size", "gamma"),
        *shared("learning_starts", "tau", "normalize_obs"),
        positive("algo.q_lr", optional=True),
        positive_int("algo.train_freq"),
        positive_int("algo.gradient_steps"),
        positive_int("algo.policy_frequency"),
        positive_int("algo.target_update_interval"),
        boolean("algo.autotune"),
        positive("algo.alpha"),
        Rule("algo.target_entropy", is_number, "null or a number", optional=True),
    )
    training_state = ("actor_optimizer", "q_optimizer", "alpha_optimizer")

    def __init__(self, cfg: Any, spec: Any, device: Any, seed: int) -> None:
        from runner_core.networks.init import init_default

        super().__init__(cfg, spec, device, seed)
        hp = self.hp
        self.head = heads.SquashedGaussian(spec.act)
        self.act_dim = self.head.dim
        # actor: mean and log-std of u; twin critics Q_i(s, a) of [s, a]; torch's default
        # initialisation, drawn from the algorithm's generator (the seed fixes the weights)
        self.actor = self.build("actor", self.head.out_features)
        self.critics = torch.nn.ModuleList(
            [self.build("q", 1, extra_features=self.act_dim) for _ in range(2)]
        )
        init_default(self.actor, self.rng)
        init_default(self.critics, self.rng)
        self.critic_targets = frozen_copy(self.critics)
        self.polyak_pairs = tensor_pairs(self.critic_targets, self.critics)
        self.actor_params = list(self.actor.parameters())
        self.actor_optimizer = adam(self.actor_params, hp.lr, device)
        q_lr = hp.lr if hp.q_lr is None else hp.q_lr
        self.q_optimizer = adam(self.critics.parameters(), q_lr, device)

        # entropy temperature, learned as log alpha (positive alpha, scale-free steps)
        self.target_entropy = float(
            -self.act_dim if hp.target_entropy is None else hp.target_entropy
        )
        self.log_alpha = torch.full(
            (), math.log(hp.alpha), device=device, requires_grad=bool(hp.autotune)
        )
        self.alpha_optimizer = adam([self.log_alpha], hp.lr, device) if hp.autotune else None
        self.actor_learned = self.actor_params + ([self.log_alpha] if hp.autotune else [])

        self.buffer = ReplayBuffer(hp.buffer_size, spec.obs, spec.act)
        self.save_buffer = bool(cfg.checkpoint.save_replay_buffer)
        self.critic_updates = 0  # gradient steps so far (the delays count them)
        self.stat_names = CRITIC_STATS + ACTOR_STATS[: 4 if hp.autotune else 3]
        # the last actor update's stats, reported on the critic-only steps in between
        self.actor_stats = torch.zeros(len(self.stat_names) - 2, device=device)

    def stateful(self) -> dict[str, Any]:
        state = {
            **super().stateful(),
            "actor": self.actor,
            "critics": self.critics,
            "critic_targets": self.critic_targets,
            "log_alpha": TensorState(self.log_alpha),
            "actor_optimizer": self.actor_optimizer,
            "q_optimizer": self.q_optimizer,
        }
        if self.alpha_optimizer is not None:
            state["alpha_optimizer"] = self.alpha_optimizer
        if self.save_buffer:
            state["buffer"] = self.buffer
        return state

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "critic_updates": self.critic_updates,
            "actor_stats": self.actor_stats.cpu().tolist(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.critic_updates = int(state["critic_updates"])
        self.actor_stats = torch.tensor(state["actor_stats"], device=self.device)

    # acting ------------------------------------------------------------------------------------
    def actor_outputs(self, obs: np.ndarray) -> np.ndarray:
        """The actor's outputs (the head's parameters) for raw observations, in numpy."""
        with torch.inference_mode():
            return self.actor(self.tensor(self.observe(obs))).cpu().numpy()

    def explore(self, obs: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
        if step < self.hp.learning_starts:
            act = self.spec.act
            actions = self.rng.uniform(act.low, act.high, size=(len(obs), *act.shape))
            actions = actions.astype(np.float32)
        else:
            actions, _ = self.head.sample(self.actor_outputs(obs), self.rng)
        return actions, actions

    def evaluation_policy(self, deterministic: bool, rng: np.random.Generator) -> Policy:
        """The squashed mean action, or a sample of the policy drawn from `rng`."""
        head = self.head
        if deterministic:
            return lambda obs: head.mode(self.actor_outputs(obs))
        return lambda obs: head.sample(self.actor_outputs(obs), rng)[0]

    # learning ----------------------------------------------------------------------------------
    def q_values(self, critics: Any, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """(Q_1(s, a), Q_2(s, a)) stacked: shape (2, B)."""
        x = torch.cat([obs.flatten(1), actions.flatten(1)], dim=1)
        return torch.cat([q(x) for q in critics], dim=1).T

    def update(self, batch: ReplayBatch) -> dict[str, float]:
        hp = self.hp
        obs, actions, rewards, next_obs, terminated = batch.to_tensors(self.device)
        alpha = self.log_alpha.detach().exp()

        # critics: regress both on the soft TD target of the target critics
        with torch.no_grad():
            next_actions, next_log_pi = self.head.rsample(self.actor(next_obs))
            next_q = self.q_values(self.critic_targets, next_obs, next_actions).min(0).values
            target = soft_td_target(rewards, terminated, next_q, next_log_pi, alpha, hp.gamma)
        q = self.q_values(self.critics, obs, actions)
        qf_loss = 0.5 * (q - target).square().mean(1).sum()
        self.q_optimizer.zero_grad(set_to_none=True)
        qf_loss.backward()
        self.q_optimizer.step()

        if self.critic_updates % hp.policy_frequency == 0:
            self.actor_stats = self.update_actor(obs, alpha)
        self.critic_updates += 1
        if self.critic_updates % hp.target_update_interval == 0:
            self.update_targets(hp.tau)
        # one transfer for all the stats, not one `.item()` each
        stats = torch.cat([torch.stack([qf_loss.detach(), q.detach().mean()]), self.actor_stats])
        return dict(zip(self.stat_names, stats.tolist(), strict=True))

    def update_targets(self, tau: float) -> None:
        """theta_targ <- tau * theta + (1 - tau) * theta_targ for every float tensor of the
        critics (`common.polyak_update`, with the tensors listed once instead of every step)."""
        (targets, sources), (int_targets, int_sources) = self.polyak_pairs
        with torch.no_grad():
            torch._foreach_lerp_(targets, sources, tau)
            for t, s in zip(int_targets, int_sources, strict=True):
                t.copy_(s)

    def update_actor(self, obs: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """One step of the actor (against the critics as they are now) and, if tuned, of
        alpha; returns their stats (actor_loss, alpha, entropy[, alpha_loss]) as a tensor."""
        actions, log_pi = self.head.rsample(self.actor(obs))
        min_q = self.q_values(self.critics, obs, actions).min(0).values
        actor_loss = (alpha * log_pi - min_q).mean()
        log_pi = log_pi.detach()
        stats = [actor_loss.detach(), alpha, -log_pi.mean()]
        loss, optimizers = actor_loss, [self.actor_optimizer]
        if self.alpha_optimizer is not None:
            alpha_loss = -(self.log_alpha * (log_pi + self.target_entropy)).mean()
            stats.append(alpha_loss.detach())
            # the two losses share no parameters (log pi is detached here, alpha there), so
            # one backward of their sum gives each its own gradients
            loss = loss + alpha_loss
            optimizers.append(self.alpha_optimizer)
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        # only the actor's parameters and log alpha: no gradients for the critics' weights
        loss.backward(inputs=self.actor_learned)
        for optimizer in optimizers:
            optimizer.step()
        return torch.stack(stats)
