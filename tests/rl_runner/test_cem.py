"""CEM: elite selection, the refit of mu and sigma and the extra-noise schedule by hand, sampling,
the batched evaluation of candidates against one network per candidate, state round trips and
short runs through `train()`."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from rl_runner.algos.evolution.cem import CEM, elite_count, refit, select_elite
from rl_runner.envs import env_spec, make_vec_env
from runner_core import checkpoint
from runner_core.errors import ConfigError
from tests.conftest import assert_run_dir, compose_cfg, read_metrics, run_train

CPU = torch.device("cpu")
BASE = ("algo=cem", "network.hidden=[4]", "algo.population=6", "algo.elite_frac=0.5",
        "algo.init_std=0.5", "algo.extra_noise_start=0.2", "algo.extra_noise_end=0.0",
        "algo.extra_noise_generations=4")  # fmt: skip
FAST = ("algo.generations=2", "algo.population=4", "network.hidden=[4]")


def make_cem(*overrides: str, env: str = "cartpole", seed: int = 0) -> CEM:
    cfg = compose_cfg([*BASE, f"env={env}", *overrides])
    return CEM(cfg, env_spec(cfg.env), CPU, seed=seed)


# the maths by hand ------------------------------------------------------------------------------
def test_elite_count():
    assert elite_count(50, 0.2) == 10
    assert elite_count(6, 0.5) == 3
    assert elite_count(10, 0.01) == 1  # at least one
    assert elite_count(4, 1.0) == 4


def test_select_elite_by_hand():
    returns = np.array([3.0, 9.0, 1.0, 9.0, 5.0])
    np.testing.assert_array_equal(select_elite(returns, 3), [1, 3, 4])  # ties: lower index first
    np.testing.assert_array_equal(select_elite(returns, 1), [1])
    np.testing.assert_array_equal(select_elite(returns, 5), [1, 3, 4, 0, 2])


def test_refit_by_hand():
    elite = np.array([[1.0, 2.0, 0.0], [3.0, 6.0, 0.0]], dtype=np.float32)
    mean, std = refit(elite, extra_noise=0.5)
    # mean (2, 4, 0); population variance (1, 4, 0), plus 0.5
    np.testing.assert_allclose(mean, [2.0, 4.0, 0.0])
    np.testing.assert_allclose(std, np.sqrt([1.5, 4.5, 0.5]))
    assert mean.dtype == std.dtype == np.float64
    _, std = refit(elite, extra_noise=0.0)
    np.testing.assert_allclose(std, [1.0, 2.0, 0.0])


def test_extra_noise_schedule():
    """Z_t decays linearly from extra_noise_start at t = 0 to extra_noise_end at t =
    extra_noise_generations and stays there."""
    cem = make_cem("algo.extra_noise_start=0.2", "algo.extra_noise_end=0.04",
                   "algo.extra_noise_generations=4")  # fmt: skip
    got = [cem.extra_noise(t) for t in range(7)]
    np.testing.assert_allclose(got, [0.2, 0.16, 0.12, 0.08, 0.04, 0.04, 0.04])
    constant = make_cem("algo.extra_noise_generations=0", "algo.extra_noise_end=0.3")
    assert constant.extra_noise(0) == constant.extra_noise(9) == 0.3


def test_tell_refits_mu_and_sigma_from_the_elite():
    cem = make_cem()
    assert cem.num_elite == 3
    rng = np.random.default_rng(3)
    candidates = rng.standard_normal((6, cem.dim)).astype(np.float32)
    returns = np.array([10.0, 50.0, 20.0, 40.0, 30.0, 0.0])
    cem.num_updates = 2  # the third generation: Z = 0.2 + 2/4 * (0 - 0.2) = 0.1
    stats = cem.tell(candidates, returns)
    elite = candidates[[1, 3, 4]].astype(np.float64)
    np.testing.assert_allclose(cem.mean, elite.mean(0), rtol=1e-6, atol=1e-7)  # float32 weights
    np.testing.assert_allclose(cem.std, np.sqrt(elite.var(0) + 0.1))
    assert stats == pytest.approx({
        "population_return": 25.0, "best_return": 50.0, "elite_return": 40.0,
        "std": float(np.sqrt(elite.var(0) + 0.1).mean()), "charts/extra_noise": 0.1,
    })  # fmt: skip


def test_the_mean_is_the_policy_networks_weights():
    cem = make_cem()
    flat = np.arange(cem.dim, dtype=np.float64) / cem.dim
    cem.mean = flat
    np.testing.assert_allclose(cem.mean, flat, rtol=1e-6)
    body = cem.policy.body
    # (4 -> 4) then (4 -> 2), weights before biases, layer by layer
    np.testing.assert_allclose(body[0].weight.numpy().reshape(-1), flat[:16], rtol=1e-6)
    np.testing.assert_allclose(body[0].bias.numpy(), flat[16:20], rtol=1e-6)
    assert cem.dim == 4 * 4 + 4 + 4 * 2 + 2


def test_ask_samples_around_mu_with_sigma():
    cem = make_cem()
    cem.std = np.linspace(0.1, 1.0, cem.dim)
    state = copy.deepcopy(cem.rng.bit_generator.state)
    candidates = cem.ask()
    assert candidates.shape == (6, cem.dim) and candidates.dtype == np.float32
    cem.rng.bit_generator.state = state
    noise = cem.rng.standard_normal((6, cem.dim))
    np.testing.assert_allclose(candidates, cem.mean + cem.std * noise, rtol=1e-6, atol=1e-6)
    assert np.allclose(make_cem().std, 0.5)  # init_std


# acting -----------------------------------------------------------------------------------------
def one_by_one(cem: CEM, candidates: np.ndarray, obs: np.ndarray) -> np.ndarray:
    """Candidate i's network on observation i, one network at a time."""
    outs = []
    for theta, row in zip(candidates, obs, strict=True):
        net = copy.deepcopy(cem.policy)
        torch.nn.utils.vector_to_parameters(torch.from_numpy(theta), net.parameters())
        with torch.no_grad():
            outs.append(net(torch.from_numpy(row[None]))[0].numpy())
    return np.stack(outs)


