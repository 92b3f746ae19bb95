"""The numpy backend's building blocks: `NumpyAdam` against torch.optim.Adam with
clip_grad_norm_, `NumpyMLP`'s backward pass against autograd, and `NumpyNetworks`' layout and
initial weights against the torch reference's networks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from rl_runner.fast.nets import FlatParameters, NumpyAdam, NumpyMLP, NumpyNetworks
from runner_core.networks import MLP
from runner_core.networks.encoders import Network, ToFloat
from runner_core.networks.init import init_default, init_orthogonal


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3)
    )


def _loss(net: nn.Module, step: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(step)
    x, y = torch.randn(32, 5, generator=g), torch.randn(32, 3, generator=g)
    return (net(x) - y).square().mean() * 10  # large enough that clipping bites


@pytest.mark.parametrize("clip", [None, 0.5])
def test_numpy_adam_matches_torch_adam(clip):
    """`NumpyAdam` on a numpy parameter vector: torch.optim.Adam's trajectory (with
    clip_grad_norm_), gradients computed by torch on a copy of the same weights."""
    ref = _net(0)
    ref_opt = torch.optim.Adam(ref.parameters(), lr=3e-3, eps=1e-5, betas=(0.8, 0.99))
    shadow = _net(0)  # computes NumpyAdam's gradients from its weights
    params = FlatParameters([tuple(p.shape) for p in shadow.parameters()])
    for view, p in zip(params.views, shadow.parameters(), strict=True):
        view[:] = p.detach().numpy()
    opt = NumpyAdam(params, lr=3e-3, eps=1e-5, betas=(0.8, 0.99))
    for step in range(40):
        lr = 3e-3 * (1 - step / 40)
        ref_opt.param_groups[0]["lr"] = opt.lr = lr
        ref_opt.zero_grad()
        _loss(ref, step).backward()
        with torch.no_grad():
            for view, p in zip(params.views, shadow.parameters(), strict=True):
                p.copy_(torch.from_numpy(view))
        shadow.zero_grad()
        _loss(shadow, step).backward()
        for grad, p in zip(params.grad_views, shadow.parameters(), strict=True):
            grad[:] = p.grad.numpy()
        ref_norm = nn.utils.clip_grad_norm_(ref.parameters(), clip) if clip else None
        norm = opt.step(max_grad_norm=clip)
        ref_opt.step()
        if clip is None:
            assert norm is None
        else:
            assert norm == pytest.approx(ref_norm.item(), rel=1e-5)
    for view, p_ref in zip(params.views, ref.parameters(), strict=True):
        np.testing.assert_allclose(view, p_ref.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_numpy_adam_state_round_trip_and_size_check():
    def make():
        params = FlatParameters([(3, 2), (3,)])
        params.flat[:] = np.linspace(-1, 1, 9)
        return params, NumpyAdam(params, lr=0.1)

    (a_params, a), (b_params, b) = make(), make()
    for _ in range(3):
        a_params.grad[:] = np.arange(9) - 4.0
        a.step(max_grad_norm=1.0)
    b_params.flat[:] = a_params.flat
    b.load_state_dict({k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v
                       for k, v in a.state_dict().items()})  # fmt: skip
    for params, opt in ((a_params, a), (b_params, b)):
        params.grad[:] = 1.0
        opt.step()
    np.testing.assert_array_equal(a_params.flat, b_params.flat)
    with pytest.raises(ValueError, match="holds 2 parameters, the model has 9"):
        b.load_state_dict({**a.state_dict(), "exp_avg": np.zeros(2), "exp_avg_sq": np.zeros(2)})


def test_numpy_adam_keeps_moments_out_of_the_denormal_range():
    """Parameters whose gradient stays 0 (dead units) have moments that would decay into denormal
    floats; NumpyAdam flushes those below 1e-30 to 0 every 100 steps, and the others follow
    Adam exactly."""
    params = FlatParameters([(64,)])
    opt = NumpyAdam(params, lr=1e-3)
    params.grad[:] = 1.0
    opt.step()
    live = np.arange(64) % 2 == 0
    tiny = np.finfo(np.float32).tiny  # the smallest normal float32
    for step in range(2, 3001):
        params.grad[:] = np.where(live, np.float32(np.sin(step)), 0.0)
        opt.step()
        for moment in (opt.exp_avg, opt.exp_avg_sq):
            small = np.abs(moment[~live])
            assert not ((small > 0) & (small < tiny)).any(), step
    assert not opt.exp_avg[~live].any()  # decayed below 1e-30 and flushed
    assert np.abs(opt.exp_avg[live]).min() > 1e-4  # live moments untouched


def _torch_network(in_f: int, out: int, hidden: list[int], activation: str) -> Network:
    return Network(ToFloat(), MLP((in_f,), out, hidden, activation))


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid"])
@pytest.mark.parametrize("hidden", [[], [7], [16, 9]])
@pytest.mark.parametrize("outputs", [3, 1])  # 1: a critic's V, whose backward is an outer product
def test_numpy_backward_matches_autograd(activation, hidden, outputs):
    nets = NumpyNetworks({"m": (5, outputs, hidden, activation)}, np.random.default_rng(0),
                         "default")  # fmt: skip
    ref = _torch_network(5, outputs, hidden, activation)
    ref.load_state_dict({k.removeprefix("m."): torch.from_numpy(v)
                         for k, v in nets.state_dict().items()})  # fmt: skip
    x = np.random.default_rng(1).standard_normal((11, 5)).astype(np.float32)
    g = np.random.default_rng(2).standard_normal((11, outputs)).astype(np.float32)
    out, acts = nets["m"].forward_train(x)
    np.testing.assert_allclose(out, ref(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-6)
    nets["m"].backward(acts, g)
    ref(torch.from_numpy(x)).backward(torch.from_numpy(g))
    grads = dict(zip(nets.names, nets.params.grad_views, strict=True))
    for name, p in ref.named_parameters():
        np.testing.assert_allclose(grads["m." + name], p.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_stacked_networks_compute_both_at_once():
    nets = NumpyNetworks({"a": (4, 2, [8], "tanh"), "b": (4, 1, [8], "tanh")},
                         np.random.default_rng(0), "orthogonal",
                         {"a": (math.sqrt(2), 0.01), "b": (math.sqrt(2), 1.0)})  # fmt: skip
    x = np.random.default_rng(1).standard_normal((6, 4)).astype(np.float32)
    fused = NumpyMLP.stack([nets["a"], nets["b"]])
    np.testing.assert_allclose(fused(x), np.concatenate([nets["a"](x), nets["b"](x)], 1),
                               rtol=1e-5, atol=1e-6)  # fmt: skip
    assert NumpyMLP.stack([nets["a"], NumpyNetworks({"c": (4, 1, [], "tanh")},
                          np.random.default_rng(0), "default")["c"]]) is None  # fmt: skip


@pytest.mark.parametrize("init", ["orthogonal", "default"])
def test_initial_weights_are_the_torch_references(init):
    """Drawn from the same generator in the same order as `init_orthogonal` / `init_default`
    draw them for the torch modules: same seed, same weights, the reference's state-dict keys."""
    gains = {"actor": (math.sqrt(2), 0.01), "critic": (math.sqrt(2), 1.0)}
    parts = {"actor": (4, 2, [16, 8], "tanh"), "critic": (4, 1, [16, 8], "tanh")}
    nets = NumpyNetworks(parts, np.random.default_rng(7), init, gains)
    rng = np.random.default_rng(7)
    policy = nn.Module()
    for name in ("actor", "critic"):
        module = _torch_network(4, parts[name][1], [16, 8], "tanh")
        if init == "orthogonal":
            init_orthogonal(module, rng, *gains[name])
        else:
            init_default(module, rng)
        setattr(policy, name, module)
    ref = policy.state_dict()
    assert list(ref) == nets.names
    for key, value in nets.state_dict().items():
        np.testing.assert_array_equal(value, ref[key].numpy(), err_msg=key)
    if init == "orthogonal":  # rows orthonormal times the gain, zero biases
        w = nets.state_dict()["actor.body.0.weight"]
        np.testing.assert_allclose(w.T @ w, 2.0 * np.eye(4), atol=1e-5)  # tall: columns
        assert not nets.state_dict()["actor.body.0.bias"].any()


def test_state_dict_checks_keys_and_shapes():
    nets = NumpyNetworks({"q": (4, 2, [8], "relu")}, np.random.default_rng(0), "default")
    state = nets.state_dict()
    with pytest.raises(KeyError, match="unexpected"):
        nets.load_state_dict({**state, "extra": np.zeros(1)})
    with pytest.raises(ValueError, match="shape"):
        nets.load_state_dict({**state, "q.body.0.weight": np.zeros((3, 3))})
    other = NumpyNetworks({"q": (4, 2, [8], "relu")}, np.random.default_rng(1), "default")
    other.copy_from(nets, tau=0.5)
    mid = 0.5 * (NumpyNetworks({"q": (4, 2, [8], "relu")}, np.random.default_rng(1),
                               "default").params.flat + nets.params.flat)  # fmt: skip
    np.testing.assert_allclose(other.params.flat, mid, rtol=1e-6, atol=1e-7)
