"""Return and advantage maths against hand-computed values; the buffers shaped by the specs;
the normalizers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rl_runner.buffers import ReplayBuffer, RolloutBuffer, discounted_returns, gae
from rl_runner.normalize import ObsNormalizer, RewardScaler, RunningMeanStd
from rl_runner.specs import SpaceSpec
from runner_core import checkpoint

T, F = True, False


def test_gae_by_hand():
    """3 steps x 2 envs, gamma 0.9, lambda 0.8. Env 0 terminates at t=1; env 1 is truncated at
    t=1 (done but not terminated), so its delta bootstraps from values[2], the value of the
    episode's final observation under next-step autoreset."""
    gamma, lam = 0.9, 0.8
    rewards = np.array([[1.0, 1.0], [2.0, 1.0], [3.0, 1.0]])
    values = np.array([[0.5, 1.0], [1.0, 2.0], [1.5, 3.0]])
    next_value = np.array([2.0, 4.0])
    terminated = np.array([[F, F], [T, F], [F, F]])
    dones = np.array([[F, F], [T, T], [F, F]])

    # env 0
    #   t=2: delta = 3 + 0.9 * 2.0 - 1.5 = 3.3                      A = 3.3
    #   t=1: delta = 2 + 0 (terminated) - 1.0 = 1.0                 A = 1.0 (done: no carry)
    #   t=0: delta = 1 + 0.9 * 1.0 - 0.5 = 1.4                      A = 1.4 + 0.72 * 1.0 = 2.12
    # env 1
    #   t=2: delta = 1 + 0.9 * 4.0 - 3.0 = 1.6                      A = 1.6
    #   t=1: delta = 1 + 0.9 * 3.0 (truncated: bootstrap) - 2.0 = 1.7  A = 1.7 (done: no carry)
    #   t=0: delta = 1 + 0.9 * 2.0 - 1.0 = 1.8                      A = 1.8 + 0.72 * 1.7 = 3.024
    expected_adv = np.array([[2.12, 3.024], [1.0, 1.7], [3.3, 1.6]])
    adv, ret = gae(rewards, values, next_value, terminated, dones, gamma, lam)
    np.testing.assert_allclose(adv, expected_adv)
    np.testing.assert_allclose(ret, expected_adv + values)
    np.testing.assert_allclose(ret, np.array([[2.62, 4.024], [2.0, 3.7], [4.8, 4.6]]))


def test_gae_lambda_zero_is_one_step_td():
    rewards = np.array([[1.0], [2.0]])
    values = np.array([[0.5], [0.25]])
    adv, _ = gae(rewards, values, np.array([1.0]), np.zeros((2, 1), dtype=bool),
                 np.zeros((2, 1), dtype=bool), 0.5, 0.0)  # fmt: skip
    # delta_0 = 1 + 0.5 * 0.25 - 0.5 = 0.625; delta_1 = 2 + 0.5 * 1 - 0.25 = 2.25
    np.testing.assert_allclose(adv, np.array([[0.625], [2.25]]))


