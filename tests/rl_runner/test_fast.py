"""The contract between the autograd references and the numpy backend (`rl_runner.fast`): the
same seed gives the same initial weights and the same random draws, the numpy loss gradients are
autograd's, and whole updates end at the same weights. Also: which runs the backend takes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rl_runner import fast
from rl_runner.algos.off_policy.dqn import DQN
from rl_runner.algos.on_policy.ppo import PPO, Batch
from rl_runner.buffers import ReplayBatch, RolloutBuffer
from rl_runner.envs import env_spec
from rl_runner.fast.dqn import FastDQN
from rl_runner.fast.ppo import FastPPO, loss_grads, loss_targets
from runner_core.device import NUMPY_CPU
from runner_core.errors import ConfigError
from tests.conftest import compose_cfg, run_train

CPU = torch.device("cpu")


def pair(cls, fast_cls, *overrides: str):
    cfg = compose_cfg(list(overrides))
    spec = env_spec(cfg.env)
    return cls(cfg, spec, CPU, seed=3), fast_cls(cfg, spec, NUMPY_CPU, seed=3)


def assert_same_weights(ref_module, fast_nets, rtol=0.0, atol=0.0) -> None:
    ref = ref_module.state_dict()
    got = fast_nets.state_dict()
    assert set(ref) == set(got)
    for key, value in ref.items():
        np.testing.assert_allclose(got[key], value.detach().numpy(), rtol=rtol, atol=atol,
                                   err_msg=key)  # fmt: skip


# initial weights ----------------------------------------------------------------------------------
def test_discrete_observations_are_one_hot_on_both_backends():
    dqn, fast_dqn = pair(DQN, FastDQN, "algo=dqn", "env=frozenlake", "network.hidden=[8]")
    states = np.array([0, 3, 15, 7])
    np.testing.assert_array_equal(dqn.greedy(states), fast_dqn.greedy(states))
    ppo, fast_ppo = pair(PPO, FastPPO, "algo=ppo", "env=taxi", "network.hidden=[8]")
    (ref,), ref_v = ppo.outputs(np.array([1, 499]))
    (got,), got_v = fast_ppo.outputs(np.array([1, 499]))
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_v, ref_v, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("hidden", ["[8]", "[16,9]", "[64,64]"])
def test_same_seed_same_initial_weights(hidden):
    ppo, fast_ppo = pair(PPO, FastPPO, "algo=ppo", f"network.hidden={hidden}")
    assert_same_weights(ppo.policy, fast_ppo.policy)
    dqn, fast_dqn = pair(DQN, FastDQN, "algo=dqn", f"network.hidden={hidden}")
    assert_same_weights(dqn.q_net, fast_dqn.q_net)
    assert_same_weights(dqn.target_net, fast_dqn.target_net)
    # and the generators are left in the same state: the same actions follow
    assert ppo.rng.random() == fast_ppo.rng.random()


def test_same_sampled_actions():
    ppo, fast_ppo = pair(PPO, FastPPO, "algo=ppo", "network.hidden=[8]")
    obs = np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32)
    for _ in range(3):
        ref, got = ppo.rollout_policy()(obs), fast_ppo.rollout_policy()(obs)
        np.testing.assert_array_equal(ref[0], got[0])
        np.testing.assert_allclose(ref[2], got[2], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ref[3], got[3], rtol=1e-5, atol=1e-6)


# PPO ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("clip_vloss", [False, True])
@pytest.mark.parametrize("ent_coef", [0.0, 0.05])
@pytest.mark.parametrize("n_actions", [2, 5])
def test_numpy_loss_gradients_are_autograds(clip_vloss, ent_coef, n_actions):
    """dL/dlogits and dL/dV of `loss_grads` against autograd through the reference's loss
    (`PPO.losses`), on outputs that put transitions on both sides of every clip."""
    rng = np.random.default_rng(n_actions)
    b = 32
    logits = rng.standard_normal((b, n_actions)).astype(np.float32)
    values = rng.standard_normal(b).astype(np.float32)
    batch = Batch(
        obs=np.zeros((b, 1), np.float32),
        actions=rng.integers(0, n_actions, b),
        old_logprobs=(rng.standard_normal(b) * 0.3 - np.log(n_actions)).astype(np.float32),
        advantages=rng.standard_normal(b).astype(np.float32),
        returns=rng.standard_normal(b).astype(np.float32),
        old_values=(values + rng.standard_normal(b) * 0.3).astype(np.float32),
    )
    cfg = compose_cfg(["algo=ppo", f"algo.clip_vloss={str(clip_vloss).lower()}",
                       f"algo.ent_coef={ent_coef}", "algo.vf_coef=0.5"])  # fmt: skip
    ppo = PPO(cfg, env_spec(cfg.env), CPU, seed=0)
    clip = 0.2
    grad_logits, grad_values, _, _ = loss_grads(
        logits, values, loss_targets(batch, n_actions, clip, ppo.hp)
    )
    z = torch.tensor(logits, requires_grad=True)
    v = torch.tensor(values, requires_grad=True)
    ppo.dist_params = lambda obs: (z,)
    ppo.value = lambda obs: v
    ppo.head.n = n_actions
    tensors = Batch(*(torch.from_numpy(np.asarray(x)) for x in batch))
    pg, vl, ent, _, _ = ppo.losses(tensors, clip)
    (pg - ent_coef * ent + 0.5 * vl).backward()
    np.testing.assert_allclose(grad_logits, z.grad.numpy(), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(grad_values, v.grad.numpy(), rtol=1e-4, atol=1e-7)


def _rollout(ppo, steps=16, envs=4, seed=0) -> RolloutBuffer:
    rng = np.random.default_rng(seed)
    buf = RolloutBuffer(steps, envs, ppo.spec.obs, ppo.spec.act)
    buf.obs[:] = rng.standard_normal(buf.obs.shape)
    buf.actions[:] = rng.integers(0, 2, buf.actions.shape)
    buf.logprobs[:] = np.log(0.5) + rng.standard_normal(buf.logprobs.shape) * 0.2
    buf.values[:] = rng.standard_normal(buf.values.shape)
    buf.advantages[:] = rng.standard_normal(buf.advantages.shape)
    buf.returns[:] = buf.values + rng.standard_normal(buf.values.shape)
    buf.valid[:] = rng.random(buf.valid.shape) > 0.1
    return buf


@pytest.mark.parametrize(
    "overrides",
    [
        ("network.activation=tanh", "algo.batch_size=64"),  # the whole rollout, every epoch
        ("network.activation=relu", "algo.batch_size=16", "algo.norm_adv=true"),
        ("network.activation=sigmoid", "algo.ent_coef=0.01", "algo.clip_vloss=false"),
        ("algo.anneal_clip=true", "algo.target_kl=0.02", "algo.batch_size=8"),
    ],
    ids=["whole-batch", "minibatches", "entropy", "kl-stop"],
)
def test_whole_updates_agree(overrides):
    ppo, fast_ppo = pair(PPO, FastPPO, "algo=ppo", "network.hidden=[16,16]", "algo.num_epochs=4",
                         "algo.lr=0.003", *overrides)  # fmt: skip
    for update in range(3):
        buf = _rollout(ppo, seed=update)
        stats = [algo.update(buf, progress=update / 3) for algo in (ppo, fast_ppo)]
        for key in stats[0]:
            assert stats[1][key] == pytest.approx(stats[0][key], rel=1e-3, abs=1e-5), key
    assert_same_weights(ppo.policy, fast_ppo.policy, rtol=1e-4, atol=1e-5)
    assert fast_ppo.optimizer.steps == int(next(iter(ppo.optimizer.state.values()))["step"])


def test_checkpoints_load_across_backends():
    ppo, fast_ppo = pair(PPO, FastPPO, "algo=ppo", "network.hidden=[8]")
    fast_ppo.update(_rollout(fast_ppo), progress=0.0)
    ppo.policy.load_state_dict({k: torch.from_numpy(v) for k, v in
                                fast_ppo.policy.state_dict().items()})  # fmt: skip
    assert_same_weights(ppo.policy, fast_ppo.policy)
    with pytest.raises(ValueError, match="numpy backend"):
        ppo.load_state_dict(fast_ppo.state_dict())  # optimizer states differ: refused


# DQN ----------------------------------------------------------------------------------------------
def _replay_batch(rng: np.random.Generator, n: int = 16) -> ReplayBatch:
    return ReplayBatch(
        obs=(rng.standard_normal((n, 4)) * 2).astype(np.float32),
        actions=rng.integers(0, 2, n),
        rewards=(rng.standard_normal(n) * 3).astype(np.float32),  # |TD error| > 1 for some
        next_obs=rng.standard_normal((n, 4)).astype(np.float32),
        terminated=(rng.random(n) < 0.3).astype(np.float32),
    )


@pytest.mark.parametrize("double", [False, True])
@pytest.mark.parametrize("tau", [1.0, 0.3])
def test_dqn_updates_agree(double, tau):
    """Gradient steps, target updates and greedy actions over many updates, with TD errors on
    both sides of the Huber loss's kink."""
    dqn, fast_dqn = pair(DQN, FastDQN, "algo=dqn", "network.hidden=[16]", "algo.lr=0.003",
                         f"algo.double_q={str(double).lower()}", f"algo.tau={tau}",
                         "algo.target_update_interval=3", "algo.total_steps=1000",
                         "algo.anneal_lr=true")  # fmt: skip
    rng = np.random.default_rng(5)
    for step in range(1, 31):
        batch = _replay_batch(rng)
        stats = [algo.update(batch) for algo in (dqn, fast_dqn)]
        assert stats[1] == pytest.approx(stats[0], rel=1e-4, abs=1e-6)
        for algo in (dqn, fast_dqn):
            algo.on_env_step(step * 10)
    assert_same_weights(dqn.q_net, fast_dqn.q_net, rtol=1e-4, atol=1e-5)
    assert_same_weights(dqn.target_net, fast_dqn.target_net, rtol=1e-4, atol=1e-5)
    obs = rng.standard_normal((64, 4)).astype(np.float32)
    np.testing.assert_array_equal(dqn.greedy(obs), fast_dqn.greedy(obs))


