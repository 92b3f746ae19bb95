"""Tabular Q-learning for discrete states and actions."""

from __future__ import annotations

from typing import Any

import numpy as np
from omegaconf import DictConfig

from rl_runner.algos.base import Policy, TabularAlgorithm
from rl_runner.algos.common import linear
from rl_runner.algos.tabular.table import Table, greedy
from rl_runner.collectors import Transition
from rl_runner.specs import EnvSpec
from runner_core.validation import in_range, shared


class QLearning(TabularAlgorithm):
    """Q-learning (Watkins 1989, PhD thesis, Cambridge; Watkins & Dayan 1992, Machine Learning
    8:279), one-step and off-policy, with a table Q[s, a].

    delta = r + gamma * (1 - terminated) * max_a' Q(s', a') - Q(s, a)
    Q(s, a) <- Q(s, a) + alpha * delta

    for every valid transition of every sub-env, applied one after another in sub-env order (two
    sub-envs may share a state). A truncated episode bootstraps from its final state; the steps
    that only reset a sub-env are skipped. Behaviour is epsilon-greedy: epsilon decays linearly
    from exploration_initial_eps to exploration_final_eps over exploration_fraction of the run,
    and greedy ties are broken uniformly at random from the algorithm's generator. The step size
    alpha (`lr`) optionally decays linearly to 0 over the run (`anneal_lr`).

    Evaluation is greedy (ties to the lowest action), or epsilon-greedy at the final epsilon.
    """

    obs_kinds = ("discrete",)
    action_kinds = ("discrete",)
    rules = (
        *shared("total_steps", "lr", "anneal_lr", "gamma"),
        in_range("algo.lr", 0.0, 1.0),  # a step size: alpha = 1 replaces the estimate
        in_range("algo.exploration_fraction", 0.0, 1.0),
        in_range("algo.exploration_initial_eps", 0.0, 1.0),
        in_range("algo.exploration_final_eps", 0.0, 1.0),
    )

    def __init__(self, cfg: DictConfig, spec: EnvSpec, device: Any, seed: int) -> None:
        super().__init__(cfg, spec, device, seed)
        self.n_actions = int(spec.act.n)
        self.table = Table((int(spec.obs.n), self.n_actions))
        self.total_steps = int(self.hp.total_steps)
        self.step = 0  # env step of the transitions `update` learns from (set by `act`)

    @property
    def q(self) -> np.ndarray:
        """Q[state, action]."""
        return self.table.values

    def stateful(self) -> dict[str, Any]:
        return {**super().stateful(), "q_table": self.table}

    # schedules ---------------------------------------------------------------------------------
    def epsilon(self, step: int) -> float:
        hp = self.hp
        decay_steps = hp.exploration_fraction * self.total_steps
        fraction = step / decay_steps if decay_steps > 0 else 1.0
        return linear(hp.exploration_initial_eps, hp.exploration_final_eps, fraction)

    def learning_rate(self, step: int) -> float:
        hp = self.hp
        return linear(hp.lr, 0.0, step / self.total_steps) if hp.anneal_lr else hp.lr

    # acting ------------------------------------------------------------------------------------
    def epsilon_greedy(
        self, obs: np.ndarray, epsilon: float, rng: np.random.Generator
    ) -> np.ndarray:
        """A uniformly random action with probability epsilon, else a greedy one (ties at
        random). Draws from `rng` in a fixed order: the coin, the random action, the ties."""
        n = len(obs)
        explore = rng.random(n) < epsilon
        random_actions = rng.integers(0, self.n_actions, size=n)
        return np.where(explore, random_actions, greedy(self.q[obs], rng))

    def act(self, obs: np.ndarray, step: int) -> np.ndarray:
        self.step = step
        return self.epsilon_greedy(obs, self.epsilon(step), self.rng)

    def evaluation_policy(self, deterministic: bool, rng: np.random.Generator) -> Policy:
        if deterministic:
            return lambda obs: greedy(self.q[obs])
        return lambda obs: self.epsilon_greedy(obs, self.hp.exploration_final_eps, rng)

    # learning ----------------------------------------------------------------------------------
    def update(self, transition: Transition) -> dict[str, float]:
        q, gamma = self.q, self.hp.gamma
        alpha = self.learning_rate(self.step)
        obs, actions, rewards, next_obs, terminated, _, valid = transition
        abs_errors = []
        values = []
        # one transition at a time: an update to Q[s] must be seen by a later sub-env's
        # bootstrap from s (a vectorized update would use the values from before the step)
        for i in np.flatnonzero(valid).tolist():
            s, a = int(obs[i]), int(actions[i])
            bootstrap = 0.0 if terminated[i] else gamma * float(q[int(next_obs[i])].max())
            delta = float(rewards[i]) + bootstrap - q[s, a]
            q[s, a] += alpha * delta
            abs_errors.append(abs(delta))
            values.append(q[s, a])
        if not abs_errors:
            return {}
        return {
            "td_error": float(np.mean(abs_errors)),  # mean |delta| before the update
            "q_values": float(np.mean(values)),
            "charts/epsilon": self.epsilon(self.step),
            "charts/learning_rate": alpha,
        }