def test_gae_lambda_one_zero_values_equals_discounted_returns():
    rng = np.random.default_rng(0)
    rewards = rng.normal(size=(6, 3))
    dones = rng.random((6, 3)) < 0.3
    adv, ret = gae(
        rewards, np.zeros((6, 3)), np.zeros(3), dones, dones, 0.9, 1.0,
    )  # fmt: skip
    expected = discounted_returns(rewards, dones.astype(float), 0.9)
    np.testing.assert_allclose(ret, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(adv, ret)


def test_discounted_returns_by_hand():
    rewards = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    dones = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    # env 0: G2 = 3, G1 = 2 + 0.9 * 3 = 4.7, G0 = 1 + 0.9 * 4.7 = 5.23
    # env 1: G2 = 3, G1 = 2 (done), G0 = 1 + 0.9 * 2 = 2.8
    expected = np.array([[5.23, 2.8], [4.7, 2.0], [3.0, 3.0]])
    np.testing.assert_allclose(discounted_returns(rewards, dones, 0.9), expected)


# replay buffer ---------------------------------------------------------------------------------
VECTOR = SpaceSpec("vector", (4,), np.dtype(np.float32))
DISCRETE = SpaceSpec("discrete", (), np.dtype(np.int64), n=2)


def _batch(start: int, n: int):
    obs = np.arange(start, start + n, dtype=np.float32)[:, None].repeat(4, 1)
    return obs, np.arange(start, start + n), np.full(n, 0.5, np.float32), obs + 100, np.zeros(n)


def test_replay_buffer_add_wrap_sample():
    buf = ReplayBuffer(5, VECTOR, DISCRETE)
    buf.add(*_batch(0, 3))
    assert (buf.pos, buf.size) == (3, 3)
    buf.add(*_batch(3, 4))  # 7 transitions in a buffer of 5: 5 and 6 overwrite slots 0 and 1
    assert (buf.pos, buf.size) == (2, 5)
    assert buf.actions.tolist() == [5, 6, 2, 3, 4]
    np.testing.assert_array_equal(buf.next_obs[:, 0], [105, 106, 102, 103, 104])
    batch = buf.sample(16, np.random.default_rng(0))
    assert batch.obs.shape == batch.next_obs.shape == (16, 4)
    assert batch.actions.shape == batch.rewards.shape == batch.terminated.shape == (16,)
    assert batch.actions.dtype == np.int64 and batch.obs.dtype == np.float32
    # every sampled transition is a stored one, consistently indexed across fields
    np.testing.assert_array_equal(batch.obs[:, 0], batch.actions.astype(np.float32))
    np.testing.assert_array_equal(batch.next_obs, batch.obs + 100)
    assert set(batch.actions.tolist()) <= {2, 3, 4, 5, 6}
    tensors = batch.to_tensors(torch.device("cpu"))
    assert tensors.actions.dtype == torch.int64 and tensors.obs.dtype == torch.float32


def test_replay_buffer_keeps_what_the_specs_say():
    """Continuous actions keep their value and shape (an action of 0.7 used to be stored as 0,
    and 2-d actions raised); uint8 images stay uint8."""
    image = SpaceSpec("image", (6, 6, 3), np.dtype(np.uint8))
    box = SpaceSpec("continuous", (2,), np.dtype(np.float32), low=-np.ones(2), high=np.ones(2))
    buf = ReplayBuffer(10, image, box)
    frames = np.full((3, 6, 6, 3), 200, np.uint8)
    actions = np.array([[0.7, -0.2], [0.1, 0.9], [-1.0, 1.0]], np.float32)
    buf.add(frames, actions, np.zeros(3), frames, np.zeros(3))
    assert buf.obs.dtype == np.uint8 and buf.obs.nbytes == 10 * 6 * 6 * 3
    np.testing.assert_array_equal(buf.actions[:3], actions)
    assert buf.sample(4, np.random.default_rng(0)).actions.shape == (4, 2)


def test_rollout_buffer_is_shaped_by_the_specs():
    box = SpaceSpec("continuous", (3,), np.dtype(np.float32), low=-np.ones(3), high=np.ones(3))
    buf = RolloutBuffer(4, 2, SpaceSpec("discrete", (), np.dtype(np.int64), n=5), box)
    assert buf.obs.shape == (4, 2) and buf.obs.dtype == np.int64
    assert buf.actions.shape == (4, 2, 3) and buf.actions.dtype == np.float32
    buf.valid[:] = True
    buf.valid[1, 0] = False
    assert buf.flat("actions").shape == (7, 3)


def test_replay_buffer_samples_only_filled_slots():
    buf = ReplayBuffer(100, VECTOR, DISCRETE)
    buf.add(*_batch(0, 3))
    batch = buf.sample(64, np.random.default_rng(1))
    assert set(batch.actions.tolist()) <= {0, 1, 2}


def test_replay_buffer_state_dict_round_trip(tmp_path):
    """Through a checkpoint file: arrays are written as tensors, which load back."""
    buf = ReplayBuffer(5, VECTOR, DISCRETE)
    buf.add(*_batch(0, 7))
    checkpoint.save_atomic({"buffer": buf.state_dict(), "net": torch.zeros(2)}, tmp_path / "c.pt")
    state = checkpoint.load(tmp_path / "c.pt")["buffer"]
    assert all(isinstance(v, torch.Tensor) for k, v in state.items() if k not in ("pos", "size"))
    other = ReplayBuffer(5, VECTOR, DISCRETE)
    other.load_state_dict(state)
    assert (other.pos, other.size) == (buf.pos, buf.size)
    for key in ReplayBuffer.FIELDS:
        np.testing.assert_array_equal(getattr(other, key), getattr(buf, key))
    a = buf.sample(8, np.random.default_rng(3))
    b = other.sample(8, np.random.default_rng(3))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_replay_buffer_partial_state_dict_round_trip():
    states = SpaceSpec("discrete", (), np.dtype(np.int64), n=10)
    buf = ReplayBuffer(10, states, DISCRETE)
    buf.add(np.array([1, 2]), np.array([0, 1]), np.array([1.0, 0.0]), np.array([2, 3]),
            np.array([0.0, 1.0]))  # fmt: skip
    other = ReplayBuffer(10, states, DISCRETE)
    other.load_state_dict(buf.state_dict())
    assert other.size == 2
    assert other.obs[:2].tolist() == [1, 2]
    assert other.terminated[:2].tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="holds 2 transitions"):
        ReplayBuffer(1, states, DISCRETE).load_state_dict(buf.state_dict())