# which runs take the numpy backend --------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        (("algo=ppo",), None),
        (("algo=dqn", "network.activation=relu"), None),
        (("algo=ppo", "env=pendulum"), "discrete actions"),
        (("algo=ppo", "env=frozenlake"), None),
        (("algo=dqn", "env=taxi"), None),
        (("algo=ppo", "network.dropout=0.1"), "batchnorm or dropout"),
        (("algo=ppo", "network.activation=swish"), "activation is swish"),
        (("algo=ppo", "network=cnn"), "not a plain MLP"),
    ],
)
def test_which_runs_take_the_numpy_backend(overrides, reason):
    cfg = compose_cfg(list(overrides))
    spec = env_spec(cfg.env)
    from runner_core.validation import algo_class

    cls = algo_class(cfg)
    why = fast.why_not(cls, cfg, spec)
    assert (why is None) == (reason is None), why
    if reason is not None:
        assert reason in why
        assert fast.variant(cls, cfg, spec) is None
    else:
        assert fast.variant(cls, cfg, spec).backend == "numpy"


def test_backends_can_be_forced(tmp_path):
    run_train(compose_cfg(["device.backend=torch"]), tmp_path / "torch")
    run_train(compose_cfg(["device.backend=numpy"]), tmp_path / "numpy")
    import json

    devices = [json.loads((tmp_path / d / "summary.json").read_text())["device"]
               for d in ("torch", "numpy")]  # fmt: skip
    assert devices == ["cpu", "cpu (numpy)"]
    with pytest.raises(ConfigError, match=r"'device\.backend' is 'numpy'.*discrete actions"):
        run_train(compose_cfg(["env=pendulum", "device.backend=numpy"]), tmp_path / "refused")
