"""A2C: n-step returns, the loss's parts and one RMSprop (or Adam) step on hand-built rollouts,
learning-rate decay, advantage normalization, the exclusion of autoreset steps, discrete and
continuous actions, state round trips and short runs through `train()`."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from rl_runner.algos.on_policy.a2c import A2C, a2c_losses
from rl_runner.algos.on_policy.ppo import PPO
from rl_runner.buffers import RolloutBuffer, gae
from rl_runner.envs import env_spec
from runner_core import checkpoint
from runner_core.errors import ConfigError
from tests.conftest import assert_run_dir, compose_cfg, read_metrics, run_train

CPU = torch.device("cpu")
BASE = ("algo=a2c", "network.hidden=[8]", "algo.lr=0.01", "algo.anneal_lr=false",
        "algo.ent_coef=0.1", "algo.vf_coef=0.5", "algo.max_grad_norm=100.0")  # fmt: skip
FAST = ("algo.total_steps=320", "env.num_envs=4", "algo.num_steps=5", "network.hidden=[8]")


def make_a2c(*overrides: str, env: str = "cartpole", seed: int = 0) -> A2C:
    cfg = compose_cfg([*BASE, f"env={env}", *overrides])
    return A2C(cfg, env_spec(cfg.env), CPU, seed=seed)


def make_buffer(a2c: A2C, steps: int, envs: int, seed: int = 0) -> RolloutBuffer:
    """A rollout of random observations and actions with given advantages and returns."""
    spec = a2c.spec
    buf = RolloutBuffer(steps, envs, spec.obs, spec.act)
    rng = np.random.default_rng(seed)
    buf.obs[:] = rng.standard_normal(buf.obs.shape)
    if spec.act.kind == "discrete":
        buf.actions[:] = rng.integers(0, spec.act.n, buf.actions.shape)
    else:
        buf.actions[:] = rng.uniform(-2.0, 2.0, buf.actions.shape)
    buf.advantages[:] = rng.standard_normal((steps, envs))
    buf.returns[:] = rng.standard_normal((steps, envs))
    buf.values[:] = buf.returns - buf.advantages
    buf.valid[:] = True
    return buf


def expected_losses(a2c: A2C, buf: RolloutBuffer, norm_adv: bool = False):
    """The losses written out from the networks' outputs (no step taken), valid steps only."""
    valid = buf.valid.reshape(-1)
    obs = torch.from_numpy(buf.obs.reshape(len(valid), -1)[valid])
    actions = torch.from_numpy(buf.actions.reshape(len(valid), *buf.actions.shape[2:])[valid])
    adv = buf.advantages.reshape(-1)[valid].astype(np.float64)
    if norm_adv:
        adv = (adv - adv.mean()) / (adv.std(ddof=1) + 1e-8)
    returns = buf.returns.reshape(-1)[valid]
    with torch.no_grad():
        out = a2c.policy.actor(obs)
        values = a2c.policy.critic(obs).squeeze(-1).numpy()
        if a2c.gaussian:
            dist = torch.distributions.Normal(out, a2c.policy.log_std.exp())
            logp = dist.log_prob(actions.reshape(out.shape)).sum(-1).numpy()
            entropy = dist.entropy().sum(-1).numpy()
        else:
            dist = torch.distributions.Categorical(logits=out)
            logp, entropy = dist.log_prob(actions).numpy(), dist.entropy().numpy()
    return {
        "policy_loss": float(-(adv * logp).mean()),
        "value_loss": float(np.square(values - returns).mean()),
        "entropy": float(entropy.mean()),
    }


