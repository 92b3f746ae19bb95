"""PPO's update on hand-built rollouts: the clipped surrogate, the clipped value loss, the
entropy, annealing, early stopping on KL and the exclusion of autoreset steps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rl_runner.algos.on_policy.ppo import (
    PPO,
    Batch,
    loss_targets,
    ppo_loss_grads,
    ppo_loss_grads_numpy,
    ppo_losses,
)
from rl_runner.buffers import RolloutBuffer
from rl_runner.envs import EnvStepper, env_info, make_vec_env
from tests.conftest import compose_cfg

CPU = torch.device("cpu")
BASE = (
    "algo=ppo", "env=cartpole", "network.hidden=[8]", "algo.num_epochs=1", "algo.batch_size=64",
    "algo.norm_adv=false", "algo.anneal_lr=false", "algo.anneal_clip=false", "algo.clip_coef=0.2",
    "algo.clip_vloss=true", "algo.ent_coef=0.0", "algo.target_kl=null", "algo.lr=0.001",
)  # fmt: skip


def make_ppo(*overrides: str) -> PPO:
    torch.manual_seed(0)
    cfg = compose_cfg([*BASE, *overrides])
    return PPO(cfg, env_info(cfg.env), CPU, seed=0)


def make_buffer(ppo: PPO, steps: int, envs: int, ratio: float, adv, value_shift, valid=None):
    """A rollout whose stored log-probs make pi_new / pi_old == ratio for every transition, with
    old values = V(s) + 1 and returns = V(s) + value_shift."""
    buf = RolloutBuffer(steps, envs, 4)
    gen = torch.Generator().manual_seed(0)
    buf.obs[:] = torch.randn(steps, envs, 4, generator=gen)
    buf.actions[:] = torch.randint(0, 2, (steps, envs), generator=gen)
    with torch.no_grad():
        logp, entropy, value = ppo.policy.evaluate(buf.obs.reshape(-1, 4), buf.actions.reshape(-1))
    shape = (steps, envs)
    buf.logprobs[:] = (logp - math.log(ratio)).reshape(shape)
    buf.values[:] = (value + 1.0).reshape(shape)
    buf.returns[:] = (value + torch.as_tensor(value_shift, dtype=torch.float32)).reshape(shape)
    buf.advantages[:] = torch.as_tensor(adv, dtype=torch.float32).reshape(shape)
    buf.valid[:] = True if valid is None else torch.as_tensor(valid).reshape(shape)
    return buf, entropy.reshape(shape)


@pytest.mark.parametrize("clip_vloss", [False, True])
@pytest.mark.parametrize("ent_coef", [0.0, 0.05])
@pytest.mark.parametrize("n_actions", [2, 5])
def test_hand_derived_gradients_match_autograd(clip_vloss, ent_coef, n_actions):
    """The update's dL/dlogits and dL/dV against autograd through the losses as written, with
    ratios and values on both sides of the clip ranges."""
    gen = torch.Generator().manual_seed(n_actions)
    batch, clip, vf_coef = 64, 0.2, 0.5
    logits = torch.randn(batch, n_actions, generator=gen) * 2
    values = torch.randn(batch, generator=gen)
    actions = torch.randint(0, n_actions, (batch,), generator=gen)
    log_pi = torch.log_softmax(logits, -1).gather(1, actions[:, None]).squeeze(1)
    old_logprobs = log_pi - torch.empty(batch).uniform_(-0.6, 0.6, generator=gen)  # r in [.55, 1.8]
    advantages = torch.randn(batch, generator=gen)
    returns = torch.randn(batch, generator=gen)
    old_values = values + torch.empty(batch).uniform_(-0.5, 0.5, generator=gen)
    batch = Batch(None, actions, old_logprobs, advantages, returns, old_values)

    z, v = logits.clone().requires_grad_(), values.clone().requires_grad_()
    losses = ppo_losses(z, v, batch, clip, clip_vloss)
    (losses.policy - ent_coef * losses.entropy + vf_coef * losses.value).backward()

    targets = loss_targets(batch, n_actions, clip, clip_vloss, ent_coef, vf_coef)
    grad_logits, grad_values, ratio, logratio = ppo_loss_grads(logits, values, targets)
    assert ((ratio - 1).abs() > clip).any() and ((ratio - 1).abs() < clip).any()
    torch.testing.assert_close(grad_logits, z.grad, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(grad_values, v.grad, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(logratio.exp(), ratio)


@pytest.mark.parametrize("clip_vloss", [False, True])
@pytest.mark.parametrize("ent_coef", [0.0, 0.05])
@pytest.mark.parametrize("n_actions", [2, 5])
def test_numpy_loss_gradients_match_the_torch_ones(clip_vloss, ent_coef, n_actions):
    """The CPU path's `ppo_loss_grads_numpy` gives what `ppo_loss_grads` (checked against
    autograd above) gives, on both sides of the clip ranges."""
    gen = torch.Generator().manual_seed(10 + n_actions)
    size, clip = 64, 0.2
    logits = torch.randn(size, n_actions, generator=gen) * 2
    values = torch.randn(size, generator=gen)
    actions = torch.randint(0, n_actions, (size,), generator=gen)
    log_pi = torch.log_softmax(logits, -1).gather(1, actions[:, None]).squeeze(1)
    old_logprobs = log_pi - torch.empty(size).uniform_(-0.6, 0.6, generator=gen)
    old_values = values + torch.empty(size).uniform_(-0.5, 0.5, generator=gen)
    batch = Batch(torch.zeros(size, 1), actions, old_logprobs, torch.randn(size, generator=gen),
                  torch.randn(size, generator=gen), old_values)  # fmt: skip
    targets = loss_targets(batch, n_actions, clip, clip_vloss, ent_coef, vf_coef=0.5)
    expected = ppo_loss_grads(logits, values, targets)
    got = ppo_loss_grads_numpy(logits.numpy(), values.numpy(), targets.numpy())
    for have, want in zip(got, expected, strict=True):
        assert have.dtype == np.float32
        np.testing.assert_allclose(have, want.numpy(), rtol=1e-5, atol=1e-7)


def test_numpy_update_matches_the_torch_update():
    """A whole update on the CPU's numpy path ends where the torch path ends."""
    numpy_ppo, torch_ppo = make_ppo("algo.num_epochs=3"), make_ppo("algo.num_epochs=3")
    assert numpy_ppo.numpy_nets is not None
    torch_ppo.numpy_nets = None
    stats = []
    for ppo in (numpy_ppo, torch_ppo):
        buf, _ = make_buffer(ppo, 16, 4, ratio=1.1, adv=torch.linspace(-2, 2, 64), value_shift=0.3)
        stats.append(ppo.update(buf, progress=0.0))
    assert stats[0] == pytest.approx(stats[1], rel=1e-4, abs=1e-6)
    for a, b in zip(numpy_ppo.policy.parameters(), torch_ppo.policy.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_networks_without_a_hand_backward_train_through_autograd():
    ppo = make_ppo("network.activation=leaky_relu", "network.dropout=0.1")
    assert ppo.policy.actor.linear_layers() is None
    buf, _ = make_buffer(ppo, 2, 2, ratio=1.5, adv=[1.0, -1.0, 2.0, -2.0], value_shift=0.5)
    before = ppo.optimizer.flat.clone()
    stats = ppo.update(buf, progress=0.0)
    assert all(math.isfinite(v) for v in stats.values()), stats
    assert not torch.equal(before, ppo.optimizer.flat)


def test_clipped_losses_by_hand():
    ppo = make_ppo()
    buf, entropy = make_buffer(ppo, 2, 2, ratio=1.5, adv=[1.0, -1.0, 2.0, -2.0],
                               value_shift=[0.5, -0.5, 0.5, -0.5])  # fmt: skip
    stats = ppo.update(buf, progress=0.0)
    # policy: per transition max(-A r, -A clip(r, 0.8, 1.2)) with r = 1.5
    #   A=1: max(-1.5, -1.2) = -1.2; A=-1: max(1.5, 1.2) = 1.5; A=2: -2.4; A=-2: 3.0
    assert stats["policy_loss"] == pytest.approx((-1.2 + 1.5 - 2.4 + 3.0) / 4, abs=1e-5)
    # value: old = V + 1, so the clipped prediction is old + clamp(V - old, -0.2, 0.2) = V + 0.8
    #   R = V + 0.5: max(0.5^2, 0.3^2) = 0.25;  R = V - 0.5: max(0.5^2, 1.3^2) = 1.69
    assert stats["value_loss"] == pytest.approx((0.25 + 1.69) / 2, abs=1e-5)
    assert stats["entropy"] == pytest.approx(entropy.mean().item(), abs=1e-6)
    assert stats["clipfrac"] == pytest.approx(1.0)
    assert stats["approx_kl"] == pytest.approx(0.5 - math.log(1.5), abs=1e-5)  # (r - 1) - log r
    assert stats["charts/learning_rate"] == pytest.approx(0.001)
    assert stats["charts/clip_coef"] == pytest.approx(0.2)
    assert all(math.isfinite(v) for v in stats.values())


def test_unclipped_value_loss_by_hand():
    ppo = make_ppo("algo.clip_vloss=false")
    buf, _ = make_buffer(ppo, 2, 2, ratio=1.0, adv=[1.0, -1.0, 2.0, -2.0],
                         value_shift=[0.5, -0.5, 0.5, -0.5])  # fmt: skip
    stats = ppo.update(buf, progress=0.0)
    assert stats["value_loss"] == pytest.approx(0.25, abs=1e-5)
    assert stats["policy_loss"] == pytest.approx(0.0, abs=1e-6)  # r = 1: -mean(A) = 0
    assert stats["clipfrac"] == 0.0
    assert stats["approx_kl"] == pytest.approx(0.0, abs=1e-6)


def test_autoreset_steps_are_left_out():
    ppo = make_ppo()
    valid = [True, True, False, True, True, False]
    adv = [1.0, -1.0, 1000.0, 2.0, -2.0, -1000.0]  # garbage on the invalid steps
    shift = [0.5, -0.5, 100.0, 0.5, -0.5, 100.0]
    buf, _ = make_buffer(ppo, 3, 2, ratio=1.5, adv=adv, value_shift=shift, valid=valid)
    stats = ppo.update(buf, progress=0.0)
    assert stats["policy_loss"] == pytest.approx((-1.2 + 1.5 - 2.4 + 3.0) / 4, abs=1e-5)
    assert stats["value_loss"] == pytest.approx((0.25 + 1.69) / 2, abs=1e-5)


def test_annealing_follows_progress():
    ppo = make_ppo("algo.anneal_lr=true", "algo.anneal_clip=true")
    buf, _ = make_buffer(ppo, 2, 2, ratio=1.0, adv=[1.0, -1.0, 2.0, -2.0], value_shift=0.5)
    stats = ppo.update(buf, progress=0.25)
    assert stats["charts/learning_rate"] == pytest.approx(0.001 * 0.75)
    assert stats["charts/clip_coef"] == pytest.approx(0.2 * 0.75)
    assert ppo.optimizer.lr == pytest.approx(0.001 * 0.75)


def _optimizer_steps(ppo: PPO) -> int:
    return ppo.optimizer.steps


def test_epochs_and_minibatches():
    ppo = make_ppo("algo.num_epochs=3", "algo.batch_size=3")
    buf, _ = make_buffer(ppo, 4, 2, ratio=1.0, adv=np.linspace(-1, 1, 8), value_shift=0.5)
    before = [p.detach().clone() for p in ppo.policy.parameters()]
    ppo.update(buf, progress=0.0)
    assert _optimizer_steps(ppo) == 3 * 3  # 3 epochs of ceil(8 / 3) minibatches
    assert any(not torch.equal(a, b) for a, b in zip(before, ppo.policy.parameters(), strict=True))


def test_target_kl_stops_the_epochs_early():
    ppo = make_ppo("algo.num_epochs=5", "algo.batch_size=2", "algo.target_kl=0.01")
    buf, _ = make_buffer(ppo, 2, 2, ratio=1.5, adv=[1.0, -1.0, 2.0, -2.0], value_shift=0.5)
    stats = ppo.update(buf, progress=0.0)
    assert stats["approx_kl"] > 0.01
    assert _optimizer_steps(ppo) == 1


class _Driver:
    """The part of the trainer that collect() uses: the current observations and env_step."""

    def __init__(self, envs) -> None:
        self.stepper = EnvStepper(envs, seed=0)

    @property
    def obs(self):
        return self.stepper.obs

    def env_step(self, actions):
        return self.stepper.step(actions)


def test_update_on_a_real_rollout():
    """End to end through the on-policy loop's collect: stats present and finite."""
    ppo = make_ppo("algo.norm_adv=true", "algo.num_steps=64", "algo.num_epochs=2")
    envs = make_vec_env(compose_cfg(BASE).env, 2)
    buf = RolloutBuffer(64, 2, 4)
    ppo.collect(_Driver(envs), buf)
    assert buf.dones.any()
    assert buf.valid[0].all()
    assert torch.equal(
        buf.valid[1:], ~buf.dones[:-1]
    )  # the step after an episode's end only resets
    stats = ppo.update(buf, progress=0.5)
    expected = {"policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac",
                "explained_variance", "charts/learning_rate", "charts/clip_coef"}  # fmt: skip
    assert set(stats) == expected
    assert all(math.isfinite(v) for v in stats.values()), stats
    envs.close()


def test_stats_finite_with_one_transition():
    ppo = make_ppo()
    buf, _ = make_buffer(ppo, 1, 1, ratio=1.0, adv=[1.0], value_shift=[0.5])
    stats = ppo.update(buf, progress=0.0)
    assert all(math.isfinite(v) for v in stats.values()), stats


@pytest.mark.parametrize(
    "overrides",
    [(), ("algo.normalize_obs=true",), ("env=frozenlake",)],
    ids=["plain", "normalized", "one-hot"],
)
def test_numpy_encoding_matches_the_torch_encoding(overrides):
    """The rollout loop's float32 numpy observations are what the update trains on."""
    ppo = make_ppo(*overrides)
    envs = make_vec_env(compose_cfg([*BASE, *overrides]).env, 3)
    obs, _ = envs.reset(seed=0)
    for _ in range(5):
        encoded = ppo.encode_numpy(obs, update_stats=True)
        assert encoded.dtype == np.float32 and encoded.shape == (3, ppo.info.obs_dim)
        np.testing.assert_allclose(encoded, ppo.encode(obs).numpy(), rtol=1e-6)
        obs, *_ = envs.step(envs.action_space.sample())
    envs.close()
