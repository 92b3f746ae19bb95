"""PPO for discrete actions."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from omegaconf import DictConfig

from rl_runner.algos.base import OnPolicyAlgorithm
from rl_runner.buffers import RolloutBuffer
from rl_runner.envs import EnvInfo
from rl_runner.numpy_policy import NumpyActorCritic, log_softmax
from runner_core.device import NumpyCPU
from runner_core.numpy_nets import NumpyAdam
from runner_core.validation import (
    boolean,
    in_range,
    non_negative,
    positive,
    positive_int,
)

if TYPE_CHECKING:
    import torch


class PPO(OnPolicyAlgorithm):
    """Proximal Policy Optimization (Schulman et al. 2017, arXiv:1707.06347).

    r_t(theta) = pi_theta(a_t|s_t) / pi_old(a_t|s_t), A_t from GAE(gamma, lambda)
    L_clip = -E[min(r_t A_t, clip(r_t, 1 - eps, 1 + eps) A_t)]
    L = L_clip + c_v * (V(s_t) - R_t)^2 - c_e * H[pi(.|s_t)]
    with eps = clip_coef, c_v = vf_coef, c_e = ent_coef; the learning rate (and eps, if asked)
    decay linearly to 0 over the run.

    Each gradient step runs without autograd: `ppo_loss_grads` gives dL/dlogits and dL/dV
    (hand-derived; `ppo_losses` states L as written above, and tests compare the two through
    autograd), and the policy backpropagates them through its networks.

    Plain MLPs on the CPU train in numpy (`_update_numpy`): a gradient step is ~50 small
    operations on a 64x64 MLP, where torch's per-call cost is 3-5 us and numpy's ~1 us. On
    `NUMPY_CPU` the networks and Adam live in numpy too (`NumpyActorCritic`, `NumpyAdam`) and the
    run never imports torch; on a torch CPU device the numpy code works on the torch parameters'
    memory. Other devices and networks train through torch (`_update_torch`).
    """

    rules = (
        positive_int("algo.total_steps"),
        positive("algo.lr"),
        boolean("algo.anneal_lr"),
        positive_int("algo.num_steps"),
        in_range("algo.gamma", 0.0, 1.0),
        in_range("algo.gae_lambda", 0.0, 1.0),
        positive_int("algo.num_epochs"),
        positive_int("algo.batch_size"),
        positive("algo.clip_coef"),
        boolean("algo.anneal_clip"),
        boolean("algo.clip_vloss"),
        boolean("algo.norm_adv"),
        non_negative("algo.ent_coef"),
        non_negative("algo.vf_coef"),
        positive("algo.max_grad_norm"),
        positive("algo.target_kl", optional=True),
        positive("algo.adam_eps"),
        boolean("algo.normalize_obs"),
    )

    def __init__(self, cfg, info, device, seed):
        super().__init__(cfg, info, device, seed)
        self.policy: Any
        self.optimizer: Any
        if isinstance(device, NumpyCPU):
            self.policy = NumpyActorCritic(info.obs_dim, info.n_actions, cfg.network, self.rng)
            self.optimizer = NumpyAdam(self.policy.params, self.hp.lr, eps=self.hp.adam_eps)
        else:
            from rl_runner.policies import CategoricalActorCritic
            from runner_core.optim import FlatAdam

            self.policy = CategoricalActorCritic(info.obs_dim, info.n_actions, cfg.network)
            self.policy.to(device)
            self.optimizer = FlatAdam(self.policy, self.hp.lr, eps=self.hp.adam_eps)
        # on the CPU, gradient steps run in numpy on the parameters' and gradients' memory
        self.numpy_nets = self.policy.numpy_training()

    @classmethod
    def runs_without_torch(cls, cfg: DictConfig, info: EnvInfo) -> bool:
        """Plain MLPs (tanh, ReLU or sigmoid, no batchnorm or dropout) on vector observations."""
        net = cfg.network
        return (
            net.type == "mlp"
            and net.activation in ("tanh", "relu", "sigmoid")
            and not net.batchnorm
            and float(net.dropout) == 0.0
            and info.obs_discrete is None
            and not cfg.algo.normalize_obs
        )

    def stateful(self):
        return {**super().stateful(), "policy": self.policy, "optimizer": self.optimizer}

    def update(self, buf: RolloutBuffer, progress: float) -> dict[str, float]:
        hp = self.hp
        remaining = 1.0 - progress
        lr = hp.lr * remaining if hp.anneal_lr else hp.lr
        clip = hp.clip_coef * remaining if hp.anneal_clip else hp.clip_coef
        self.optimizer.lr = lr

        # flatten the rollout, keeping only real transitions (not autoreset steps)
        valid = buf.valid.reshape(-1)
        keep = None if valid.all() else np.flatnonzero(valid)

        def flat(x: np.ndarray) -> np.ndarray:
            x = x.reshape(-1, *x.shape[2:])
            return x if keep is None else x[keep]

        rollout = Batch(*map(flat, (
            buf.obs, buf.actions, buf.logprobs, buf.advantages, buf.returns, buf.values
        )))  # fmt: skip
        if self.numpy_nets is not None:
            stats = self._update_numpy(rollout, clip)
        else:
            stats = self._update_torch(rollout, clip)
        return {**stats, "charts/learning_rate": lr, "charts/clip_coef": clip}

    def _steps(self, rollout: Batch, clip: float, gradients: Callable[..., tuple]) -> tuple:
        """The gradient steps of an update: for each minibatch of each epoch, `gradients(batch,
        targets)` sets the gradients and gives (logits, values, ratios, log-ratios), then Adam
        steps; the epochs stop early once the KL limit (if any) is passed. Returns the last
        minibatch with its outputs (before its step) and the ratios of all minibatches."""
        hp = self.hp
        ratios = []
        for batch, targets in self._minibatches(rollout, clip):
            logits, values, ratio, logratio = gradients(batch, targets)
            self.optimizer.step(max_grad_norm=hp.max_grad_norm)
            ratios.append(ratio)
            if hp.target_kl is not None and approx_kl(ratio, logratio) > hp.target_kl:
                break
        return batch, logits, values, ratio, logratio, ratios

    def _update_numpy(self, rollout: Batch, clip: float) -> dict[str, float]:
        """The update in numpy: gradients by `ppo_loss_grads_numpy` and the networks'
        hand-written backward, written where the optimizer steps on them."""
        actor, critic = self.numpy_nets

        def gradients(batch: Batch, targets: LossTargets) -> tuple:
            logits, actor_acts = actor.forward_train(batch.obs)
            values, critic_acts = critic.forward_train(batch.obs)
            values = values[:, 0]
            grad_logits, grad_values, ratio, logratio = ppo_loss_grads_numpy(
                logits, values, targets
            )
            actor.backward(actor_acts, grad_logits)
            critic.backward(critic_acts, grad_values[:, None])
            return logits, values, ratio, logratio

        batch, logits, values, ratio, logratio, ratios = self._steps(rollout, clip, gradients)
        policy, value, entropy = ppo_losses_numpy(logits, values, batch, clip, self.hp.clip_vloss)
        all_ratios = np.concatenate(ratios)
        returns, old_values = rollout.returns, rollout.old_values
        var_returns = float(returns.var())
        return {
            "policy_loss": policy,
            "value_loss": value,
            "entropy": entropy,
            "approx_kl": float(approx_kl(ratio, logratio)),
            "clipfrac": float((np.abs(all_ratios - 1.0) > clip).mean()),
            # 1 - Var[R - V] / Var[R]; 0 when the returns have no spread (then it is undefined,
            # and a NaN diagnostic would trip the trainer's finite check)
            "explained_variance": (
                1.0 - float((returns - old_values).var()) / var_returns if var_returns > 0 else 0.0
            ),
        }

    def _update_torch(self, rollout: Batch, clip: float) -> dict[str, float]:
        """The update through torch, on the training device."""
        import torch

        rollout = Batch(*(torch.from_numpy(x).to(self.device) for x in rollout))
        # the hand-written gradients need no autograd bookkeeping at all; other networks train
        # through autograd (see `MLP.forward_train`)
        grad_mode = nullcontext() if self.policy.autograd_needed else torch.no_grad()

        def gradients(batch: Batch, targets: LossTargets) -> tuple:
            logits, values, cache = self.policy.forward_train(batch.obs)
            grad_logits, grad_values, ratio, logratio = ppo_loss_grads(logits, values, targets)
            self.policy.backward(cache, grad_logits, grad_values)
            return logits, values, ratio, logratio

        with grad_mode:
            batch, logits, values, ratio, logratio, ratios = self._steps(rollout, clip, gradients)
        all_ratios = torch.cat(ratios)
        with torch.no_grad():
            losses = ppo_losses(logits, values, batch, clip, self.hp.clip_vloss)
        returns, old_values = rollout.returns, rollout.old_values
        var_returns = returns.var(correction=0)
        explained_var = (
            1 - (returns - old_values).var(correction=0) / var_returns
            if var_returns > 0
            else torch.zeros(())
        )
        return {
            "policy_loss": losses.policy.item(),
            "value_loss": losses.value.item(),
            "entropy": losses.entropy.item(),
            "approx_kl": approx_kl(ratio, logratio).item(),
            "clipfrac": ((all_ratios - 1.0).abs() > clip).float().mean().item(),
            "explained_variance": explained_var.item(),
        }

    def _minibatches(self, rollout: Batch, clip: float) -> Iterator[tuple[Batch, LossTargets]]:
        """Every epoch's minibatches in turn (tensors or numpy arrays, as the rollout is), with
        what their loss gradients need (`loss_targets`); the caller stops early by not asking
        for more."""
        hp = self.hp
        n_actions = self.info.n_actions

        def with_targets(batch: Batch) -> tuple[Batch, LossTargets]:
            return batch, loss_targets(
                batch, n_actions, clip, hp.clip_vloss, hp.ent_coef, hp.vf_coef
            )

        n = rollout.obs.shape[0]
        if hp.batch_size >= n:
            # a minibatch as large as the rollout is the rollout itself every epoch, without
            # shuffling or gathering (the losses are means, so the order does not matter), and
            # its targets are worked out once for all epochs
            if hp.norm_adv:
                rollout = rollout._replace(advantages=normalize(rollout.advantages))
            whole = with_targets(rollout)
            for _ in range(hp.num_epochs):
                yield whole
            return
        for _ in range(hp.num_epochs):
            # one epoch: the rollout in random minibatches, advantages normalized per minibatch
            # if asked (the last minibatch holds the remainder)
            order = self._permutation(n, rollout.obs)
            for start in range(0, n, hp.batch_size):
                batch = Batch(*(x[order[start : start + hp.batch_size]] for x in rollout))
                if hp.norm_adv:
                    batch = batch._replace(advantages=normalize(batch.advantages))
                yield with_targets(batch)

    def _permutation(self, n: int, like: Any) -> Any:
        """A random order of n items: from the algorithm's generator for numpy arrays, from
        torch's on the tensors' device."""
        if isinstance(like, np.ndarray):
            return self.rng.permutation(n)
        import torch

        return torch.randperm(n, device=like.device)


class Batch(NamedTuple):
    """Transitions of a rollout, flattened over (time, env)."""

    obs: torch.Tensor
    actions: torch.Tensor
    old_logprobs: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    old_values: torch.Tensor


def normalize(x: Any) -> Any:
    """(x - mean) / std (the sample standard deviation) of a tensor or numpy array; a single
    value is left as it is."""
    if x.size == 1 if isinstance(x, np.ndarray) else x.numel() == 1:
        return x
    std = x.std(ddof=1) if isinstance(x, np.ndarray) else x.std()
    return (x - x.mean()) / (std + 1e-8)


def approx_kl(ratio: Any, logratio: Any) -> Any:
    """The k3 estimator of KL(old || new): E[(r - 1) - log r] (tensors or numpy arrays)."""
    return ((ratio - 1) - logratio).mean()


class PPOLosses(NamedTuple):
    policy: torch.Tensor  # clipped surrogate, to minimize
    value: torch.Tensor
    entropy: torch.Tensor  # mean entropy of the policy


def ppo_losses(
    logits: torch.Tensor, values: torch.Tensor, batch: Batch, clip: float, clip_vloss: bool
) -> PPOLosses:
    """The PPO losses of a minibatch, written as the paper states them; the update minimizes
    policy - ent_coef * entropy + vf_coef * value through `ppo_loss_grads`, whose hand-derived
    gradients the tests check against autograd through this function."""
    import torch
    import torch.nn.functional as F

    actions, old_logprobs, advantages, returns, old_values = batch[1:]
    log_probs = F.log_softmax(logits, dim=-1)
    entropy = -(log_probs.exp() * log_probs).sum(-1)
    logratio = log_probs.gather(-1, actions.unsqueeze(-1)).squeeze(-1) - old_logprobs
    ratio = logratio.exp()

    # clipped surrogate objective
    pg_loss1 = -advantages * ratio
    pg_loss2 = -advantages * ratio.clamp(1 - clip, 1 + clip)
    pg_loss = torch.max(pg_loss1, pg_loss2).mean()

    # value loss, optionally clipped around the rollout's values
    if clip_vloss:
        v_clipped = old_values + (values - old_values).clamp(-clip, clip)
        v_loss_unclipped = (values - returns).square()
        v_loss_clipped = (v_clipped - returns).square()
        v_loss = torch.max(v_loss_unclipped, v_loss_clipped).mean()
    else:
        v_loss = (values - returns).square().mean()
    return PPOLosses(pg_loss, v_loss, entropy.mean())


class LossTargets(NamedTuple):
    """What the loss gradients of a minibatch need besides the network's outputs, worked out
    once per minibatch (once per update when the minibatch is the whole rollout): fewer small
    operations in each gradient step, where their per-call cost outweighs their arithmetic.
    Tensors or numpy arrays, as the batch is."""

    index: torch.Tensor  # (B, 1) actions, to pick log pi(a|s)
    onehot: torch.Tensor  # (B, K) one-hot actions
    adv_slope: torch.Tensor  # -A / B: dL/dr where the surrogate is not clipped
    sign: torch.Tensor  # sign(A)
    bound: torch.Tensor  # sign(A) + eps: the surrogate is not clipped where sign(A) r <= bound
    scaled_returns: torch.Tensor  # -c_v 2 R / B
    value_scale: float  # c_v 2 / B
    entropy_scale: float  # c_e / B
    batch: Batch  # old log-probs, and the clipped value loss's inputs
    clip: float
    clip_vloss: bool


def loss_targets(
    batch: Batch,
    n_actions: int,
    clip: float,
    clip_vloss: bool,
    ent_coef: float,
    vf_coef: float,
) -> LossTargets:
    """The `LossTargets` of a batch of tensors (for `ppo_loss_grads`) or of numpy arrays (for
    `ppo_loss_grads_numpy`)."""
    size = batch.actions.shape[0]
    advantages = batch.advantages
    if isinstance(advantages, np.ndarray):
        sign = np.sign(advantages)
        onehot = np.eye(n_actions, dtype=advantages.dtype)[batch.actions]
    else:
        import torch.nn.functional as F

        sign = advantages.sign()
        onehot = F.one_hot(batch.actions, n_actions).to(advantages.dtype)
    value_scale = 2.0 * vf_coef / size
    return LossTargets(
        index=batch.actions[:, None],
        onehot=onehot,
        adv_slope=advantages * (-1.0 / size),
        sign=sign,
        bound=sign + clip,
        scaled_returns=batch.returns * -value_scale,
        value_scale=value_scale,
        entropy_scale=ent_coef / size,
        batch=batch,
        clip=clip,
        clip_vloss=clip_vloss,
    )


def ppo_loss_grads(
    logits: torch.Tensor, values: torch.Tensor, t: LossTargets
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """dL/dlogits and dL/dV for L = policy - ent_coef * entropy + vf_coef * value (the losses of
    `ppo_losses`), plus the ratios r and log-ratios they came from.

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
    import torch

    if torch.is_grad_enabled():  # called with outputs of autograd: no graph of this
        with torch.no_grad():
            return ppo_loss_grads(logits, values, t)
    log_probs = torch.log_softmax(logits, dim=-1)
    probs = log_probs.exp()
    logratio = log_probs.gather(1, t.index).squeeze(1).sub_(t.batch.old_logprobs)
    ratio = logratio.exp()

    unclipped = torch.mul(t.sign, ratio) <= t.bound
    slope = torch.mul(t.adv_slope, ratio).mul_(unclipped).unsqueeze(1)  # dL/dl_a
    grad_logits = torch.sub(t.onehot, probs).mul_(slope)
    if t.entropy_scale:
        entropy = -(probs * log_probs).sum(1, keepdim=True)
        grad_logits.addcmul_(probs, log_probs + entropy, value=t.entropy_scale)

    if t.clip_vloss:
        returns, old_values, clip = t.batch.returns, t.batch.old_values, t.clip
        error = values - returns
        step = values - old_values
        error_clipped = old_values + step.clamp(-clip, clip) - returns
        error = torch.where(
            error.square() >= error_clipped.square(), error, error_clipped * (step.abs() <= clip)
        )
        grad_values = error.mul_(t.value_scale)
    else:
        grad_values = torch.add(t.scaled_returns, values, alpha=t.value_scale)
    return grad_logits, grad_values, ratio, logratio


