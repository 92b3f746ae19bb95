"""PPO's update on hand-built rollouts: the clipped surrogate, the clipped value loss, the
entropy, annealing, early stopping on KL and the exclusion of autoreset steps, on each of the
update's paths: numpy networks (`NUMPY_CPU`), numpy steps on torch parameters (a torch CPU
device) and torch (networks without a hand-written backward, other devices)."""

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
    ppo_losses_numpy,
)
from rl_runner.buffers import RolloutBuffer
from rl_runner.envs import EnvStepper, env_info, make_vec_env
from rl_runner.numpy_policy import NumpyActorCritic, log_softmax
from runner_core.device import NUMPY_CPU
from tests.conftest import compose_cfg

CPU = torch.device("cpu")
# the devices of the update's two CPU paths: numpy networks, numpy steps on torch parameters
DEVICES = pytest.mark.parametrize("device", [NUMPY_CPU, CPU], ids=["numpy", "torch-cpu"])
BASE = (
    "algo=ppo", "env=cartpole", "network.hidden=[8]", "algo.num_epochs=1", "algo.batch_size=64",
    "algo.norm_adv=false", "algo.anneal_lr=false", "algo.anneal_clip=false", "algo.clip_coef=0.2",
    "algo.clip_vloss=true", "algo.ent_coef=0.0", "algo.target_kl=null", "algo.lr=0.001",
)  # fmt: skip


def make_ppo(*overrides: str, device=CPU) -> PPO:
    torch.manual_seed(0)
    cfg = compose_cfg([*BASE, *overrides])
    return PPO(cfg, env_info(cfg.env), device, seed=0)


def make_buffer(ppo: PPO, steps: int, envs: int, ratio: float, adv, value_shift, valid=None):
    """A rollout whose stored log-probs make pi_new / pi_old == ratio for every transition, with
    old values = V(s) + 1 and returns = V(s) + value_shift."""
    buf = RolloutBuffer(steps, envs, 4)
    rng = np.random.default_rng(0)
    buf.obs[:] = rng.standard_normal((steps, envs, 4))
    buf.actions[:] = rng.integers(0, 2, (steps, envs))
    logits, value = ppo.policy.forward_numpy()(buf.obs.reshape(-1, 4))
    log_probs = log_softmax(logits)
    logp = log_probs[np.arange(len(logits)), buf.actions.reshape(-1)]
    entropy = -(np.exp(log_probs) * log_probs).sum(-1)
    shape = (steps, envs)
    buf.logprobs[:] = (logp - math.log(ratio)).reshape(shape)
    buf.values[:] = (value + 1.0).reshape(shape)
    buf.returns[:] = (value + np.asarray(value_shift, dtype=np.float32)).reshape(shape)
    buf.advantages[:] = np.asarray(adv, dtype=np.float32).reshape(shape)
    buf.valid[:] = True if valid is None else np.asarray(valid).reshape(shape)
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
    np_batch = Batch(*(x.numpy() for x in batch))
    np_targets = loss_targets(np_batch, n_actions, clip, clip_vloss, ent_coef, vf_coef=0.5)
    got = ppo_loss_grads_numpy(logits.numpy(), values.numpy(), np_targets)
    for have, want in zip(got, expected, strict=True):
        assert have.dtype == np.float32
        np.testing.assert_allclose(have, want.numpy(), rtol=1e-5, atol=1e-7)
    # and the numpy diagnostics are the losses as written
    want = ppo_losses(logits, values, batch, clip, clip_vloss)
    have = ppo_losses_numpy(logits.numpy(), values.numpy(), np_batch, clip, clip_vloss)
    np.testing.assert_allclose(have, [x.item() for x in want], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "overrides",
    [(), ("algo.norm_adv=true",), ("network.activation=relu",)],
    ids=["tanh", "normalized", "relu"],
)
def test_the_three_update_paths_agree(overrides):
    """A whole update ends at the same weights and diagnostics on numpy networks, on numpy
    steps over torch parameters and on torch, from the same weights."""
    torch_ppo = make_ppo("algo.num_epochs=3", *overrides)
    torch_ppo.numpy_nets = None
    hybrid_ppo = make_ppo("algo.num_epochs=3", *overrides)
    assert hybrid_ppo.numpy_nets is not None
    numpy_ppo = make_ppo("algo.num_epochs=3", *overrides, device=NUMPY_CPU)
    assert isinstance(numpy_ppo.policy, NumpyActorCritic)
    numpy_ppo.policy.load_state_dict(torch_ppo.policy.state_dict())
    stats = []
    for ppo in (torch_ppo, hybrid_ppo, numpy_ppo):
        buf, _ = make_buffer(ppo, 16, 4, ratio=1.1, adv=np.linspace(-2, 2, 64), value_shift=0.3)
        stats.append(ppo.update(buf, progress=0.0))
    want = torch_ppo.policy.state_dict()
    for ppo, got in zip((hybrid_ppo, numpy_ppo), stats[1:], strict=True):
        assert got == pytest.approx(stats[0], rel=1e-4, abs=1e-6)
        have = ppo.policy.state_dict()
        assert list(have) == list(want)
        for name, value in have.items():
            np.testing.assert_allclose(value, want[name].numpy(), rtol=1e-4, atol=1e-6)


