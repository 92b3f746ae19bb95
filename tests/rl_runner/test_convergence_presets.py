"""PPO's and DQN's presets for every shipped discrete env beyond CartPole reach the published score
(slow: run by default and in CI; skip them with -m "not slow").

Classic control: RL Zoo 3's benchmark table (deterministic evaluation of its trained agents, mean
and per-episode std): PPO Acrobot-v1 -73.5 +- 18.2 and DQN Acrobot-v1 -76.6 +- 11.8; DQN
MountainCar-v0 -100.8 +- 9.9 and PPO MountainCar-v0 -110.4 +- 19.5. A preset passes at its seed
when its final 20-episode mean is within one of those standard deviations of the published mean.

Toy text: the greedy policy is held to the DP-optimal policy's figure, computed exactly from the
env's model with its time limit: FrozenLake-v1 success 0.7402 and FrozenLake8x8-v1 0.8936 (2,000
evaluation episodes: one standard error is about 0.01, the margin is 0.05); Taxi-v4 mean return
7.93 over its 300 start states (>= 7.5, as for q_learning); CliffWalking-v1 -13 (deterministic:
the 13-step path along the cliff's edge, exactly).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conftest import compose_cfg, read_summary, run_train
from tests.rl_runner.test_convergence_tabular import FROZENLAKE_OPTIMUM, TAXI_OPTIMUM

FROZENLAKE8X8_OPTIMUM = 0.8936  # success of the DP-optimal greedy policy within 200 steps
CLIFFWALKING_OPTIMUM = -13.0


def at_least(published_mean: float, published_std: float) -> Callable[[float], bool]:
    return lambda score: score >= published_mean - published_std


def within(optimum: float, margin: float) -> Callable[[float], bool]:
    return lambda score: abs(score - optimum) <= margin


def taxi(score: float) -> bool:
    return 7.5 <= score <= TAXI_OPTIMUM + 0.3


CHECKS: dict[str, Callable[[float], bool]] = {
    "ppo-acrobot": at_least(-73.5, 18.2),
    "dqn-acrobot": at_least(-76.6, 11.8),
    "ppo-mountaincar": at_least(-110.4, 19.5),
    "dqn-mountaincar": at_least(-100.8, 9.9),
    "ppo-frozenlake": within(FROZENLAKE_OPTIMUM, 0.05),
    "dqn-frozenlake": within(FROZENLAKE_OPTIMUM, 0.05),
    "ppo-frozenlake8x8": within(FROZENLAKE8X8_OPTIMUM, 0.05),
    "dqn-frozenlake8x8": within(FROZENLAKE8X8_OPTIMUM, 0.05),
    "ppo-taxi": taxi,
    "dqn-taxi": taxi,
    "ppo-cliffwalking": within(CLIFFWALKING_OPTIMUM, 0.0),
    "dqn-cliffwalking": within(CLIFFWALKING_OPTIMUM, 0.0),
}
# the fixed seed of each preset's test; the README's algorithm table gives seeds 1 and 2 too (all
# pass but ppo-taxi at seed 2, 6.74: a few of the 300 start states left unsolved, and
# ppo-cliffwalking at seeds 1 and 2, -15: two steps longer than the optimum)
SEEDS: dict[str, int] = {name: 0 for name in CHECKS}
# the evaluation sizes that make the toy-text figures precise enough for their margins
EPISODES = {"frozenlake": 2000, "frozenlake8x8": 2000, "taxi": 1000}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CHECKS))
def test_preset_reaches_the_published_score(tmp_path, name):
    algo, env = name.split("-")
    overrides = [f"algo={algo}", f"env={env}", f"seed={SEEDS[name]}", "logger.console=off"]
    cfg = compose_cfg(overrides, fast=False)
    assert cfg.eval.deterministic
    assert cfg.eval.episodes == EPISODES.get(env, 20)
    run_train(cfg, tmp_path / "run")
    summary = read_summary(tmp_path / "run")
    assert summary["global_step"] >= cfg.algo.total_steps
    assert CHECKS[name](summary["eval/mean_return"]), summary
