"""PPO for discrete and continuous actions."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from rl_runner import heads
from rl_runner.algos.base import OnPolicyAlgorithm, Policy
from rl_runner.algos.common import gradient_step, linear, set_lr
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


class PPO(OnPolicyAlgorithm):
    """Proximal Policy Optimization (Schulman et al. 2017, arXiv:1707.06347).

    r_t(theta) = pi_theta(a_t|s_t) / pi_old(a_t|s_t), A_t from GAE(gamma, lambda)
    L_clip = -E[min(r_t A_t, clip(r_t, 1 - eps, 1 + eps) A_t)]
    L = L_clip + c_v * (V(s_t) - R_t)^2 - c_e * H[pi(.|s_t)]
    with eps = clip_coef, c_v = vf_coef, c_e = ent_coef, minimized by Adam over `num_epochs`
    passes of minibatches of the rollout; the learning rate (and eps, if asked) decay linearly
    to 0 over the run. Discrete actions: a categorical policy; continuous: a diagonal Gaussian
    with a state-independent log-std. Observation normalization and reward scaling are the
    base's (`algo.normalize_obs`, `algo.normalize_reward`).

    This is the reference, in autograd. On the CPU, plain MLPs with discrete actions run on the
    numpy backend instead (`rl_runner.fast.ppo`), held to this class by agreement tests.
    """

    obs_kinds = ("vector", "image", "discrete")
    action_kinds = ("discrete", "continuous")
    roles = ("actor", "critic")
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

    def __init__(self, cfg: Any, spec: Any, device: Any, seed: int) -> None:
        from runner_core.networks.init import init_orthogonal

        super().__init__(cfg, spec, device, seed)
        self.head = heads.for_actions(spec.act)
        # separate actor (the head's parameters) and critic (V(s)) networks; for a Gaussian
        # head a state-independent log standard deviation, one per action dimension, from 0
        policy = torch.nn.Module()
        policy.actor = self.build("actor", self.head.out_features)
        policy.critic = self.build("critic", 1)
        init_orthogonal(policy.actor, self.rng, hidden_gain=math.sqrt(2), out_gain=0.01)
        init_orthogonal(policy.critic, self.rng, hidden_gain=math.sqrt(2), out_gain=1.0)
        self.gaussian = isinstance(self.head, heads.DiagGaussian)
        if self.gaussian:
            policy.log_std = torch.nn.Parameter(torch.zeros(self.head.dim))
        self.policy = policy.to(device)
        self.optimizer = adam(self.policy.parameters(), self.hp.lr, device, eps=self.hp.adam_eps)

    def stateful(self) -> dict[str, Any]:
        return {**super().stateful(), "policy": self.policy, "optimizer": self.optimizer}

    def dist_params(self, obs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The head's parameters: (logits,) or (mean, log_std)."""
        out = self.policy.actor(obs)
        return (out, self.policy.log_std) if self.gaussian else (out,)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.policy.critic(obs).squeeze(-1)

    # acting ------------------------------------------------------------------------------------
    def outputs(self, obs: np.ndarray) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        """The head's parameters and V(s) for observations, as numpy arrays."""
        with torch.inference_mode():
            x = self.tensor(obs)
            params = tuple(p.cpu().numpy() for p in self.dist_params(x))
            return params, self.value(x).cpu().numpy()

    def rollout_policy(self) -> Callable[[np.ndarray], tuple[np.ndarray, ...]]:
        head, rng = self.head, self.rng

        def act(obs: np.ndarray) -> tuple[np.ndarray, ...]:
            params, values = self.outputs(obs)
            actions, logprobs = head.sample(*params, rng)
            return actions, head.to_env(actions), logprobs, values

        return act

    def values(self, obs: np.ndarray) -> np.ndarray:
        return self.outputs(obs)[1]

    def evaluation_policy(self, deterministic: bool, rng: np.random.Generator) -> Policy:
        head = self.head

        def act(obs: np.ndarray) -> np.ndarray:
            params, _ = self.outputs(self.observe(obs))
            actions = head.mode(params[0]) if deterministic else head.sample(*params, rng)[0]
            return head.to_env(actions)

        return act

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


def normalize(x: Any) -> Any:
    """(x - mean) / (std + 1e-8), the sample standard deviation, of a tensor or numpy array; a
    single value is left as it is."""
    if len(x) == 1:
        return x
    std = x.std(ddof=1) if isinstance(x, np.ndarray) else x.std()
    return (x - x.mean()) / (std + 1e-8)


def explained_variance(values: Any, returns: Any) -> float:
    """1 - Var[R - V] / Var[R]; 0 when the returns have no spread (then it is undefined, and a
    NaN diagnostic would trip the trainer's finite check)."""
    values, returns = (np.asarray(x.cpu() if hasattr(x, "cpu") else x) for x in (values, returns))
    var_returns = float(returns.var())
    return 1.0 - float((returns - values).var()) / var_returns if var_returns > 0 else 0.0
