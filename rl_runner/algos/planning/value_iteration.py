"""Value iteration over an environment's known transition model."""

from __future__ import annotations

from typing import Any

import numpy as np
from omegaconf import DictConfig

from rl_runner.algos.base import PlanningAlgorithm, Policy
from rl_runner.algos.tabular.table import Table, greedy
from rl_runner.envs import transition_model
from rl_runner.specs import EnvSpec
from runner_core.errors import EnvironmentFault
from runner_core.validation import positive, positive_int, shared

PROBABILITY_TOLERANCE = 1e-6  # how far from 1 the outcome probabilities of (s, a) may sum


def dense_model(
    model: dict[int, dict[int, list[tuple]]], n_states: int, n_actions: int, env_id: str = "?"
) -> tuple[np.ndarray, np.ndarray]:
    """(R, P) from a toy-text model P[s][a] = [(p, s', r, terminated), ...]:

    R[s, a] = sum p r, the expected reward, and
    P[s, a, s'] = sum p (1 - terminated), the probability of going on from s'

    so that Q = R + gamma P V. Outcomes listed twice (two slips into the same wall) add up."""
    R = np.zeros((n_states, n_actions))
    P = np.zeros((n_states, n_actions, n_states))
    for s in range(n_states):
        for a in range(n_actions):
            outcomes = model[s][a]
            total = 0.0
            for p, next_state, reward, terminated in outcomes:
                total += p
                R[s, a] += p * reward
                if not terminated:
                    P[s, a, int(next_state)] += p
            if abs(total - 1.0) > PROBABILITY_TOLERANCE:
                raise EnvironmentFault(
                    f"Environment {env_id!r}'s transition model gives state {s}, action {a} "
                    f"outcomes whose probabilities sum to {total}, not 1. The environment is at "
                    "fault, not the planning settings."
                )
    return R, P


class ValueIteration(PlanningAlgorithm):
    """Value iteration (Bellman 1957, Dynamic Programming; Sutton & Barto 2018, sec. 4.4) over
    the env's model (`env.unwrapped.P`), in synchronous sweeps over all states at once:

    Q(s, a) = sum_{s'} p(s' | s, a) [r + gamma (1 - terminated) V(s')] = R[s, a] + gamma P[s, a] V
    V(s) <- max_a Q(s, a)

    R and P are dense arrays built once (P holds states x actions x states floats). Each sweep
    logs its residual max_s |V_new(s) - V(s)| as dp/residual; the run ends once it is below
    `tol` (then max_s |V - V*| <= gamma tol / (1 - gamma)) or after `max_sweeps`. The policy is
    greedy in Q (ties to the lowest action; a stochastic evaluation draws among tied actions).
    """

    rules = (*shared("gamma"), positive("algo.tol"), positive_int("algo.max_sweeps"))

    def __init__(self, cfg: DictConfig, spec: EnvSpec, device: Any, seed: int) -> None:
        super().__init__(cfg, spec, device, seed)
        n_states, n_actions = int(spec.obs.n), int(spec.act.n)
        self.R, self.P = dense_model(transition_model(cfg.env), n_states, n_actions, spec.id)
        self.table = Table((n_states,))

    @property
    def v(self) -> np.ndarray:
        """V[state]."""
        return self.table.values

    def stateful(self) -> dict[str, Any]:
        return {**super().stateful(), "v_table": self.table}

    def q_values(self, v: np.ndarray | None = None) -> np.ndarray:
        """Q[state, action] = R + gamma P V (of `v`, or of the current values)."""
        return self.R + self.hp.gamma * (self.P @ (self.v if v is None else v))

    def sweep(self) -> dict[str, float]:
        new = self.q_values().max(-1)
        residual = float(np.abs(new - self.v).max())
        self.v[...] = new
        return {"dp/residual": residual, "dp/mean_value": float(new.mean())}

    def converged(self, stats: dict[str, float]) -> bool:
        return stats["dp/residual"] < self.hp.tol

    def evaluation_policy(self, deterministic: bool, rng: np.random.Generator) -> Policy:
        q = self.q_values()  # the values are fixed while an evaluation plays
        if deterministic:
            actions = greedy(q)
            return lambda obs: actions[obs]
        return lambda obs: greedy(q[obs], rng)