def ppo_losses_numpy(
    logits: np.ndarray, values: np.ndarray, batch: Batch, clip: float, clip_vloss: bool
) -> tuple[float, float, float]:
    """`ppo_losses` of numpy arrays, as floats (policy, value, entropy): the update's
    diagnostics on the numpy path. The same formulas; the tests hold the two to the same
    numbers."""
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


def ppo_loss_grads_numpy(
    logits: np.ndarray, values: np.ndarray, t: LossTargets
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`ppo_loss_grads` in numpy, for the numpy update (`t`: `loss_targets` of numpy arrays):
    the same maths (see there), and the tests hold the two to the same results."""
    # ufunc reductions rather than the array methods, and the action's entry picked by the
    # one-hot (exact: one product by 1, the rest by 0), skip numpy's Python-level wrappers
    shifted = logits - np.maximum.reduce(logits, axis=1, keepdims=True)
    probs = np.exp(shifted)
    total = np.add.reduce(probs, axis=1, keepdims=True)
    probs /= total
    log_total = np.log(total, out=total)
    # log pi(a|s) - log pi_old(a|s), with log pi = shifted - log_total
    logratio = np.add.reduce(shifted * t.onehot, axis=1)
    logratio -= log_total[:, 0]
    logratio -= t.batch.old_logprobs
    ratio = np.exp(logratio)

    slope = t.adv_slope * ratio  # dL/dl_a where the surrogate is not clipped, else 0
    slope *= t.sign * ratio <= t.bound
    grad_logits = np.subtract(t.onehot, probs)
    grad_logits *= slope[:, None]
    if t.entropy_scale:
        log_probs = shifted - log_total
        entropy = -np.add.reduce(probs * log_probs, axis=1, keepdims=True)
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
