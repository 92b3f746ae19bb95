"""SAC: the soft TD target, the critic loss and the squashed Gaussian's log-probability against
independent computations, the sign of the alpha loss, Polyak averaging, acting, the state dict
round trip, and short runs through train() (and a resume) on Pendulum and MountainCarContinuous."""

from __future__ import annotations

import math
import signal

import numpy as np
import pytest
import torch
from torch.distributions import (
    AffineTransform,
    Independent,
    Normal,
    TanhTransform,
    TransformedDistribution,
)

from rl_runner.algos.off_policy.sac import SAC, soft_td_target
from rl_runner.buffers import ReplayBatch
from rl_runner.envs import env_spec
from rl_runner.heads import SquashedGaussian
from rl_runner.specs import SpaceSpec
from runner_core import checkpoint
from runner_core.entrypoint import _resume
from runner_core.errors import ConfigError, Interrupted
from tests.conftest import assert_continuous, compose_cfg, read_metrics, read_summary, run_train

CPU = torch.device("cpu")
# a short run: small networks, learning after 100 random steps
# SAC's own per-step cadence (conftest's quick-run keys would set others)
CADENCE = ("algo.train_freq=1", "algo.gradient_steps=1", "algo.target_update_interval=1")
FAST_SAC = (
    *CADENCE,
    "env.num_envs=1",
    "algo.total_steps=300",
    "algo.learning_starts=100",
    "algo.batch_size=32",
    "algo.buffer_size=1000",
    "network.hidden=[32,32]",
)


def make_sac(*overrides: str, env: str = "pendulum", seed: int = 0) -> SAC:
    cfg = compose_cfg(["algo=sac", f"env={env}", "network.hidden=[16,16]", "algo.gamma=0.9",
                       *CADENCE, *overrides])  # fmt: skip
    torch.manual_seed(0)
    return SAC(cfg, env_spec(cfg.env), CPU, seed=seed)


def make_batch(n: int = 8, seed: int = 1) -> ReplayBatch:
    """Pendulum-shaped transitions as `ReplayBuffer.sample` gives them (numpy)."""
    gen = torch.Generator().manual_seed(seed)
    batch = ReplayBatch(
        obs=torch.randn(n, 3, generator=gen),
        actions=torch.rand(n, 1, generator=gen) * 4 - 2,
        rewards=torch.linspace(-1.0, 1.0, n),
        next_obs=torch.randn(n, 3, generator=gen),
        terminated=torch.tensor([0.0, 1.0] * (n // 2)),
    )
    return ReplayBatch(*(x.numpy() for x in batch))


def perturb(module: torch.nn.Module, seed: int = 2, scale: float = 0.1) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))


def params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


# the maths --------------------------------------------------------------------------------------
def test_soft_td_target_by_hand():
    rewards = torch.tensor([1.0, -0.5, 0.25])
    terminated = torch.tensor([0.0, 1.0, 0.0])
    next_q = torch.tensor([2.0, 3.0, -1.0])
    next_log_pi = torch.tensor([-1.0, 0.5, 2.0])
    y = soft_td_target(rewards, terminated, next_q, next_log_pi, alpha=0.2, gamma=0.9)
    # 1 + 0.9 * (2 - 0.2 * -1) = 2.98; terminated: the reward; 0.25 + 0.9 * (-1 - 0.4) = -1.01
    torch.testing.assert_close(y, torch.tensor([2.98, -0.5, -1.01]))