def test_networks_without_a_hand_backward_train_through_autograd():
    ppo = make_ppo("network.activation=leaky_relu", "network.dropout=0.1")
    assert ppo.policy.actor.linear_layers() is None
    buf, _ = make_buffer(ppo, 2, 2, ratio=1.5, adv=[1.0, -1.0, 2.0, -2.0], value_shift=0.5)
    before = ppo.optimizer.flat.clone()
    stats = ppo.update(buf, progress=0.0)
    assert all(math.isfinite(v) for v in stats.values()), stats
    assert not torch.equal(before, ppo.optimizer.flat)


@DEVICES
def test_clipped_losses_by_hand(device):
    ppo = make_ppo(device=device)
    buf, entropy = make_buffer(ppo, 2, 2, ratio=1.5, adv=[1.0, -1.0, 2.0, -2.0],
                               value_shift=[0.5, -0.5, 0.5, -0.5])  # fmt: skip
    stats = ppo.update(buf, progress=0.0)
    # policy: per transition max(-A r, -A clip(r, 0.8, 1.2)) with r = 1.5
    #   A=1: max(-1.5, -1.2) = -1.2; A=-1: max(1.5, 1.2) = 1.5; A=2: -2.4; A=-2: 3.0
    assert stats["policy_loss"] == pytest.approx((-1.2 + 1.5 - 2.4 + 3.0) / 4, abs=1e-5)
    # value: old = V + 1, so the clipped prediction is old + clamp(V - old, -0.2, 0.2) = V + 0.8
    #   R = V + 0.5: max(0.5^2, 0.3^2) = 0.25;  R = V - 0.5: max(0.5^2, 1.3^2) = 1.69
    assert stats["value_loss"] == pytest.approx((0.25 + 1.69) / 2, abs=1e-5)
    assert stats["entropy"] == pytest.approx(entropy.mean(), abs=1e-6)
    assert stats["clipfrac"] == pytest.approx(1.0)
    assert stats["approx_kl"] == pytest.approx(0.5 - math.log(1.5), abs=1e-5)  # (r - 1) - log r
    assert stats["charts/learning_rate"] == pytest.approx(0.001)
    assert stats["charts/clip_coef"] == pytest.approx(0.2)
    assert all(math.isfinite(v) for v in stats.values())


