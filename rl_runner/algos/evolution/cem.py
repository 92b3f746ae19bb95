"""The cross-entropy method over the weights of a policy network."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from rl_runner import heads
from rl_runner.algos.base import Policy, PopulationAlgorithm
from rl_runner.algos.common import linear
from runner_core.lazy import lazy
from runner_core.validation import in_range, non_negative, non_negative_int, positive, positive_int

if TYPE_CHECKING:
    import torch
else:
    torch = lazy("torch")


class CEM(PopulationAlgorithm):
    """The cross-entropy method (Rubinstein 1999) for policy search, with the decreasing extra
    noise of Szita & Lorincz (2006, "Learning Tetris Using the Noisy Cross-Entropy Method",
    Neural Computation 18(12)), over the flat parameter vector theta of the policy network.

    Each generation t:
    theta_i ~ N(mu, diag(sigma^2)), i = 1..N (N = `population`)
    F_i = return of one episode of the greedy policy with weights theta_i
    E = the K = max(1, round(elite_frac * N)) candidates with the highest F_i
    mu <- mean_{i in E} theta_i
    sigma^2 <- var_{i in E} theta_i + Z_t, Z_t = linear from extra_noise_start at t = 0 to
    extra_noise_end at t = extra_noise_generations (and after): the added variance that keeps
    the search from collapsing onto early elites.
    mu starts at the network's initial weights (torch's default initialization), sigma at
    init_std. Greedy actions: the argmax of the logits (discrete), or tanh of the outputs scaled
    to the action bounds (continuous). All candidates act at once, sub-env i with theta_i: the
    network is evaluated over the stacked candidates with `torch.func.vmap`. The evaluation
    policy is mu's.
    """

    obs_kinds = ("vector",)
    action_kinds = ("discrete", "continuous")
    roles = ("policy",)
    rules = (
        positive_int("algo.generations"),
        positive_int("algo.population"),
        positive("algo.elite_frac"),
        in_range("algo.elite_frac", 0.0, 1.0),
        positive("algo.init_std"),
        non_negative("algo.extra_noise_start"),
        non_negative("algo.extra_noise_end"),
        non_negative_int("algo.extra_noise_generations"),
    )

    def __init__(self, cfg: Any, spec: Any, device: Any, seed: int) -> None:
        from runner_core.networks.init import init_default

        super().__init__(cfg, spec, device, seed)
        self.head = heads.for_actions(spec.act, continuous=heads.Deterministic)
        self.policy = self.build("policy", self.head.out_features)
        init_default(self.policy, self.rng)
        # the weights are searched, not trained: no gradients, and eval mode for any dropout or
        # batch normalization layers
        self.policy.eval().requires_grad_(False)
        self.shapes = {name: p.shape for name, p in self.policy.named_parameters()}
        self.dim = sum(math.prod(shape) for shape in self.shapes.values())
        self.std = np.full(self.dim, float(self.hp.init_std))
        self.num_elite = elite_count(self.hp.population, self.hp.elite_frac)

    def stateful(self) -> dict[str, Any]:
        return {**super().stateful(), "policy": self.policy}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "std": self.std.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.std = np.asarray(state["std"], dtype=np.float64).copy()

    # the search distribution: mu is the policy network's weights --------------------------------
    @property
    def mean(self) -> np.ndarray:
        """mu: the policy network's parameters as one flat vector (float64)."""
        vector = torch.nn.utils.parameters_to_vector(self.policy.parameters())
        return vector.cpu().numpy().astype(np.float64)

    @mean.setter
    def mean(self, value: np.ndarray) -> None:
        vector = torch.as_tensor(value, dtype=torch.float32, device=self.device)
        torch.nn.utils.vector_to_parameters(vector, self.policy.parameters())

    def extra_noise(self, generation: int) -> float:
        """Z_t: the variance added to every coordinate after generation t (counted from 0)."""
        hp = self.hp
        if hp.extra_noise_generations == 0:
            return float(hp.extra_noise_end)
        fraction = generation / hp.extra_noise_generations
        return linear(hp.extra_noise_start, hp.extra_noise_end, fraction)

    def ask(self) -> np.ndarray:
        """N candidates theta_i = mu + sigma * eps_i, eps_i ~ N(0, I), as rows (float32: the
        network's precision, so what is played is what is refit)."""
        noise = self.rng.standard_normal((self.hp.population, self.dim))
        return (self.mean + self.std * noise).astype(np.float32)

    def tell(self, candidates: np.ndarray, returns: np.ndarray) -> dict[str, float]:
        elite = select_elite(returns, self.num_elite)
        noise = self.extra_noise(self.num_updates)
        mean, self.std = refit(candidates[elite], noise)
        self.mean = mean
        return {
            "population_return": float(np.mean(returns)),
            "best_return": float(np.max(returns)),
            "elite_return": float(np.mean(returns[elite])),
            "std": float(np.mean(self.std)),
            "charts/extra_noise": noise,
        }

    # acting --------------------------------------------------------------------------------------
    def candidate_policy(self, candidates: np.ndarray) -> Policy:
        params = self.unflatten(torch.as_tensor(candidates, device=self.device))
        policy, head = self.policy, self.head

        def one(p: dict[str, torch.Tensor], obs: torch.Tensor) -> torch.Tensor:
            return torch.func.functional_call(policy, p, (obs[None],))[0]

        batched = torch.func.vmap(one)  # candidate i's weights on row i of the observations

        def act(obs: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                out = batched(params, self.tensor(obs)).cpu().numpy()
            return head.to_env(head.mode(out))

        return act

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """(N, dim) rows of flat parameters -> name -> (N, *shape), in `named_parameters`
        order (the order of `parameters_to_vector`)."""
        params, start = {}, 0
        for name, shape in self.shapes.items():
            size = math.prod(shape)
            params[name] = flat[:, start : start + size].reshape(len(flat), *shape)
            start += size
        return params

    def evaluation_policy(self, deterministic: bool, rng: np.random.Generator) -> Policy:
        """mu's greedy policy (CEM's policies are deterministic: `deterministic` changes
        nothing)."""
        head = self.head

        def act(obs: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                out = self.policy(self.tensor(obs)).cpu().numpy()
            return head.to_env(head.mode(out))

        return act


def elite_count(population: int, elite_frac: float) -> int:
    """K = round(elite_frac * N), at least 1."""
    return max(1, round(elite_frac * population))


def select_elite(returns: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k candidates with the highest returns, best first (ties: the lower index
    first)."""
    return np.argsort(-np.asarray(returns), kind="stable")[:k]


def refit(elite: np.ndarray, extra_noise: float) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) of the elite rows: their mean and sqrt(population variance + extra_noise),
    per coordinate, in float64."""
    elite = np.asarray(elite, dtype=np.float64)
    return elite.mean(0), np.sqrt(elite.var(0) + extra_noise)
