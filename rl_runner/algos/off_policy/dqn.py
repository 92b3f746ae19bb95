"""DQN for discrete actions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from rl_runner.algos.base import OffPolicyAlgorithm, Policy
from rl_runner.algos.common import frozen_copy, gradient_step, linear, polyak_update, set_lr
from rl_runner.buffers import ReplayBatch, ReplayBuffer
from runner_core.lazy import lazy
from runner_core.networks import adam
from runner_core.validation import boolean, in_range, positive_int, shared

if TYPE_CHECKING:
    import torch
else:
    torch = lazy("torch")  # the numpy backend subclasses DQN without importing torch


class DQN(OffPolicyAlgorithm):
    """Deep Q-Network (Mnih et al. 2015, Nature 518:529), optionally Double DQN (van Hasselt et
    al. 2016).

    y = r + gamma * (1 - terminated) * max_a' Q_target(s', a')
        (Double: Q_target(s', argmax_a' Q(s', a')))
    L = Huber(Q(s, a) - y); epsilon-greedy exploration decays linearly from
    exploration_initial_eps to exploration_final_eps over exploration_fraction of the run; the
    target network is copied (tau = 1) or Polyak-averaged every target_update_interval env steps;
    the learning rate optionally decays linearly to 0 over the run.

    This is the reference, in autograd. On the CPU, plain MLPs run on the numpy backend
    instead (`rl_runner.fast.dqn`), held to this class by agreement tests.
    """

    obs_kinds = ("vector", "image", "discrete")
    action_kinds = ("discrete",)
    roles = ("q",)
    rules = (
        *shared(
            "total_steps",
            "lr",
            "anneal_lr",
            "buffer_size",
            "batch_size",
            "gamma",
            "learning_starts",
            "tau",
            "max_grad_norm",
            "normalize_obs",
        ),
        positive_int("algo.train_freq"),
        positive_int("algo.gradient_steps"),
        positive_int("algo.target_update_interval"),
        in_range("algo.exploration_fraction", 0.0, 1.0),
        in_range("algo.exploration_initial_eps", 0.0, 1.0),
        in_range("algo.exploration_final_eps", 0.0, 1.0),
        boolean("algo.double_q"),
    )

    def __init__(self, cfg: Any, spec: Any, device: Any, seed: int) -> None:
        from runner_core.networks.init import init_default

        super().__init__(cfg, spec, device, seed)
        self.n_actions = spec.act.n
        self.q_net = self.build("q", self.n_actions)
        init_default(self.q_net, self.rng)
        self.target_net = frozen_copy(self.q_net)
        self.optimizer = adam(self.q_net.parameters(), self.hp.lr, device)
        self.buffer = ReplayBuffer(self.hp.buffer_size, spec.obs, spec.act)
        self.save_buffer = bool(cfg.checkpoint.save_replay_buffer)
        self.total_steps = int(self.hp.total_steps)
        self.last_target_step = 0

    def stateful(self) -> dict[str, Any]:
        state = {
            **super().stateful(),
            "q_net": self.q_net,
            "target_net": self.target_net,
            "optimizer": self.optimizer,
        }
        if self.save_buffer:
            state["buffer"] = self.buffer
        return state

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "last_target_step": self.last_target_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.last_target_step = int(state["last_target_step"])

    # acting ------------------------------------------------------------------------------------
    def epsilon(self, step: int) -> float:
        hp = self.hp
        decay_steps = hp.exploration_fraction * self.total_steps
        fraction = step / decay_steps if decay_steps > 0 else 1.0
        return linear(hp.exploration_initial_eps, hp.exploration_final_eps, fraction)

    def explore(self, obs: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
        if step < self.hp.learning_starts:
            actions = self.rng.integers(0, self.n_actions, size=len(obs))
        else:
            actions = self.epsilon_greedy(obs, self.epsilon(step), self.rng)
        return actions, actions

    def epsilon_greedy(
        self, obs: np.ndarray, epsilon: float, rng: np.random.Generator
    ) -> np.ndarray:
        """A uniformly random action with probability epsilon, else the greedy one."""
        n = len(obs)
        random_actions = rng.integers(0, self.n_actions, size=n)
        return np.where(rng.random(n) < epsilon, random_actions, self.greedy(obs))

    def greedy(self, obs: np.ndarray) -> np.ndarray:
        """argmax_a Q(s, a) for raw observations."""
        with torch.inference_mode():
            return self.q_net(self.tensor(self.observe(obs))).argmax(-1).cpu().numpy()

    def evaluation_policy(self, deterministic: bool, rng: np.random.Generator) -> Policy:
        """Greedy, or epsilon-greedy at the final exploration rate."""
        if deterministic:
            return self.greedy
        return lambda obs: self.epsilon_greedy(obs, self.hp.exploration_final_eps, rng)

    # learning ----------------------------------------------------------------------------------
    def on_env_step(self, step: int) -> None:
        if self.hp.anneal_lr:
            set_lr(self.optimizer, linear(self.hp.lr, 0.0, step / self.total_steps))
        if step - self.last_target_step >= self.hp.target_update_interval:
            self.last_target_step = step
            polyak_update(self.target_net, self.q_net, self.hp.tau)

    def update(self, batch: ReplayBatch) -> dict[str, float]:
        obs, actions, rewards, next_obs, terminated = batch.to_tensors(self.device)
        # TD target
        with torch.no_grad():
            next_q_target = self.target_net(next_obs)
            if self.hp.double_q:
                next_actions = self.q_net(next_obs).argmax(-1, keepdim=True)
                next_q = next_q_target.gather(-1, next_actions).squeeze(-1)
            else:
                next_q = next_q_target.max(-1).values
            target = rewards + self.hp.gamma * (1.0 - terminated) * next_q
        q = self.q_net(obs).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        loss = torch.nn.functional.smooth_l1_loss(q, target)
        gradient_step(self.optimizer, loss, self.q_net.parameters(), self.hp.max_grad_norm)
        return {"td_loss": loss.item(), "q_values": q.mean().item()}