def test_squashed_gaussian_log_prob_matches_tanh_transform():
    """rsample's log pi(a|s) is that of N(mean, std) pushed through tanh and the affine map to
    the bounds, as torch.distributions computes it (asymmetric bounds, two dimensions)."""
    spec = SpaceSpec("continuous", (2,), np.dtype(np.float32), low=np.array([-2.0, -1.0]),
                     high=np.array([2.0, 3.0]))  # fmt: skip
    head = SquashedGaussian(spec)
    out = 0.6 * torch.randn(64, 4, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(4)
    actions, log_prob = head.rsample(out)

    mean, raw = out[:, :2], out[:, 2:]
    lo, hi = head.LOG_STD_MIN, head.LOG_STD_MAX
    std = (lo + 0.5 * (hi - lo) * (torch.tanh(raw) + 1.0)).exp()
    scale, center = torch.tensor([2.0, 2.0]), torch.tensor([0.0, 1.0])
    dist = Independent(
        TransformedDistribution(
            Normal(mean, std), [TanhTransform(), AffineTransform(center, scale)]
        ),
        1,
    )
    torch.manual_seed(4)
    u = mean + std * torch.randn(64, 2)  # the same noise: the head's sample before squashing
    torch.testing.assert_close(actions, torch.tanh(u) * scale + center)
    assert ((actions >= torch.tensor([-2.0, -1.0])) & (actions <= torch.tensor([2.0, 3.0]))).all()
    assert torch.isfinite(log_prob).all()
    # where tanh saturates, the 1e-6 the head adds inside its log-Jacobian takes over (and
    # TransformedDistribution's atanh loses precision): compare where |u| < 3
    moderate = u.abs().max(-1).values < 3.0
    assert moderate.sum() > 48
    expected = dist.log_prob(actions)
    torch.testing.assert_close(log_prob[moderate], expected[moderate], rtol=1e-4, atol=1e-4)
    # and from the pre-squash sample, the change of variables written out
    by_hand = Normal(mean, std).log_prob(u).sum(-1) - torch.log(
        scale * (1.0 - torch.tanh(u) ** 2)
    ).sum(-1)
    torch.testing.assert_close(log_prob[moderate], by_hand[moderate], rtol=1e-4, atol=1e-4)


def expected_critic_loss(sac: SAC, batch: ReplayBatch, seed: int) -> tuple[float, float]:
    """0.5 * sum_i mean (Q_i(s, a) - y)^2 and mean Q, computed apart from the class: the next
    actions drawn with the same torch noise, log-probabilities from torch.distributions."""
    batch = batch.to_tensors(CPU)
    with torch.no_grad():
        torch.manual_seed(seed)
        out = sac.actor(batch.next_obs)
        mean, raw = out[:, :1], out[:, 1:]
        std = (-5.0 + 3.5 * (torch.tanh(raw) + 1.0)).exp()
        u = mean + std * torch.randn_like(mean)
        next_actions = 2.0 * torch.tanh(u)  # Pendulum: torque in [-2, 2]
        log_pi = Normal(mean, std).log_prob(u).sum(-1) - torch.log(
            2.0 * (1.0 - torch.tanh(u) ** 2) + 1e-6
        ).sum(-1)
        x_next = torch.cat([batch.next_obs, next_actions], 1)
        next_q = torch.minimum(*(q(x_next).squeeze(-1) for q in sac.critic_targets))
        alpha = math.exp(sac.log_alpha.item())
        y = batch.rewards + 0.9 * (1.0 - batch.terminated) * (next_q - alpha * log_pi)
        x = torch.cat([batch.obs, batch.actions], 1)
        q1, q2 = (q(x).squeeze(-1) for q in sac.critics)
        loss = 0.5 * (((q1 - y) ** 2).mean() + ((q2 - y) ** 2).mean())
    return loss.item(), torch.cat([q1, q2]).mean().item()


def test_critic_loss_matches_manual():
    """The critic loss of one update: the soft TD target from the *target* critics (made to
    differ from the online ones) and the actor's next actions, with alpha = 0.5."""
    sac = make_sac("algo.alpha=0.5")
    perturb(sac.critic_targets)
    batch = make_batch()
    loss, q_mean = expected_critic_loss(sac, batch, seed=7)
    perturbed_targets = params(sac.critic_targets)
    torch.manual_seed(7)
    stats = sac.update(batch)
    assert stats["qf_loss"] == pytest.approx(loss, rel=1e-5)
    assert stats["q_values"] == pytest.approx(q_mean, rel=1e-5)
    assert stats["alpha"] == pytest.approx(0.5)
    # the targets move only by Polyak averaging towards the updated critics (tau = 0.005)
    for t, old, q in zip(sac.critic_targets.parameters(), perturbed_targets,
                         sac.critics.parameters(), strict=True):  # fmt: skip
        torch.testing.assert_close(t, old + 0.005 * (q - old))


def test_terminal_targets_are_the_rewards():
    sac = make_sac()
    batch = make_batch()._replace(terminated=np.ones(8, np.float32))
    with torch.no_grad():
        x = torch.from_numpy(np.concatenate([batch.obs, batch.actions], 1))
        q = torch.stack([c(x).squeeze(-1) for c in sac.critics])
    stats = sac.update(batch)
    rewards = torch.from_numpy(batch.rewards)
    assert stats["qf_loss"] == pytest.approx(
        0.5 * ((q - rewards) ** 2).mean(1).sum().item(), rel=1e-5
    )


@pytest.mark.parametrize("target_entropy", [5.0, -50.0])
def test_alpha_loss_sign(target_entropy):
    """L_alpha = -log alpha * (log pi + H_target): when the policy's entropy is below the target,
    alpha grows (Adam's first step moves log alpha by lr against the gradient's sign), else it
    shrinks."""
    sac = make_sac("algo.alpha=0.5", f"algo.target_entropy={target_entropy}", "algo.lr=0.01")
    stats = sac.update(make_batch())
    log_alpha0 = math.log(0.5)
    entropy = stats["entropy"]  # -mean log pi(a~|s) of the actor step's sample
    assert stats["alpha_loss"] == pytest.approx(-log_alpha0 * (-entropy + target_entropy), rel=1e-5)
    assert stats["alpha"] == pytest.approx(0.5)  # reported: the alpha the losses used
    direction = 1.0 if entropy < target_entropy else -1.0
    assert sac.log_alpha.item() == pytest.approx(log_alpha0 + direction * 0.01, rel=1e-4)
    assert (entropy < target_entropy) == (target_entropy > 0)  # both cases are covered


def test_fixed_alpha_stays():
    sac = make_sac("algo.autotune=false", "algo.alpha=0.2")
    assert sac.alpha_optimizer is None
    for seed in range(3):
        stats = sac.update(make_batch(seed=seed))
    assert "alpha_loss" not in stats
    assert stats["alpha"] == pytest.approx(0.2)
    assert sac.log_alpha.item() == pytest.approx(math.log(0.2))


def test_actor_update_trains_the_actor_only():
    sac = make_sac()
    batch = make_batch()
    actor, critics = params(sac.actor), params(sac.critics)
    sac.update_actor(torch.from_numpy(batch.obs), torch.tensor(0.3))
    assert not same(actor, params(sac.actor))
    assert same(critics, params(sac.critics))
    assert all(p.grad is None for p in sac.critics.parameters())


def test_policy_frequency_delays_the_actor():
    sac = make_sac("algo.policy_frequency=3")
    updated = []
    for i in range(7):
        before = params(sac.actor)
        sac.update(make_batch(seed=i))
        updated.append(not same(before, params(sac.actor)))
    assert updated == [True, False, False, True, False, False, True]
    assert sac.critic_updates == 7


@pytest.mark.parametrize("tau", [0.25, 1.0])
def test_polyak_averaging(tau):
    sac = make_sac(f"algo.tau={tau}")
    perturb(sac.critic_targets, scale=1.0)
    old = params(sac.critic_targets)
    sac.update_targets(tau)
    for t, o, q in zip(sac.critic_targets.parameters(), old, sac.critics.parameters(),
                       strict=True):  # fmt: skip
        if tau == 1.0:
            assert torch.equal(t, q)
        else:
            torch.testing.assert_close(t, o + tau * (q - o))
    assert all(not p.requires_grad for p in sac.critic_targets.parameters())


def test_target_update_interval_counts_critic_updates():
    sac = make_sac("algo.target_update_interval=2")
    perturb(sac.critic_targets)
    old = params(sac.critic_targets)
    sac.update(make_batch())
    assert same(old, params(sac.critic_targets))
    sac.update(make_batch(seed=2))
    assert not same(old, params(sac.critic_targets))


# acting -----------------------------------------------------------------------------------------
def test_explore_is_uniform_before_learning_starts_then_samples_the_policy():
    sac = make_sac("algo.learning_starts=100", env="mountaincarcontinuous")
    obs = np.random.default_rng(0).normal(size=(512, 2)).astype(np.float32)
    stored, env_actions = sac.explore(obs, step=0)
    assert stored is env_actions and stored.shape == (512, 1) and stored.dtype == np.float32
    assert stored.min() >= -1.0 and stored.max() <= 1.0
    assert abs(stored.mean()) < 0.1 and stored.std() == pytest.approx(1 / math.sqrt(3), rel=0.1)

    rng = np.random.default_rng(5)
    sac.rng = np.random.default_rng(5)
    actions, _ = sac.explore(obs, step=100)
    expected, _ = sac.head.sample(sac.actor_outputs(obs), rng)
    np.testing.assert_array_equal(actions, expected)
    assert np.abs(actions).max() <= 1.0


def test_deterministic_evaluation_is_the_squashed_mean():
    sac = make_sac()
    perturb(sac.actor, scale=1.0)
    obs = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)
    actions = sac.evaluation_policy(True, np.random.default_rng(0))(obs)
    with torch.no_grad():
        mean = sac.actor(torch.from_numpy(obs))[:, :1]
    np.testing.assert_allclose(actions, 2.0 * np.tanh(mean.numpy()), rtol=1e-6)
    sampled = sac.evaluation_policy(False, np.random.default_rng(0))(obs)
    assert sampled.shape == (16, 1) and not np.allclose(sampled, actions)


