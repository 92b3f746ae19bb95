"""The tabular and planning presets reach the DP-optimal scores (slow: run by default and in CI;
skip them with -m "not slow").

References, computed exactly from each env's model (`env.unwrapped.P`) with its time limit:
FrozenLake-v1 (4x4, slippery, 100 steps): the greedy policy of value iteration with gamma -> 1
succeeds with probability 0.7402 within the limit (0.8235 without one).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from runner_core import checkpoint
from tests.conftest import compose_cfg, read_summary, run_train

FROZENLAKE_OPTIMUM = 0.7402  # success rate of the DP-optimal greedy policy within 100 steps
TAXI_OPTIMUM = 7.93  # mean return of the optimal policy over Taxi-v4's 300 start states
SEEDS = {("q_learning", "frozenlake"): 0, ("q_learning", "taxi"): 0}


def preset_run(tmp_path, algo: str, env: str, seed: int = 0, *extra: str) -> dict:
    overrides = [f"algo={algo}", f"env={env}", f"seed={seed}", "logger.console=off", *extra]
    cfg = compose_cfg(overrides, fast=False)
    assert cfg.eval.deterministic
    run_train(cfg, tmp_path / "run")
    return read_summary(tmp_path / "run")


@pytest.mark.slow
def test_q_learning_frozenlake_reaches_the_dp_optimum(tmp_path):
    cfg = compose_cfg(["algo=q_learning", "env=frozenlake"], fast=False)
    assert cfg.eval.episodes == 2000
    summary = preset_run(tmp_path, "q_learning", "frozenlake", SEEDS["q_learning", "frozenlake"])
    assert summary["global_step"] >= cfg.algo.total_steps
    assert abs(summary["eval/mean_return"] - FROZENLAKE_OPTIMUM) <= 0.05, summary


@pytest.mark.slow
def test_q_learning_taxi_reaches_the_optimum(tmp_path):
    summary = preset_run(tmp_path, "q_learning", "taxi", SEEDS["q_learning", "taxi"])
    assert 7.5 <= summary["eval/mean_return"] <= TAXI_OPTIMUM + 0.3, summary


def _model(env_id: str) -> tuple[np.ndarray, np.ndarray]:
    """R[s, a] (expected reward) and P[s, a, s'] (probability of going on to s'), built here
    from the env's model, independently of the algorithm's code."""
    env = gym.make(env_id)
    model, n_states, n_actions = env.unwrapped.P, env.observation_space.n, env.action_space.n
    env.close()
    R = np.zeros((n_states, n_actions))
    P = np.zeros((n_states, n_actions, n_states))
    for s in range(n_states):
        for a in range(n_actions):
            for p, next_state, reward, terminated in model[s][a]:
                R[s, a] += p * reward
                P[s, a, next_state] += 0.0 if terminated else p
    return R, P


@pytest.mark.slow
def test_value_iteration_frozenlake8x8_values_are_its_greedy_policys(tmp_path):
    """V after the sweeps is within 1e-6 of v_pi, the value of the greedy policy pi, from
    (I - gamma P_pi) v_pi = r_pi."""
    cfg = compose_cfg(["algo=value_iteration", "env=frozenlake8x8"], fast=False)
    summary = preset_run(tmp_path, "value_iteration", "frozenlake8x8")
    assert summary["global_step"] < cfg.algo.max_sweeps  # converged
    v = checkpoint.load(tmp_path / "run" / "checkpoints" / "final.pt")["session"]["algo"]
    v = v["v_table"]["values"].numpy()
    R, P = _model("FrozenLake8x8-v1")
    gamma = cfg.algo.gamma
    pi = (R + gamma * P @ v).argmax(-1)
    states = np.arange(len(v))
    v_pi = np.linalg.solve(np.eye(len(v)) - gamma * P[states, pi], R[states, pi])
    assert np.abs(v - v_pi).max() < 1e-6
    # the preset's policy succeeds within the 200-step limit with probability 0.8936
    assert abs(summary["eval/mean_return"] - 0.8936) <= 0.03, summary


@pytest.mark.slow
def test_value_iteration_is_optimal_on_taxi_and_cliffwalking(tmp_path):
    summary = preset_run(tmp_path / "taxi", "value_iteration", "taxi", 0, "eval.episodes=1000")
    assert abs(summary["eval/mean_return"] - TAXI_OPTIMUM) <= 0.3, summary  # 4 standard errors
    summary = preset_run(tmp_path / "cliff", "value_iteration", "cliffwalking")
    assert summary["eval/mean_return"] == -13.0, summary  # 13 steps along the cliff's edge
