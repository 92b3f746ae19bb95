"""PPO's update on hand-built rollouts: the clipped surrogate, the clipped value loss, the
entropy, annealing, minibatches, early stopping on KL and the exclusion of autoreset steps. Every
test runs on both backends: the autograd reference (`PPO`) and the numpy backend (`FastPPO`); the
hand-computed numbers are the contract both meet."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rl_runner.algos.on_policy.ppo import PPO, minibatch_indices
from rl_runner.buffers import RolloutBuffer
from rl_runner.collectors import EnvStepper, RolloutCollector
from rl_runner.envs import env_spec, make_vec_env
from rl_runner.fast.ppo import FastPPO
from rl_runner.heads import log_softmax, row_max, row_sum
from runner_core.device import NUMPY_CPU
from tests.conftest import compose_cfg

CPU = torch.device("cpu")
BACKENDS = pytest.mark.parametrize("backend", ["torch", "numpy"])
BASE = (
    "algo=ppo", "env=cartpole", "network.hidden=[8]", "algo.num_epochs=1", "algo.batch_size=64",
    "algo.norm_adv=false", "algo.anneal_lr=false", "algo.anneal_clip=false", "algo.clip_coef=0.2",
    "algo.clip_vloss=true", "algo.ent_coef=0.0", "algo.target_kl=null", "algo.lr=0.001",
)  # fmt: skip


def make_ppo(*overrides: str, backend: str = "torch") -> PPO:
    cfg = compose_cfg([*BASE, *overrides])
    spec = env_spec(cfg.env)
    if backend == "numpy":
        return FastPPO(cfg, spec, NUMPY_CPU, seed=0)
    return PPO(cfg, spec, CPU, seed=0)


def optimizer_steps(ppo: PPO) -> int:
    if isinstance(ppo, FastPPO):
        return ppo.optimizer.steps
    return int(next(iter(ppo.optimizer.state.values()))["step"])


def weights(ppo: PPO) -> dict[str, np.ndarray]:
    return {
        k: np.array(np.asarray(v), dtype=np.float32) for k, v in ppo.policy.state_dict().items()
    }


def make_buffer(ppo: PPO, steps: int, envs: int, ratio: float, adv, value_shift, valid=None):
    """A rollout whose stored log-probs make pi_new / pi_old == ratio for every transition, with
    old values = V(s) + 1 and returns = V(s) + value_shift."""
    buf = RolloutBuffer(steps, envs, ppo.spec.obs, ppo.spec.act)
    rng = np.random.default_rng(0)
    buf.obs[:] = rng.standard_normal((steps, envs, 4))
    buf.actions[:] = rng.integers(0, 2, (steps, envs))
    (logits,), value = ppo.outputs(buf.obs.reshape(-1, 4))
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


@BACKENDS
def test_clipped_losses_by_hand(backend):
    ppo = make_ppo(backend=backend)
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


@BACKENDS
def test_unclipped_value_loss_by_hand(backend):
    ppo = make_ppo("algo.clip_vloss=false", backend=backend)
    buf, _ = make_buffer(ppo, 2, 2, ratio=1.0, adv=[1.0, -1.0, 2.0, -2.0],
                         value_shift=[0.5, -0.5, 0.5, -0.5])  # fmt: skip
    stats = ppo.update(buf, progress=0.0)
    assert stats["value_loss"] == pytest.approx(0.25, abs=1e-5)
    assert stats["policy_loss"] == pytest.approx(0.0, abs=1e-6)  # r = 1: -mean(A) = 0
    assert stats["clipfrac"] == 0.0
    assert stats["approx_kl"] == pytest.approx(0.0, abs=1e-6)


@BACKENDS
def test_autoreset_steps_are_left_out(backend):
    ppo = make_ppo(backend=backend)
    valid = [True, True, False, True, True, False]
    adv = [1.0, -1.0, 1000.0, 2.0, -2.0, -1000.0]  # garbage on the invalid steps
    shift = [0.5, -0.5, 100.0, 0.5, -0.5, 100.0]
    buf, _ = make_buffer(ppo, 3, 2, ratio=1.5, adv=adv, value_shift=shift, valid=valid)
    stats = ppo.update(buf, progress=0.0)
    assert stats["policy_loss"] == pytest.approx((-1.2 + 1.5 - 2.4 + 3.0) / 4, abs=1e-5)
    assert stats["value_loss"] == pytest.approx((0.25 + 1.69) / 2, abs=1e-5)


@BACKENDS
@pytest.mark.parametrize("progress", [0.0, 0.25, 1.0, 1.0016])
def test_schedules_follow_progress_and_stay_in_range(backend, progress):
    """A rollout can end past the budget (100,096 of 100,000 steps): the learning rate and clip
    range must stop at 0, not turn negative (which logged lr -9.6e-07 and clipfrac 1.0)."""
    ppo = make_ppo("algo.anneal_lr=true", "algo.anneal_clip=true", backend=backend)
    buf, _ = make_buffer(ppo, 2, 2, ratio=1.0, adv=[1.0, -1.0, 2.0, -2.0], value_shift=0.5)
    stats = ppo.update(buf, progress=progress)
    left = max(1.0 - progress, 0.0)
    assert stats["charts/learning_rate"] == pytest.approx(0.001 * left)
    assert stats["charts/clip_coef"] == pytest.approx(0.2 * left)
    assert stats["charts/learning_rate"] >= 0 and stats["charts/clip_coef"] >= 0


@BACKENDS
def test_epochs_and_minibatches(backend):
    ppo = make_ppo("algo.num_epochs=3", "algo.batch_size=3", backend=backend)
    buf, _ = make_buffer(ppo, 4, 2, ratio=1.0, adv=np.linspace(-1, 1, 8), value_shift=0.5)
    before = weights(ppo)
    ppo.update(buf, progress=0.0)
    assert optimizer_steps(ppo) == 3 * 3  # 3 epochs of ceil(8 / 3) minibatches
    assert any(not np.array_equal(before[k], v) for k, v in weights(ppo).items())


def test_minibatch_indices():
    rng = np.random.default_rng(0)
    batches = list(minibatch_indices(8, 3, 2, rng))
    assert [len(b) for b in batches] == [3, 3, 2, 3, 3, 2]
    for epoch in (batches[:3], batches[3:]):  # each epoch a permutation of the rollout
        assert sorted(np.concatenate(epoch).tolist()) == list(range(8))
    # a minibatch as large as the rollout is the rollout itself, in order, with no draw
    state = rng.bit_generator.state
    assert list(minibatch_indices(8, 8, 3, rng)) == [None, None, None]
    assert rng.bit_generator.state == state


@BACKENDS
def test_target_kl_stops_the_epochs_early(backend):
    ppo = make_ppo("algo.num_epochs=5", "algo.batch_size=2", "algo.target_kl=0.01",
                   backend=backend)  # fmt: skip
    buf, _ = make_buffer(ppo, 2, 2, ratio=1.5, adv=[1.0, -1.0, 2.0, -2.0], value_shift=0.5)
    stats = ppo.update(buf, progress=0.0)
    assert stats["approx_kl"] > 0.01
    assert optimizer_steps(ppo) == 1


class _Driver:
    """The part of the trainer that the rollout collector uses."""

    def __init__(self, envs) -> None:
        self.stepper = EnvStepper(envs, seed=0)

    @property
    def obs(self):
        return self.stepper.obs

    def env_step(self, actions):
        return self.stepper.step(actions)


@BACKENDS
def test_update_on_a_real_rollout(backend):
    """End to end through the rollout collector: stats present and finite."""
    ppo = make_ppo("algo.norm_adv=true", "algo.num_steps=64", "algo.num_epochs=2",
                   backend=backend)  # fmt: skip
    envs = make_vec_env(compose_cfg(BASE).env, 2)
    buf = RolloutBuffer(64, 2, ppo.spec.obs, ppo.spec.act)
    RolloutCollector(_Driver(envs), buf, ppo.observe).collect(ppo.rollout_policy(), ppo.values)
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


@BACKENDS
def test_stats_finite_with_one_transition(backend):
    ppo = make_ppo(backend=backend)
    buf, _ = make_buffer(ppo, 1, 1, ratio=1.0, adv=[1.0], value_shift=[0.5])
    stats = ppo.update(buf, progress=0.0)
    assert all(math.isfinite(v) for v in stats.values()), stats


def test_continuous_actions_use_a_state_independent_gaussian():
    cfg = compose_cfg(["env=pendulum", "network.hidden=[8]", "algo.batch_size=4"])
    ppo = PPO(cfg, env_spec(cfg.env), CPU, seed=0)
    assert ppo.policy.log_std.shape == (1,) and float(ppo.policy.log_std.detach().sum()) == 0.0
    obs = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    actions, env_actions, logprobs, values = ppo.rollout_policy()(obs)
    assert actions.shape == env_actions.shape == (4, 1) and values.shape == (4,)
    assert np.all(np.abs(env_actions) <= 2.0)  # clipped to the bounds for the env
    (mean, log_std), _ = ppo.outputs(obs)
    want = torch.distributions.Normal(torch.from_numpy(mean), torch.from_numpy(log_std).exp())
    np.testing.assert_allclose(
        logprobs, want.log_prob(torch.from_numpy(actions)).sum(-1).numpy(), rtol=1e-5
    )
    buf = RolloutBuffer(2, 2, ppo.spec.obs, ppo.spec.act)
    buf.obs[:], buf.actions[:] = obs.reshape(2, 2, 3), actions.reshape(2, 2, 1)
    buf.logprobs[:], buf.valid[:] = logprobs.reshape(2, 2), True
    buf.advantages[:] = np.array([[1.0, -1.0], [0.5, 2.0]])
    before = ppo.policy.log_std.detach().clone()
    stats = ppo.update(buf, progress=0.0)
    assert all(math.isfinite(v) for v in stats.values())
    assert not torch.equal(before, ppo.policy.log_std.detach())  # the log-std learns


@pytest.mark.parametrize("rows", [1, 8, 40, 249, 1000])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 6, 7, 8, 18])
def test_row_reductions_give_numpys_bits(rows, k):
    """`row_max` and `row_sum` (column loops for short rows, numpy's reduction otherwise) give
    exactly the bits of np.maximum.reduce and np.add.reduce over the last axis, so switching
    between them never changes a run."""
    x = np.random.default_rng(rows * 100 + k).standard_normal((rows, k)).astype(np.float32) * 50
    for ours, ufunc in ((row_max, np.maximum), (row_sum, np.add)):
        got = ours(x)
        assert got.shape == (rows, 1)
        np.testing.assert_array_equal(got, ufunc.reduce(x, axis=-1, keepdims=True))
    lsm = log_softmax(x)
    shifted = x - np.maximum.reduce(x, axis=-1, keepdims=True)
    expected = shifted - np.log(np.add.reduce(np.exp(shifted), axis=-1, keepdims=True))
    np.testing.assert_array_equal(lsm, expected)
