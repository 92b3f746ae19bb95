"""PPO for discrete actions."""

from __future__ import annotations

import torch

from rl_runner.algos.base import OnPolicyAlgorithm
from rl_runner.buffers import RolloutBuffer
from rl_runner.policies import CategoricalActorCritic
from runner_core.optim import FlatAdam
from runner_core.validation import (
    boolean,
    in_range,
    non_negative,
    positive,
    positive_int,
)


class PPO(OnPolicyAlgorithm):
    """Proximal Policy Optimization (Schulman et al. 2017, arXiv:1707.06347).

    r_t(theta) = pi_theta(a_t|s_t) / pi_old(a_t|s_t), A_t from GAE(gamma, lambda)
    L_clip = -E[min(r_t A_t, clip(r_t, 1 - eps, 1 + eps) A_t)]
    L = L_clip + c_v * (V(s_t) - R_t)^2 - c_e * H[pi(.|s_t)]
    with eps = clip_coef, c_v = vf_coef, c_e = ent_coef; the learning rate (and eps, if asked)
    decay linearly to 0 over the run.
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
        self.policy = CategoricalActorCritic(info.obs_dim, info.n_actions, cfg.network).to(device)
        self.optimizer = FlatAdam(self.policy, self.hp.lr, eps=self.hp.adam_eps)

    def stateful(self):
        return {**super().stateful(), "policy": self.policy, "optimizer": self.optimizer}

    def update(self, buf: RolloutBuffer, progress: float) -> dict[str, float]:
        hp = self.hp
        remaining = 1.0 - progress
        lr = hp.lr * remaining if hp.anneal_lr else hp.lr
        clip = hp.clip_coef * remaining if hp.anneal_clip else hp.clip_coef
        self.optimizer.lr = lr

        # flatten the rollout, keeping only real transitions (not autoreset steps)
        keep = buf.valid.reshape(-1).nonzero().squeeze(1)
        obs = buf.obs.reshape(-1, buf.obs.shape[-1])[keep]
        actions = buf.actions.reshape(-1)[keep]
        old_logprobs = buf.logprobs.reshape(-1)[keep]
        old_values = buf.values.reshape(-1)[keep]
        advantages = buf.advantages.reshape(-1)[keep]
        returns = buf.returns.reshape(-1)[keep]
        n = keep.numel()
        # a minibatch as large as the rollout is the whole rollout every epoch: no shuffling or
        # gathering then (the losses are means, so the order does not matter), just views
        full_batch = hp.batch_size >= n

        clipfracs, approx_kl, stop = [], torch.zeros(()), False
        for _epoch in range(hp.num_epochs):
            order = None if full_batch else torch.randperm(n, device=self.device)
            for start in range(0, n, hp.batch_size):
                mb = slice(None) if order is None else order[start : start + hp.batch_size]
                new_logprob, entropy, new_value = self.policy.evaluate(obs[mb], actions[mb])
                logratio = new_logprob - old_logprobs[mb]
                ratio = logratio.exp()
                with torch.no_grad():
                    approx_kl = ((ratio - 1) - logratio).mean()  # k3 estimator of KL(old || new)
                    clipfracs.append(((ratio - 1.0).abs() > clip).float().mean())

                adv = advantages[mb]
                if hp.norm_adv and adv.numel() > 1:
                    adv = (adv - adv.mean()) / (adv.std() + 1e-8)

                # clipped surrogate objective
                pg_loss1 = -adv * ratio
                pg_loss2 = -adv * ratio.clamp(1 - clip, 1 + clip)
                pg_loss = torch.max(pg_loss1, pg_loss2).mean()

                # value loss, optionally clipped around the rollout's values
                if hp.clip_vloss:
                    v_clipped = old_values[mb] + (new_value - old_values[mb]).clamp(-clip, clip)
                    v_loss_unclipped = (new_value - returns[mb]).square()
                    v_loss_clipped = (v_clipped - returns[mb]).square()
                    v_loss = torch.max(v_loss_unclipped, v_loss_clipped).mean()
                else:
                    v_loss = (new_value - returns[mb]).square().mean()

                entropy_loss = entropy.mean()
                loss = pg_loss - hp.ent_coef * entropy_loss + hp.vf_coef * v_loss

                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.clip_grad_norm_(hp.max_grad_norm)
                self.optimizer.step()

                if hp.target_kl is not None and approx_kl > hp.target_kl:
                    stop = True
                    break
            if stop:
                break

        # 1 - Var[R - V] / Var[R]; 0 when the returns have no spread (then it is undefined, and a
        # NaN diagnostic would trip the trainer's finite check)
        var_returns = returns.var(correction=0)
        explained_var = (
            1 - (returns - old_values).var(correction=0) / var_returns
            if var_returns > 0
            else torch.zeros(())
        )
        return {
            "policy_loss": pg_loss.item(),
            "value_loss": v_loss.item(),
            "entropy": entropy_loss.item(),
            "approx_kl": approx_kl.item(),
            "clipfrac": torch.stack(clipfracs).mean().item(),
            "explained_variance": explained_var.item(),
            "charts/learning_rate": lr,
            "charts/clip_coef": clip,
        }
