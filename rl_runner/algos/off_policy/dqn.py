"""DQN for discrete actions."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from rl_runner.algos.base import OffPolicyAlgorithm
from rl_runner.buffers import ReplayBatch, ReplayBuffer
from runner_core.networks import NumpyMLP, build_network
from runner_core.optim import FlatAdam
from runner_core.validation import (
    boolean,
    in_range,
    non_negative_int,
    positive,
    positive_int,
)


class DQN(OffPolicyAlgorithm):
    """Deep Q-Network (Mnih et al. 2015, Nature 518:529), optionally Double DQN (van Hasselt et
    al. 2016).

    y = r + gamma * (1 - terminated) * max_a' Q_target(s', a')
        (Double: Q_target(s', argmax_a' Q(s', a')))
    L = Huber(Q(s, a) - y); epsilon-greedy exploration decays linearly from
    exploration_initial_eps to exploration_final_eps over exploration_fraction of the run; the
    target network is copied (tau = 1) or Polyak-averaged every target_update_interval env steps;
    the learning rate optionally decays linearly to 0 over the run.
    """

    rules = (
        positive_int("algo.total_steps"),
        positive("algo.lr"),
        boolean("algo.anneal_lr"),
        positive_int("algo.buffer_size"),
        positive_int("algo.batch_size"),
        in_range("algo.gamma", 0.0, 1.0),
        non_negative_int("algo.learning_starts"),
        positive_int("algo.train_freq"),
        positive_int("algo.gradient_steps"),
        positive_int("algo.target_update_interval"),
        in_range("algo.tau", 0.0, 1.0),
        in_range("algo.exploration_fraction", 0.0, 1.0),
        in_range("algo.exploration_initial_eps", 0.0, 1.0),
        in_range("algo.exploration_final_eps", 0.0, 1.0),
        positive("algo.max_grad_norm"),
        boolean("algo.double_q"),
        boolean("algo.normalize_obs"),
    )

    def __init__(self, cfg, info, device, seed):
        super().__init__(cfg, info, device, seed)
        self.q_net = build_network(cfg.network, info.obs_dim, info.n_actions).to(device)
        self.target_net = build_network(cfg.network, info.obs_dim, info.n_actions).to(device)
        self.target_net.load_state_dict(self.q_net.state_dict())
        self.target_net.requires_grad_(False)
        self.optimizer = FlatAdam(self.q_net, self.hp.lr)
        # on the CPU: acting and gradient steps in numpy on the networks' own memory (the target
        # network's mirror stays current: `update_target` and resuming copy into it in place)
        self.numpy_q = NumpyMLP.of(self.q_net, train=True)
        self.numpy_target = NumpyMLP.of(self.target_net)
        if self.numpy_q is None or self.numpy_target is None:
            self.numpy_q = self.numpy_target = None
        obs_dtype = np.int64 if info.obs_discrete is not None else np.float32
        self.buffer = ReplayBuffer(self.hp.buffer_size, info.obs_shape, obs_dtype, device)
        self.save_buffer = bool(cfg.checkpoint.save_replay_buffer)
        self.total_steps = int(self.hp.total_steps)
        self.last_target_step = 0

    def stateful(self):
        state = {
            **super().stateful(),
            "q_net": self.q_net,
            "target_net": self.target_net,
            "optimizer": self.optimizer,
        }
        if self.save_buffer:
            state["buffer"] = self.buffer
        return state

    def state_dict(self):
        return {**super().state_dict(), "last_target_step": self.last_target_step}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.last_target_step = int(state["last_target_step"])

    def epsilon(self, step: int) -> float:
        hp = self.hp
        decay_steps = hp.exploration_fraction * self.total_steps
        frac = min(step / decay_steps, 1.0) if decay_steps > 0 else 1.0
        return hp.exploration_initial_eps + frac * (
            hp.exploration_final_eps - hp.exploration_initial_eps
        )

    def explore(self, obs: np.ndarray, step: int) -> np.ndarray:
        if step < self.hp.learning_starts:
            return self.rng.integers(0, self.info.n_actions, size=len(obs))
        return self.epsilon_greedy(obs, self.epsilon(step), self.rng)

    def epsilon_greedy(
        self, obs: np.ndarray, epsilon: float, rng: np.random.Generator
    ) -> np.ndarray:
        """A uniformly random action with probability epsilon, else the greedy one."""
        n = len(obs)
        random_actions = rng.integers(0, self.info.n_actions, size=n)
        return np.where(rng.random(n) < epsilon, random_actions, self.predict(obs))

    @property
    def numpy_evaluation(self) -> bool:
        return self._numpy_observations() and self.numpy_q is not None

    def predict(self, obs: np.ndarray) -> np.ndarray:
        if self.numpy_q is not None:
            return self.numpy_q(self.encode_numpy(obs)).argmax(1)
        with torch.inference_mode():
            return self.q_net(self.encode(obs)).argmax(-1).cpu().numpy()

    def sample(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """epsilon-greedy at the final exploration rate."""
        return self.epsilon_greedy(obs, self.hp.exploration_final_eps, rng)

    def on_env_step(self, step: int, num_envs: int) -> None:
        if self.hp.anneal_lr:
            self.optimizer.lr = self.hp.lr * max(1.0 - step / self.total_steps, 0.0)
        if step - self.last_target_step >= self.hp.target_update_interval:
            self.last_target_step = step
            self.update_target()

    @torch.no_grad()
    def update_target(self) -> None:
        tau = self.hp.tau
        for p, tp in zip(self.q_net.parameters(), self.target_net.parameters(), strict=True):
            tp.lerp_(p, tau) if tau < 1.0 else tp.copy_(p)

    def update(self, batch: ReplayBatch) -> dict[str, float]:
        if self.numpy_q is not None:
            return self._update_numpy(batch)
        obs, next_obs = self.encode(batch.obs), self.encode(batch.next_obs)
        # TD target
        with torch.no_grad():
            next_q_target = self.target_net(next_obs)
            if self.hp.double_q:
                next_actions = self.q_net(next_obs).argmax(-1, keepdim=True)
                next_q = next_q_target.gather(-1, next_actions).squeeze(-1)
            else:
                next_q = next_q_target.max(-1).values
            target = batch.rewards + self.hp.gamma * (1.0 - batch.terminated) * next_q
        q = self.q_net(obs).gather(-1, batch.actions.unsqueeze(-1)).squeeze(-1)
        loss = F.smooth_l1_loss(q, target)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.clip_grad_norm_(self.hp.max_grad_norm)
        self.optimizer.step()
        return {"td_loss": loss.item(), "q_values": q.mean().item()}

    def _update_numpy(self, batch: ReplayBatch) -> dict[str, float]:
        """`update` in numpy, on the CPU (the same maths; the tests hold the two to the same
        results): no autograd, the Huber loss's gradient with respect to Q(s, a),
        clip(Q(s, a) - y, -1, 1) / B, backpropagated by hand (see `NumpyMLP.backward`)."""
        net, target_net = self.numpy_q, self.numpy_target
        assert net is not None and target_net is not None
        obs = self.encode_numpy(np.asarray(batch.obs))
        next_obs = self.encode_numpy(np.asarray(batch.next_obs))
        actions = np.asarray(batch.actions)
        rows = np.arange(len(actions))
        # TD target
        next_q_target = target_net(next_obs)
        if self.hp.double_q:
            next_q = next_q_target[rows, net(next_obs).argmax(1)]
        else:
            next_q = next_q_target.max(1)
        not_done = 1.0 - np.asarray(batch.terminated)
        target = np.asarray(batch.rewards) + np.float32(self.hp.gamma) * not_done * next_q
        q_all, activations = net.forward_train(obs)
        q = q_all[rows, actions]
        error = q - target
        grad = np.zeros_like(q_all)
        grad[rows, actions] = np.clip(error, -1.0, 1.0) / len(q)
        net.backward(activations, grad)
        self.optimizer.step(max_grad_norm=self.hp.max_grad_norm)
        abs_error = np.abs(error)
        loss = np.where(abs_error < 1.0, 0.5 * np.square(error), abs_error - 0.5).mean()
        return {"td_loss": float(loss), "q_values": float(q.mean())}