# state ------------------------------------------------------------------------------------------
def test_state_dict_round_trip(tmp_path):
    """A loaded state continues exactly: the next update of both gives the same stats and
    weights (networks, targets, the three optimizers, log alpha, buffer, counters, rng)."""
    overrides = ("algo.buffer_size=50", "algo.policy_frequency=2", "algo.batch_size=8")
    sac = make_sac(*overrides)
    rng = np.random.default_rng(0)
    sac.buffer.add(rng.normal(size=(20, 3)).astype(np.float32),
                   rng.uniform(-2, 2, (20, 1)).astype(np.float32), rng.normal(size=20),
                   rng.normal(size=(20, 3)).astype(np.float32), np.zeros(20))  # fmt: skip
    for _ in range(3):
        sac.update(sac.sample())
    sac.last_train_step, sac.num_updates = 40, 3
    # through a checkpoint file (a state dict holds the optimizers' live tensors)
    checkpoint.save_atomic({"algo": sac.state_dict()}, tmp_path / "state.pt")
    state = checkpoint.load(tmp_path / "state.pt")["algo"]

    other = make_sac(*overrides, seed=1)
    assert not same(params(sac.actor), params(other.actor))
    other.load_state_dict(state)
    assert (other.last_train_step, other.num_updates, other.critic_updates) == (40, 3, 3)
    assert other.buffer.size == 20
    assert other.log_alpha.item() == sac.log_alpha.item() != 0.0
    for name in ("actor", "critics", "critic_targets"):
        assert same(params(getattr(sac, name)), params(getattr(other, name)))
    torch.manual_seed(9)
    expected = sac.update(sac.sample())  # a critic-only step: reports the cached actor stats
    torch.manual_seed(9)
    assert other.update(other.sample()) == expected
    torch.manual_seed(10)
    expected = sac.update(sac.sample())
    torch.manual_seed(10)
    assert other.update(other.sample()) == expected
    for name in ("actor", "critics", "critic_targets"):
        assert same(params(getattr(sac, name)), params(getattr(other, name)))
    assert other.log_alpha.item() == sac.log_alpha.item()


