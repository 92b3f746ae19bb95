"""PPO on the numpy backend: `rl_runner.algos.on_policy.PPO`'s maths for discrete actions and
plain MLPs, with the networks, their gradients and Adam in numpy (see `rl_runner.fast`).

The loss is the reference's (`PPO.losses`); here its gradient with respect to the network outputs
is written out (`loss_grads`, derived below and tested against autograd on the reference's
loss), and the networks backpropagate it (`NumpyMLP.backward`). Same seed, same initial weights,
same minibatch order and same sampled actions as the reference; tests hold whole updates of the
two to the same weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from rl_runner.algos.base import OnPolicyAlgorithm, Policy
from rl_runner.algos.common import linear
from rl_runner.algos.on_policy.ppo import PPO, Batch, explained_variance, minibatches
from rl_runner.buffers import RolloutBuffer
from rl_runner.fast.nets import NumpyAdam, NumpyMLP, NumpyNetworks, encoder
from rl_runner.heads import Categorical, log_softmax, row_max, row_sum
from runner_core.networks import role_config


class FastPPO(PPO):
    """`PPO` for discrete actions with plain MLPs, in numpy (see the module docstring)."""

    backend = "numpy"

    def __init__(self, cfg: Any, spec: Any, device: Any, seed: int) -> None:
        OnPolicyAlgorithm.__init__(self, cfg, spec, device, seed)
        self.head = Categorical(spec.act)
        parts = {}
        for role, out in (("actor", self.head.out_features), ("critic", 1)):
            net = role_config(cfg.network, role)
            parts[role] = (spec.obs.flat_dim, out, net["hidden"], net["activation"])
        gains = {"actor": (math.sqrt(2), 0.01), "critic": (math.sqrt(2), 1.0)}
        self.policy = NumpyNetworks(parts, self.rng, "orthogonal", gains)
        self.optimizer = NumpyAdam(self.policy.params, self.hp.lr, eps=self.hp.adam_eps)
        self.encode = encoder(spec.obs.kind, spec.obs.n)

    # acting ------------------------------------------------------------------------------------
    def _forward(self) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """obs -> (logits, V(s)) with the weights as they are now: both networks side by side
        as one (half the numpy calls) where they have the same depth and activations."""
        actor, critic = self.policy["actor"], self.policy["critic"]
        fused = NumpyMLP.stack([actor, critic])
        if fused is None:
            return lambda obs: (actor(obs), critic(obs)[:, 0])

        def forward(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            out = fused(obs)
            return out[:, :-1], out[:, -1]

        return forward

    def rollout_policy(self) -> Callable[[np.ndarray], tuple[np.ndarray, ...]]:
        forward, head, rng = self._forward(), self.head, self.rng

        def act(obs: np.ndarray) -> tuple[np.ndarray, ...]:
            logits, values = forward(self.encode(obs))
            actions, logprobs = head.sample(logits, rng)
            return actions, actions, logprobs, values

        return act

    def outputs(self, obs: np.ndarray) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        logits, values = self._forward()(self.encode(obs))
        return (logits,), values

    def evaluation_policy(self, deterministic: bool, rng: np.random.Generator) -> Policy:
        actor, head = self.policy["actor"], self.head  # the critic is not needed

        def act(obs: np.ndarray) -> np.ndarray:
            logits = actor(self.encode(self.observe(obs)))
            return head.mode(logits) if deterministic else head.sample(logits, rng)[0]

        return act

    # learning ----------------------------------------------------------------------------------
    def update(self, buf: RolloutBuffer, progress: float) -> dict[str, float]:
        hp = self.hp
        lr = linear(hp.lr, 0.0, progress) if hp.anneal_lr else hp.lr
        clip = linear(hp.clip_coef, 0.0, progress) if hp.anneal_clip else hp.clip_coef
        self.optimizer.lr = lr
        names = ("obs", "actions", "logprobs", "advantages", "returns", "values")
        rollout = Batch(*(buf.flat(n) for n in names))
        actor, critic = self.policy["actor"], self.policy["critic"]
        n_actions = self.head.n

        clipped = 0  # ratios outside the clip range, summed over minibatches as fractions
        steps = 0
        cached: tuple[Batch, LossTargets] | None = None  # the whole rollout's, every epoch
        rollout = rollout._replace(obs=self.encode(rollout.obs))
        for batch in minibatches(rollout, hp.batch_size, hp.num_epochs, hp.norm_adv, self.rng):
            if cached is not None and cached[0] is batch:
                targets = cached[1]
            else:
                targets = loss_targets(batch, n_actions, clip, hp)
                cached = (batch, targets)
            logits, actor_acts = actor.forward_train(batch.obs)
            values, critic_acts = critic.forward_train(batch.obs)
            values = values[:, 0]
            grad_logits, grad_values, ratio, logratio = loss_grads(logits, values, targets)
            actor.backward(actor_acts, grad_logits)
            critic.backward(critic_acts, grad_values[:, None])
            self.optimizer.step(max_grad_norm=hp.max_grad_norm)
            clipped += np.count_nonzero(np.abs(ratio - 1.0) > clip) / len(ratio)
            steps += 1
            # the KL estimate every minibatch only for early stopping, else the last one's
            if hp.target_kl is not None and kl_estimate(ratio, logratio) > hp.target_kl:
                break
        # the last minibatch's losses, from its outputs before its step (backward leaves them)
        policy_loss, value_loss, entropy = losses(logits, values, batch, clip, hp.clip_vloss)
        return {
            "policy_loss": policy_loss,
            "value_loss": value_loss,
            "entropy": entropy,
            "approx_kl": kl_estimate(ratio, logratio),
            "clipfrac": clipped / steps,
            "explained_variance": explained_variance(rollout.old_values, rollout.returns),
            "charts/learning_rate": lr,
            "charts/clip_coef": clip,
        }


def kl_estimate(ratio: np.ndarray, logratio: np.ndarray) -> float:
    """KL(pi_old || pi) estimated as mean((r - 1) - log r) (Schulman's k3 estimator)."""
    return float(((ratio - 1.0) - logratio).mean())


def losses(
    logits: np.ndarray, values: np.ndarray, batch: Batch, clip: float, clip_vloss: bool
) -> tuple[float, float, float]:
    """`PPO.losses`' policy loss, value loss and entropy of numpy arrays, as floats (the
    update's diagnostics)."""
    actions, old_logprobs, advantages, returns, old_values = batch[1:]
    log_probs = log_softmax(logits)
    entropy = -(np.exp(log_probs) * log_probs).sum(-1)
    ratio = np.exp(log_probs[np.arange(len(actions)), actions] - old_logprobs)
    pg_loss = np.maximum(-advantages * ratio, -advantages * np.clip(ratio, 1 - clip, 1 + clip))
    v_loss = np.square(values - returns)
    if clip_vloss:
        v_clipped = old_values + np.clip(values - old_values, -clip, clip)
        v_loss = np.maximum(v_loss, np.square(v_clipped - returns))
    return float(pg_loss.mean()), float(v_loss.mean()), float(entropy.mean())


class LossTargets(NamedTuple):
    """What the loss gradients of a minibatch need besides the network outputs, worked out once
    per minibatch (once per update when the minibatch is the whole rollout)."""

    onehot: np.ndarray  # (B, K) one-hot actions
    rows: np.ndarray  # 0..B-1, to pick each row's action
    adv_slope: np.ndarray  # -A / B: dL/dr where the surrogate is not clipped
    sign: np.ndarray  # sign(A)
    bound: np.ndarray  # sign(A) + eps: the surrogate is not clipped where sign(A) r <= bound
    scaled_returns: np.ndarray  # -c_v 2 R / B
    value_scale: float  # c_v 2 / B
    entropy_scale: float  # c_e / B
    batch: Batch  # old log-probs, and the clipped value loss's inputs
    clip: float
    clip_vloss: bool


def loss_targets(batch: Batch, n_actions: int, clip: float, hp: Any) -> LossTargets:
    size = batch.actions.shape[0]
    advantages = batch.advantages
    sign = np.sign(advantages)
    value_scale = 2.0 * hp.vf_coef / size
    return LossTargets(
        onehot=np.eye(n_actions, dtype=advantages.dtype)[batch.actions],
        rows=np.arange(size),
        adv_slope=advantages * (-1.0 / size),
        sign=sign,
        bound=sign + clip,
        scaled_returns=batch.returns * -value_scale,
        value_scale=value_scale,
        entropy_scale=hp.ent_coef / size,
        batch=batch,
        clip=clip,
        clip_vloss=hp.clip_vloss,
    )


def loss_grads(
    logits: np.ndarray, values: np.ndarray, t: LossTargets
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """dL/dlogits and dL/dV for L = policy - ent_coef * entropy + vf_coef * value (the losses of
    `PPO.losses`), plus the ratios r and log-ratios they came from.

    With p = softmax(z), l = log p, r = exp(l_a - l_old), A the advantages, batch size B:
    - policy: max(-A r, -A clip(r)) has slope -A r / B with respect to l_a where the unclipped
      term is the larger (A r <= A clip(r): for A > 0 where r <= 1 + eps, for A < 0 where
      r >= 1 - eps, i.e. where sign(A) r <= sign(A) + eps) and 0 where the clipped constant is;
      dl_a/dz = onehot(a) - p.
    - entropy: H = -sum_k p_k l_k, dH/dz = -p (l + H).
    - value: (V - R)^2 has slope 2 (V - R) / B; clipped, max((V - R)^2, (V_clip - R)^2) takes the
      slope of the larger term, and V_clip = V_old + clip(V - V_old, -eps, eps) has slope 1
      inside [V_old - eps, V_old + eps] and 0 outside.
    """
    shifted = logits - row_max(logits)
    probs = np.exp(shifted)
    total = row_sum(probs)
    probs /= total
    log_total = np.log(total, out=total)
    # log pi(a|s) - log pi_old(a|s), with log pi = shifted - log_total
    logratio = shifted[t.rows, t.batch.actions]
    logratio -= log_total[:, 0]
    logratio -= t.batch.old_logprobs
    ratio = np.exp(logratio)

    slope = t.adv_slope * ratio  # dL/dl_a where the surrogate is not clipped, else 0
    slope *= t.sign * ratio <= t.bound
    grad_logits = np.subtract(t.onehot, probs)
    grad_logits *= slope[:, None]
    if t.entropy_scale:
        log_probs = shifted - log_total
        entropy = -row_sum(probs * log_probs)
        grad_logits += t.entropy_scale * probs * (log_probs + entropy)

    if t.clip_vloss:
        returns, old_values, clip = t.batch.returns, t.batch.old_values, t.clip
        error = values - returns
        step = values - old_values
        error_clipped = old_values + np.clip(step, -clip, clip) - returns
        error = np.where(
            np.square(error) >= np.square(error_clipped),
            error,
            error_clipped * (np.abs(step) <= clip),
        )
        grad_values = error * np.float32(t.value_scale)
    else:
        grad_values = t.scaled_returns + np.float32(t.value_scale) * values
    return grad_logits, grad_values, ratio, logratio
