"""Environments: id resolution, env facts, the stepper's reset-step flags and episode accounting,
and evaluation's episode count."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import yaml
from omegaconf import OmegaConf

from rl_runner.collectors import EVAL_EPISODE_LIMIT, EnvStepper, evaluate
from rl_runner.envs import env_spec, make_vec_env, resolve_id, transition_model
from runner_core.entrypoint import CONF_DIR
from runner_core.errors import ConfigError
from tests.conftest import options

T, F = True, False
DOWN, RIGHT = 1, 2
# FrozenLake 4x4, not slippery:  S F F F / F H F H / F F F H / H F F G
# always DOWN: 0 -> 4 -> 8 -> 12 (a hole): terminated after 3 steps, return 0
# this policy reaches the goal in 6 steps: 0 -D-> 4 -D-> 8 -R-> 9 -R-> 10 -D-> 14 -R-> 15
TO_GOAL = {0: DOWN, 4: DOWN, 8: RIGHT, 9: RIGHT, 10: DOWN, 14: RIGHT}


def env_cfg(env_id: str, **over):
    base = {"name": "t", "id": env_id, "num_envs": 1, "vectorization": "auto",
            "max_episode_steps": None, "kwargs": {}}  # fmt: skip
    base.update(over)
    return OmegaConf.create(base)


def lake(num_envs: int, **over):
    return make_vec_env(env_cfg("FrozenLake-v1", kwargs={"is_slippery": False}, **over), num_envs)


def to_goal(obs: np.ndarray) -> np.ndarray:
    return np.array([TO_GOAL.get(int(s), 0) for s in obs])


def test_stepper_flags_reset_steps_invalid():
    envs = lake(2)
    stepper = EnvStepper(envs, seed=0)
    valid_seen, done_seen = [], []
    for _ in range(8):
        _, reward, terminated, truncated, valid = stepper.step(np.array([DOWN, DOWN]))
        valid_seen.append(valid.copy())
        done_seen.append(terminated | truncated)
        assert not truncated.any()
        assert (reward == 0).all()
    valid_seen, done_seen = np.array(valid_seen), np.array(done_seen)
    # episodes end on steps 3 and 7 (1-based); steps 4 and 8 only reset
    np.testing.assert_array_equal(done_seen[:, 0], [F, F, T, F, F, F, T, F])
    np.testing.assert_array_equal(valid_seen[:, 0], [T, T, T, F, T, T, T, F])
    # valid is False exactly on the step after a done step
    np.testing.assert_array_equal(valid_seen[1:], ~done_seen[:-1])
    assert valid_seen[0].all()
    assert stepper.step_count == 16  # env steps of all sub-envs together
    assert stepper.episodes == 4
    assert stepper.finished_lengths == [3, 3, 3, 3]
    assert stepper.finished_returns == [0.0, 0.0, 0.0, 0.0]
    envs.close()


def test_stepper_episode_accounting_with_rewards_and_resumed_count():
    envs = lake(2)
    stepper = EnvStepper(envs, seed=0, step=100)
    assert stepper.step_count == 100
    for _ in range(7):  # 6 steps to the goal, then the reset step
        stepper.step(to_goal(stepper.obs))
    assert stepper.step_count == 114
    assert stepper.episodes == 2
    stats = stepper.drain_episodes()
    assert stats == {"charts/episodic_return": 1.0, "charts/episodic_length": 6.0}
    assert stepper.drain_episodes() == {}
    assert list(stepper.recent) == [1.0, 1.0]
    envs.close()


def test_stepper_truncation_counts_an_episode():
    envs = make_vec_env(env_cfg("CartPole-v1", max_episode_steps=4), 2)
    stepper = EnvStepper(envs, seed=0)
    flags = []
    for i in range(10):
        _, _, terminated, truncated, valid = stepper.step(np.array([i % 2, i % 2]))
        flags.append((terminated.any(), truncated.all(), valid.all()))
    assert [f[1] for f in flags] == [F, F, F, T, F, F, F, F, T, F]
    assert [f[2] for f in flags] == [T, T, T, T, F, T, T, T, T, F]
    assert not any(f[0] for f in flags)
    assert stepper.episodes == 4
    assert stepper.finished_lengths == [4, 4, 4, 4]
    assert stepper.finished_returns == [4.0, 4.0, 4.0, 4.0]  # the reset step's reward is not added
    envs.close()


@pytest.mark.parametrize(("num_envs", "episodes"), [(1, 3), (3, 7), (3, 2), (4, 4), (2, 5)])
def test_evaluate_plays_exactly_the_requested_episodes(num_envs, episodes):
    envs = lake(num_envs)
    returns = evaluate(to_goal, envs, episodes, seed=0)
    assert returns.shape == (episodes,)
    assert (returns == 1.0).all()
    envs.close()


def test_evaluate_returns_exclude_reset_steps():
    envs = make_vec_env(env_cfg("CartPole-v1", max_episode_steps=5), 2)
    returns = evaluate(lambda obs: np.arange(len(obs)) % 2, envs, 6, seed=0)
    assert returns.tolist() == [5.0] * 6
    envs.close()


def test_resolve_id():
    assert resolve_id("CartPole-v1").id == "CartPole-v1"
    assert resolve_id("gymnasium.envs.classic_control:Acrobot-v1").id == "Acrobot-v1"
    with pytest.raises(ConfigError, match=r"env\.id.*NoSuchEnv-v0"):
        resolve_id("NoSuchEnv-v0")
    with pytest.raises(ConfigError, match="Did you mean: CartPole-v1"):
        resolve_id("CartPole-v2")
    with pytest.raises(ConfigError, match=r"no_such_module_xyz.*cannot be imported"):
        resolve_id("no_such_module_xyz:Foo-v0")


def test_env_spec_reads_the_env():
    spec = env_spec(env_cfg("CartPole-v1"))
    assert (spec.action_kind, spec.act.n, spec.obs_kind, spec.obs.shape) == (
        "discrete", 2, "vector", (4,),
    )  # fmt: skip
    assert spec.obs.dtype == np.float32 and spec.obs.flat_dim == 4
    assert spec.max_episode_steps == 500 and not spec.has_model
    taxi = env_spec(env_cfg("Taxi-v4"))
    assert (taxi.obs_kind, taxi.obs.n, taxi.obs.flat_dim, taxi.act.n) == ("discrete", 500, 500, 6)
    assert taxi.has_model
    pendulum = env_spec(env_cfg("Pendulum-v1"))
    assert pendulum.action_kind == "continuous"
    assert pendulum.act.shape == (1,)
    assert (pendulum.act.low.tolist(), pendulum.act.high.tolist()) == ([-2.0], [2.0])
    assert env_spec(env_cfg("CartPole-v1", max_episode_steps=7)).max_episode_steps == 7


def test_transition_model_of_toy_text_envs():
    model = transition_model(env_cfg("FrozenLake-v1"))
    assert len(model) == 16 and len(model[0]) == 4
    assert sum(p for p, *_ in model[0][1]) == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="exposes no transition model"):
        transition_model(env_cfg("CartPole-v1"))


def test_make_vec_env_refuses_bad_arguments():
    with pytest.raises(ConfigError, match="rejected its arguments"):
        make_vec_env(env_cfg("CartPole-v1", kwargs={"no_such_kwarg": 1}), 1)
    with pytest.raises(ConfigError, match="no native vector implementation"):
        make_vec_env(env_cfg("Taxi-v4", vectorization="vector_entry_point"), 1)


@pytest.mark.parametrize("env", [e for e in options("env") if e != "gym"])
def test_shipped_envs_have_an_episode_limit(env):
    """Evaluation plays whole episodes: an env option without any time limit could make it run
    forever with a policy that never ends an episode."""
    node = yaml.safe_load((CONF_DIR / "env" / f"{env}.yaml").read_text())
    limit = node["max_episode_steps"] or gym.spec(node["id"]).max_episode_steps
    assert limit is not None and limit > 0


class _TooLong(Exception):
    pass


def test_evaluate_terminates_without_a_time_limit():
    """A policy that never ends an episode of an env without a time limit: evaluation cuts the
    episode at its own limit. Bounded by work (the policy's calls), not by the clock."""
    envs = make_vec_env(env_cfg("CliffWalking-v1"), 1)
    calls = [0]

    def up(obs: np.ndarray) -> np.ndarray:
        calls[0] += 1
        if calls[0] > EVAL_EPISODE_LIMIT + 10:
            raise _TooLong
        return np.zeros(len(obs), dtype=np.int64)

    try:
        returns = evaluate(up, envs, 1, seed=0)
    finally:
        envs.close()
    assert len(returns) == 1
    assert returns[0] == -EVAL_EPISODE_LIMIT  # -1 per step, cut at the evaluation limit
    assert calls[0] == EVAL_EPISODE_LIMIT


@pytest.mark.parametrize("vectorization", ["sync", "vector_entry_point"])
def test_evaluate_cuts_long_episodes_at_the_limit(vectorization):
    """Sync envs reset only the cut sub-env; native vector envs reset all and drop unfinished
    episodes. Either way every counted episode lasts at most the limit (CartPole: +1 per step)."""
    envs = make_vec_env(env_cfg("CartPole-v1", vectorization=vectorization), 3)
    lean = np.random.default_rng(0)
    try:
        returns = evaluate(lambda obs: lean.integers(0, 2, len(obs)), envs, 7, seed=0,
                           max_episode_steps=12)  # fmt: skip
    finally:
        envs.close()
    assert len(returns) == 7
    assert (returns <= 12).all() and (returns >= 1).all()
    assert (returns == 12).any()
