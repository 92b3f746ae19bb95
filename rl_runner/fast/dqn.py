"""DQN on the numpy backend: `rl_runner.algos.off_policy.DQN`'s maths for plain MLPs, with the
Q-network, its target network, gradients and Adam in numpy (see `rl_runner.fast`).

The Huber loss's gradient with respect to Q(s, a) is clip(Q(s, a) - y, -1, 1) / B (and 0 for the
other actions); the network backpropagates it (`NumpyMLP.backward`). Same seed, same initial
weights, same exploration draws and batches as the reference; tests hold updates of the two to
the same weights.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rl_runner.algos.base import OffPolicyAlgorithm
from rl_runner.algos.common import linear
from rl_runner.algos.off_policy.dqn import DQN
from rl_runner.buffers import ReplayBatch, ReplayBuffer
from rl_runner.fast.nets import NumpyAdam, NumpyNetworks, encoder
from runner_core.networks import role_config


class FastDQN(DQN):
    """`DQN` with plain MLPs, in numpy (see the module docstring)."""

    backend = "numpy"

    def __init__(self, cfg: Any, spec: Any, device: Any, seed: int) -> None:
        OffPolicyAlgorithm.__init__(self, cfg, spec, device, seed)
        self.n_actions = spec.act.n
        net = role_config(cfg.network, "q")
        parts = {"q": (spec.obs.flat_dim, self.n_actions, net["hidden"], net["activation"])}
        prefix = {"q": "body."}  # the reference's q_net is a Network: its keys start at body.
        self.q_net = NumpyNetworks(parts, self.rng, "default", prefix=prefix)
        rng = np.random.default_rng(0)  # unused draws: the target starts as a copy
        self.target_net = NumpyNetworks(parts, rng, "default", prefix=prefix)
        self.target_net.copy_from(self.q_net)
        self.optimizer = NumpyAdam(self.q_net.params, self.hp.lr)
        self.encode = encoder(spec.obs.kind, spec.obs.n)
        self.buffer = ReplayBuffer(self.hp.buffer_size, spec.obs, spec.act)
        self.save_buffer = bool(cfg.checkpoint.save_replay_buffer)
        self.total_steps = int(self.hp.total_steps)
        self.last_target_step = 0

    def greedy(self, obs: np.ndarray) -> np.ndarray:
        return self.q_net["q"](self.encode(self.observe(obs))).argmax(1)

    def on_env_step(self, step: int) -> None:
        if self.hp.anneal_lr:
            self.optimizer.lr = linear(self.hp.lr, 0.0, step / self.total_steps)
        if step - self.last_target_step >= self.hp.target_update_interval:
            self.last_target_step = step
            self.target_net.copy_from(self.q_net, self.hp.tau)

    def update(self, batch: ReplayBatch) -> dict[str, float]:
        net, target_net = self.q_net["q"], self.target_net["q"]
        obs, next_obs = self.encode(batch.obs), self.encode(batch.next_obs)
        actions = batch.actions
        rows = np.arange(len(actions))
        # TD target
        next_q_target = target_net(next_obs)
        if self.hp.double_q:
            next_q = next_q_target[rows, net(next_obs).argmax(1)]
        else:
            next_q = next_q_target.max(1)
        not_done = 1.0 - batch.terminated
        target = batch.rewards + np.float32(self.hp.gamma) * not_done * next_q
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