def test_candidates_act_greedily_with_their_own_weights():
    cem = make_cem()
    candidates = cem.ask() * 3.0
    obs = np.random.default_rng(4).standard_normal((6, 4)).astype(np.float32)
    logits = one_by_one(cem, candidates, obs)
    np.testing.assert_array_equal(cem.candidate_policy(candidates)(obs), logits.argmax(-1))
    # and the evaluation policy is mu's
    np.testing.assert_array_equal(
        cem.evaluation_policy(True, np.random.default_rng(0))(obs),
        cem.candidate_policy(np.tile(cem.mean.astype(np.float32), (6, 1)))(obs),
    )


def test_continuous_candidates_act_with_tanh_scaled_to_the_bounds():
    cem = make_cem(env="pendulum")
    candidates = cem.ask() * 3.0
    obs = np.random.default_rng(5).standard_normal((6, 3)).astype(np.float32)
    out = one_by_one(cem, candidates, obs)
    actions = cem.candidate_policy(candidates)(obs)
    assert actions.shape == (6, 1)
    np.testing.assert_allclose(actions, 2.0 * np.tanh(out), rtol=1e-5, atol=1e-6)


def test_sub_env_i_acts_with_candidate_i():
    """Through the population loop's collector: one CartPole episode per candidate, the first
    always pushing left, the second always right."""
    from rl_runner.collectors import play_episodes

    cem = make_cem("algo.population=2")
    candidates = np.zeros((2, cem.dim), dtype=np.float32)
    bias = cem.dim - 2  # the output layer's biases: the logits, with zero weights
    candidates[0, bias] = 1.0
    candidates[1, bias + 1] = 1.0
    policy, played = cem.candidate_policy(candidates), []

    def recording(obs: np.ndarray) -> np.ndarray:
        played.append(policy(obs))
        return played[-1]

    envs = make_vec_env(cem.cfg.env, 2)
    returns, steps = play_episodes(envs, recording, seed=0)
    envs.close()
    assert all(list(actions) == [0, 1] for actions in played)
    assert returns.max() < 20  # pushing one way drops the pole within a few dozen steps
    assert steps == int(returns.sum())  # CartPole pays 1 per step, one episode each


