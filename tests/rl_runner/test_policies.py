"""The actor-critic's rollout sampling (numpy, Gumbel-max) against the torch networks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

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
