"""Networks by role from the `network` config group: role overrides, encoders by observation
kind, the MLP and CNN builders, their settings' validation, and the numpy-drawn initialisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from runner_core.errors import ConfigError
from runner_core.networks import CNN, MLP, build, check_roles, role_config
from runner_core.networks.init import init_default, init_orthogonal
from tests.conftest import compose_cfg


def _net(**over):
    base = {"_target_": "runner_core.networks.MLP", "hidden": [8, 8], "activation": "tanh",
            "dropout": 0.0, "batchnorm": False}  # fmt: skip
    return OmegaConf.create({**base, **over})


def test_role_settings_override_the_shared_ones():
    net = _net(actor={"hidden": [32]})
    assert role_config(net, "actor")["hidden"] == [32]
    assert role_config(net, "critic")["hidden"] == [8, 8]
    assert role_config(net, "actor")["activation"] == "tanh"
    actor = build(net, "actor", "vector", (4,), 2)
    critic = build(net, "critic", "vector", (4,), 1)
    assert [m.out_features for m in actor.body if isinstance(m, torch.nn.Linear)] == [32, 2]
    assert [m.out_features for m in critic.body if isinstance(m, torch.nn.Linear)] == [8, 8, 1]


def test_role_overrides_from_the_command_line():
    cfg = compose_cfg(["++network.actor.hidden=[256,256]"])
    assert role_config(cfg.network, "actor")["hidden"] == [256, 256]
    from runner_core.entrypoint import role_overrides

    assert role_overrides(["network.actor.hidden=[1]", "network.hidden=[2]", "+x=1"]) == [
        "++network.actor.hidden=[1]", "network.hidden=[2]", "+x=1",
    ]  # fmt: skip


def test_unknown_roles_and_settings_are_refused():
    with pytest.raises(ConfigError, match=r"'network.actr' names no network of algo=ppo.*actor"):
        check_roles(_net(actr={"hidden": [4]}), ("actor", "critic"), "algo=ppo")
    with pytest.raises(ConfigError, match=r"'network.actor.hiden' is not a setting"):
        check_roles(_net(actor={"hiden": [4]}), ("actor", "critic"), "algo=ppo")
    with pytest.raises(ConfigError, match=r"'network.actor.hidden' has the value \[0\]"):
        build(_net(actor={"hidden": [0]}), "actor", "vector", (4,), 2)
    with pytest.raises(ConfigError, match=r"'network.activation' has the value 'gelu'"):
        build(_net(activation="gelu"), "actor", "vector", (4,), 2)


@pytest.mark.parametrize(
    ("kind", "shape", "n", "batch", "dtype"),
    [
        ("vector", (3,), None, (5, 3), torch.float32),
        ("discrete", (), 16, (5,), torch.int64),
        ("image", (10, 12, 3), None, (5, 10, 12, 3), torch.uint8),
        ("image", (10, 12), None, (5, 10, 12), torch.uint8),
    ],
)
def test_encoders_by_observation_kind(kind, shape, n, batch, dtype):
    net = build(_net(), "q", kind, shape, 4, n)
    x = torch.randint(0, 16, batch).to(dtype) if dtype != torch.float32 else torch.randn(batch)
    assert net(x).shape == (5, 4)
    if kind == "discrete":
        torch.testing.assert_close(net.encoder(torch.tensor([2])), torch.eye(16)[[2]])
    if kind == "image":  # [0, 255] to [0, 1], channels first
        encoded = net.encoder(torch.full(batch, 255, dtype=torch.uint8))
        assert encoded.shape[1] == (3 if len(shape) == 3 else 1) and encoded.max() == 1.0


def test_cnn_on_images_and_refused_on_vectors():
    cnn_cfg = compose_cfg(["network=cnn"], "dl").network
    net = build(cnn_cfg, "model", "vector", (1, 8, 8), 10)
    assert isinstance(net.body, CNN)
    assert net(torch.randn(7, 1, 8, 8)).shape == (7, 10)
    nature = compose_cfg(["network=nature_cnn"]).network
    frames = build(nature, "q", "image", (84, 84, 4), 6)
    assert frames(torch.zeros(2, 84, 84, 4, dtype=torch.uint8)).shape == (2, 6)
    with pytest.raises(ConfigError, match="network=cnn needs images"):
        build(cnn_cfg, "model", "vector", (64,), 10)
    with pytest.raises(ConfigError, match=r"shrink the .* input to nothing"):
        build(nature, "q", "vector", (1, 8, 8), 2)


def test_mlp_flattens_images():
    mlp = MLP((1, 8, 8), 10, [16], "relu")
    assert mlp(torch.randn(3, 1, 8, 8)).shape == (3, 10)


def test_numpy_drawn_initialisation_is_seeded_and_shaped():
    a, b = (build(_net(), "actor", "vector", (4,), 2) for _ in range(2))
    init_orthogonal(a, np.random.default_rng(0), 2**0.5, 0.01)
    init_orthogonal(b, np.random.default_rng(0), 2**0.5, 0.01)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    head = a.body[-1].weight  # (2, 8): rows orthonormal times the output gain
    torch.testing.assert_close(head @ head.T, 1e-4 * torch.eye(2), atol=1e-6, rtol=0)
    init_default(b, np.random.default_rng(1))
    first = b.body[0]
    bound = 1 / 4**0.5  # 1 / sqrt(fan_in)
    assert first.weight.abs().max() <= bound and first.bias.abs().max() <= bound
    assert first.bias.abs().max() > 0
