"""Return and advantage maths against hand-computed values; the replay buffer; RunningMeanStd."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rl_runner.buffers import ReplayBuffer, discounted_returns, gae
from rl_runner.normalize import RunningMeanStd
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
def _batch(start: int, n: int):
    obs = np.arange(start, start + n, dtype=np.float32)[:, None].repeat(4, 1)
    return obs, np.arange(start, start + n), np.full(n, 0.5, np.float32), obs + 100, np.zeros(n)


def test_replay_buffer_add_wrap_sample():
    buf = ReplayBuffer(5, (4,), np.float32, torch.device("cpu"))
    buf.add(*_batch(0, 3))
    assert (buf.pos, buf.size) == (3, 3)
    buf.add(*_batch(3, 4))  # 7 transitions in a buffer of 5: 5 and 6 overwrite slots 0 and 1
    assert (buf.pos, buf.size) == (2, 5)
    assert buf.actions.tolist() == [5, 6, 2, 3, 4]
    np.testing.assert_array_equal(buf.next_obs[:, 0], [105, 106, 102, 103, 104])
    batch = buf.sample(16, np.random.default_rng(0))
    assert batch.obs.shape == (16, 4)
    assert batch.next_obs.shape == (16, 4)
    assert batch.actions.shape == batch.rewards.shape == batch.terminated.shape == (16,)
    assert batch.actions.dtype == torch.int64
    assert batch.obs.dtype == torch.float32
    # every sampled transition is a stored one, consistently indexed across fields
    torch.testing.assert_close(batch.obs[:, 0], batch.actions.float())
    torch.testing.assert_close(batch.next_obs, batch.obs + 100)
    assert set(batch.actions.tolist()) <= {2, 3, 4, 5, 6}


def test_replay_buffer_samples_only_filled_slots():
    buf = ReplayBuffer(100, (4,), np.float32, torch.device("cpu"))
    buf.add(*_batch(0, 3))
    batch = buf.sample(64, np.random.default_rng(1))
    assert set(batch.actions.tolist()) <= {0, 1, 2}


def test_replay_buffer_state_dict_round_trip(tmp_path):
    """Through a checkpoint file: arrays are written as tensors, which load back."""
    buf = ReplayBuffer(5, (4,), np.float32, torch.device("cpu"))
    buf.add(*_batch(0, 7))
    checkpoint.save_atomic({"buffer": buf.state_dict(), "net": torch.zeros(2)}, tmp_path / "c.pt")
    state = checkpoint.load(tmp_path / "c.pt")["buffer"]
    assert all(isinstance(v, torch.Tensor) for k, v in state.items() if k not in ("pos", "size"))
    other = ReplayBuffer(5, (4,), np.float32, torch.device("cpu"))
    other.load_state_dict(state)
    assert (other.pos, other.size) == (buf.pos, buf.size)
    for key in ("obs", "next_obs", "actions", "rewards", "terminated"):
        np.testing.assert_array_equal(getattr(other, key), getattr(buf, key))
    a = buf.sample(8, np.random.default_rng(3))
    b = other.sample(8, np.random.default_rng(3))
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y)


def test_replay_buffer_partial_state_dict_round_trip():
    buf = ReplayBuffer(10, (), np.int64, torch.device("cpu"))  # discrete observations
    buf.add(np.array([1, 2]), np.array([0, 1]), np.array([1.0, 0.0]), np.array([2, 3]),
            np.array([0.0, 1.0]))  # fmt: skip
    other = ReplayBuffer(10, (), np.int64, torch.device("cpu"))
    other.load_state_dict(buf.state_dict())
    assert other.size == 2
    assert other.obs[:2].tolist() == [1, 2]
    assert other.terminated[:2].tolist() == [0.0, 1.0]


# running mean / std ----------------------------------------------------------------------------
def test_running_mean_std_matches_numpy():
    rng = np.random.default_rng(0)
    chunks = [rng.normal(loc=3.0, scale=2.0, size=(n, 3)) for n in (1, 7, 50, 13)]
    rms = RunningMeanStd(3)
    for chunk in chunks:
        rms.update(torch.tensor(chunk, dtype=torch.float32))
    data = np.concatenate(chunks).astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(rms.mean.numpy(), data.mean(0), rtol=1e-6)
    np.testing.assert_allclose(rms.var.numpy(), data.var(0), rtol=1e-6)
    assert rms.count == pytest.approx(len(data))


def test_running_mean_std_normalizes_and_clips():
    rms = RunningMeanStd(2, clip=5.0)
    rms.update(torch.tensor([[0.0, 10.0], [2.0, 10.0]]))  # mean [1, 10], var [1, 0]
    out = rms(torch.tensor([[3.0, 10.0], [1.0, 11.0]]))
    torch.testing.assert_close(out[:, 0], torch.tensor([2.0, 0.0]), rtol=1e-4, atol=1e-4)
    assert out[0, 1].item() == 0.0
    assert out[1, 1].item() == 5.0  # (11 - 10) / sqrt(0 + eps) is clipped
    state = rms.state_dict()
    other = RunningMeanStd(2, clip=5.0)
    other.load_state_dict(state)
    torch.testing.assert_close(other.mean, rms.mean)
    torch.testing.assert_close(other.var, rms.var)
    assert other.count == rms.count
