"""FlatAdam and NumpyAdam: the same trajectory as torch.optim.Adam with clip_grad_norm_, in one
flat vector."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from runner_core.numpy_nets import FlatParameters, NumpyAdam
from runner_core.optim import FlatAdam


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3)
    )


def _loss(net: nn.Module, step: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(step)
    x, y = torch.randn(32, 5, generator=g), torch.randn(32, 3, generator=g)
    return (net(x) - y).square().mean() * 10  # large enough that clipping bites


@pytest.mark.parametrize("fused", [True, False], ids=["fused-kernel", "explicit-maths"])
@pytest.mark.parametrize("clip", [None, 0.5])
def test_matches_torch_adam(clip, fused):
    ref, flat = _net(0), _net(0)
    ref_opt = torch.optim.Adam(ref.parameters(), lr=3e-3, eps=1e-5, betas=(0.8, 0.99))
    opt = FlatAdam(flat, lr=3e-3, eps=1e-5, betas=(0.8, 0.99))
    assert opt.fused  # on the CPU
    opt.fused = fused
    for step in range(40):
        lr = 3e-3 * (1 - step / 40)
        ref_opt.param_groups[0]["lr"] = opt.lr = lr
        ref_opt.zero_grad()
        _loss(ref, step).backward()
        opt.zero_grad()
        _loss(flat, step).backward()
        if clip is not None:
            ref_norm = nn.utils.clip_grad_norm_(ref.parameters(), clip)
            assert opt.clip_grad_norm_(clip).item() == pytest.approx(ref_norm.item(), rel=1e-5)
        ref_opt.step()
        opt.step()
    for p_ref, p in zip(ref.parameters(), flat.parameters(), strict=True):
        torch.testing.assert_close(p, p_ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fused", [True, False], ids=["fused-kernel", "explicit-maths"])
def test_clipping_inside_the_step_matches_clipping_before_it(fused):
    """step(max_grad_norm) clips as clip_grad_norm_ + step() does: same norms returned, same
    clipped gradients left behind, same trajectory."""
    a_net, b_net = _net(1), _net(1)
    a, b = FlatAdam(a_net, lr=1e-2), FlatAdam(b_net, lr=1e-2)
    a.fused = b.fused = fused
    clipped = 0
    for step in range(30):
        for net, opt in ((a_net, a), (b_net, b)):
            opt.zero_grad()
            _loss(net, step).backward()
        norm_a = a.clip_grad_norm_(4.0)
        a.step()
        norm_b = b.step(max_grad_norm=4.0)
        assert norm_b is not None and norm_b.item() == pytest.approx(norm_a.item(), rel=1e-6)
        # the two paths round differently, and over 30 steps the trajectories drift by a few
        # float32 ulps (how much depends on the CPU's vector width): a wrong clip is off by %
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-6)
        clipped += norm_a.item() > 4.0
    assert 0 < clipped < 30  # both regimes were exercised
    torch.testing.assert_close(b.flat, a.flat, rtol=1e-5, atol=1e-6)
    assert a.step() is None  # no clipping asked: no norm


def test_parameters_and_gradients_are_views_of_the_flat_vectors():
    net = _net(1)
    before = [p.detach().clone() for p in net.parameters()]
    opt = FlatAdam(net, lr=1e-3)
    assert opt.flat.numel() == sum(p.numel() for p in net.parameters())
    for p, old in zip(net.parameters(), before, strict=True):
        torch.testing.assert_close(p.detach(), old)  # values kept
    _loss(net, 0).backward()
    assert opt.grad.abs().sum() > 0
    assert all(p.grad.data_ptr() >= opt.grad.data_ptr() for p in net.parameters())
    opt.zero_grad()
    assert all((p.grad == 0).all() for p in net.parameters())


def test_state_round_trip_continues_identically():
    a, b = _net(2), _net(2)
    opt_a, opt_b = FlatAdam(a, lr=1e-2), FlatAdam(b, lr=1e-2)
    for step in range(5):
        opt_a.zero_grad()
        _loss(a, step).backward()
        opt_a.step()
    b.load_state_dict(a.state_dict())
    opt_b.load_state_dict(opt_a.state_dict())
    for opt, net in ((opt_a, a), (opt_b, b)):
        opt.zero_grad()
        _loss(net, 99).backward()
        opt.step()
    torch.testing.assert_close(opt_a.flat, opt_b.flat, rtol=0, atol=0)


def test_refuses_state_of_another_size():
    small = FlatAdam(nn.Linear(2, 2), lr=1e-3)
    with pytest.raises(ValueError, match="parameters"):
        FlatAdam(_net(0), lr=1e-3).load_state_dict(small.state_dict())


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
