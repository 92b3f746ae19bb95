"""PPO for discrete and continuous actions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from rl_runner.algos.common import gradient_step, linear, set_lr
from rl_runner.algos.on_policy.a2c import A2C, explained_variance, normalize
from rl_runner.buffers import RolloutBuffer
from runner_core.lazy import lazy
from runner_core.networks import adam
from runner_core.validation import boolean, positive, positive_int, shared

if TYPE_CHECKING:
    import torch
else:
    torch = lazy("torch")  # the numpy backend subclasses PPO without importing torch


class Batch(NamedTuple):
    """Transitions of a rollout, flattened over (time, env): tensors on the device."""

    obs: torch.Tensor
    actions: torch.Tensor
    old_logprobs: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    old_values: torch.Tensor


class PPO(A2C):
    """Proximal Policy Optimization (Schulman et al. 2017, arXiv:1707.06347).

    r_t(theta) = pi_theta(a_t|s_t) / pi_old(a_t|s_t), A_t from GAE(gamma, lambda)
    L_clip = -E[min(r_t A_t, clip(r_t, 1 - eps, 1 + eps) A_t)]
    L = L_clip + c_v * (V(s_t) - R_t)^2 - c_e * H[pi(.|s_t)]
    with eps = clip_coef, c_v = vf_coef, c_e = ent_coef, minimized by Adam over `num_epochs`
    passes of minibatches of the rollout; the learning rate (and eps, if asked) decay linearly
    to 0 over the run. The networks, the acting and the normalizations are A2C's (a categorical
    or diagonal Gaussian policy, separate actor and critic); PPO replaces its optimizer and its
    update.

    This is the reference, in autograd. On the CPU, plain MLPs with discrete actions run on the
    numpy backend instead (`rl_runner.fast.ppo`), held to this class by agreement tests.
    """

    rules = (
        *shared(
            "total_steps",
            "lr",
            "anneal_lr",
            "num_steps",
            "gamma",
            "gae_lambda",
            "batch_size",
            "ent_coef",
            "vf_coef",
            "max_grad_norm",
            "adam_eps",
            "normalize_obs",
            "normalize_reward",
        ),
        positive_int("algo.num_epochs"),
        positive("algo.clip_coef"),
        boolean("algo.anneal_clip"),
        boolean("algo.clip_vloss"),
        boolean("algo.norm_adv"),
        positive("algo.target_kl", optional=True),
    )

    def make_optimizer(self) -> torch.optim.Optimizer:
        return adam(self.policy.parameters(), self.hp.lr, self.device, eps=self.hp.adam_eps)

    # learning ----------------------------------------------------------------------------------
    def update(self, buf: RolloutBuffer, progress: float) -> dict[str, float]:
        hp = self.hp
        lr = linear(hp.lr, 0.0, progress) if hp.anneal_lr else hp.lr
        clip = linear(hp.clip_coef, 0.0, progress) if hp.anneal_clip else hp.clip_coef
        set_lr(self.optimizer, lr)
        names = ("obs", "actions", "logprobs", "advantages", "returns", "values")
        rollout = Batch(*(torch.from_numpy(buf.flat(n)).to(self.device) for n in names))

        clipfracs = []
        for batch in minibatches(rollout, hp.batch_size, hp.num_epochs, hp.norm_adv, self.rng):
            pg_loss, v_loss, entropy, approx_kl, clipfrac = self.losses(batch, clip)
            loss = pg_loss - hp.ent_coef * entropy + hp.vf_coef * v_loss
            gradient_step(self.optimizer, loss, self.policy.parameters(), hp.max_grad_norm)
            clipfracs.append(clipfrac)
            if hp.target_kl is not None and approx_kl > hp.target_kl:
                break
        return {
            "policy_loss": pg_loss.item(),
            "value_loss": v_loss.item(),
            "entropy": entropy.item(),
            "approx_kl": approx_kl.item(),
            "clipfrac": torch.stack(clipfracs).mean().item(),
            "explained_variance": explained_variance(rollout.old_values, rollout.returns),
            "charts/learning_rate": lr,
            "charts/clip_coef": clip,
        }

    def losses(self, batch: Batch, clip: float) -> tuple[torch.Tensor, ...]:
        """(policy loss, value loss, entropy, approx KL, clip fraction) of a minibatch, with
        gradients to the policy's parameters."""
        params = self.dist_params(batch.obs)
        logprobs, entropy = self.head.log_prob_entropy(*params, batch.actions)
        values = self.value(batch.obs)
        logratio = logprobs - batch.old_logprobs
        ratio = logratio.exp()
        with torch.no_grad():
            approx_kl = ((ratio - 1) - logratio).mean()  # the k3 estimator of KL(old || new)
            clipfrac = ((ratio - 1.0).abs() > clip).float().mean()

        # clipped surrogate objective
        advantages = batch.advantages
        pg_loss1 = -advantages * ratio
        pg_loss2 = -advantages * torch.clamp(ratio, 1 - clip, 1 + clip)
        pg_loss = torch.max(pg_loss1, pg_loss2).mean()

        # value loss, optionally clipped around the rollout's values
        v_loss_unclipped = (values - batch.returns).square()
        if self.hp.clip_vloss:
            v_clipped = batch.old_values + torch.clamp(values - batch.old_values, -clip, clip)
            v_loss_clipped = (v_clipped - batch.returns).square()
            v_loss = torch.max(v_loss_unclipped, v_loss_clipped).mean()
        else:
            v_loss = v_loss_unclipped.mean()
        return pg_loss, v_loss, entropy.mean(), approx_kl, clipfrac


def minibatch_indices(
    n: int, batch_size: int, epochs: int, rng: np.random.Generator
) -> Iterator[np.ndarray | None]:
    """Every epoch's minibatches of a rollout of `n` transitions as index arrays, in a random
    order drawn from `rng` (None: the whole rollout, in order, when a minibatch would hold all
    of it: the losses are means, so the order does not matter and no shuffle is drawn)."""
    for _ in range(epochs):
        if batch_size >= n:
            yield None
            continue
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            yield order[start : start + batch_size]


def minibatches(
    rollout: Any, batch_size: int, epochs: int, norm_adv: bool, rng: np.random.Generator
) -> Iterator[Any]:
    """The minibatches of `minibatch_indices`, advantages normalized per minibatch if asked
    (tensors or numpy arrays, as the rollout is)."""
    whole = None
    for idx in minibatch_indices(len(rollout.advantages), batch_size, epochs, rng):
        if idx is None:
            if whole is None:
                whole = (
                    rollout._replace(advantages=normalize(rollout.advantages))
                    if norm_adv
                    else rollout
                )
            yield whole
            continue
        if not isinstance(rollout.advantages, np.ndarray):
            idx = torch.as_tensor(idx, device=rollout.advantages.device)
        batch = rollout._replace(**{k: v[idx] for k, v in rollout._asdict().items()})
        yield batch._replace(advantages=normalize(batch.advantages)) if norm_adv else batch
