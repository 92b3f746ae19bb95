"""A2C for discrete and continuous actions."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from rl_runner import heads
from rl_runner.algos.base import OnPolicyAlgorithm, Policy
from rl_runner.algos.common import gradient_step, linear, set_lr
from rl_runner.buffers import RolloutBuffer
from runner_core.lazy import lazy
from runner_core.networks import adam
from runner_core.validation import boolean, in_range, one_of, positive, shared

if TYPE_CHECKING:
    import torch
else:
    torch = lazy("torch")  # PPO subclasses A2C, and the numpy backend subclasses PPO


class A2C(OnPolicyAlgorithm):
    """Advantage Actor-Critic, synchronous (A2C: the synchronous version of A3C, Mnih et al.
    2016, arXiv:1602.01783), over `num_envs` vector envs.

    R_t = r_t + gamma r_{t+1} + ... + gamma^(k-1) r_{t+k-1} + gamma^k V(s_{t+k}): the n-step
    return, k the steps left in the rollout of `num_steps` (fewer at an episode's end: no
    bootstrap after a termination, V of the final state after a truncation)
    A_t = R_t - V(s_t) (the base's GAE(gamma, lambda) with lambda = `gae_lambda`, 1 by default)
    L_pi = -E[A_t log pi(a_t|s_t)]
    L = L_pi + c_v * (V(s_t) - R_t)^2 - c_e * H[pi(.|s_t)]
    with c_v = vf_coef, c_e = ent_coef and A_t optionally normalized (`norm_adv`); one gradient
    step per rollout, by RMSprop (the paper's optimizer; alpha = `rms_alpha`, with torch's eps
    outside the square root, as Stable-Baselines3) or Adam (`optimizer`), the global gradient
    norm clipped to `max_grad_norm`, the learning rate optionally decaying linearly to 0 over the
    run. Discrete actions: a categorical policy; continuous: a diagonal Gaussian with a
    state-independent log-std. Actor and critic are separate networks (roles `actor` and
    `critic`). Observation normalization and reward scaling are the base's
    (`algo.normalize_obs`, `algo.normalize_reward`).
    """

    obs_kinds = ("vector", "image", "discrete")
    action_kinds = ("discrete", "continuous")
    roles = ("actor", "critic")
    rules = (
        *shared("total_steps", "lr", "anneal_lr", "num_steps", "gamma", "gae_lambda",
                "ent_coef", "vf_coef", "max_grad_norm", "normalize_obs", "normalize_reward"),
        one_of("algo.optimizer", ("rmsprop", "adam")),
        in_range("algo.rms_alpha", 0.0, 1.0, hi_open=True),
        positive("algo.optimizer_eps"),
        boolean("algo.norm_adv"),
    )  # fmt: skip

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
        self.optimizer = self.make_optimizer()

    def make_optimizer(self) -> torch.optim.Optimizer:
        """RMSprop or Adam over the policy's parameters, as `algo.optimizer` says."""
        hp = self.hp
        params = self.policy.parameters()
        if hp.optimizer == "adam":
            return adam(params, hp.lr, self.device, eps=hp.optimizer_eps)
        # foreach: one call per operation for all the parameters (on the CPU torch otherwise
        # loops over them in Python)
        return torch.optim.RMSprop(
            params, lr=hp.lr, alpha=hp.rms_alpha, eps=hp.optimizer_eps, foreach=True
        )

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
        set_lr(self.optimizer, lr)
        obs, actions, advantages, returns = (
            torch.from_numpy(buf.flat(name)).to(self.device)
            for name in ("obs", "actions", "advantages", "returns")
        )
        if hp.norm_adv:
            advantages = normalize(advantages)
        logprobs, entropies = self.head.log_prob_entropy(*self.dist_params(obs), actions)
        values = self.value(obs)
        pg_loss, v_loss, entropy = a2c_losses(logprobs, entropies, values, advantages, returns)
        loss = pg_loss - hp.ent_coef * entropy + hp.vf_coef * v_loss
        grad_norm = gradient_step(self.optimizer, loss, self.policy.parameters(), hp.max_grad_norm)
        return {
            "policy_loss": pg_loss.item(),
            "value_loss": v_loss.item(),
            "entropy": entropy.item(),
            "grad_norm": grad_norm,
            "explained_variance": explained_variance(buf.flat("values"), buf.flat("returns")),
            "charts/learning_rate": lr,
        }


def a2c_losses(
    logprobs: torch.Tensor,
    entropy: torch.Tensor,
    values: torch.Tensor,
    advantages: torch.Tensor,
    returns: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(policy loss, value loss, mean entropy) of a batch: -mean(A log pi(a|s)),
    mean((V(s) - R)^2) and mean(H); the advantages and returns are constants."""
    pg_loss = -(advantages * logprobs).mean()
    v_loss = (values - returns).square().mean()
    return pg_loss, v_loss, entropy.mean()


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
