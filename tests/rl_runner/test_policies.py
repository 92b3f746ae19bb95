"""The actor-critic's rollout sampling (numpy, Gumbel-max) against the torch networks, and the
actor-critic born in numpy against the torch one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from rl_runner.numpy_policy import NumpyActorCritic
from rl_runner.policies import CategoricalActorCritic


def _policy(activation: str, n_actions: int = 3) -> CategoricalActorCritic:
    torch.manual_seed(0)
    net = OmegaConf.create(
        {"type": "mlp", "hidden": [16, 16], "activation": activation, "dropout": 0.0,
         "batchnorm": False}
    )  # fmt: skip
    policy = CategoricalActorCritic(4, n_actions, net)
    with torch.no_grad():
        policy.actor[-1].weight.mul_(100.0)  # spread the action probabilities out
    return policy


@pytest.mark.parametrize("activation", ["tanh", "leaky_relu"], ids=["numpy", "torch"])
def test_sampler_draws_from_the_policy(activation):
    policy = _policy(activation)
    obs = torch.randn(4, 4).repeat(5000, 1)  # 4 states, 5000 draws each
    actions, logprobs, values = policy.sampler(np.random.default_rng(0))(obs.numpy())

    with torch.no_grad():
        log_pi = torch.log_softmax(policy.actor(obs), -1).numpy()
        expected_values = policy.value(obs).numpy()
    np.testing.assert_allclose(logprobs, log_pi[np.arange(len(obs)), actions], atol=1e-5)
    np.testing.assert_allclose(values, expected_values, rtol=1e-5, atol=1e-5)
    for state in range(4):
        drawn = actions[state::4]
        freq = np.bincount(drawn, minlength=3) / len(drawn)
        probs = np.exp(log_pi[state])
        assert probs.min() < 0.9  # a real test of the sampling, not of a certain policy
        np.testing.assert_allclose(freq, probs, atol=0.03)


def test_sampling_is_reproducible_from_the_generator():
    policy = _policy("tanh")
    obs = torch.randn(64, 4)
    first = policy.sampler(np.random.default_rng(7))(obs.numpy())[0]
    again = policy.sampler(np.random.default_rng(7))(obs.numpy())[0]
    np.testing.assert_array_equal(first, again)


@pytest.mark.parametrize("activation", ["tanh", "leaky_relu"], ids=["numpy", "torch"])
def test_greedy_is_the_most_likely_action(activation):
    policy = _policy(activation)
    obs = torch.randn(256, 4)
    with torch.no_grad():
        expected = policy.actor(obs).argmax(-1).numpy()
    np.testing.assert_array_equal(policy.greedy(obs.numpy()), expected)


# the actor-critic born in numpy ----------------------------------------------------------------
NET = {"type": "mlp", "hidden": [16, 8], "dropout": 0.0, "batchnorm": False}


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_numpy_actor_critic_has_the_torch_layout_and_outputs(activation):
    """Same state-dict keys and shapes as the torch module; with the torch module's weights
    loaded, the same logits, values, greedy actions and sampled log-probs."""
    net = OmegaConf.create({**NET, "activation": activation})
    torch_policy = CategoricalActorCritic(4, 3, net)
    numpy_policy = NumpyActorCritic(4, 3, net, np.random.default_rng(0))
    want = torch_policy.state_dict()
    have = numpy_policy.state_dict()
    assert list(have) == list(want)
    assert [v.shape for v in have.values()] == [tuple(v.shape) for v in want.values()]
    numpy_policy.load_state_dict(want)

    obs = torch.randn(64, 4)
    logits, values = numpy_policy.forward_numpy()(obs.numpy())
    with torch.no_grad():
        np.testing.assert_allclose(logits, torch_policy.actor(obs).numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(values, torch_policy.value(obs).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(
        numpy_policy.greedy(obs.numpy()), torch_policy.greedy(obs.numpy())
    )
    ours = numpy_policy.sampler(np.random.default_rng(3))(obs.numpy())
    theirs = torch_policy.sampler(np.random.default_rng(3))(obs.numpy())
    np.testing.assert_array_equal(ours[0], theirs[0])
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-5, atol=1e-6)


def test_numpy_actor_critic_initialisation():
    """Orthogonal weights with PPO's gains (sqrt 2 hidden, 0.01 policy head, 1 value head), zero
    biases, drawn from the generator (the same seed gives the same network)."""
    net = OmegaConf.create({**NET, "activation": "tanh"})
    policy = NumpyActorCritic(4, 3, net, np.random.default_rng(5))
    state = policy.state_dict()
    gains = {"actor.0": 2**0.5, "actor.2": 2**0.5, "actor.4": 0.01,
             "critic.0": 2**0.5, "critic.2": 2**0.5, "critic.4": 1.0}  # fmt: skip
    for layer, gain in gains.items():
        w = state[f"{layer}.weight"].astype(np.float64)
        rows, cols = w.shape
        gram = w @ w.T if rows <= cols else w.T @ w  # the smaller side is orthonormal
        np.testing.assert_allclose(gram, gain**2 * np.eye(min(rows, cols)), atol=1e-5)
        assert not state[f"{layer}.bias"].any()
    again = NumpyActorCritic(4, 3, net, np.random.default_rng(5)).state_dict()
    assert all(np.array_equal(state[k], again[k]) for k in state)
    other = NumpyActorCritic(4, 3, net, np.random.default_rng(6)).state_dict()
    assert not np.array_equal(state["actor.0.weight"], other["actor.0.weight"])


def test_numpy_actor_critic_refuses_another_network():
    net = OmegaConf.create({**NET, "activation": "tanh"})
    policy = NumpyActorCritic(4, 3, net, np.random.default_rng(0))
    state = policy.state_dict()
    with pytest.raises(ValueError, match=r"actor.0.weight has shape \(16, 5\)"):
        policy.load_state_dict({**state, "actor.0.weight": np.zeros((16, 5))})
    with pytest.raises(KeyError):
        policy.load_state_dict({k: v for k, v in state.items() if k != "critic.4.bias"})
    with pytest.raises(KeyError, match="unexpected"):
        policy.load_state_dict({**state, "actor.6.weight": np.zeros(1)})
