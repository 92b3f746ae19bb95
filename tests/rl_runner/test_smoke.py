"""Every RL algorithm on every shipped env, generated from what the algorithm declares it
handles (observation and action kinds, a known model for planning): a short run through
`train()` where it does, a clear refusal where it does not."""

from __future__ import annotations

import functools

import pytest

from rl_runner.algos.base import PlanningAlgorithm
from rl_runner.envs import env_spec
from runner_core.errors import ConfigError
from runner_core.validation import algo_class
from tests.conftest import (
    algo_family,
    assert_run_dir,
    compose_cfg,
    options,
    read_metrics,
    read_summary,
    run_train,
    steps_by_tag,
)

RL_ALGOS = [a for a in options("algo") if algo_family(a) == "rl"]
ENVS = [e for e in options("env") if e != "gym"]


@functools.cache
def spec_of(env: str):
    return env_spec(compose_cfg([f"env={env}"]).env)


def handles(algo: str, env: str) -> str | None:
    """None if `algo` declares it handles `env`, else what it lacks (words of its refusal)."""
    cls = algo_class(compose_cfg([f"algo={algo}"]))
    spec = spec_of(env)
    if issubclass(cls, PlanningAlgorithm) and not spec.has_model:
        return "transition model"
    if spec.action_kind not in cls.action_kinds:
        return "action space"
    if spec.obs_kind not in cls.obs_kinds:
        return "observations"
    return None


def test_the_declarations_cover_the_shipped_envs():
    assert {"ppo", "dqn"} <= set(RL_ALGOS)
    kinds = {spec_of(e).action_kind for e in ENVS} | {spec_of(e).obs_kind for e in ENVS}
    assert {"discrete", "continuous", "vector"} <= kinds
    assert handles("ppo", "pendulum") is None  # PPO takes continuous actions
    assert handles("dqn", "pendulum") == "action space"


def _check_rl_run(run_dir, algo, env_id):
    summary = assert_run_dir(run_dir)
    cfg = compose_cfg([f"algo={algo}"])
    assert summary["global_step"] >= algo_class(cfg).budget(cfg) or summary.get("converged")
    assert summary["objective_name"] == "eval/mean_return"
    assert summary["env_id"] == env_id
    assert summary["device"] in ("cpu", "cpu (numpy)")
    assert summary["seed"] == 0
    assert 0 < summary["runner_overhead_s"] <= summary["wall_time_s"] + 0.01
    tags = steps_by_tag(read_metrics(run_dir))
    assert "eval/mean_return" in tags
    assert any(t.startswith(("losses/", "dp/")) for t in tags), sorted(tags)
    for tag, steps in tags.items():
        assert steps == sorted(steps), tag
        assert all(0 < s <= summary["global_step"] for s in steps), tag


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("algo", RL_ALGOS)
def test_algo_env_pair(tmp_path, algo, env):
    cfg = compose_cfg([f"algo={algo}", f"env={env}"])
    run_dir = tmp_path / "run"
    lacking = handles(algo, env)
    if lacking is not None:
        with pytest.raises(ConfigError, match=lacking) as err:
            run_train(cfg, run_dir)
        assert f"algo={algo}" in str(err.value)
        assert cfg.env.id in str(err.value)
        assert not run_dir.exists(), "a refused run leaves no directory"
        return
    objective = run_train(cfg, run_dir)
    _check_rl_run(run_dir, algo, cfg.env.id)
    assert objective == pytest.approx(assert_run_dir(run_dir)["eval/mean_return"])


@pytest.mark.parametrize("algo", [a for a in RL_ALGOS if handles(a, "acrobot") is None])
def test_gym_env_by_id(tmp_path, algo):
    cfg = compose_cfg([f"algo={algo}", "env=gym", "env.id=Acrobot-v1"])
    assert cfg.name == f"{algo}_Acrobot-v1"  # named after the env id
    run_train(cfg, tmp_path / "run")
    _check_rl_run(tmp_path / "run", algo, "Acrobot-v1")


def test_tensorboard_and_jsonl_can_be_off(train_run):
    run_dir = train_run(["logger.tensorboard=false", "logger.jsonl=false"])
    assert not list(run_dir.glob("events.out.tfevents.*"))
    assert not (run_dir / "metrics.jsonl").exists()
    assert (run_dir / "summary.json").is_file()
    assert (run_dir / "checkpoints" / "final.pt").is_file()


def test_make_cfg_fixture_shrinks_the_real_config(make_cfg):
    cfg = make_cfg(["algo=dqn"])
    assert cfg.logger.console == "off"
    assert cfg.algo.total_steps == 512
    assert cfg.algo.gradient_steps == 1  # overrides the cartpole preset's 128
    assert make_cfg(["algo=dqn"], fast=False).algo.total_steps == 50_000


def test_periodic_eval_and_checkpoints(tmp_path):
    cfg = compose_cfg(
        ["eval.every_steps=128", "checkpoint.every_steps=256", "algo.total_steps=512"]
    )
    run_train(cfg, tmp_path / "run")
    tags = steps_by_tag(read_metrics(tmp_path / "run"))
    assert tags["eval/mean_return"] == [128, 256, 384, 512]
    assert (tmp_path / "run" / "checkpoints" / "best.pt").is_file()


@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_stop_at_return_ends_the_run_at_the_first_good_evaluation(tmp_path, algo):
    # every evaluation of CartPole returns >= 1, so the first one (at step 128) stops the run
    cfg = compose_cfg([f"algo={algo}", "eval.every_steps=128", "eval.stop_at_return=1",
                       "algo.total_steps=100000"])  # fmt: skip
    run_train(cfg, tmp_path / "run")
    summary = read_summary(tmp_path / "run")
    tags = steps_by_tag(read_metrics(tmp_path / "run"))
    assert tags["eval/mean_return"] == [summary["global_step"]]  # evaluated once, not again
    assert 128 <= summary["global_step"] < 1000
    assert summary["solved_at_step"] == summary["global_step"]
    # when that evaluation finished (Unix time): within the run, before summary.json was written
    written = (tmp_path / "run" / "summary.json").stat().st_mtime
    assert written - summary["wall_time_s"] - 1 < summary["solved_at_time"] <= written


def test_stop_at_return_not_reached_runs_the_whole_budget(tmp_path):
    cfg = compose_cfg(["eval.every_steps=128", "eval.stop_at_return=1000"])
    run_train(cfg, tmp_path / "run")
    summary = read_summary(tmp_path / "run")
    assert summary["global_step"] >= cfg.algo.total_steps
    assert "solved_at_step" not in summary


@pytest.mark.parametrize("algo", [a for a in RL_ALGOS if handles(a, "cartpole") is None])
def test_stochastic_evaluation(tmp_path, algo):
    """eval.deterministic=false samples from each algorithm's own policy (PPO: pi(.|s); DQN:
    epsilon-greedy at the final epsilon) with the evaluation's own random stream."""
    cfg = compose_cfg([f"algo={algo}", "eval.deterministic=false"])
    run_train(cfg, tmp_path / "run")
    _check_rl_run(tmp_path / "run", algo, cfg.env.id)
