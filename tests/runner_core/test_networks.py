"""The MLP's hand-written backward: the same gradients as autograd, for every layer kind it
covers, and autograd behind the same calls for the layers it does not."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from runner_core.networks import NumpyMLP, mlp


def _autograd_grads(net: nn.Module, x: torch.Tensor, grad_out: torch.Tensor) -> list:
    net.zero_grad()
    net(x).backward(grad_out)
    return [p.grad.clone() for p in net.parameters()]


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid"])
@pytest.mark.parametrize("hidden", [[], [7], [16, 9]])
def test_hand_backward_matches_autograd(activation, hidden):
    torch.manual_seed(0)
    net = mlp(5, 3, hidden, activation, hidden_gain=1.4, out_gain=0.5)
    assert net.linear_layers() is not None
    x, grad_out = torch.randn(32, 5), torch.randn(32, 3)
    expected = _autograd_grads(net, x, grad_out)

    for p in net.parameters():
        p.grad = torch.full_like(p, 123.0)  # backward replaces, it does not accumulate
    out, cache = net.forward_train(x)
    torch.testing.assert_close(out, net(x).detach())
    assert not out.requires_grad  # no autograd graph was recorded
    net.backward(cache, grad_out)
    for p, want in zip(net.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, want, rtol=1e-5, atol=1e-6)


def test_gradients_are_created_when_missing():
    torch.manual_seed(0)
    net = mlp(3, 2, [4], "tanh")
    out, cache = net.forward_train(torch.randn(6, 3))
    net.backward(cache, torch.ones_like(out))
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


@pytest.mark.parametrize(
    "kwargs",
    [{"activation": "leaky_relu"}, {"activation": "swish"}, {"batchnorm": True}],
    ids=["leaky_relu", "swish", "batchnorm"],
)
def test_other_layers_backpropagate_through_autograd(kwargs):
    torch.manual_seed(0)
    net = mlp(5, 3, [8, 8], **kwargs)
    assert net.linear_layers() is None
    x, grad_out = torch.randn(16, 5), torch.randn(16, 3)
    expected = _autograd_grads(net, x, grad_out)
    for p in net.parameters():
        p.grad = torch.full_like(p, 123.0)
    out, cache = net.forward_train(x)
    assert out.requires_grad
    net.backward(cache, grad_out)
    for p, want in zip(net.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, want)


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid"])
def test_numpy_mirror_matches_torch_and_follows_the_weights(activation):
    torch.manual_seed(0)
    net = mlp(4, 3, [16, 8], activation, hidden_gain=1.4, out_gain=0.5)
    x = torch.randn(8, 4)
    mirror = NumpyMLP.of(net)
    np.testing.assert_allclose(mirror(x.numpy()), net(x).detach().numpy(), rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        net[0].weight.mul_(2.0)  # in place: the mirror reads the same memory
    np.testing.assert_allclose(mirror(x.numpy()), net(x).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_side_by_side_is_the_networks_outputs_concatenated():
    torch.manual_seed(0)
    nets = [mlp(4, 2, [16, 16], "tanh"), mlp(4, 1, [16, 16], "tanh"), mlp(4, 3, [8, 32], "tanh")]
    x = torch.randn(8, 4)
    fused = NumpyMLP.side_by_side(nets)
    expected = torch.cat([net(x) for net in nets], dim=1).detach().numpy()
    np.testing.assert_allclose(fused(x.numpy()), expected, rtol=1e-5, atol=1e-6)


def test_no_numpy_mirror_where_it_would_differ():
    assert NumpyMLP.of(mlp(4, 2, [8], "leaky_relu")) is None
    assert NumpyMLP.of(mlp(4, 2, [8], "tanh", dropout=0.1)) is None
    assert NumpyMLP.of(mlp(4, 2, [8], "tanh").double()) is None
    assert NumpyMLP.side_by_side([mlp(4, 2, [8], "tanh"), mlp(4, 1, [8, 8], "tanh")]) is None
    assert NumpyMLP.side_by_side([mlp(4, 2, [8], "tanh"), mlp(4, 1, [8], "relu")]) is None


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid"])
@pytest.mark.parametrize("hidden", [[], [7], [16, 20]])
def test_numpy_training_matches_the_hand_backward(activation, hidden):
    """`NumpyMLP.of(net, train=True)`: the same outputs as the torch forward and the same
    gradients as `MLP.backward`, written into the parameters' own `.grad` memory (20 inputs
    also take the wide-input weight gradient)."""
    torch.manual_seed(0)
    net = mlp(5, 3, hidden, activation, hidden_gain=1.4, out_gain=0.5)
    x, grad_out = torch.randn(32, 5), torch.randn(32, 3)
    out, cache = net.forward_train(x)
    net.backward(cache, grad_out)
    expected = [p.grad.clone() for p in net.parameters()]

    mirror = NumpyMLP.of(net, train=True)
    for p in net.parameters():
        p.grad.fill_(123.0)  # replaced, not accumulated into
    np_out, acts = mirror.forward_train(x.numpy())
    np.testing.assert_allclose(np_out, out.numpy(), rtol=1e-5, atol=1e-6)
    mirror.backward(acts, grad_out.numpy())
    for p, want in zip(net.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, want, rtol=1e-5, atol=1e-6)


def test_no_numpy_training_for_frozen_parameters():
    net = mlp(4, 2, [8], "tanh")
    net[0].weight.requires_grad_(False)
    assert NumpyMLP.of(net) is not None and NumpyMLP.of(net, train=True) is None