# config, state ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("override", "key"),
    [("algo.elite_frac=0", "algo.elite_frac"), ("algo.elite_frac=1.5", "algo.elite_frac"),
     ("algo.population=0", "algo.population"), ("algo.init_std=0", "algo.init_std"),
     ("algo.extra_noise_start=-1", "algo.extra_noise_start")],
)  # fmt: skip
def test_bad_config_values_are_refused(override, key):
    cfg = compose_cfg(["algo=cem", override])
    with pytest.raises(ConfigError, match=key):
        CEM.check(cfg, env_spec(cfg.env))


def test_discrete_observations_are_refused():
    cfg = compose_cfg(["algo=cem", "env=frozenlake"])
    with pytest.raises(ConfigError, match="observations"):
        CEM.check(cfg, env_spec(cfg.env))


@pytest.mark.parametrize("env", ["cartpole", "pendulum"])
def test_state_dict_round_trip_through_a_checkpoint_file(tmp_path, env):
    cem = make_cem(env=env)
    candidates = cem.ask()
    cem.tell(candidates, np.arange(6.0))
    cem.num_updates = 1
    checkpoint.save_atomic({"algo": cem.state_dict()}, tmp_path / "c.pt")
    other = make_cem(env=env, seed=1)
    other.load_state_dict(checkpoint.load(tmp_path / "c.pt")["algo"])
    assert other.num_updates == 1
    np.testing.assert_array_equal(other.mean, cem.mean)
    np.testing.assert_array_equal(other.std, cem.std)
    np.testing.assert_array_equal(other.ask(), cem.ask())  # the generator too


def test_init_from_takes_mu_but_not_sigma():
    cem = make_cem()
    cem.tell(cem.ask(), np.arange(6.0))
    other = make_cem(seed=1)
    other.load_learned(cem.state_dict())
    np.testing.assert_array_equal(other.mean, cem.mean)
    assert np.allclose(other.std, 0.5) and other.num_updates == 0


# short runs -------------------------------------------------------------------------------------
@pytest.mark.parametrize("env", ["cartpole", "pendulum"])
def test_short_run_through_train(tmp_path, env):
    cfg = compose_cfg(["algo=cem", f"env={env}", *FAST])
    run_train(cfg, tmp_path / "run")
    summary = assert_run_dir(tmp_path / "run")
    assert summary["global_step"] == 2  # generations
    records = read_metrics(tmp_path / "run")
    generations = [r for r in records if "losses/elite_return" in r]
    assert [r["step"] for r in generations] == [1, 2]
    assert "charts/extra_noise" in generations[0]
    # every candidate played one whole episode: Pendulum's last 200 steps
    if env == "pendulum":
        assert [r["charts/env_steps"] for r in generations] == [4 * 200, 8 * 200]
    else:
        assert generations[-1]["charts/env_steps"] >= 8 * 8
    for r in generations:
        assert r["losses/best_return"] >= r["losses/elite_return"] >= r["losses/population_return"]
        assert math.isfinite(r["losses/std"])
    assert any("eval/mean_return" in r for r in records)


def test_a_run_is_reproducible(tmp_path):
    cfg = compose_cfg(["algo=cem", *FAST])
    runs = []
    for name in ("a", "b"):
        run_train(cfg, tmp_path / name)
        runs.append([{k: v for k, v in r.items() if k not in ("wall_time", "charts/sps")}
                     for r in read_metrics(tmp_path / name)])  # fmt: skip
    assert runs[0] == runs[1]