# n-step returns -------------------------------------------------------------------------------
def test_a2c_config_makes_advantages_n_step_returns_minus_values():
    """With the config's lambda = 1 the rollout's advantages are R_t - V(s_t), R_t the n-step
    return bootstrapped from V after the rollout, cut at a termination, and bootstrapped from
    the final state's value at a truncation (whose next row is the autoreset step)."""
    cfg = compose_cfg(["algo=a2c"])
    assert cfg.algo.gae_lambda == 1.0
    gamma = 0.5
    rewards = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 0.0]], dtype=np.float32)
    values = np.array([[0.5, 0.5], [0.25, 0.25], [2.0, 6.0]], dtype=np.float32)
    next_value = np.array([4.0, 8.0], dtype=np.float32)
    # env 0 runs on; env 1 is truncated at t = 1 (values[2, 1] = 6 is its final state's value)
    terminated = np.zeros((3, 2), dtype=bool)
    dones = np.array([[False, False], [False, True], [False, False]])
    adv, returns = gae(rewards, values, next_value, terminated, dones, gamma, cfg.algo.gae_lambda)
    # env 0: R2 = 3 + 0.5 * 4 = 5; R1 = 2 + 0.5 * 5 = 4.5; R0 = 1 + 0.5 * 4.5 = 3.25
    # env 1: R1 = 2 + 0.5 * 6 = 5; R0 = 1 + 0.5 * 5 = 3.5 (R2 belongs to the reset step)
    np.testing.assert_allclose(returns[:, 0], [3.25, 4.5, 5.0])
    np.testing.assert_allclose(returns[:2, 1], [3.5, 5.0])
    np.testing.assert_allclose(adv, returns - values)
    # a termination at t = 1 is not bootstrapped: R1 = 2, R0 = 1 + 0.5 * 2 = 2
    terminated[1, 1] = True
    _, returns = gae(rewards, values, next_value, terminated, dones, gamma, 1.0)
    np.testing.assert_allclose(returns[:2, 1], [2.0, 2.0])


# the loss -------------------------------------------------------------------------------------
def test_loss_parts_by_hand():
    logprobs = torch.tensor([-0.5, -1.0, -2.0])
    entropy = torch.tensor([0.6, 0.4, 0.2])
    values = torch.tensor([1.0, 2.0, 0.0])
    advantages = torch.tensor([2.0, 1.0, -0.5])
    returns = torch.tensor([1.5, 1.0, 3.0])
    pg, v, h = a2c_losses(logprobs, entropy, values, advantages, returns)
    # -mean(A log pi) = -(2 * -0.5 + 1 * -1 + -0.5 * -2) / 3 = -(-1 - 1 + 1) / 3
    assert pg.item() == pytest.approx(1.0 / 3.0)
    # mean((V - R)^2) = (0.25 + 1 + 9) / 3
    assert v.item() == pytest.approx(10.25 / 3.0)
    assert h.item() == pytest.approx(0.4)


def test_loss_gradient_flows_only_through_the_policy_and_values():
    logprobs = torch.tensor([-0.5, -1.0], requires_grad=True)
    values = torch.tensor([1.0, 2.0], requires_grad=True)
    advantages = torch.tensor([2.0, -1.0])
    pg, v, _ = a2c_losses(logprobs, torch.zeros(2), values, advantages, torch.zeros(2))
    (pg + v).backward()
    # d(-mean(A logp))/dlogp = -A / 2; d(mean(V^2))/dV = V
    torch.testing.assert_close(logprobs.grad, torch.tensor([-1.0, 0.5]))
    torch.testing.assert_close(values.grad, torch.tensor([1.0, 2.0]))


