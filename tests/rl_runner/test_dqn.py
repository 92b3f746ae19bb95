"""DQN: TD targets (plain and Double) against a manual computation with the target network, the
epsilon schedule, exploration and target-network updates, on the autograd reference (the numpy
backend is held to it update for update in test_fast.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rl_runner.algos.off_policy.dqn import DQN
from rl_runner.buffers import ReplayBatch
from rl_runner.envs import env_spec
from tests.conftest import compose_cfg

CPU = torch.device("cpu")


def make_dqn(*overrides: str) -> DQN:
    cfg = compose_cfg(["algo=dqn", "env=cartpole", "network.hidden=[8]", "algo.gamma=0.9",
                       "algo.total_steps=1000", *overrides])  # fmt: skip
    return DQN(cfg, env_spec(cfg.env), CPU, seed=0)


def make_batch(n: int = 6) -> ReplayBatch:
    rng = np.random.default_rng(1)
    return ReplayBatch(
        obs=rng.standard_normal((n, 4)).astype(np.float32),
        actions=rng.integers(0, 2, n),
        rewards=np.linspace(-1.0, 1.0, n).astype(np.float32),
        next_obs=rng.standard_normal((n, 4)).astype(np.float32),
        terminated=np.array([0.0, 1.0] * (n // 2), dtype=np.float32),
    )


def perturb_target(dqn: DQN) -> None:
    with torch.no_grad():
        gen = torch.Generator().manual_seed(2)
        for p in dqn.target_net.parameters():
            p.add_(torch.randn(p.shape, generator=gen))


def mirror_target(dqn: DQN) -> None:
    """Q_target = -Q: the online argmax is the target's argmin, so plain and Double targets
    differ on every non-terminal transition."""
    with torch.no_grad():
        dqn.target_net.load_state_dict(dqn.q_net.state_dict())
        head = dqn.target_net.body[-1]
        head.weight.neg_()
        head.bias.neg_()


def manual_loss(dqn: DQN, batch: ReplayBatch, double: bool) -> tuple[float, float]:
    b = batch.to_tensors(CPU)
    with torch.no_grad():
        next_target = dqn.target_net(b.next_obs)
        if double:
            best = dqn.q_net(b.next_obs).argmax(-1)
            next_q = next_target[torch.arange(len(best)), best]
        else:
            next_q = next_target.max(-1).values
        y = b.rewards + 0.9 * (1.0 - b.terminated) * next_q
        q = dqn.q_net(b.obs)[torch.arange(len(b.actions)), b.actions]
    return F.smooth_l1_loss(q, y).item(), q.mean().item()


@pytest.mark.parametrize("double", [False, True])
def test_td_target_matches_manual(double):
    dqn = make_dqn(f"algo.double_q={str(double).lower()}")
    mirror_target(dqn)
    batch = make_batch()
    expected_loss, expected_q = manual_loss(dqn, batch, double)
    other_loss, _ = manual_loss(dqn, batch, not double)
    assert other_loss != pytest.approx(expected_loss), "the example must tell the targets apart"
    before = [p.detach().clone() for p in dqn.q_net.parameters()]
    target_before = [p.detach().clone() for p in dqn.target_net.parameters()]
    stats = dqn.update(batch)
    assert stats["td_loss"] == pytest.approx(expected_loss, rel=1e-5)
    assert stats["q_values"] == pytest.approx(expected_q, rel=1e-5)
    assert any(not torch.equal(a, b) for a, b in zip(before, dqn.q_net.parameters(), strict=True))
    # the update trains the online network only
    for a, b in zip(target_before, dqn.target_net.parameters(), strict=True):
        assert torch.equal(a, b)


def test_terminal_targets_are_the_rewards():
    dqn = make_dqn()
    perturb_target(dqn)
    batch = make_batch()._replace(terminated=np.ones(6, np.float32))
    with torch.no_grad():
        q = dqn.q_net(torch.from_numpy(batch.obs))[torch.arange(6), torch.from_numpy(batch.actions)]
    stats = dqn.update(batch)
    want = F.smooth_l1_loss(q, torch.from_numpy(batch.rewards)).item()
    assert stats["td_loss"] == pytest.approx(want, rel=1e-5)


def test_epsilon_schedule():
    # decays from 1.0 to 0.05 over 0.1 * 1000 = 100 steps, then stays
    dqn = make_dqn("algo.exploration_fraction=0.1", "algo.exploration_initial_eps=1.0",
                   "algo.exploration_final_eps=0.05")  # fmt: skip
    assert dqn.epsilon(0) == pytest.approx(1.0)
    assert dqn.epsilon(50) == pytest.approx(0.525)
    assert dqn.epsilon(25) == pytest.approx(1.0 - 0.25 * 0.95)
    assert dqn.epsilon(100) == pytest.approx(0.05)
    assert dqn.epsilon(999) == pytest.approx(0.05)
    instant = make_dqn("algo.exploration_fraction=0.0", "algo.exploration_final_eps=0.1")
    assert instant.epsilon(0) == pytest.approx(0.1)


def test_explore_is_random_before_learning_starts_then_greedy():
    dqn = make_dqn("algo.learning_starts=100", "algo.exploration_fraction=0.1",
                   "algo.exploration_final_eps=0.0")  # fmt: skip
    obs = np.random.default_rng(0).normal(size=(256, 4)).astype(np.float32)
    random_actions, env_actions = dqn.explore(obs, step=0)
    assert set(random_actions.tolist()) == {0, 1}
    assert env_actions is random_actions
    np.testing.assert_array_equal(dqn.explore(obs, step=500)[0], dqn.greedy(obs))


def test_target_network_hard_and_soft_updates():
    hard = make_dqn("algo.tau=1.0", "algo.target_update_interval=10")
    perturb_target(hard)
    hard.on_env_step(5)
    pairs = list(zip(hard.q_net.parameters(), hard.target_net.parameters(), strict=True))
    assert not all(torch.equal(a, b) for a, b in pairs)
    hard.on_env_step(10)
    assert hard.last_target_step == 10
    for a, b in zip(hard.q_net.parameters(), hard.target_net.parameters(), strict=True):
        assert torch.equal(a, b)

    soft = make_dqn("algo.tau=0.25", "algo.target_update_interval=1")
    perturb_target(soft)
    old = [p.detach().clone() for p in soft.target_net.parameters()]
    soft.on_env_step(1)
    for q, t, o in zip(soft.q_net.parameters(), soft.target_net.parameters(), old, strict=True):
        torch.testing.assert_close(t, o + 0.25 * (q - o))


def test_state_dict_round_trip():
    dqn = make_dqn("algo.buffer_size=50")
    dqn.buffer.add(np.ones((3, 4), np.float32), np.array([0, 1, 0]), np.ones(3), np.zeros((3, 4)),
                   np.zeros(3))  # fmt: skip
    dqn.last_train_step, dqn.last_target_step, dqn.num_updates = 40, 30, 7
    state = dqn.state_dict()
    other = make_dqn("algo.buffer_size=50", "seed=5")
    other.load_state_dict(state)
    assert (other.last_train_step, other.last_target_step, other.num_updates) == (40, 30, 7)
    assert other.buffer.size == 3
    for a, b in zip(dqn.q_net.parameters(), other.q_net.parameters(), strict=True):
        assert torch.equal(a, b)
    assert other.rng.random() == dqn.rng.random()