def test_config_is_checked():
    with pytest.raises(ConfigError, match=r"algo\.tau"):
        SAC.check(compose_cfg(["algo=sac", "env=pendulum", "algo.tau=2"]),
                  env_spec(compose_cfg(["env=pendulum"]).env))  # fmt: skip
    with pytest.raises(ConfigError, match=r"algo\.target_entropy"):
        SAC.check(compose_cfg(["algo=sac", "env=pendulum", "algo.target_entropy=auto"]),
                  env_spec(compose_cfg(["env=pendulum"]).env))  # fmt: skip
    cartpole = compose_cfg(["algo=sac", "env=cartpole"])
    with pytest.raises(ConfigError, match="continuous"):
        SAC.check(cartpole, env_spec(cartpole.env))


# runs -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("env", "num_envs"), [("pendulum", 1), ("mountaincarcontinuous", 2)])
def test_short_run(tmp_path, env, num_envs):
    cfg = compose_cfg(["algo=sac", f"env={env}", *FAST_SAC, f"env.num_envs={num_envs}",
                       "algo.gradient_steps=2"])  # fmt: skip
    run_train(cfg, tmp_path / "run")
    summary = read_summary(tmp_path / "run")
    assert summary["global_step"] == 300
    assert summary["device"] == "cpu"
    records = read_metrics(tmp_path / "run")
    losses = [r for r in records if "losses/qf_loss" in r]
    # one training phase per vector step from step 100 on, two gradient steps each
    assert len(losses) == (300 - 100) // num_envs + 1
    for key in ("qf_loss", "q_values", "actor_loss", "alpha", "alpha_loss", "entropy"):
        assert all(math.isfinite(r[f"losses/{key}"]) for r in losses)
    assert math.isfinite(summary["eval/mean_return"])


def test_resume_continues_the_run(tmp_path, monkeypatch):
    """Stopped by SIGINT during an update, checkpointed with its replay buffer, and resumed in
    place: the run ends at its budget with every update logged once."""
    calls = [0]
    original = SAC.update

    def update(self, batch):
        calls[0] += 1
        if calls[0] == 60:
            signal.raise_signal(signal.SIGINT)
        return original(self, batch)

    monkeypatch.setattr(SAC, "update", update)
    cfg = compose_cfg(["algo=sac", "env=pendulum", *FAST_SAC])
    run_dir = tmp_path / "run"
    with pytest.raises(Interrupted, match="at step 159"):
        run_train(cfg, run_dir)
    monkeypatch.undo()
    _resume(str(run_dir), ["logger.console=off"])
    assert read_summary(run_dir)["global_step"] == 300
    records = read_metrics(run_dir)
    assert_continuous(records, {"losses/qf_loss": 1})
    assert [r["step"] for r in records if "losses/qf_loss" in r] == list(range(100, 301))