@pytest.mark.parametrize("env", ["cartpole", "pendulum"])
def test_update_reports_the_losses_of_the_rollout(env):
    a2c = make_a2c(env=env)
    buf = make_buffer(a2c, 3, 2)
    want = expected_losses(a2c, buf)
    stats = a2c.update(buf, progress=0.0)
    for key, value in want.items():
        assert stats[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    assert stats["charts/learning_rate"] == pytest.approx(0.01)
    values, returns = buf.values.reshape(-1), buf.returns.reshape(-1)
    assert stats["explained_variance"] == pytest.approx(
        1 - np.var(returns - values) / np.var(returns), rel=1e-5
    )
    assert all(math.isfinite(v) for v in stats.values())


@pytest.mark.parametrize("env", ["cartpole", "pendulum"])
def test_one_rmsprop_step_per_rollout(env):
    """The update is one step of RMSprop (alpha, eps outside the square root) on
    L = L_pi - c_e H + c_v L_V, with the gradient clipped to max_grad_norm."""
    a2c = make_a2c("algo.max_grad_norm=0.3", "algo.rms_alpha=0.9", "algo.optimizer_eps=1e-3",
                   env=env)  # fmt: skip
    assert isinstance(a2c.optimizer, torch.optim.RMSprop)
    buf = make_buffer(a2c, 4, 2)
    # the same loss on a copy of the networks, and one step written out
    ref = copy.deepcopy(a2c.policy)
    params = list(ref.parameters())
    obs, actions, adv, ret = (torch.from_numpy(buf.flat(name))
                              for name in ("obs", "actions", "advantages", "returns"))  # fmt: skip
    out = ref.actor(obs)
    logp, entropy = a2c.head.log_prob_entropy(*((out, ref.log_std) if a2c.gaussian else (out,)),
                                              actions)  # fmt: skip
    values = ref.critic(obs).squeeze(-1)
    loss = -(adv * logp).mean() - 0.1 * entropy.mean() + 0.5 * (values - ret).square().mean()
    grads = torch.autograd.grad(loss, params)
    norm = torch.linalg.vector_norm(torch.cat([g.reshape(-1) for g in grads]))
    assert norm > 0.3  # so the clip is exercised
    grads = [g * (0.3 / (norm + 1e-6)) for g in grads]
    # square_avg = alpha * 0 + (1 - alpha) g^2; p -= lr g / (sqrt(square_avg) + eps)
    expected = [p - 0.01 * g / (torch.sqrt(0.1 * g * g) + 1e-3)
                for p, g in zip(params, grads, strict=True)]  # fmt: skip

    stats = a2c.update(buf, progress=0.0)
    assert stats["grad_norm"] == pytest.approx(norm.item(), rel=1e-5)
    for p, want in zip(a2c.policy.parameters(), expected, strict=True):
        torch.testing.assert_close(p.detach(), want.detach(), rtol=1e-5, atol=1e-6)


def test_adam_is_an_option():
    a2c = make_a2c("algo.optimizer=adam", "algo.optimizer_eps=1e-7")
    assert isinstance(a2c.optimizer, torch.optim.Adam)
    assert a2c.optimizer.param_groups[0]["eps"] == 1e-7
    before = [p.detach().clone() for p in a2c.policy.parameters()]
    a2c.update(make_buffer(a2c, 2, 2), progress=0.0)
    assert any(not torch.equal(b, p) for b, p in zip(before, a2c.policy.parameters(), strict=True))


def test_learning_rate_decays_linearly_when_asked():
    a2c = make_a2c("algo.anneal_lr=true")
    buf = make_buffer(a2c, 2, 2)
    for progress, lr in ((0.0, 0.01), (0.25, 0.0075), (1.0, 0.0)):
        stats = a2c.update(buf, progress)
        assert stats["charts/learning_rate"] == pytest.approx(lr)
        assert a2c.optimizer.param_groups[0]["lr"] == pytest.approx(lr)
    constant = make_a2c()
    assert constant.update(buf, 0.75)["charts/learning_rate"] == pytest.approx(0.01)


def test_advantage_normalization():
    a2c = make_a2c("algo.norm_adv=true")
    with torch.no_grad():
        a2c.policy.actor.body[-1].weight.mul_(100.0)  # log-probabilities far from uniform
    buf = make_buffer(a2c, 3, 2)
    buf.advantages *= 50.0
    want = expected_losses(a2c, buf, norm_adv=True)
    raw = expected_losses(a2c, buf)["policy_loss"]
    got = a2c.update(buf, 0.0)["policy_loss"]
    assert got == pytest.approx(want["policy_loss"], rel=1e-5)
    assert abs(got - raw) > 1.0


def test_autoreset_steps_are_left_out():
    a2c = make_a2c()
    buf = make_buffer(a2c, 3, 2)
    buf.valid[1, 0] = False
    want = expected_losses(a2c, buf)
    buf.advantages[1, 0], buf.returns[1, 0] = 1e6, -1e6  # garbage on the reset step
    stats = a2c.update(buf, 0.0)
    for key, value in want.items():
        assert stats[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


# acting -----------------------------------------------------------------------------------------
def test_rollout_policy_and_greedy_evaluation():
    a2c = make_a2c()
    obs = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    actions, env_actions, logprobs, values = a2c.rollout_policy()(obs)
    with torch.no_grad():
        logits = a2c.policy.actor(torch.from_numpy(obs))
        want_values = a2c.policy.critic(torch.from_numpy(obs)).squeeze(-1).numpy()
    log_pi = torch.log_softmax(logits, -1).numpy()
    np.testing.assert_array_equal(actions, env_actions)
    np.testing.assert_allclose(logprobs, log_pi[np.arange(5), actions], rtol=1e-5)
    np.testing.assert_allclose(values, want_values, rtol=1e-6)
    np.testing.assert_allclose(a2c.values(obs), want_values, rtol=1e-6)
    greedy = a2c.evaluation_policy(True, np.random.default_rng(0))(obs)
    np.testing.assert_array_equal(greedy, logits.argmax(-1).numpy())


def test_continuous_actions_are_gaussian_and_clipped_for_the_env():
    a2c = make_a2c(env="pendulum")
    assert a2c.gaussian and a2c.policy.log_std.shape == (1,)
    obs = np.random.default_rng(2).standard_normal((256, 3)).astype(np.float32)
    with torch.no_grad():
        a2c.policy.log_std.fill_(1.0)  # std e: many samples beyond the bounds [-2, 2]
    actions, env_actions, _, _ = a2c.rollout_policy()(obs)
    assert actions.shape == env_actions.shape == (256, 1)
    assert np.abs(actions).max() > 2.0
    np.testing.assert_array_equal(env_actions, np.clip(actions, -2.0, 2.0))


# config, state ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("override", "key"),
    [("algo.optimizer=sgd", "algo.optimizer"), ("algo.rms_alpha=1.0", "algo.rms_alpha"),
     ("algo.optimizer_eps=0", "algo.optimizer_eps"), ("algo.num_steps=0", "algo.num_steps")],
)  # fmt: skip
def test_bad_config_values_are_refused(override, key):
    cfg = compose_cfg(["algo=a2c", override])
    with pytest.raises(ConfigError, match=key):
        A2C.check(cfg, env_spec(cfg.env))


def test_ppo_builds_on_a2c():
    """PPO keeps A2C's networks and acting, with its own optimizer (Adam) and update."""
    cfg = compose_cfg(["algo=ppo", "network.hidden=[8]"])
    ppo = PPO(cfg, env_spec(cfg.env), CPU, seed=0)
    a2c = make_a2c()
    assert isinstance(ppo, A2C) and isinstance(ppo.optimizer, torch.optim.Adam)
    for p, q in zip(ppo.policy.parameters(), a2c.policy.parameters(), strict=True):
        assert torch.equal(p, q)  # same seed, same initialization


@pytest.mark.parametrize("env", ["cartpole", "pendulum"])
def test_state_dict_round_trip_through_a_checkpoint_file(tmp_path, env):
    a2c = make_a2c("algo.normalize_obs=true", env=env)
    buf = make_buffer(a2c, 3, 2)
    a2c.update(buf, 0.0)
    a2c.obs_norm.rms.update(np.ones((4, *a2c.spec.obs.shape)))
    a2c.num_updates = 5
    checkpoint.save_atomic({"algo": a2c.state_dict()}, tmp_path / "c.pt")
    other = make_a2c("algo.normalize_obs=true", env=env, seed=1)
    other.load_state_dict(checkpoint.load(tmp_path / "c.pt")["algo"])
    assert other.num_updates == 5
    for p, q in zip(a2c.policy.parameters(), other.policy.parameters(), strict=True):
        assert torch.equal(p, q)
    np.testing.assert_array_equal(other.obs_norm.rms.mean, a2c.obs_norm.rms.mean)
    # the same next update: optimizer state and generator restored
    assert other.update(buf, 0.0) == a2c.update(buf, 0.0)
    obs = buf.obs[0]
    np.testing.assert_array_equal(other.rollout_policy()(obs)[0], a2c.rollout_policy()(obs)[0])


# short runs -------------------------------------------------------------------------------------
@pytest.mark.parametrize("env", ["cartpole", "pendulum"])
def test_short_run_through_train(tmp_path, env):
    cfg = compose_cfg(["algo=a2c", f"env={env}", *FAST])
    run_train(cfg, tmp_path / "run")
    summary = assert_run_dir(tmp_path / "run")
    assert summary["global_step"] >= 320
    records = read_metrics(tmp_path / "run")
    updates = [r for r in records if "losses/policy_loss" in r]
    assert len(updates) == 320 // 20  # one gradient step per 4 x 5 rollout
    assert {"losses/value_loss", "losses/entropy", "charts/learning_rate"} <= set(updates[0])
    assert any("eval/mean_return" in r for r in records)


def test_a_run_is_reproducible(tmp_path):
    cfg = compose_cfg(["algo=a2c", *FAST])
    runs = []
    for name in ("a", "b"):
        run_train(cfg, tmp_path / name)
        runs.append([{k: v for k, v in r.items() if k not in ("wall_time", "charts/sps")}
                     for r in read_metrics(tmp_path / name)])  # fmt: skip
    assert runs[0] == runs[1]
