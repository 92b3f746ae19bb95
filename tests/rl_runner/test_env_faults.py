"""Environments that break their contract are named as the cause, with what they returned and
when: observations that do not fit the declared space, NaN or infinite observations and rewards
(before, a bare numpy error or a NaN loss blaming the learning rate), and envs whose optional
dependency is missing."""

from __future__ import annotations

import importlib.util

import pytest

import tests.fixtures.bad_envs  # noqa: F401  (registers the envs)
from runner_core.errors import ConfigError, EnvironmentFault
from tests.conftest import REPO, compose_cfg, leftovers, run_cli, run_train

BAD = ("env=gym", "env.num_envs=2", "env.vectorization=sync")


# the env is wrong on purpose: gymnasium's passive checker warns about it before our check refuses
@pytest.mark.filterwarnings("ignore:.*not within the observation space:UserWarning")
def test_a_wrong_observation_shape_is_named_at_start(tmp_path):
    cfg = compose_cfg([*BAD, "env.id=WrongShape-v0"])
    with pytest.raises(EnvironmentFault) as err:
        run_train(cfg, tmp_path / "run")
    assert err.value.exit_code == 3
    message = str(err.value)
    assert "'WrongShape-v0' declares observations of shape (4,)" in message
    assert "reset() returned one of shape (5,)" in message
    assert not (tmp_path / "run").exists()  # refused before it started: nothing left


def test_a_wrong_shape_later_in_the_run_is_named(tmp_path):
    cfg = compose_cfg([*BAD, "env.id=LateWrongShape-v0"])
    with pytest.raises(EnvironmentFault) as err:
        run_train(cfg, tmp_path / "run")
    message = str(err.value)
    assert "'LateWrongShape-v0' returned an observation from step()" in message
    assert "Box(-inf, inf, (4,), float32)" in message


@pytest.mark.parametrize(
    ("env_id", "what"), [("NaNObs-v0", "observation (nan)"), ("NaNReward-v0", "reward (nan)")]
)
@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_nan_from_the_env_blames_the_env_with_its_step(tmp_path, env_id, what, algo):
    cfg = compose_cfg([f"algo={algo}", *BAD, f"env.id={env_id}"])
    with pytest.raises(EnvironmentFault) as err:
        run_train(cfg, tmp_path / "run")
    message = str(err.value)
    # each of the 2 sub-envs turns bad at its own 30th step: env step 60 of the run
    assert f"'{env_id}' returned a non-finite {what} at env step 60 (sub-env 0)" in message
    assert "learning rate" not in message and "environment is at fault" in message


def test_the_cli_prints_one_paragraph_for_an_env_fault(tmp_path):
    result = run_cli(
        "rl_runner", *BAD, "env.id=tests.fixtures.bad_envs:NaNReward-v0", "logger.console=off",
        "algo.total_steps=512", cwd=tmp_path, env={"PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert result.rc == 3, result.output
    assert "Traceback" not in result.output
    assert result.stderr.startswith("Error: Environment 'NaNReward-v0' returned a non-finite")
    assert result.stderr.count("\n") == 1


@pytest.mark.skipif(importlib.util.find_spec("Box2D") is not None, reason="Box2D is installed")
def test_a_missing_optional_dependency_names_the_extra(tmp_path):
    with pytest.raises(ConfigError, match=r'needs an optional dependency.*-e "\.\[box2d\]"'):
        run_train(compose_cfg(["env=gym", "env.id=LunarLander-v3"]), tmp_path / "in" / "run")
    assert not (tmp_path / "in" / "run").exists()
    result = run_cli("rl_runner", "env=gym", "env.id=LunarLander-v3", cwd=tmp_path)
    assert result.rc == 2 and "Traceback" not in result.output, result.output
    assert leftovers(tmp_path) == []