@DEVICES
def test_unclipped_value_loss_by_hand(device):
    ppo = make_ppo("algo.clip_vloss=false", device=device)
    buf, _ = make_buffer(ppo, 2, 2, ratio=1.0, adv=[1.0, -1.0, 2.0, -2.0],
                         value_shift=[0.5, -0.5, 0.5, -0.5])  # fmt: skip
    stats = ppo.update(buf, progress=0.0)
    assert stats["value_loss"] == pytest.approx(0.25, abs=1e-5)
    assert stats["policy_loss"] == pytest.approx(0.0, abs=1e-6)  # r = 1: -mean(A) = 0
    assert stats["clipfrac"] == 0.0
    assert stats["approx_kl"] == pytest.approx(0.0, abs=1e-6)


@DEVICES
def test_autoreset_steps_are_left_out(device):
    ppo = make_ppo(device=device)
    valid = [True, True, False, True, True, False]
    adv = [1.0, -1.0, 1000.0, 2.0, -2.0, -1000.0]  # garbage on the invalid steps
    shift = [0.5, -0.5, 100.0, 0.5, -0.5, 100.0]
    buf, _ = make_buffer(ppo, 3, 2, ratio=1.5, adv=adv, value_shift=shift, valid=valid)
    stats = ppo.update(buf, progress=0.0)
    assert stats["policy_loss"] == pytest.approx((-1.2 + 1.5 - 2.4 + 3.0) / 4, abs=1e-5)
    assert stats["value_loss"] == pytest.approx((0.25 + 1.69) / 2, abs=1e-5)


@DEVICES
def test_annealing_follows_progress(device):
    ppo = make_ppo("algo.anneal_lr=true", "algo.anneal_clip=true", device=device)
    buf, _ = make_buffer(ppo, 2, 2, ratio=1.0, adv=[1.0, -1.0, 2.0, -2.0], value_shift=0.5)
    stats = ppo.update(buf, progress=0.25)
    assert stats["charts/learning_rate"] == pytest.approx(0.001 * 0.75)
    assert stats["charts/clip_coef"] == pytest.approx(0.2 * 0.75)
    assert ppo.optimizer.lr == pytest.approx(0.001 * 0.75)


def _optimizer_steps(ppo: PPO) -> int:
    return ppo.optimizer.steps


@DEVICES
def test_epochs_and_minibatches(device):
    ppo = make_ppo("algo.num_epochs=3", "algo.batch_size=3", device=device)
    buf, _ = make_buffer(ppo, 4, 2, ratio=1.0, adv=np.linspace(-1, 1, 8), value_shift=0.5)
    before = torch.as_tensor(ppo.optimizer.flat).clone()
    ppo.update(buf, progress=0.0)
    assert _optimizer_steps(ppo) == 3 * 3  # 3 epochs of ceil(8 / 3) minibatches
    assert not torch.equal(torch.as_tensor(ppo.optimizer.flat), before)


@DEVICES
def test_target_kl_stops_the_epochs_early(device):
    ppo = make_ppo("algo.num_epochs=5", "algo.batch_size=2", "algo.target_kl=0.01", device=device)
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


@DEVICES
def test_update_on_a_real_rollout(device):
    """End to end through the on-policy loop's collect: stats present and finite."""
    ppo = make_ppo("algo.norm_adv=true", "algo.num_steps=64", "algo.num_epochs=2", device=device)
    envs = make_vec_env(compose_cfg(BASE).env, 2)
    buf = RolloutBuffer(64, 2, 4)
    ppo.collect(_Driver(envs), buf)
    assert buf.dones.any()
    assert buf.valid[0].all()
    # the step after an episode's end only resets
    np.testing.assert_array_equal(buf.valid[1:], ~buf.dones[:-1])
    stats = ppo.update(buf, progress=0.5)
    expected = {"policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac",
                "explained_variance", "charts/learning_rate", "charts/clip_coef"}  # fmt: skip
    assert set(stats) == expected
    assert all(math.isfinite(v) for v in stats.values()), stats
    envs.close()


@DEVICES
def test_stats_finite_with_one_transition(device):
    ppo = make_ppo(device=device)
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