# normalization ---------------------------------------------------------------------------------
def test_running_mean_std_matches_numpy():
    rng = np.random.default_rng(0)
    chunks = [rng.normal(loc=3.0, scale=2.0, size=(n, 3)) for n in (1, 7, 50, 13)]
    rms = RunningMeanStd((3,))
    for chunk in chunks:
        rms.update(chunk)
    data = np.concatenate(chunks)
    np.testing.assert_allclose(rms.mean, data.mean(0), rtol=1e-4)
    np.testing.assert_allclose(rms.var, data.var(0), rtol=1e-4)
    assert rms.count == pytest.approx(len(data), abs=1e-3)


def test_obs_normalizer_normalizes_clips_and_round_trips():
    norm = ObsNormalizer((2,), clip=5.0)
    norm(np.array([[0.0, 10.0], [2.0, 10.0]]), update=True)  # mean [1, 10], var [1, 0]
    out = norm(np.array([[3.0, 10.0], [1.0, 11.0]]))
    np.testing.assert_allclose(out[:, 0], [2.0, 0.0], rtol=1e-3, atol=1e-3)
    assert abs(out[0, 1]) < 0.01  # the prior (count 1e-4, variance 1) barely moves it
    assert out[1, 1] == 5.0  # (11 - 10) / sqrt(0 + eps) is clipped
    assert out.dtype == np.float32
    other = ObsNormalizer((2,), clip=5.0)
    other.load_state_dict(norm.state_dict())
    np.testing.assert_array_equal(other(np.ones((1, 2))), norm(np.ones((1, 2))))


def test_reward_scaler_divides_by_the_return_std():
    scaler = RewardScaler(num_envs=1, gamma=0.5)
    rewards = [1.0, 1.0, 1.0]
    returns, out = [], []
    ret = 0.0
    for r in rewards:
        ret = 0.5 * ret + r
        returns.append(ret)
        out.append(scaler(np.array([r]), np.array([False]))[0])
    # the running variance includes the prior count of 1e-4 at variance 1
    rms = RunningMeanStd(())
    for ret in returns:
        rms.update(np.array([ret]))
    assert out[-1] == pytest.approx(1.0 / np.sqrt(rms.var + 1e-8), rel=1e-5)
    scaler(np.array([1.0]), np.array([True]))
    assert scaler.ret[0] == 0.0  # reset at the episode's end
